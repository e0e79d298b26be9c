"""Train a zoo model on freshly generated shapes images and save its state dict.

    python -m pyviz_fast.zoo.train_shapes [--model NAME] [--out PATH] [--seed N] [--minutes M] [--steps S]

NAME is a zoo model (shapesnet, shapes_resnet, shapes_vit: ``pyviz_fast.zoo.catalog.ZOO``,
which also holds each one's weights path, step count and learning rate).

Every step draws a new batch (so there is no overfitting to a fixed set) at a random size
between 40 and 96 px: the model sees the patterns at many scales, positions and periods,
which is what makes its class visualizations robust patterns rather than adversarial noise.
A recipe may add augmentations (``pyviz_fast.zoo.augment``: "no class" textures, texture
blends, FGSM), drawn from the same seeded generator; every shipped recipe uses them (``catalog.ROBUST``).
AdamW with weight decay and a one-cycle learning-rate schedule. The run is reproducible for
a given seed and step count (``--minutes`` is only a safety cap: hitting it stops early and
says so). At the end it prints the accuracy on held-out images drawn from a different seed.
"""
import argparse
import pathlib
import time

import torch
from torch.nn import functional as F

from pyviz_fast.zoo.augment import adversarial, augment_batch
from pyviz_fast.zoo.catalog import ZOO, entry
from pyviz_fast.zoo.shapes_data import SHAPES_CLASSES, make_batch

TRAIN_SIZES = (40, 48, 56, 64, 72, 80, 96)
HELD_OUT_SEED_OFFSET = 1_000_003  # held-out images never share a generator stream with training


@torch.no_grad()
def evaluate(model, n=1000, size=64, seed=HELD_OUT_SEED_OFFSET, batch_size=250):
    """Accuracy (float in [0, 1]) of ``model`` on ``n`` fresh images of side ``size``."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    correct = 0
    for start in range(0, n, batch_size):
        images, labels = make_batch(min(batch_size, n - start), size=size, generator=generator)
        correct += (model(images).argmax(1) == labels).sum().item()
    return correct / n


def train(name="shapesnet", seed=0, steps=None, batch_size=None, minutes=10.0, log_every=100, augment=None):
    """Train a fresh zoo model ``name`` by its recipe (``steps``, ``batch_size``, ``augment``
    override it); returns (model in eval mode, seconds spent, steps done)."""
    recipe = entry(name)
    steps = recipe.steps if steps is None else steps
    batch_size = recipe.batch_size if batch_size is None else batch_size
    augment = recipe.augment if augment is None else augment
    lr = recipe.lr
    torch.manual_seed(seed)
    model = recipe.architecture().to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=recipe.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.1)
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    model.train()
    for step in range(steps):
        size = TRAIN_SIZES[int(torch.randint(len(TRAIN_SIZES), (), generator=generator))]
        images, labels = make_batch(batch_size, size=size, generator=generator)
        images, targets = augment_batch(images, labels, augment, generator, len(SHAPES_CLASSES))
        images = images.contiguous(memory_format=torch.channels_last)
        if augment.fgsm_eps > 0:
            images = adversarial(model, images, targets, augment.fgsm_eps, generator)
        loss = F.cross_entropy(model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        elapsed = time.perf_counter() - start
        if (step + 1) % log_every == 0:
            print(f"step {step + 1}/{steps}  loss {loss.item():.4f}  {elapsed:.0f}s", flush=True)
        if elapsed > minutes * 60:
            print(f"stopping early at step {step + 1}: the {minutes} min cap was reached "
                  "(the weights differ from a full run)", flush=True)
            break
    return model.eval().to(memory_format=torch.contiguous_format), time.perf_counter() - start, step + 1


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="shapesnet", choices=list(ZOO), help="which zoo model to train")
    parser.add_argument("--out", type=pathlib.Path, default=None,
                        help="where to save the state dict (default: the shipped weights file)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None, help="default: the model's recipe")
    parser.add_argument("--minutes", type=float, default=10.0, help="safety cap on training time")
    parser.add_argument("--eval-images", type=int, default=1000, help="held-out images per size")
    args = parser.parse_args(argv)
    out = args.out or entry(args.model).weights
    cpu_start = time.process_time()  # CPU time too: the wall clock of a shared machine overstates the cost
    model, seconds, steps = train(args.model, seed=args.seed, steps=args.steps, minutes=args.minutes)
    cpu_minutes = (time.process_time() - cpu_start) / 60
    held_out_seed = HELD_OUT_SEED_OFFSET + args.seed
    print(f"trained {steps} steps in {seconds:.0f}s wall ({seconds / 60:.1f} min), {cpu_minutes:.1f} min of CPU, "
          f"{torch.get_num_threads()} threads")
    for size in (32, 64, 128):
        accuracy = evaluate(model, n=args.eval_images, size=size, seed=held_out_seed)
        print(f"held-out accuracy at {size} px (seed {held_out_seed}, {args.eval_images} images, "
              f"{len(SHAPES_CLASSES)} classes): {accuracy:.4f}")
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out)
    print(f"saved {out} ({out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
