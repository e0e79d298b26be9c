"""Issue 15's speed targets, measured in one run (ratios; never asserts):

- zoom: the DeepDream zoom's image-steps/s (``pvf.dream_zoom``: every frame's zoom, octaves,
  dream steps and final evaluation) against the model's bare truncated forward+backward of the
  same objective at the same octave sizes and execution settings (the ceiling), the two timed in
  turn three times, medians (target >= 0.8);
- gui: a render's wall time through the web app (POST /api/render, then its event stream until
  the last message, the page's default interval of live images) against the same ``pvf.render``
  called directly, alternating, medians (target: the app adds <= 10%).

    python benchmarks/bench_seeds.py --threads 1 --json benchmarks/results/seeds.json
"""
import argparse
import json
import statistics
import time

import torch

import pyviz_fast as pvf
from pyviz_fast.bench.metadata import collect_metadata
from pyviz_fast.bench.render_cases import fwd_bwd_call
from pyviz_fast.bench.results import Row, format_ratio_table, write_results
from pyviz_fast.bench.timing import time_callable
from pyviz_fast.engine.execution import PreparedModel
from pyviz_fast.engine.schedules import stages
from pyviz_fast.engine.units import Unit
from pyviz_fast.engine.zoom import ZOOM_DEFAULTS

# model, layer, px, frames
ZOOM_CASES = [("shapesnet", "conv3", 96, 8), ("torchvision:googlenet", "inception4a", 128, 4)]


def stage_ceiling_s(model, layer, settings):
    """Seconds of bare forward+backward for one frame's steps: sum over octaves of steps x median."""
    total = 0.0
    with PreparedModel(model, settings, "cpu") as prepared:
        for hw, count in stages(settings.hw, settings.steps, settings.octaves, settings.octave_scale):
            call = fwd_bwd_call(prepared, layer, [], hw[0], units=[Unit.deepdream(layer)])
            total += count * time_callable(call, min_runs=5, min_time_s=0.5).median_s
    return total


def zoom_rows(spec, layer, size, frames, repeats=3):
    """Ceiling and zoom timed in turn ``repeats`` times (load drifts on a shared machine); medians."""
    torch.manual_seed(0)
    model, _ = pvf.load_model(spec)
    settings = pvf.Settings(**ZOOM_DEFAULTS, size=size)
    photo = torch.rand(3, size, size)
    unit = f"{layer}@deepdream"
    list(pvf.dream_zoom(model, photo, unit, 1, settings=settings))  # warm the caches
    ceiling_s, zoom_s = [], []
    for _ in range(repeats):
        ceiling_s.append(stage_ceiling_s(model, layer, settings) * frames)
        start = time.perf_counter()
        list(pvf.dream_zoom(model, photo, unit, frames, settings=settings))
        zoom_s.append(time.perf_counter() - start)
    steps = frames * settings.steps
    case = f"zoom {spec} {unit} {size}px {frames} frames x {settings.steps} steps, {settings.octaves} octaves"
    params = {"model": spec, "layer": layer, "size": size, "frames": frames, "repeats": repeats, **ZOOM_DEFAULTS}
    pairs = {"pair_ratios": [round(c / z, 3) for c, z in zip(ceiling_s, zoom_s)]}
    return [Row("zoom", case, "ceiling", steps / statistics.median(ceiling_s), "image-steps/s",
                statistics.median(ceiling_s), runs=repeats, params=params),
            Row("zoom", case, "dream_zoom", steps / statistics.median(zoom_s), "image-steps/s",
                statistics.median(zoom_s), runs=repeats, baseline="ceiling", params=params, extra=pairs)]


def gui_rows(units="conv3:0-7", size=96, steps=64, repeats=5):
    from starlette.testclient import TestClient

    from pyviz_fast.serve import create_app

    model, _ = pvf.load_model("shapesnet")
    settings = pvf.Settings(size=size, steps=steps)
    picks = [{"layer": u.layer, "kind": "channel", "index": u.index} for u in pvf.parse_units(units, model)]
    direct, through_app = [], []
    with TestClient(create_app(["shapesnet"])) as client:  # the page's default interval of live images
        def via_app():
            start = time.perf_counter()
            job = client.post("/api/render", json={"units": picks, "settings": {"size": size, "steps": steps}}).json()
            with client.stream("GET", f"/api/jobs/{job['job']}/events") as stream:
                last = [line for line in stream.iter_lines() if line.startswith("data: ")][-1]
            assert json.loads(last[6:])["state"] == "done", last
            return time.perf_counter() - start

        def called():
            start = time.perf_counter()
            pvf.render(model, units, settings, batch_size=len(picks))
            return time.perf_counter() - start
        via_app(), called()  # warm-up
        for _ in range(repeats):
            direct.append(called())
            through_app.append(via_app())
    case = f"gui shapesnet {units} {size}px {steps} steps"
    params = {"units": units, "size": size, "steps": steps, "repeats": repeats}
    image_steps = len(picks) * steps
    return [Row("gui", case, "pvf.render", image_steps / statistics.median(direct), "image-steps/s",
                statistics.median(direct), runs=repeats, params=params),
            Row("gui", case, "web app", image_steps / statistics.median(through_app), "image-steps/s",
                statistics.median(through_app), runs=repeats, baseline="pvf.render", params=params)]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, help="torch threads (1 is steadier on a busy machine)")
    parser.add_argument("--json", help="also write the rows and metadata here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for case in ZOOM_CASES:
        rows += zoom_rows(*case)
        print(format_ratio_table(rows[-2:]) + "\n", flush=True)
    rows += gui_rows()
    print(format_ratio_table(rows[-2:]) + "\n", flush=True)
    if args.json:
        print(f"results: {write_results(args.json, rows, collect_metadata('cpu'))}")


if __name__ == "__main__":
    main()
