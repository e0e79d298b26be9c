"""The dataset pass against a bare no-grad forward of the same model over the same data.

    PYTHONPATH=. python benchmarks/bench_dataset_pass.py --examples 2000 --repeats 3

ShapesNet, every channel of its atlas layers (conv1-conv4, 208 units) plus its 10 class logits,
64 px. The images are generated once and held in memory, so both sides read the same tensors
through the same DataLoader (batch 64, no workers) and the figure is the model and the pass's own
bookkeeping (per-unit objectives, peak positions, top/bottom-K, moments, kept values), not the
image generator. Bare: ``model(x)`` under ``torch.no_grad`` with the render's precision, memory
format and input normalization (``PreparedModel``). Prints the median seconds of each and the
ratio bare / pass (1.0: the pass costs nothing beyond the forward). Nothing is asserted.
"""
import argparse
import json
import statistics
import time

import torch

import pyviz_fast as pvf
from pyviz_fast.engine.dataset_pass import dataset_pass
from pyviz_fast.engine.execution import PreparedModel
from pyviz_fast.zoo.shapes_data import make_batch

UNITS = ["conv1", "conv2", "conv3", "conv4", "fc"]


class InMemory(torch.utils.data.Dataset):
    """Generated shapes held as one tensor: items (image, label, index) as the pass expects."""

    def __init__(self, count, size):
        self.images, self.labels = make_batch(count, size=size, seed=0)
        self.classes = None

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], int(self.labels[i]), i


def bare_forward(model, dataset, settings, batch_size):
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    started = time.perf_counter()
    with PreparedModel(model, settings, "cpu") as prepared, torch.no_grad(), prepared.autocast():
        for images, _, _ in loader:
            model(prepared.model_input(images))
    return time.perf_counter() - started


def grounding_pass(model, units, dataset, settings, batch_size, examples):
    started = time.perf_counter()
    dataset_pass(model, units, dataset, settings, examples=examples, batch_size=batch_size, workers=0)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=2000, help="dataset size")
    parser.add_argument("--top", type=int, default=8, help="top/bottom examples kept per unit")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, _ = pvf.load_model("shapesnet")
    settings = pvf.Settings(size=64)
    units = pvf.parse_units(UNITS, model=model)
    units = [pvf.Unit.channel(u.layer, c) for u in units
             for c in range(dict((i.name, i.channels) for i in pvf.layers(model, (3, 64, 64)))[u.layer])]
    dataset = InMemory(args.examples, 64)
    bare, grounded = [], []
    for _ in range(args.repeats):  # interleaved, so both see the same machine load
        bare.append(bare_forward(model, dataset, settings, 64))
        grounded.append(grounding_pass(model, units, dataset, settings, 64, args.top))
    result = {"units": len(units), "examples": args.examples, "threads": torch.get_num_threads(),
              "bare_forward_s": statistics.median(bare), "dataset_pass_s": statistics.median(grounded),
              "bare_runs_s": bare, "pass_runs_s": grounded}
    result["speed_ratio"] = result["bare_forward_s"] / result["dataset_pass_s"]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
