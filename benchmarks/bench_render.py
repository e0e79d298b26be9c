"""End-to-end render throughput against the model's bare truncated forward+backward (the ceiling).

Issue 3's setup: torchvision googlenet (weights=None), units inception4a:0-15, 128 px, batch 16.
For each execution setting (fp32 NCHW, bf16 + channels_last, ...) and ops backend, in one run:

- bare:  image-steps/s of the truncated forward + objective + input gradient alone;
- render: image-steps/s of ``pyviz_fast.render`` (everything: draws, init, the fused step,
  progress bookkeeping, the final evaluation), and its ratio to bare (target >= 0.8).

Then the gain of truncation: rendering inception3a with the forward cut after it vs running
the full model. Bare and render runs are interleaved and repeated; medians are printed.
Timings on a shared 2-core CPU are noisy: read the ratios. Never asserts.

    python benchmarks/bench_render.py                      # 64 steps, 3 repeats
    python benchmarks/bench_render.py --steps 16 --repeats 1 --json out.json
"""
import argparse
import json
import statistics
import time

import torch

import pyviz_fast as pvf
from pyviz_fast.engine.execution import PreparedModel
from pyviz_fast.engine.objectives import ObjectivePlan

CONFIGS = [("fp32", "contiguous"), ("fp32", "channels_last"), ("bf16", "contiguous"), ("bf16", "channels_last")]


def bare_rate(model, units, settings, steps, layers=None):
    """Image-steps/s of ``steps`` truncated forward+backward passes (first one untimed: warm-up)."""
    B, H = len(units), settings.size
    with PreparedModel(model, settings, "cpu") as prepared:
        plan = ObjectivePlan(units, _shapes(prepared, units, H))
        needed = layers or plan.layers
        x = torch.rand(B, 3, H, H)
        times = []
        for _ in range(steps + 1):
            start = time.perf_counter()
            inp = x.clone().requires_grad_(True)
            objective = plan(prepared(inp, needed))
            torch.autograd.grad(objective.sum(), inp)
            times.append(time.perf_counter() - start)
    return B / statistics.median(times[1:])


def _shapes(prepared, units, size):
    from pyviz_fast.engine.layers import probe_shapes
    return probe_shapes(prepared, list(dict.fromkeys(u.layer for u in units)), 3, (size, size))


def render_rate(model, units, settings, backend):
    res = pvf.render(model, units, settings, backend=backend, seed=0)
    assert all(s == "ok" for s in res.status), res.reasons
    return len(units) * settings.steps / res.timings["total"], res.timings


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--configs", default=",".join(f"{p}/{m}" for p, m in CONFIGS))
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    torch.manual_seed(0)
    model, _ = pvf.load_model("torchvision:googlenet", weights="none")
    units = pvf.parse_units("inception4a:0-15")
    backends = ["auto", "reference"]  # auto = fused when its kernels are built
    rows = []
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, ops built: {pvf.has_ops()}, "
          f"googlenet inception4a:0-15, batch {len(units)}, {args.size} px, {args.steps} steps")
    print(f"{'precision/format':24} {'backend':10} {'bare img-steps/s':>17} {'render img-steps/s':>19} "
          f"{'ratio':>6} {'fwd+bwd s':>10} {'step s':>8} {'setup s':>8}")
    for config in args.configs.split(","):
        precision, memory_format = config.split("/")
        settings = pvf.Settings(size=args.size, steps=args.steps, batch_size=len(units),
                                precision=precision, memory_format=memory_format)
        for backend in backends:
            bare, rend, timings = [], [], []
            for _ in range(args.repeats):  # interleave so both see the same machine load
                bare.append(bare_rate(model, units, settings, min(args.steps, 16)))
                rate, t = render_rate(model, units, settings, backend)
                rend.append(rate)
                timings.append(t)
            b, r = statistics.median(bare), statistics.median(rend)
            t = timings[rend.index(r)] if r in rend else timings[0]
            rows.append({"precision": precision, "memory_format": memory_format, "backend": backend,
                         "bare": b, "render": r, "ratio": r / b, "timings": t})
            print(f"{config:24} {backend:10} {b:17.1f} {r:19.1f} {r / b:6.2f} "
                  f"{t['forward_backward']:10.2f} {t['step']:8.2f} {t['setup']:8.2f}")
    print("\ntruncation gain, inception3a:0-15 (bare fwd+bwd, fastest listed config):")
    precision, memory_format = args.configs.split(",")[-1].split("/")
    settings = pvf.Settings(size=args.size, precision=precision, memory_format=memory_format)
    early = pvf.parse_units("inception3a:0-15")
    cut, full = [], []
    for _ in range(args.repeats):
        cut.append(bare_rate(model, early, settings, 8))
        full.append(bare_rate(model, early, settings, 8, layers=["inception3a", "output"]))
    c, f = statistics.median(cut), statistics.median(full)
    print(f"  truncated {c:.1f} img-steps/s, full model {f:.1f} img-steps/s: {c / f:.2f}x")
    rows.append({"truncation": {"truncated": c, "full": f, "gain": c / f}})
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"torch": torch.__version__, "threads": torch.get_num_threads(), "steps": args.steps,
                       "size": args.size, "rows": rows}, out, indent=1)


if __name__ == "__main__":
    main()
