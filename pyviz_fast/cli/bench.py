"""``pyviz-fast bench``: a short fused-vs-reference comparison (the fused ascent step, and end to
end on the shipped model) printed as a ratio table. The full suite lives in ``benchmarks/``."""
import argparse
import json
import math

import torch

from pyviz_fast.cli.common import CliError, add_common_flags, load_model, say

EXAMPLES = """examples:
  pyviz-fast bench                       # ~20 s on a 2-core CPU
  pyviz-fast bench --batch 32 --size 224 --json bench.json
  pyviz-fast bench --device cuda
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser("bench", help="fused vs reference backends: ops and end to end, as ratios",
                                   description=__doc__, epilog=EXAMPLES,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16, help="images per step (default: %(default)s)")
    parser.add_argument("--size", type=int, default=128, help="image size in px (default: %(default)s)")
    parser.add_argument("--units", default="conv3:0-7", help="units for the end-to-end case (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=16, help="steps of the end-to-end render (default: %(default)s)")
    parser.add_argument("--json", default=None, help="also write the rows and metadata to this JSON file")
    add_common_flags(parser, settings=False)
    parser.set_defaults(run=run)


def _variants(device) -> list[str]:
    """Backends to compare: the reference always, fused when it is built for ``device``."""
    from pyviz_fast.backend import resolve_backend
    try:
        resolve_backend("fused", device)
    except RuntimeError:
        return ["reference"]
    return ["reference", "fused"]


def _row(section, case, variant, measurement, per_call, unit, params):
    from pyviz_fast.bench.results import Row
    return Row(section, case, variant, measurement.rate(per_call), unit, measurement.median_s, measurement.iqr_s,
               measurement.runs, baseline=None if variant == "reference" else "reference", params=params)


def step_rows(batch: int, size: int, device="cpu", min_time_s: float = 0.5) -> list:
    """The fused ascent step per backend on [batch, 3, size, size] float32 (image-steps/s)."""
    from pyviz_fast import ops
    from pyviz_fast.bench.timing import time_callable

    generator = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, size, size, generator=generator).to(device)
    grad = torch.randn(batch, 3, size, size, generator=generator).to(device)
    shifts = torch.randint(-8, 9, (batch, 2), generator=generator)
    next_shifts = torch.randint(-8, 9, (batch, 2), generator=generator)
    rows = []
    for variant in _variants(device):
        def step():
            return ops.fused_ascent_step(x, grad, shifts, next_shifts, 1.0, lr=0.05, backend=variant)
        measurement = time_callable(step, device=device, min_time_s=min_time_s, max_time_s=5.0)
        rows.append(_row("ops", f"fused_ascent_step B={batch} {size}px fp32", variant, measurement, batch,
                         "image-steps/s", {"batch": batch, "size": size}))
    return rows


def render_rows(model, units: str, size: int, steps: int, device="cpu", model_name="model") -> list:
    """End-to-end ``pyviz_fast.render`` per backend (image-steps/s; fp32 so backends compare alike)."""
    import pyviz_fast as pvf
    from pyviz_fast.bench.timing import time_callable

    settings = pvf.Settings(size=size, steps=steps, precision="fp32", memory_format="contiguous")
    count = len(pvf.parse_units(units, model=model))
    rows = []
    for variant in _variants(device):
        def render():
            return pvf.render(model, units, settings, backend=variant, device=device, seed=0, progress=False)
        measurement = time_callable(render, device=device, min_runs=2, min_time_s=0.0, max_time_s=20.0)
        rows.append(_row("e2e", f"{model_name} {units} {size}px {steps} steps fp32", variant, measurement,
                         count * steps, "image-steps/s", {"units": units, "size": size, "steps": steps}))
    return rows


def short_bench(model, *, batch=16, size=128, units="conv3:0-7", steps=16, device="cpu", model_name="model") -> list:
    """Rows of ``pyviz-fast bench``: the step and an end-to-end render, fused vs reference.

    Reusable by the benchmark suite: returns pyviz_fast.bench.results.Row objects."""
    return step_rows(batch, size, device) + render_rows(model, units, size, steps, device, model_name)


def run(args) -> int:
    from pyviz_fast.bench.results import format_ratio_table

    if args.batch < 1 or args.size < 1 or args.steps < 1:
        raise CliError(f"--batch, --size and --steps must be >= 1, got {args.batch}, {args.size}, {args.steps}")
    model, _ = load_model(args)
    torch.manual_seed(args.seed)
    try:
        rows = short_bench(model, batch=args.batch, size=args.size, units=args.units, steps=args.steps,
                           device=args.device, model_name=args.model)
    except (ValueError, RuntimeError) as error:
        raise CliError(f"benchmark failed: {error}") from None
    print(format_ratio_table(rows))
    if len(_variants(args.device)) == 1:
        say(args, "(the fused backend is not built for this device: reference only)")
    if args.json:
        from pyviz_fast.bench.metadata import collect_metadata
        from pyviz_fast.bench.results import write_results
        try:
            write_results(args.json, rows, collect_metadata(device=args.device))
        except OSError as error:
            raise CliError(f"cannot write {args.json!r}: {error}") from None
        say(args, f"results: {args.json}")
    return 0 if all(math.isfinite(row.rate) for row in rows) else 1
