"""The whole benchmark suite in one run: JSON with metadata, markdown tables, PNG plots, targets.

Sections (``--sections``, default all):
  ops         each op, fused vs reference, B=32 224 px (fp32; the step also bf16), and the fused
              step's effective bandwidth against torch.clone of the same tensor
  sweep       over batch sizes and image sizes (the plots): the fused step, fused vs reference,
              and a whole render of ShapesNet conv3 (fastest settings) beside its ceiling
  e2e         render (fused, reference) vs the bare truncated forward+backward ceiling:
              googlenet inception4a:0-15 128 px 64 steps B=16 in fp32 and the fastest settings
              (bf16 + channels_last), then googlenet, vgg16, resnet50 (weights=None) at more layers
  execution   the googlenet case under every fixed execution (precision x memory format) and
              under 'auto' (first call with its trial, and cached), against the best fixed one
  truncation  googlenet inception3a: forward cut after the layer vs the full model
  peers       torch-lucent and torch-dreams at their defaults on the googlenet case beside
              pyviz_fast (its defaults = 'auto', fp32, fastest), image-steps/s and the final objective of every tool
              scored by the same code
  ttq         time-to-quality of a whole layer of the shipped ShapesNet, per tool
  atlas       units/s of rendering every channel of one ShapesNet layer

    python benchmarks/run_suite.py                    # full suite, ~10 min on 2 idle cores
    python benchmarks/run_suite.py --quick            # ~2 min: smaller grids, 8 steps, no extra models
    python benchmarks/run_suite.py --device cuda      # same cases, CUDA-event timing
    python benchmarks/run_suite.py --sections ops,sweep --out /tmp/bench

Writes OUT/results.json (rows + metadata + targets), OUT/tables.md and OUT/throughput_vs_*.png.
Benchmarks never assert: a case that fails is recorded in the JSON's "errors" and skipped.
"""
import argparse
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch

import pyviz_fast as pvf
from pyviz_fast.bench.execution_cases import execution_rows
from pyviz_fast.bench.metadata import collect_metadata
from pyviz_fast.bench.op_cases import OPS, clone_bandwidth_row, op_rows, step_bandwidth_row
from pyviz_fast.bench.peer_cases import peer_rows, ttq_rows
from pyviz_fast.bench.plots import plot_sweep
from pyviz_fast.bench.quick import available_backends
from pyviz_fast.bench.render_cases import EXECUTIONS, atlas_row, e2e_rows, truncation_rows
from pyviz_fast.bench.results import format_ratio_table, read_results, write_results
from pyviz_fast.bench.timing import steady_process

sys.path.insert(0, str(Path(__file__).resolve().parent))
from targets import evaluate_targets, format_targets  # noqa: E402  (a sibling script module)

SECTIONS = ("ops", "e2e", "execution", "peers", "truncation", "sweep", "atlas", "ttq")  # most wanted first


@dataclass
class Plan:
    """Sizes of every section; ``FULL`` fits ~10 min on 2 idle cores, ``QUICK`` ~2 min."""

    op_case: tuple  # (batch, size) of the op table
    ops: tuple  # ops timed in the op table
    batches: tuple  # sweep over batch at sweep_size px
    sweep_size: int
    sizes: tuple  # sweep over size at sweep_batch images
    sweep_batch: int
    sweep_steps: int  # steps of the ShapesNet renders of the sweep
    main_steps: int  # steps of the googlenet inception4a:0-15 case (and the peers)
    more_layers: tuple  # (model spec, layer) of the extra end-to-end cases
    more_batch: int
    more_steps: int
    ttq_layer: str
    ttq_size: int
    ttq_ladder: tuple
    atlas: tuple  # (layer, size, steps)
    timing: dict


FULL = Plan(op_case=(32, 224), ops=OPS, batches=(1, 4, 16, 64, 256), sweep_size=128,
            sizes=(64, 128, 224, 320, 512), sweep_batch=8, sweep_steps=16, main_steps=64,
            more_layers=(("torchvision:googlenet", "inception3a"), ("torchvision:googlenet", "inception5b"),
                         ("torchvision:vgg16", "features.15"), ("torchvision:vgg16", "features.29"),
                         ("torchvision:resnet50", "layer2"), ("torchvision:resnet50", "layer4")),
            more_batch=8, more_steps=8, ttq_layer="conv1", ttq_size=64, ttq_ladder=(8, 16, 32),
            atlas=("conv4", 64, 64), timing={"min_time_s": 1.0, "max_time_s": 10.0})
QUICK = Plan(op_case=(32, 224), ops=("fused_ascent_step",), batches=(1, 16, 64), sweep_size=128,
             sizes=(64, 128, 256), sweep_batch=8, sweep_steps=4, main_steps=8,
             more_layers=(), more_batch=4, more_steps=4,
             ttq_layer="conv1", ttq_size=64, ttq_ladder=(4, 8), atlas=("conv4", 64, 16),
             timing={"min_time_s": 0.3, "max_time_s": 3.0})
SWEEP_CHANNELS = 64  # channels of ShapesNet's conv3
MAIN_CASE = ("torchvision:googlenet", "inception4a", list(range(16)), 128)  # issue 3's case
SHAPES_CASE = ("shapesnet", "conv3.bn2", list(range(16)), 64)  # shipped model, pre-ReLU (model card)
SHAPES_PEER_STEPS = 32  # Lucent runs ShapesNet at 224 px: 64 steps would double the suite's longest part


class Suite:
    """Runs sections, collects rows, keeps going when a case fails (recorded in ``errors``)."""

    def __init__(self, plan, device, backends):
        self.plan, self.device, self.backends = plan, device, backends
        self.rows, self.errors, self.models = [], [], {}

    def model(self, spec):
        """(model, normalization) built once per spec (torchvision: weights=None; shapesnet: the
        shipped weights), frozen, on the device."""
        if spec not in self.models:
            torch.manual_seed(0)
            model, info = pvf.load_model(spec, weights="none", device=self.device)
            for p in model.parameters():  # every tool gets the same frozen model
                p.requires_grad_(False)
            normalization = None if info["mean"] is None else (info["mean"], info["std"])
            self.models[spec] = (model, normalization)
        return self.models[spec]

    def run(self, section, fn):
        start = time.perf_counter()
        try:
            new = fn()
        except Exception as error:  # noqa: BLE001 - a benchmark reports, it does not stop
            self.errors.append({"section": section, "error": f"{type(error).__name__}: {error}",
                                "traceback": traceback.format_exc(limit=3)})
            print(f"[{section}] FAILED: {type(error).__name__}: {str(error).splitlines()[0][:200]}", flush=True)
            return
        self.rows += new
        print(f"[{section}] {time.perf_counter() - start:.0f} s", flush=True)
        print(format_ratio_table(new), flush=True)

    def ops(self):
        batch, size = self.plan.op_case
        rows = []
        for op in self.plan.ops:
            rows += op_rows(op, batch=batch, size=size, device=self.device, backends=self.backends,
                            timing=self.plan.timing)
        rows += op_rows("fused_ascent_step", batch=batch, size=size, device=self.device, backends=self.backends,
                        timing=self.plan.timing, grad_channels_last=True)
        rows += op_rows("fused_ascent_step", batch=batch, size=size, dtype=torch.bfloat16, device=self.device,
                        backends=self.backends, timing=self.plan.timing)
        clone = clone_bandwidth_row(batch=batch, size=size, device=self.device, timing=self.plan.timing)
        steps = [r for r in rows if r.params["op"] == "fused_ascent_step" and r.params["dtype"] == "torch.float32"
                 and not r.params["grad_channels_last"]]
        return rows + [clone] + [step_bandwidth_row(r, clone) for r in steps]

    def sweep(self):
        """The fused step, and a whole render of the shipped ShapesNet (conv3, fastest settings,
        beside its ceiling, up to one unit per channel), over batch sizes and image sizes."""
        model, rows = self.model("shapesnet")[0], []
        points = [("batch", b, self.plan.sweep_size) for b in self.plan.batches] + \
                 [("size", self.plan.sweep_batch, s) for s in self.plan.sizes]
        for axis, batch, size in points:
            point = op_rows("fused_ascent_step", batch=batch, size=size, device=self.device, backends=self.backends,
                            section=f"step-vs-{axis}", timing=self.plan.timing)
            if batch <= SWEEP_CHANNELS:  # one unit per channel of conv3; the step alone goes further
                point += e2e_rows(model, "shapesnet", "conv3", range(batch), size=size, steps=self.plan.sweep_steps,
                                  execution=EXECUTIONS["fastest"], device=self.device, backends=self.backends,
                                  section=f"render-vs-{axis}", timing=self.plan.timing, runs=1)
            for row in point:
                row.extra["sweep"] = axis
            rows += point
        return rows

    def e2e(self):
        spec, layer, channels, size = MAIN_CASE
        model, _ = self.model(spec)
        rows = []
        for name in ("fp32", "fastest"):
            rows += e2e_rows(model, "googlenet", layer, channels, size=size, steps=self.plan.main_steps,
                             execution=EXECUTIONS[name], device=self.device, backends=self.backends,
                             timing=self.plan.timing)
        for spec, layer in self.plan.more_layers:
            model, _ = self.model(spec)
            rows += e2e_rows(model, spec.split(":")[1], layer, range(self.plan.more_batch), size=size,
                             steps=self.plan.more_steps, execution=EXECUTIONS["fastest"], device=self.device,
                             backends=self.backends, timing=self.plan.timing, runs=1)
        return rows

    def execution(self):
        spec, layer, channels, size = MAIN_CASE
        model, _ = self.model(spec)
        return execution_rows(model, "googlenet", f"{layer}:{channels[0]}-{channels[-1]}", size=size,
                              steps=max(self.plan.main_steps, 64), device=self.device, backend=self.backends[0])

    def truncation(self):
        model, _ = self.model(MAIN_CASE[0])
        return truncation_rows(model, "googlenet", "inception3a", MAIN_CASE[2], size=MAIN_CASE[3],
                               execution=EXECUTIONS["fastest"], device=self.device, timing=self.plan.timing)

    def peers(self):
        """Issue 3's googlenet case (random weights: speed only, its channels barely respond), then
        the same on the trained ShapesNet, where the objectives reached mean something."""
        rows = []
        for spec, layer, channels, size in (MAIN_CASE, SHAPES_CASE):
            model, normalization = self.model(spec)
            steps = self.plan.main_steps if spec == MAIN_CASE[0] else min(self.plan.main_steps, SHAPES_PEER_STEPS)
            rows += peer_rows(model, spec.split(":")[-1], layer, channels, size=size, steps=steps,
                              normalization=normalization, device=self.device, backend=self.backends[0],
                              executions=(EXECUTIONS["auto"], EXECUTIONS["fp32"], EXECUTIONS["fastest"]))
        return rows

    def ttq(self):
        from pyviz_fast.zoo import make_batch

        model, normalization = self.model("shapesnet")
        reference_images, _ = make_batch(256, size=self.plan.ttq_size, seed=1234)
        return ttq_rows(model, "shapesnet", self.plan.ttq_layer, size=self.plan.ttq_size,
                        reference_images=reference_images, normalization=normalization, ladder=self.plan.ttq_ladder,
                        device=self.device, log=lambda m: print(m, flush=True))

    def atlas(self):
        layer, size, steps = self.plan.atlas
        backend = "fused" if "fused" in self.backends else "reference"
        return [atlas_row(self.model("shapesnet")[0], "shapesnet", layer, settings=pvf.Settings(size=size, steps=steps),
                          backend=backend, device=self.device)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small grids and few steps (~2 min)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default: %(default)s)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated subset of: " + ", ".join(SECTIONS))
    parser.add_argument("--out", default="benchmarks/results", help="output directory (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--from-json", default=None, metavar="RESULTS",
                        help="measure nothing: rewrite tables, targets and plots in --out from this results.json")
    args = parser.parse_args(argv)
    if args.from_json:
        return rewrite_outputs(Path(args.from_json), Path(args.out))
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be >= 1, got {args.threads}")
    steady_process(args.threads)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; valid: {', '.join(SECTIONS)}")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: no CUDA device is available")
    suite = Suite(QUICK if args.quick else FULL, device, available_backends(device))
    metadata = collect_metadata(device)
    metadata.update({"plan": "quick" if args.quick else "full", "backends": list(suite.backends),
                     "note": "medians of repeated runs; shared machines are noisy, read ratios"})
    print(f"pyviz_fast benchmarks on {metadata['device_name']} ({metadata['torch_threads']} threads), "
          f"torch {metadata['torch']}, commit {metadata['commit']}, backends {', '.join(suite.backends)}", flush=True)
    started, out = time.perf_counter(), Path(args.out)
    for section in sections:  # outputs rewritten after each section: an interrupted run keeps what it measured
        suite.run(section, getattr(suite, section))
        metadata["seconds"] = round(time.perf_counter() - started, 1)
        targets = write_outputs(out, suite, metadata, done=sections[:sections.index(section) + 1])
    print("\n" + format_targets(targets))
    print(f"\n{len(suite.rows)} rows, {len(suite.errors)} errors, {metadata['seconds']} s -> {out}/")
    return 0


def markdown_tables(rows) -> str:
    """One markdown table per section, in the order the sections ran."""
    sections = list(dict.fromkeys(row.section for row in rows))
    return "\n".join(f"### {section}\n\n" + format_ratio_table([r for r in rows if r.section == section], markdown=True)
                     + "\n" for section in sections)


def rewrite_outputs(results, out):
    """Tables, targets and plots of an earlier run's results.json, re-evaluated by this code."""
    metadata, rows = read_results(results)
    suite = Suite(FULL if metadata.get("plan") == "full" else QUICK, metadata.get("device", "cpu"), ())
    suite.rows, suite.errors = rows, metadata.get("errors", [])
    targets = write_outputs(out, suite, metadata, done=metadata.get("sections_done", []))
    print(format_targets(targets))
    return 0


def write_outputs(out, suite, metadata, done):
    """results.json, tables.md and the plots of the rows so far; returns the evaluated targets."""
    targets = evaluate_targets(suite.rows)
    metadata.update({"targets": targets, "errors": suite.errors, "sections_done": list(done)})
    write_results(out / "results.json", suite.rows, metadata)
    (out / "tables.md").write_text(markdown_tables(suite.rows) + "\n### targets\n\n" + format_targets(targets) + "\n")
    plot_sweep(suite.rows, "batch", out / "throughput_vs_batch.png",
               title=f"step and ShapesNet conv3 render, {suite.plan.sweep_size} px")
    plot_sweep(suite.rows, "size", out / "throughput_vs_size.png",
               title=f"step and ShapesNet conv3 render, batch {suite.plan.sweep_batch}")
    return targets


if __name__ == "__main__":
    sys.exit(main())
