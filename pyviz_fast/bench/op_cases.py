"""Benchmark cases for the ops between two passes: each op on each backend, and the fused step's
effective memory bandwidth against ``torch.clone`` of the same tensor.

Inputs are made once per case (outside the timed call) with a fixed seed; the fused step uses
the issue's setting (sigma 2, mean-|g| normalization, jitter up to 8 px).

>>> rows = op_rows("fused_ascent_step", batch=4, size=64, backends=("fused", "reference"))
>>> [row.variant for row in rows]
['reference', 'fused']
"""
import torch

from pyviz_fast import ops
from pyviz_fast.bench.results import Row
from pyviz_fast.bench.timing import time_callable

OPS = ("jitter", "gaussian_blur", "normalize_grad", "clip_grad", "fused_ascent_step")
STEP_SIGMA = 2.0
MAX_JITTER = 8


def op_inputs(batch, size, dtype=torch.float32, device="cpu", channels=3, seed=0, grad_channels_last=False):
    """Image, gradient and two shift sets for one case: x, g [B, C, size, size], shifts int64 [B, 2].

    grad_channels_last: the gradient in channels_last layout, as a channels_last model returns it.
    """
    gen = torch.Generator().manual_seed(seed)
    shape = (batch, channels, size, size)
    x = torch.rand(shape, generator=gen).to(device=device, dtype=dtype)
    g = torch.randn(shape, generator=gen).to(device=device, dtype=dtype)
    if grad_channels_last:
        g = g.contiguous(memory_format=torch.channels_last)
    shifts = torch.randint(-MAX_JITTER, MAX_JITTER + 1, (2, batch, 2), generator=gen).to(device)
    return x, g, shifts[0], shifts[1]


def op_call(op, backend, x, g, shifts, next_shifts):
    """A zero-argument callable running ``op`` once on ``backend`` with the case's inputs."""
    calls = {
        "jitter": lambda: ops.jitter(x, shifts, backend=backend),
        "gaussian_blur": lambda: ops.gaussian_blur(g, STEP_SIGMA, backend=backend),
        "normalize_grad": lambda: ops.normalize_grad(g, "mean_abs", backend=backend),
        "clip_grad": lambda: ops.clip_grad(g, 1.0, backend=backend),
        "fused_ascent_step": lambda: ops.fused_ascent_step(x, g, shifts, next_shifts, STEP_SIGMA, norm="mean_abs",
                                                           clip=3.0, lr=0.05, decay=0.001, backend=backend),
    }
    if op not in calls:
        raise ValueError(f"op must be one of {', '.join(OPS)}; got {op!r}")
    return calls[op]


def _bytes_moved(op, x):
    """Least bytes an op must move: tensors read + written, each the size of x."""
    tensors = {"fused_ascent_step": 4}.get(op, 2)  # step reads x, g; writes image, next input
    return tensors * x.numel() * x.element_size()


def _max_difference(got, want):
    """Largest |got - want| over an op's outputs (tensors or tuples of them), in float32."""
    got, want = (v if isinstance(v, tuple) else (v,) for v in (got, want))
    return max(float((a.float() - b.float()).abs().max()) for a, b in zip(got, want))


def op_rows(op, *, batch, size, dtype=torch.float32, device="cpu", backends=("fused", "reference"),
            section="ops", timing=None, grad_channels_last=False):
    """Rows timing ``op`` on each backend (reference first; others take it as their baseline).

    Each row's rate is images per second (image-steps/s for the step); ``extra`` holds the
    effective bandwidth (GB/s) and, for non-reference backends, the largest difference of their
    output from the reference's on the same inputs (checked before timing; reported, not asserted).
    """
    x, g, shifts, next_shifts = op_inputs(batch, size, dtype, device, grad_channels_last=grad_channels_last)
    layout = ", grad channels_last" if grad_channels_last else ""
    case = f"{op} B={batch} {size}px {str(dtype).removeprefix('torch.')}{layout}"
    params = {"op": op, "batch": batch, "size": size, "dtype": str(dtype), "device": str(device),
              "grad_channels_last": grad_channels_last}
    ordered = sorted(backends, key=lambda b: b != "reference")
    unit = "image-steps/s" if op == "fused_ascent_step" else "images/s"
    reference = op_call(op, "reference", x, g, shifts, next_shifts)() if "reference" in ordered else None
    rows = []
    for backend in ordered:
        call = op_call(op, backend, x, g, shifts, next_shifts)
        extra = {}
        if backend != "reference" and reference is not None:
            extra["max_abs_diff_vs_reference"] = _max_difference(call(), reference)
        m = time_callable(call, device=device, **(timing or {}))
        extra["GB/s"] = _bytes_moved(op, x) / m.median_s / 1e9
        rows.append(Row(section, case, backend, m.rate(batch), unit, m.median_s, m.iqr_s, m.runs,
                        baseline=None if backend == "reference" or "reference" not in ordered else "reference",
                        params=params, extra=extra))
    return rows


def clone_bandwidth_row(*, batch, size, dtype=torch.float32, device="cpu", timing=None):
    """``torch.clone`` of the step's image tensor: the memory-bandwidth yardstick, in GB/s."""
    x, *_ = op_inputs(batch, size, dtype, device)
    m = time_callable(x.clone, device=device, **(timing or {}))
    gbps = 2 * x.numel() * x.element_size() / m.median_s / 1e9
    return Row("bandwidth", f"B={batch} {size}px {str(dtype).removeprefix('torch.')}", "torch.clone", gbps,
               "GB/s", m.median_s, m.iqr_s, m.runs, params={"batch": batch, "size": size, "dtype": str(dtype)})


def step_bandwidth_row(step_row, clone_row):
    """The fused step's effective bandwidth as a row, its baseline the clone's."""
    return Row("bandwidth", clone_row.case, f"fused_ascent_step ({step_row.variant})", step_row.extra["GB/s"],
               "GB/s", step_row.median_s, step_row.iqr_s, step_row.runs, baseline="torch.clone",
               params=step_row.params)
