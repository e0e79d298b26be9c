"""The methods' end-to-end throughput against the bare truncated forward+backward (the ceiling).

For each method on the shipped ShapesNet (and style transfer also on the random-weight VGG-style
net), in one run: the render's model-input-steps per second (MaCo feeds ``maco_crops`` crops per
image per step, facets N images per unit, style one image per content/style pair) against the
bare forward + objective + input gradient of the same number of model inputs through the same
deepest layer and execution (``pyviz_fast.bench.render_cases.fwd_bwd_call``), timed right
before the render (each method primed by a 1-step run first). "model share" is the render's own forward+backward seconds over its total
(the engine's clocks): the figure a loaded machine disturbs least. Never asserts.

    python benchmarks/bench_methods.py --threads 1 --steps 32
"""
import argparse
import json
import time

import torch

import pyviz_fast as pvf
from pyviz_fast.bench.render_cases import fwd_bwd_call
from pyviz_fast.bench.timing import time_callable
from pyviz_fast.engine.execution import PreparedModel
from pyviz_fast.zoo.random_vgg import random_vgg
from pyviz_fast.zoo.shapes_data import make_batch

SIZE = 64


def cases(steps):
    """(name, model, deepest layer, model inputs per step, run(steps)) for every method."""
    shapes, vgg = pvf.zoo.shapesnet(), random_vgg()
    photos = make_batch(16, size=SIZE, seed=7)[0]
    common = dict(size=SIZE, precision="fp32", memory_format="channels_last", progress=False)
    return [
        ("pixel conv4:0-15", shapes, "conv4", 16, lambda n: pvf.render(shapes, "conv4:0-15", steps=n, **common)),
        ("maco fc:0-9, 4 crops", shapes, "fc", 40,
         lambda n: pvf.render(shapes, "fc:0-9", param="maco", maco_crops=4, maco_magnitude="shapes", steps=n,
                              **common)),
        ("facets conv4:0-3 x4", shapes, "conv4", 16,
         lambda n: pvf.render(shapes, "conv4:0-3", facets=4, diversity=0.5, diversity_layer="conv3", steps=n,
                              **common)),
        ("accentuate conv4:0-7", shapes, "conv4", 8,
         lambda n: pvf.accentuate(shapes, photos[0], "conv4:0-7", layer="conv2", steps=n, **common)),
        ("style shapesnet 8 pairs", shapes, "conv4.relu", 8,
         lambda n: pvf.style_transfer(shapes, photos[:8], photos[8:], steps=n, **common)),
        ("style random_vgg 8 pairs", vgg, "relu4_1", 8,
         lambda n: pvf.style_transfer(vgg, photos[:8], photos[8:], steps=n, **common)),
    ]


def ceiling(model, layer, inputs, steps):
    settings = pvf.Settings(size=SIZE, precision="fp32", memory_format="channels_last")
    with PreparedModel(model, settings, "cpu") as prepared:
        width = pvf.layers(model, (3, SIZE, SIZE))
        channels = next(info.channels for info in width if info.name == layer)
        call = fwd_bwd_call(prepared, layer, [c % channels for c in range(inputs)], SIZE)
        return time_callable(call, device="cpu").median_s * steps


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    print(f"| method | model inputs/step | ceiling s | render s | render / ceiling | model share |")
    print("|---|---|---|---|---|---|")
    for name, model, layer, inputs, run in cases(args.steps):
        run(1)  # primes caches (oneDNN primitives, MaCo's dataset spectrum) outside the timing
        bare = ceiling(model, layer, inputs, args.steps)
        start = time.perf_counter()
        result = run(args.steps)
        total = time.perf_counter() - start
        share = result.timings["forward_backward"] / result.timings["total"]
        rows.append(dict(method=name, inputs=inputs, ceiling_s=bare, render_s=total, ratio=bare / total,
                         model_share=share, steps=args.steps, threads=torch.get_num_threads()))
        print(f"| {name} | {inputs} | {bare:.2f} | {total:.2f} | {bare / total:.2f} | {share:.2f} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
