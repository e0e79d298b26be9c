"""The Gram products' CPU kernel (``ops.gram``, ``ops.gram_times``) against torch.bmm (the
reference), never asserting:

- ops: each product, and a style layer's Gram error with its backward, on the style layers'
  shapes of ShapesNet and the random VGG-style net (8 images, 64 px, channels_last, float32),
  warm (the same call repeated) and cold (a 64 MB buffer written between calls, as a style
  loss's backward finds its activation), medians;
- style: ``pvf.style_transfer`` of 8 pairs with the kernel, then with the products on
  torch.bmm, beside the model's bare forward+backward (``bench_methods.ceiling``), in turn
  ``--repeats`` times, medians of process CPU seconds.

    python benchmarks/bench_gram.py --threads 1 --steps 128 --repeats 3
"""
import argparse
import statistics
import time

import torch

import pyviz_fast as pvf
from pyviz_fast import ops
from pyviz_fast.bench.timing import steady_process
from pyviz_fast.ops import reference
from pyviz_fast.zoo.random_vgg import random_vgg
from pyviz_fast.zoo.shapes_data import make_batch

from bench_methods import EXECUTION, SIZE, ceiling

OP_SHAPES = [(8, 16, 64, 64), (8, 32, 32, 32), (8, 64, 16, 16), (8, 96, 8, 8),  # ShapesNet conv1-4
             (8, 64, 64, 64), (8, 128, 32, 32), (8, 256, 16, 16), (8, 512, 8, 8)]  # VGG relu1_1 ... relu4_1
_EVICT = torch.empty(16 * 2**20)  # 64 MB, more than these CPUs' last-level cache slice


def median_ms(fn, cold, calls=40):
    samples = []
    for _ in range(calls):
        if cold:
            _EVICT.add_(1.0)
        began = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - began)
    return statistics.median(samples) * 1e3


def op_rows():
    """Each op and its reference; past the kernel's channel limit (``ops._GRAM_KERNEL_CHANNELS``)
    the op runs the reference too, so both columns time torch.bmm there."""
    print("| shape [B, C, H, W] | gram: bmm / kernel ms (warm; cold) | gram_times: bmm / kernel ms (warm; cold) "
          "| gram_error, forward + backward: reference / kernels ms (warm; cold) |")
    print("|---|---|---|---|")
    for shape in OP_SHAPES:
        x = torch.randn(shape).contiguous(memory_format=torch.channels_last)
        m = torch.randn(shape[0], shape[1], shape[1])
        norms = torch.rand(shape[0]) + 0.5
        cells = []
        for mine, theirs, args in ((ops.gram, reference.gram, (x,)), (ops.gram_times, reference.gram_times, (m, x)),
                                   (style_layer(ops), style_layer(reference), (x, m, norms))):
            times = [median_ms(lambda f=f: f(*args), cold) for cold in (False, True) for f in (theirs, mine)]
            cells.append("{:.3f} / {:.3f}; {:.3f} / {:.3f}".format(*times))
        print(f"| {list(shape)} | {' | '.join(cells)} |", flush=True)


def style_layer(module):
    """A style loss's layer both ways through ``module``'s ops: its Gram error, then the gradient."""
    def run(x, target, norms):
        _, residual = module.gram_error(x, target, norms)
        return module.gram_error_backward(x, residual, norms)
    return run


def style_rows(steps, repeats):
    photos = make_batch(16, size=SIZE, seed=7)[0]
    pairs = (photos[:8], photos[8:])
    print("| style transfer, 8 pairs | ceiling s | kernel s | bmm s | ceiling / render: kernel, bmm |")
    print("|---|---|---|---|---|")
    kernel_choice = ops._gram_kernel
    for name, model, layer in (("ShapesNet", pvf.zoo.shapesnet(), "conv4.relu"), ("random VGG", random_vgg(), "relu4_1")):
        def render():
            pvf.style_transfer(model, *pairs, steps=steps, size=SIZE, progress=False, **EXECUTION)

        def cpu_seconds(products):
            ops._gram_kernel = kernel_choice if products == "kernel" else (lambda op, x, backend: getattr(reference, op))
            try:
                began = time.process_time()
                render()
                return time.process_time() - began
            finally:
                ops._gram_kernel = kernel_choice
        render()  # primes oneDNN's primitives outside the timing
        samples = {"ceiling": [], "kernel": [], "bmm": []}
        for _ in range(repeats):
            samples["ceiling"].append(ceiling(model, layer, 8, steps, SIZE)[1])
            for products in ("kernel", "bmm"):
                samples[products].append(cpu_seconds(products))
        s = {k: statistics.median(v) for k, v in samples.items()}
        print(f"| {name}, {steps} steps | {s['ceiling']:.3f} | {s['kernel']:.3f} | {s['bmm']:.3f} | "
              f"**{s['ceiling'] / s['kernel']:.3f}**, {s['ceiling'] / s['bmm']:.3f} |", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=128, help="style transfer's default")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    steady_process(args.threads)
    op_rows()
    style_rows(args.steps, args.repeats)


if __name__ == "__main__":
    main()
