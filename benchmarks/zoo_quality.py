"""Quality of class visualizations per parameterization on every zoo model (pyviz_fast.zoo.metrics).

For each zoo model and each ``--params`` entry, the ten class logits are rendered (one batch,
``Settings(size=.., steps=.., param=..)``, every other setting at its default but MaCo's
magnitude, the shapes spectrum: ``PARAM_SETTINGS``) and scored:
self p (the model's own mean probability of the class), robust (fraction keeping p >= 0.9
under a random shift and crop), transfer (fraction recognised as their class by the other two
zoo models), and, in those two models' penultimate features, plausibility (cosine to the real
class mean; real images score the "ceiling" column), FID and KID against ``--real`` real
images. Prints a markdown table (and writes JSON with --json). Measures, never asserts; the
regression thresholds live in tests/test_zoo_metrics.py.

    python benchmarks/zoo_quality.py                                  # pixel and fourier
    python benchmarks/zoo_quality.py --params pixel,fourier,maco      # and MaCo
    python benchmarks/zoo_quality.py --models shapes_vit --steps 64 --json out.json
"""
import argparse
import json
import sys
import time

import torch

import pyviz_fast as pvf
from pyviz_fast import zoo
from pyviz_fast.zoo import metrics

COLUMNS = ("self_p", "robust", "transfer", "plausibility", "real_plausibility", "fid", "kid")
# MaCo fixes the spectrum magnitude to the model's training data's, as the paper does with
# ImageNet's: the zoo models learnt the shipped shapes, so their spectrum, not the 1/f default.
PARAM_SETTINGS = {"maco": {"maco_magnitude": "shapes"}}


def score_rows(models, params, size, steps, real_count, seed):
    loaded = {name: zoo.load(name) for name in zoo.ZOO_MODELS}
    real_images, real_labels = zoo.make_batch(real_count, size=size, seed=seed + 12345)
    labels = torch.arange(len(zoo.SHAPES_CLASSES))
    rows = []
    for name in models:
        judges = [model for other, model in loaded.items() if other != name]
        for param in params:
            start = time.perf_counter()
            res = pvf.render(loaded[name], f"output:0-{len(labels) - 1}", pvf.Settings(size=size, steps=steps),
                             param=param, seed=seed, progress=True, **PARAM_SETTINGS.get(param, {}))
            row = {"model": name, "param": param, "seconds": time.perf_counter() - start,
                   **metrics.scorecard(res.images, labels, loaded[name], judges, real_images, real_labels, seed)}
            rows.append(row)
            print(_line(row), file=sys.stderr, flush=True)
    return rows


def _line(row):
    return "| " + " | ".join([row["model"], row["param"]] + [f"{row[c]:.3f}" for c in COLUMNS]
                             + [f"{row['seconds']:.0f}"]) + " |"


def table(rows):
    header = "| model | param | self p | robust | transfer | plausibility | real ceiling | FID | KID | render s |"
    return "\n".join([header, "|" + "---|" * 10] + [_line(row) for row in rows])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", default="pixel,fourier", help="comma-separated Settings.param values")
    parser.add_argument("--models", default=",".join(zoo.ZOO_MODELS), help="comma-separated zoo models")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=128)
    parser.add_argument("--real", type=int, default=200, help="real images for plausibility, FID and KID")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--json", default=None, help="also write the rows and settings here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    models, params = args.models.split(","), args.params.split(",")
    for name in models:
        zoo.catalog.entry(name)  # ValueError naming the valid models
    for param in params:
        pvf.Settings(param=param).validate()  # ValueError naming the valid params
    rows = score_rows(models, params, args.size, args.steps, args.real, args.seed)
    print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "torch": torch.__version__, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
