"""The methods' end-to-end throughput against the bare truncated forward+backward (the ceiling).

For each method on the shipped ShapesNet (and style transfer also on the random-weight VGG-style
net), in one run: whole renders (set-up, every step, the final evaluation) against the bare
forward + objective + input gradient of the same number of model inputs per step through the
same deepest layer and execution (``pyviz_fast.bench.render_cases.fwd_bwd_call``), called as
many times as the render has steps. MaCo feeds ``maco_crops`` crops per image per step, facets
N images per unit, style one image per content/style pair.

Style transfer's loss reads four or five layers and computes a Gram matrix (and its backward)
at each, work a one-channel objective never does. So it also gets a second, honest ceiling: the
same bare forward+backward with the style loss itself (the engine's Gram matrices and content
error against fixed targets, no render around it). ``render / ceiling`` is the issue's figure;
``render / ceiling with the loss`` is what the render adds to the work the loss needs.

The ceiling and the render are timed in turn ``--repeats`` times (the machine's load drifts),
each by wall and by process CPU time; the rows are medians, and "paired" is the median of each
repeat's own ceiling / render (the drift between repeats cancels out of it). "model share" is the render's own
forward+backward seconds over its total (the engine's clocks). Never asserts.

    python benchmarks/bench_methods.py --threads 1 --steps 32 --json benchmarks/results/methods.json
    python benchmarks/bench_methods.py --threads 1 --steps 32 --googlenet   # a real-sized model
    python benchmarks/bench_methods.py --threads 1 --steps 128 --only style  # style at its default steps
    python benchmarks/bench_methods.py --threads 1 --steps 64 --only style --pairs 32  # a larger batch of pairs
    python benchmarks/bench_methods.py --threads 1 --steps 128 --only style --execution chosen
    python benchmarks/bench_methods.py --threads 1 --steps 128 --vgg19 --execution chosen  # Gatys' network
    python benchmarks/bench_methods.py --threads 1 --steps 32 --only style --size 224  # a photo's size

Images are 64 px unless ``--size``: a style transfer renders at its content photo's own size,
where the loss's C x C work (independent of the size) weighs less against the model's.

Every case runs at fp32 / channels_last unless ``--execution chosen``: then each case first runs
once with 'auto' execution (the trial a user's call makes on this machine) and both sides are
timed at the execution it chose, as ``bench_seeds.py`` times the zoom.
"""
import argparse
import os
import statistics
import time
import types

import torch

import pyviz_fast as pvf
from pyviz_fast.bench.metadata import collect_metadata
from pyviz_fast.bench.render_cases import fwd_bwd_call
from pyviz_fast.bench.results import Row, write_results
from pyviz_fast.bench.timing import paired_ratio, steady_process
from pyviz_fast.engine.execution import PreparedModel
from pyviz_fast.engine.goals.style import StyleTask
from pyviz_fast.engine.layers import probe_activations
from pyviz_fast.engine.style_transfer import default_layers
from pyviz_fast.zoo.random_vgg import random_vgg
from pyviz_fast.zoo.shapes_data import make_batch

SIZE = 64  # px: small enough that a run of every method takes minutes (--size: a photo's)
PAIRS = 8  # content/style pairs per style transfer's batch (--pairs)
EXECUTION = dict(precision="fp32", memory_format="channels_last")
AUTO = dict(precision="auto", memory_format="auto")


def style_pairs(count, size):
    """(contents, styles): ``count`` pairs of generated shapes photos."""
    photos = make_batch(2 * count, size=size, seed=7)[0]
    return photos[:count], photos[count:]


def cases(size=SIZE, count=PAIRS):
    """(name, model, deepest layer, model inputs per step, run(steps, execution), style pairs or None)
    per method; style transfer of ``count`` pairs."""
    shapes, vgg = pvf.zoo.shapesnet(), random_vgg()
    pairs = style_pairs(count, size)
    photos = pairs[0]
    common = dict(size=size, progress=False)
    return [
        ("pixel conv4:0-15", shapes, "conv4", 16, lambda n, e: pvf.render(shapes, "conv4:0-15", steps=n, **common, **e), None),
        ("maco fc:0-9, 4 crops", shapes, "fc", 40,
         lambda n, e: pvf.render(shapes, "fc:0-9", param="maco", maco_crops=4, maco_magnitude="shapes", steps=n,
                              **common, **e), None),
        ("facets conv4:0-3 x4", shapes, "conv4", 16,
         lambda n, e: pvf.render(shapes, "conv4:0-3", facets=4, diversity_layer="conv3", steps=n,
                              **common, **e), None),
        ("accentuate conv4:0-7", shapes, "conv4", 8,
         lambda n, e: pvf.accentuate(shapes, photos[0], "conv4:0-7", layer="conv2", steps=n, **common, **e), None),
        (f"style shapesnet {count} pairs", shapes, "conv4.relu", count,
         lambda n, e: pvf.style_transfer(shapes, *pairs, steps=n, **common, **e), pairs),
        (f"style random_vgg {count} pairs", vgg, "relu4_1", count,
         lambda n, e: pvf.style_transfer(vgg, *pairs, steps=n, **common, **e), pairs),
    ]


def googlenet_cases(size=SIZE):
    """The same methods on a real-sized model: googlenet (random weights, seed 0) at ``size``."""
    torch.manual_seed(0)
    net, _ = pvf.load_model("torchvision:googlenet", weights="none")
    common = dict(size=size, progress=False)
    return [
        ("pixel googlenet inception4a:0-15", net, "inception4a", 16,
         lambda n, e: pvf.render(net, "inception4a:0-15", steps=n, **common, **e), None),
        ("maco googlenet inception4a:0-7, 4 crops", net, "inception4a", 32,
         lambda n, e: pvf.render(net, "inception4a:0-7", param="maco", maco_crops=4, steps=n, **common, **e), None),
        ("facets googlenet inception4a:0-3 x4", net, "inception4a", 16,
         lambda n, e: pvf.render(net, "inception4a:0-3", facets=4, diversity_layer="inception3b", steps=n, **common, **e),
         None),
    ]


def vgg19_cases(size=SIZE, count=PAIRS):
    """Style transfer of ``count`` pairs on the network Gatys et al. used: torchvision's VGG-19
    (random weights, seed 0) at ``size``, its default layers (relu1_1 .. relu5_1 for style, up to
    512 channels)."""
    torch.manual_seed(0)
    net, _ = pvf.load_model("torchvision:vgg19", weights="none")
    pairs = style_pairs(count, size)
    deepest = default_layers(net, (size, size), 3)[1][-1]
    return [(f"style vgg19 {count} pairs", net, deepest, count,
             lambda n, e: pvf.style_transfer(net, *pairs, steps=n, size=size, progress=False, **e), pairs)]


def timed(fn):
    """(wall seconds, process CPU seconds) of ``fn()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def style_goal(prepared, model, contents, styles):
    """The style loss of ``style_transfer``'s defaults for pairs (i, i), as one step's Goal at
    the contents' size."""
    hw = tuple(contents.shape[-2:])
    content_layer, style_layers = default_layers(model, hw, 3)
    task = StyleTask(contents, styles, [(i, i) for i in range(len(contents))], content_layer, style_layers)

    def reference(images, layers):
        with torch.no_grad():
            return prepared(images, layers)
    run = types.SimpleNamespace(shapes=probe_activations(prepared, task.layers, 3, [hw]), device=prepared.device, backend=None,
                                reference=reference)
    return task.objective(slice(0, len(contents)), hw, 1, run)


def ceiling(model, layer, inputs, steps, size, pairs=None, execution=EXECUTION):
    """(wall, CPU) seconds of ``steps`` bare forward+backward calls (after one warm-up); with
    ``pairs`` through the style loss instead of one channel per input."""
    with PreparedModel(model, pvf.Settings(size=size, **execution), "cpu") as prepared:
        goal = None if pairs is None else style_goal(prepared, model, *pairs)
        width = next(info.channels for info in pvf.layers(model, (3, size, size)) if info.name == layer)
        call = fwd_bwd_call(prepared, layer, [c % width for c in range(inputs)], size, goal=goal)
        call()
        return timed(lambda: [call() for _ in range(steps)])


def chosen_execution(run, steps):
    """The execution a user's call of ``run`` picks on this machine ('auto': a measured trial)."""
    info = run(steps, AUTO).info
    return dict(precision=info["precision"], memory_format=info["memory_format"])


def method_rows(name, model, layer, inputs, run, pairs, steps, repeats, size, execution=EXECUTION):
    run(1, execution)  # primes caches (oneDNN primitives, MaCo's dataset spectrum) outside the timing
    measured = {"ceiling": [], "ceiling with the loss": [], "render": []}
    shares = []
    for _ in range(repeats):  # in turn: the load drifts between timings
        measured["ceiling"].append(ceiling(model, layer, inputs, steps, size, execution=execution))
        if pairs is not None:
            measured["ceiling with the loss"].append(ceiling(model, layer, inputs, steps, size, pairs, execution))
        result = []
        measured["render"].append(timed(lambda: result.append(run(steps, execution))))
        shares.append(result[0].timings["forward_backward"] / result[0].timings["total"])
    rows = []
    for k, clock in enumerate(("wall", "cpu")):
        for variant, samples in measured.items():
            if not samples:
                continue
            median = statistics.median(s[k] for s in samples)
            extra = {"samples_s": [round(s[k], 4) for s in samples]}
            if variant == "render":
                extra["model_share"] = statistics.median(shares)
                extra["paired_ratio"] = paired_ratio(measured["ceiling"], samples, k)
                if pairs is not None:
                    extra["ratio_to_ceiling_with_the_loss"] = statistics.median(
                        s[k] for s in measured["ceiling with the loss"]) / median
            rows.append(Row("methods", f"{name} [{clock} s]", variant, inputs * steps / median, "input-steps/s", median,
                            runs=len(samples), baseline="ceiling" if variant != "ceiling" else None,
                            params={"model inputs per step": inputs, "deepest layer": layer, "steps": steps,
                                    "size": size, **execution}, extra=extra))
    return rows


def markdown(rows):
    """One line per method and clock: ceiling, [ceiling with the loss], render seconds and ratios."""
    lines = ["| method [clock] | ceiling s | with the loss s | render s | render / ceiling | paired | "
             "render / with the loss | model share |", "|---|---|---|---|---|---|---|---|"]
    for case in dict.fromkeys(row.case for row in rows):
        by = {row.variant: row for row in rows if row.case == case}
        render, bare, loss = by["render"], by["ceiling"], by.get("ceiling with the loss")
        lines.append(f"| {case} | {bare.median_s:.2f} | {'' if loss is None else f'{loss.median_s:.2f}'} | "
                     f"{render.median_s:.2f} | {bare.median_s / render.median_s:.2f} | "
                     f"{render.extra['paired_ratio']:.2f} | "
                     f"{'' if loss is None else f'{loss.median_s / render.median_s:.2f}'} | "
                     f"{render.extra['model_share']:.2f} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="ceiling/render timings in turn (medians)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--size", type=int, default=SIZE, help="image side in px (default: %(default)s)")
    parser.add_argument("--pairs", type=int, default=PAIRS,
                        help="content/style pairs in a style transfer's batch (default: %(default)s)")
    parser.add_argument("--json", default=None, help="also write the rows and metadata here")
    parser.add_argument("--googlenet", action="store_true",
                        help="pixel, MaCo and facets on googlenet (random weights) instead of the shipped models")
    parser.add_argument("--vgg19", action="store_true",
                        help="style transfer on torchvision's VGG-19 (random weights) instead of the shipped models")
    parser.add_argument("--only", default="", metavar="PREFIX",
                        help="only the methods whose name starts with PREFIX (pixel, maco, facets, accentuate, style)")
    parser.add_argument("--execution", choices=("fp32", "chosen"), default="fp32",
                        help="fp32 / channels_last for every case, or what 'auto' chooses per case on this machine")
    args = parser.parse_args()
    if args.pairs < 1:
        parser.error(f"--pairs must be >= 1, got {args.pairs}")
    steady_process(args.threads)
    load_before, rows = os.getloadavg(), []
    if args.googlenet:
        every = googlenet_cases(args.size)
    else:
        every = (vgg19_cases if args.vgg19 else cases)(args.size, args.pairs)
    chosen = [case for case in every if case[0].startswith(args.only)]
    if not chosen:
        parser.error(f"--only {args.only!r} matches no method; names: {[case[0] for case in every]}")
    for name, model, layer, inputs, run, pairs in chosen:
        execution = EXECUTION
        if args.execution == "chosen":
            execution = chosen_execution(run, args.steps)
            name = f"{name} ({execution['precision']}/{execution['memory_format']})"
        rows += method_rows(name, model, layer, inputs, run, pairs, args.steps, args.repeats, args.size, execution)
        print(markdown([row for row in rows if row.case.startswith(name + " [")]), flush=True)
    print(markdown(rows))
    if args.json:
        print(f"results: {write_results(args.json, rows, collect_metadata('cpu', load_before))}")


if __name__ == "__main__":
    main()
