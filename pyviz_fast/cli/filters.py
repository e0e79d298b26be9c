"""``pyviz-fast filters``: the first convolution's kernels as a montage PNG.

A kernel with 3 input channels is shown in color (RGB = its input channels), 1 input channel in
gray, any other count as the gray mean over its input channels."""
import argparse
import numpy as np
import torch
from PIL import Image

from pyviz_fast.audit.files import save_png_atomic
from pyviz_fast.audit.sheets import montage
from pyviz_fast.cli.common import CliError, add_common_flags, load_model, output_file, say

EXAMPLES = """examples:
  pyviz-fast filters --out filters.png
  pyviz-fast filters --model torchvision:alexnet --weights path/to/state.pt --tile 48 --out alexnet_conv1.png
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser("filters", help="the first conv layer's kernels as a montage",
                                   description=__doc__, epilog=EXAMPLES,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--out", default="filters.png",
                        help="output .png, or a directory to write filters.png in (default: %(default)s)")
    parser.add_argument("--tile", type=int, default=48, help="px per kernel in the montage (default: %(default)s)")
    parser.add_argument("--scale", choices=("kernel", "global"), default="kernel",
                        help="map each kernel's own range to [0, 1], or one range for all (default: %(default)s)")
    add_common_flags(parser, settings=False)
    parser.set_defaults(run=run)


def first_conv(model):
    """(name, module) of the first 2-D convolution in ``model.named_modules()`` order, or CliError."""
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Conv2d):
            return name, module
    raise CliError(f"the model ({type(model).__name__}) has no Conv2d layer")


def kernel_images(weight: torch.Tensor, scale: str = "kernel") -> list[Image.Image]:
    """PIL images of conv kernels ``weight`` [O, I, kh, kw], symmetric around 0 -> mid-gray."""
    w = weight.detach().float().cpu()
    if w.shape[1] not in (1, 3):
        w = w.mean(1, keepdim=True)
    limit = w.abs().amax(dim=(1, 2, 3), keepdim=True) if scale == "kernel" else w.abs().max()
    pixels = (w / (2 * limit.clamp_min(1e-12)) + 0.5).clamp(0, 1)
    arrays = (pixels * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return [Image.fromarray(a[:, :, 0], "L") if a.shape[2] == 1 else Image.fromarray(np.ascontiguousarray(a), "RGB")
            for a in arrays]


def run(args) -> int:
    if args.tile < 1:
        raise CliError(f"--tile must be >= 1, got {args.tile}")
    model, _ = load_model(args)
    name, conv = first_conv(model)
    images = kernel_images(conv.weight, args.scale)
    out = output_file(args.out, "filters.png")
    try:
        save_png_atomic(out, montage(images, [str(k) for k in range(len(images))], tile=args.tile))
    except OSError as error:
        raise CliError(f"cannot write {str(out)!r}: {error}") from None
    say(args, f"filters: {len(images)} kernels of {name} {list(conv.weight.shape)} -> {out}")
    return 0
