"""Bad input gives a clear error naming the argument, what it got and what is valid: through
the Python API (ValueError / TypeError, before any kernel runs) and through torch.ops directly
(the kernels' own TORCH_CHECKs, RuntimeError), on the CPU kernels and their CUDA emulation."""
import math

import pytest
import torch

from pyviz_fast import ops

B, C, H, W = 2, 3, 8, 8


def good():
    """Valid arguments of every op, to be spoiled one at a time."""
    x = torch.rand(B, C, H, W)
    return dict(x=x, grad=torch.randn(B, C, H, W), shifts=torch.zeros(B, 2, dtype=torch.long),
                next_shifts=torch.ones(B, 2, dtype=torch.long), sigma=torch.ones(B))


# (spoiled argument, value, Python exception, message regex of the Python API, of the kernel)
TENSOR_CASES = [
    ("x", torch.rand(C, H, W), ValueError, r"x must be a 4-D tensor \[B, C, H, W\], got shape \[3, 8, 8\]",
     r"x must be a 4-D tensor \[B, C, H, W\], got \[3, 8, 8\]"),
    ("x", torch.zeros(B, C, H, W, dtype=torch.int64), TypeError, r"x must be float32, float16 or bfloat16, got torch.int64",
     r"x must be float32, float16 or bfloat16, got Long"),
    ("x", torch.rand(0, C, H, W), ValueError, r"x must hold at least one image .* got shape \[0, 3, 8, 8\]",
     r"x must hold at least one image .* got \[0, 3, 8, 8\]"),
    ("grad", torch.randn(B, C, H, W + 1), ValueError, r"grad must have the shape of x \[2, 3, 8, 8\], got \[2, 3, 8, 9\]",
     r"grad must have the shape of x \[2, 3, 8, 8\], got \[2, 3, 8, 9\]"),
    ("grad", torch.randn(B, C, H, W, dtype=torch.float16), TypeError,
     r"grad must have the dtype of x \(torch.float32\), got torch.float16", r"grad must have the dtype of x \(Float\), got Half"),
    ("shifts", torch.zeros(B, 3, dtype=torch.long), ValueError, r"shifts must have shape \[B, 2\] = \[2, 2\].* got \[2, 3\]",
     r"shifts must have shape \[B, 2\] = \[2, 2\], got \[2, 3\]"),
    ("shifts", torch.zeros(B, 2), TypeError, r"shifts must hold integers \(dy, dx\), got dtype torch.float32",
     r"shifts must be int64 \(dy, dx\) pairs, got Float"),
    ("next_shifts", torch.zeros(B + 1, 2, dtype=torch.long), ValueError, r"next_shifts must have shape \[B, 2\] = \[2, 2\]",
     r"next_shifts must have shape \[B, 2\] = \[2, 2\], got \[3, 2\]"),
    ("sigma", torch.ones(B + 1), ValueError, r"sigma must be a number or hold one value per image \(B=2\), got shape \[3\]",
     r"sigma must hold one value per image \(B=2\), got shape \[3\]"),
]

# (keyword, value, Python exception, message regex of the Python API, of the kernel)
SCALAR_CASES = [
    ("norm", "l2", ValueError, r"norm mode must be one of rms, mean_abs, std, max_abs, none; got 'l2'",
     r"norm mode must be one of rms, mean_abs, std, max_abs, none; got 'l2'"),
    ("eps", -1.0, ValueError, r"eps must be finite and >= 0, got -1.0", r"eps must be finite and >= 0, got -1"),
    ("clip", -0.5, ValueError, r"clip must be >= 0 \(inf allowed\), got -0.5",
     r"clip must be >= 0 \(inf disables clipping\), got -0.5"),
    ("lr", math.nan, ValueError, r"lr must be finite, got nan", r"lr must be finite, got nan"),
    ("decay", 1.5, ValueError, r"decay must be in \[0, 1\], got 1.5", r"decay must be in \[0, 1\], got 1.5"),
    ("lo", 2.0, ValueError, r"lo must not exceed hi, got lo=2.0, hi=1.0", r"lo must not exceed hi, got lo=2, hi=1"),
]

STEP_SCALARS = dict(norm="mean_abs", eps=1e-8, clip=math.inf, lr=1.0, decay=0.0, center=0.5, lo=0.0, hi=1.0)
TENSOR_ORDER = ("x", "grad", "shifts", "next_shifts", "sigma")


def kernel(prefix, op):
    return getattr(torch.ops.pyviz_fast, prefix + op)


@pytest.mark.parametrize("name, value, error, python_msg, kernel_msg", TENSOR_CASES)
def test_fused_step_rejects_bad_tensors(name, value, error, python_msg, kernel_prefix, kernel_msg):
    args = good() | {name: value}
    with pytest.raises(error, match=python_msg):
        ops.fused_ascent_step(*(args[k] for k in TENSOR_ORDER), backend="reference")
    with pytest.raises(RuntimeError, match=kernel_msg):
        kernel(kernel_prefix, "fused_ascent_step")(*(args[k] for k in TENSOR_ORDER), *STEP_SCALARS.values())


@pytest.mark.parametrize("name, value, error, python_msg, kernel_msg", SCALAR_CASES)
def test_fused_step_rejects_bad_scalars(name, value, error, python_msg, kernel_prefix, kernel_msg):
    args = good()
    scalars = STEP_SCALARS | {name: value}
    with pytest.raises(error, match=python_msg):
        ops.fused_ascent_step(*(args[k] for k in TENSOR_ORDER), backend="reference", **scalars)
    with pytest.raises(RuntimeError, match=kernel_msg):
        kernel(kernel_prefix, "fused_ascent_step")(*(args[k] for k in TENSOR_ORDER), *scalars.values())


def test_python_api_rejects_tensors_on_another_device():
    args = good() | {"grad": torch.randn(B, C, H, W, device="meta")}
    with pytest.raises(ValueError, match=r"grad must be on the device of x \(cpu\), got meta"):
        ops.fused_ascent_step(*(args[k] for k in TENSOR_ORDER))


@pytest.mark.needs_cuda
def test_kernel_rejects_tensors_on_another_device():
    args = good() | {"x": torch.rand(B, C, H, W, device="cuda")}
    with pytest.raises(RuntimeError, match=r"grad must be on the device of x \(cuda:0\), got cpu"):
        torch.ops.pyviz_fast.fused_ascent_step(*(args[k] for k in TENSOR_ORDER), *STEP_SCALARS.values())


def test_single_ops_reject_bad_input(kernel_prefix):
    x, shifts, sigma = good()["x"], good()["shifts"], good()["sigma"]
    cases = [
        (ops.jitter, "jitter", (x[0], shifts), ValueError, r"x must be a 4-D tensor"),
        (ops.jitter, "jitter", (x, shifts[:1]), ValueError, r"shifts must have shape \[B, 2\] = \[2, 2\]"),
        (ops.gaussian_blur, "gaussian_blur", (x.int(), sigma), TypeError, r"x must be float32, float16 or bfloat16"),
        (ops.gaussian_blur, "gaussian_blur", (x, sigma[:1]), ValueError, r"sigma must .*one value per image \(B=2\)"),
        (ops.normalize_grad, "normalize_grad", (x, "l1", 1e-8), ValueError, r"norm mode must be one of .* got 'l1'"),
        (ops.normalize_grad, "normalize_grad", (x, "rms", -1.0), ValueError, r"eps must be"),
        (ops.clip_grad, "clip_grad", (x[:0], 1.0), ValueError, r"g must hold at least one image"),
        (ops.clip_grad, "clip_grad", (x, -1.0), ValueError, r"clip must be"),
    ]
    for python_op, name, args, error, msg in cases:
        with pytest.raises(error, match=msg):
            python_op(*args, backend="reference")
        with pytest.raises(RuntimeError, match=msg):
            kernel(kernel_prefix, name)(*args)


@pytest.mark.needs_ext
@pytest.mark.parametrize("op", ["gaussian_blur", "fused_ascent_step"])
def test_cpu_kernels_reject_a_nonfinite_sigma(kernel_prefix, op):
    """A ValueError, as from the reference (the kernels cannot tell without reading the values)."""
    args = good() | {"sigma": torch.tensor([1.0, math.nan])}
    tensors = (args["x"], args["sigma"]) if op == "gaussian_blur" else tuple(args[k] for k in TENSOR_ORDER)
    scalars = () if op == "gaussian_blur" else tuple(STEP_SCALARS.values())
    with pytest.raises(ValueError, match=r"sigma must be finite, got nan for image 1"):
        getattr(torch.ops.pyviz_fast, kernel_prefix + op)(*tensors, *scalars)


def test_reference_rejects_a_nonfinite_sigma():
    x = torch.rand(2, 1, 4, 4)
    with pytest.raises(ValueError, match=r"sigma must be finite, got nan for image 1"):
        ops.gaussian_blur(x, torch.tensor([1.0, math.nan]), backend="reference")
