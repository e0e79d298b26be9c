"""Issue 15's speed targets, measured in one run (ratios; never asserts):

- zoom: the DeepDream zoom's image-steps/s (``pvf.dream_zoom``: every frame's zoom, octaves
  and dream steps) against the model's bare truncated forward+backward of the
  same objective at the same octave sizes and execution settings (the ceiling), the two timed in
  turn ``--repeats`` times, medians (target >= 0.8); ShapesNet also at 20 steps a frame (Google's
  deepdream notebook dreams 10 iterations per octave every frame of its zoom);
- gui: a render's wall time through the web app (POST /api/render, then its event stream until
  the last message, the page's default interval of live images) against the same ``pvf.render``
  called directly, alternating ``--repeats`` times, medians (target: the app adds <= 10%).

Each is reported twice: by wall time and by the process's CPU time. On a machine loaded by other
jobs the wall times drift with their load between two timings; CPU seconds are what each costs.

    python benchmarks/bench_seeds.py --threads 1 --json benchmarks/results/seeds.json
"""
import argparse
import json
import os
import statistics
import time

import torch

import pyviz_fast as pvf
from pyviz_fast.bench.metadata import collect_metadata
from pyviz_fast.bench.render_cases import fwd_bwd_call
from pyviz_fast.bench.results import Row, format_ratio_table, write_results
from pyviz_fast.bench.timing import paired_ratio, steady_process
from pyviz_fast.engine.execution import PreparedModel
from pyviz_fast.engine.schedules import stages
from pyviz_fast.engine.units import Unit
from pyviz_fast.engine.zoom import ZOOM_DEFAULTS

# model, layer, px, frames, steps per frame (None: ZOOM_DEFAULTS'; 20: Google's deepdream notebook
# zoom dreams 10 iterations per octave each frame)
# Timings in turn per case: each is short (0.2-1.2 s), and the medians of 3 moved by +-0.06 between
# runs of a quiet machine (ShapesNet's zoom 0.72-0.83) where 15 hold within +-0.02.
REPEATS = 15
ZOOM_CASES = [("shapesnet", "conv3", 96, 8, None), ("shapesnet", "conv3", 96, 8, 20),
              ("torchvision:googlenet", "inception4a", 128, 4, None)]


def timed(fn):
    """(wall seconds, CPU seconds of the whole process) of one ``fn()``. On a machine loaded by
    others the wall time drifts with their load; the CPU time is what the call itself costs."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def stage_ceiling(model, layer, settings, calls=5):
    """(wall, CPU) seconds of bare forward+backward for one frame's steps: per octave size the
    median of ``calls`` timed calls (after one warm-up) times that octave's steps, summed."""
    wall = cpu = 0.0
    with PreparedModel(model, settings, "cpu") as prepared:
        for hw, count in stages(settings.hw, settings.steps, settings.octaves, settings.octave_scale):
            call = fwd_bwd_call(prepared, layer, [], hw[0], units=[Unit.deepdream(layer)])
            call()
            samples = [timed(call) for _ in range(calls)]
            wall += count * statistics.median(s[0] for s in samples)
            cpu += count * statistics.median(s[1] for s in samples)
    return wall, cpu


def rows_of(section, case, baseline, measured, items, params):
    """Two rows per variant, wall and CPU seconds (medians of the repeats), the second against ``baseline``."""
    rows = []
    for k, clock in enumerate(("wall", "cpu")):
        for variant, samples in measured.items():
            median = statistics.median(s[k] for s in samples)
            extra = {"samples_s": [round(s[k], 4) for s in samples]}
            if variant != baseline:
                extra["paired_ratio"] = paired_ratio(measured[baseline], samples, k)
            rows.append(Row(section, f"{case} [{clock} s]", variant, items / median, "image-steps/s", median,
                            runs=len(samples), baseline=None if variant == baseline else baseline, params=params,
                            extra=extra))
    return rows


def zoom_rows(spec, layer, size, frames, steps=None, repeats=REPEATS):
    """Ceiling and zoom timed in turn ``repeats`` times (load drifts on a shared machine)."""
    torch.manual_seed(0)
    model, _ = pvf.load_model(spec)
    photo = torch.rand(3, size, size)
    unit = f"{layer}@deepdream"
    settings = pvf.Settings(**{**ZOOM_DEFAULTS, "steps": steps or ZOOM_DEFAULTS["steps"]}, size=size)
    # the execution a zoom of these frames runs, pinned for both
    whole = settings.replace(steps=settings.steps * frames, init="image", init_image=photo)
    settings = settings.replace(**pvf.choose_execution(model, unit, whole, batch_size=1).settings())
    list(pvf.dream_zoom(model, photo, unit, 1, settings=settings))  # warm the caches
    measured = {"ceiling": [], "dream_zoom": []}
    for _ in range(repeats):
        wall, cpu = stage_ceiling(model, layer, settings)
        measured["ceiling"].append((wall * frames, cpu * frames))
        measured["dream_zoom"].append(timed(lambda: list(pvf.dream_zoom(model, photo, unit, frames,
                                                                         settings=settings))))
    case = f"zoom {spec} {unit} {size}px {frames} frames x {settings.steps} steps, {settings.octaves} octaves"
    params = {"model": spec, "layer": layer, "size": size, "frames": frames, "repeats": repeats, **ZOOM_DEFAULTS,
              "steps": settings.steps, "precision": settings.precision, "memory_format": settings.memory_format}
    return rows_of("zoom", case, "ceiling", measured, frames * settings.steps, params)


def gui_rows(units="conv3:0-7", size=96, steps=64, repeats=REPEATS):
    from starlette.testclient import TestClient

    from pyviz_fast.serve import create_app

    model, _ = pvf.load_model("shapesnet")
    settings = pvf.Settings(size=size, steps=steps)
    picks = [{"layer": u.layer, "kind": "channel", "index": u.index} for u in pvf.parse_units(units, model)]
    measured = {"pvf.render": [], "web app": []}
    with TestClient(create_app(["shapesnet"])) as client:  # the page's default interval of live images
        def via_app():
            job = client.post("/api/render", json={"units": picks, "settings": {"size": size, "steps": steps}}).json()
            with client.stream("GET", f"/api/jobs/{job['job']}/events") as stream:
                last = [line for line in stream.iter_lines() if line.startswith("data: ")][-1]
            assert json.loads(last[6:])["state"] == "done", last

        def called():
            pvf.render(model, units, settings, batch_size=len(picks))
        via_app(), called()  # warm-up
        for _ in range(repeats):
            measured["pvf.render"].append(timed(called))
            measured["web app"].append(timed(via_app))
    case = f"gui shapesnet {units} {size}px {steps} steps"
    params = {"units": units, "size": size, "steps": steps, "repeats": repeats}
    return rows_of("gui", case, "pvf.render", measured, len(picks) * steps, params)


def show(rows):
    """A case's table, then each repeat's own ratio's median per clock (drift between repeats cancels)."""
    paired = ", ".join(f"{row.case.rsplit('[', 1)[1].rstrip(']')}: {row.extra['paired_ratio']:.2f}"
                       for row in rows if "paired_ratio" in row.extra)
    print(f"{format_ratio_table(rows)}\npaired ratio, {paired}\n", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, help="torch threads (1 is steadier on a busy machine)")
    parser.add_argument("--json", help="also write the rows and metadata here")
    parser.add_argument("--repeats", type=int, default=REPEATS, help="timings in turn per case (medians)")
    args = parser.parse_args()
    steady_process(args.threads)
    load_before, rows = os.getloadavg(), []
    for case in ZOOM_CASES:
        rows += zoom_rows(*case, repeats=args.repeats)
        show(rows[-4:])
    rows += gui_rows(repeats=args.repeats)
    show(rows[-4:])
    if args.json:
        print(f"results: {write_results(args.json, rows, collect_metadata('cpu', load_before))}")


if __name__ == "__main__":
    main()
