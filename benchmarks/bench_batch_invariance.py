"""A unit alone against the same unit in a batch of 16, with and without ``batch_invariant``.

For each model: how far the unit's image alone lies from its image in the batch (max and mean
per pixel, and both objectives), and the batch's render time, default against batch-invariant,
alternated ``--repeats`` times (medians). Never asserts.

    python benchmarks/bench_batch_invariance.py --threads 1 --repeats 3
"""
import argparse
import statistics
import time

import torch

import pyviz_fast as pvf


def cases():
    """(name, model, batch spec, the unit alone, its row in the batch, size, steps)."""
    yield "ShapesNet", pvf.zoo.shapesnet(), "conv3:0-15", "conv3:9", 9, 96, 64
    try:
        import torchvision
    except ImportError:
        return
    torch.manual_seed(0)
    yield "resnet18 (random init)", torchvision.models.resnet18(weights=None), "layer3:0-15", "layer3:9", 9, 64, 32
    yield "shapes_vit", pvf.zoo.shapes_vit(), "blocks.3.mlp.act:0-15", "blocks.3.mlp.act:9", 9, 64, 64


def measure(model, batch_spec, alone_spec, row, size, steps, repeats):
    common = dict(size=size, steps=steps, precision="fp32", memory_format="contiguous", seed=0)
    seconds, gaps = {False: [], True: []}, {}
    for _ in range(repeats):
        for invariant in (False, True):
            began = time.perf_counter()
            batch = pvf.render(model, batch_spec, batch_invariant=invariant, **common)
            seconds[invariant].append(time.perf_counter() - began)
            if invariant not in gaps:
                alone = pvf.render(model, alone_spec, batch_invariant=invariant, **common)
                gap = (alone.images[0] - batch.images[row]).abs()
                gaps[invariant] = (gap.max().item(), gap.mean().item(), alone.objective[0].item(),
                                   batch.objective[row].item())
    return {k: statistics.median(v) for k, v in seconds.items()}, gaps


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("| model | default: max / mean gap, objectives alone / in batch | invariant: max gap | "
          "seconds default -> invariant |")
    print("|---|---|---|---|")
    for name, model, batch_spec, alone_spec, row, size, steps in cases():
        seconds, gaps = measure(model, batch_spec, alone_spec, row, size, steps, args.repeats)
        top, mean, alone, batched = gaps[False]
        print(f"| {name}, {size} px, {steps} steps | {top:.3g} / {mean:.3g}, {alone:.4f} / {batched:.4f} | "
              f"{gaps[True][0]:.3g} | {seconds[False]:.2f} -> {seconds[True]:.2f} "
              f"(x{seconds[True] / seconds[False]:.2f}) |", flush=True)


if __name__ == "__main__":
    main()
