"""``pyviz-fast layers``: every layer of the model with its output shape and channel count."""
import argparse

import torch

from pyviz_fast.cli.common import CliError, add_common_flags, load_model

EXAMPLES = """examples:
  pyviz-fast layers                                   # the shipped model
  pyviz-fast layers --model torchvision:googlenet --size 224 --atlas
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser("layers", help="list layers, output shapes and channel counts",
                                   description=__doc__, epilog=EXAMPLES,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_flags(parser, settings=False)
    parser.add_argument("--size", type=int, default=None, help="input size in px (default: Settings.size)")
    parser.add_argument("--atlas", action="store_true", help="only the layers `atlas` renders by default")
    parser.set_defaults(run=run)


def model_layers(model, size=None):
    """pyviz_fast.layers for the model at ``size`` px with its own input channel count, or CliError."""
    import pyviz_fast as pvf
    from pyviz_fast.engine.models import input_channels

    size = size or pvf.Settings().hw[0]
    try:
        return pvf.layers(model, input_size=(input_channels(model), size, size))
    except (ValueError, RuntimeError, TypeError) as error:
        raise CliError(f"cannot run the model on a {size} px input: {error}") from None


def _contains_conv(module) -> bool:
    return any(isinstance(m, torch.nn.modules.conv._ConvNd) for m in module.modules())


def _attention_count(module) -> int:
    return sum(isinstance(m, torch.nn.MultiheadAttention) or type(m).__name__.endswith("Attention")
               for m in module.modules())


def _is_block(module, shape) -> bool:
    """A conv map [C, H, W] made by a convolution, or tokens [N, D] of one transformer block
    (one attention inside: the encoder holding all blocks is not one)."""
    rank = len(tuple(shape))
    return (rank == 3 and _contains_conv(module)) or (rank == 2 and _attention_count(module) == 1)


def default_atlas_layers(model, infos) -> list[str]:
    """The model's own choice when it names one (an ``atlas_layers`` attribute: shapes_vit lists
    the MLP neurons after each block's GELU), else the conv/block layers: the outermost modules whose [C, H, W] output comes from a
    convolution, or whose token output [N, D] is one transformer block's (shapesnet: conv1-conv4;
    googlenet: conv1-3 and the inception blocks; resnet: conv1 and layer1-4; vit_b_16: the patch
    embedding and the 12 encoder blocks). The root module itself is not a layer."""
    modules = dict(model.named_modules())
    chosen = getattr(model, "atlas_layers", None)
    if chosen:
        return [info.name for info in infos if info.name in set(chosen)]
    candidates = [info.name for info in infos if info.name in modules and info.shape is not None
                  and _is_block(modules[info.name], info.shape)]

    def ancestors(name):
        parts = name.split(".")
        return {".".join(parts[:k]) for k in range(1, len(parts))}

    keep = set(candidates)
    return [name for name in candidates if not ancestors(name) & keep]


def run(args) -> int:
    model, _ = load_model(args)
    infos = model_layers(model, args.size)
    if args.atlas:
        keep = set(default_atlas_layers(model, infos))
        infos = [info for info in infos if info.name in keep]
    rows = [(info.name, getattr(info.type, "__name__", str(info.type)),
             "[" + ", ".join(map(str, info.shape)) + "]", str(info.channels)) for info in infos]
    header = ("layer", "type", "output", "channels")
    widths = [max(len(row[k]) for row in rows + [header]) for k in range(4)]
    for row in [header] + rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 0
