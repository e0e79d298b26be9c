"""Dead units with and without ReLU redirection, on the zoo models' atlas layers.

Per unit: *dead* and *stalled* as the atlas flags them (``audit.atlas.trajectory_stats``: the
objective never rose above its start, and never moved or is <= 0 at the end, e.g. a ReLU unit off
on the whole starting image; stalled: never rose, yet moved and fires at the end); *off* when its final
objective (read on the unjittered final image) is <= 0; *never* when it was <= 0 at every step
too (the unit never fired on any view the render saw: the GELU analogue of dead). Every channel
of each layer is rendered twice, with ``redirect_relu_steps=0`` and at the default (the first
eighth of the steps, for the images whose unit does not fire yet); "fires" counts the units
whose objective (the channel's mean over positions or tokens) is positive on at least one of
``--real`` real images (a unit that never fires on real data has nothing to revive). Prints a
markdown table, each count as "all (of them firing on real images)"; ``--json`` also writes the
counted unit indices. Measures, never asserts (tests/test_redirect.py holds the thresholds).

    python benchmarks/dead_units.py                      # shapesnet conv1-4, resnet blocks, ViT MLPs
    python benchmarks/dead_units.py --models shapes_vit --steps 32 --json dead.json
"""
import argparse
import json

import torch

import pyviz_fast as pvf
from pyviz_fast import zoo
from pyviz_fast.audit.atlas import trajectory_stats
from pyviz_fast.cli.layers import model_layers
from pyviz_fast.engine.blocks import default_atlas_layers


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


def outcomes(res):
    """Per-unit bool tensors of one render: dead and stalled (the atlas flags), off (final objective
    <= 0) and never (the objective was <= 0 at every step and at the end: the unit never fired)."""
    stats = [trajectory_stats(t.tolist() + [final]) for t, final in zip(res.trajectory, res.objective.tolist())]
    off = res.objective <= 0
    return {"dead": torch.tensor([s["dead"] for s in stats]), "stalled": torch.tensor([s["stalled"] for s in stats]),
            "off": off, "never": off & (res.trajectory.amax(1) <= 0)}


def count(model, layer, settings, real, seed):
    """The table row of one layer and, per column, the unit indices it counts (for the JSON)."""
    fires = fires_on_real(model, layer, real)
    row, indices = {"units": len(fires), "fires": int(fires.sum())}, {}
    for steps, when in ((0, "without"), (None, "with")):
        res = pvf.render(model, layer, settings, seed=seed, redirect_relu_steps=steps, progress=True)
        for name, flags in outcomes(res).items():
            row[f"{name} {when}"] = f"{int(flags.sum())} ({int((flags & fires).sum())})"
            indices[f"{name} {when}"] = flags.nonzero().flatten().tolist()
    return row, indices


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(zoo.ZOO_MODELS))
    parser.add_argument("--layers", default=None, help="comma-separated layers (default: the atlas layers)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--real", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the counted unit indices per layer here")
    args = parser.parse_args(argv)
    settings = pvf.Settings(size=args.size, steps=args.steps, batch_size=64)
    real, _ = zoo.make_batch(args.real, size=args.size, seed=args.seed + 54321)
    columns = ("units", "fires", "dead without", "dead with", "stalled without", "stalled with", "off without",
               "off with", "never without", "never with")
    found = {}
    print("| model | layer | " + " | ".join(columns) + " |\n|" + "---|" * (len(columns) + 2))
    for name in args.models.split(","):
        model = zoo.load(name)
        for layer in args.layers.split(",") if args.layers else default_atlas_layers(model, model_layers(model, args.size)):
            row, found[f"{name}:{layer}"] = count(model, layer, settings, real, args.seed)
            print(f"| {name} | {layer} | " + " | ".join(str(row[c]) for c in columns) + " |", flush=True)
            if args.json:
                with open(args.json, "w") as out:
                    json.dump(found, out, indent=1)


if __name__ == "__main__":
    main()
