"""Dead units with and without ReLU redirection, on the zoo models' atlas layers.

A unit is dead when its objective never rises during the render (``audit.atlas.trajectory_stats``,
what the atlas flags: a ReLU unit off on the whole starting image), and off when its final
objective is <= 0 (it never fired: also a GELU unit whose ascent slid down the negative side,
where the GELU rises toward 0 as its input falls). Every channel of each layer is rendered
twice, with ``redirect_relu_steps=0`` and at the default (redirected for the first eighth of the
steps); "fires" counts the units whose objective (the channel's mean over positions or tokens)
is positive on at least one of ``--real`` real images (a unit that never fires on real data has
nothing to revive). Prints a markdown table: each
count as "all (of them firing on real images)". Measures, never asserts (tests/test_redirect.py
holds the thresholds).

    python benchmarks/dead_units.py                      # shapesnet conv1-4, resnet blocks, ViT MLPs
    python benchmarks/dead_units.py --models shapes_vit --steps 32
"""
import argparse

import torch

import pyviz_fast as pvf
from pyviz_fast import zoo
from pyviz_fast.audit.atlas import trajectory_stats
from pyviz_fast.cli.layers import default_atlas_layers, model_layers


@torch.no_grad()
def fires_on_real(model, layer, images):
    """bool [channels]: the channel objective (its mean over positions or tokens) is > 0 on
    at least one of ``images``."""
    acts = []
    handle = dict(model.named_modules())[layer].register_forward_hook(lambda m, i, out: acts.append(out))
    model(images)
    handle.remove()
    act = acts[0]
    means = act.mean(1) if act.dim() == 3 else act.flatten(2).mean(2)  # tokens [B, N, D] / maps [B, C, H, W]
    return means.amax(0) > 0


def count(model, layer, settings, real, seed):
    fires = fires_on_real(model, layer, real)
    row = {"units": len(fires), "fires": int(fires.sum())}
    for steps, when in ((0, "without"), (None, "with")):
        res = pvf.render(model, layer, settings, seed=seed, redirect_relu_steps=steps, progress=True)
        dead = torch.tensor([trajectory_stats(t)["dead"] for t in res.trajectory])
        off = res.objective <= 0
        row[f"dead {when}"] = f"{int(dead.sum())} ({int((dead & fires).sum())})"
        row[f"off {when}"] = f"{int(off.sum())} ({int((off & fires).sum())})"
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(zoo.ZOO_MODELS))
    parser.add_argument("--layers", default=None, help="comma-separated layers (default: the atlas layers)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--real", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    settings = pvf.Settings(size=args.size, steps=args.steps, batch_size=64)
    real, _ = zoo.make_batch(args.real, size=args.size, seed=args.seed + 54321)
    columns = ("units", "fires", "dead without", "dead with", "off without", "off with")
    print("| model | layer | " + " | ".join(columns) + " |\n|" + "---|" * (len(columns) + 2))
    for name in args.models.split(","):
        model = zoo.load(name)
        for layer in args.layers.split(",") if args.layers else default_atlas_layers(model, model_layers(model, args.size)):
            row = count(model, layer, settings, real, args.seed)
            print(f"| {name} | {layer} | " + " | ".join(str(row[c]) for c in columns) + " |", flush=True)


if __name__ == "__main__":
    main()
