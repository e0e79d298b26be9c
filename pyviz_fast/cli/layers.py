"""``pyviz-fast layers``: every layer of the model with its output shape and channel count."""
import argparse

from pyviz_fast.cli.common import CliError, add_common_flags, load_model
from pyviz_fast.cli.settings_flags import add_setting_flag, add_size_flag
from pyviz_fast.engine.blocks import default_atlas_layers

EXAMPLES = """examples:
  pyviz-fast layers                                   # the shipped model
  pyviz-fast layers --model torchvision:googlenet --size 224 --atlas
  pyviz-fast layers --model pkg.module:factory --layout stem=nhwc   # channels as render/atlas count them
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser("layers", help="list layers, output shapes and channel counts",
                                   description=__doc__, epilog=EXAMPLES,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_flags(parser, settings=False)
    add_size_flag(parser, "input size in px: N (square) or HxW (default: Settings.size)")
    add_setting_flag(parser, "layout", "activation layouts of layers the probe gets wrong, as render and atlas "
                                       "take them: LAYER=nchw|nhwc|tokens|vector entries separated by commas "
                                       "(shapes and channel counts are then reported under them)")
    parser.add_argument("--atlas", action="store_true", help="only the layers `atlas` renders by default")
    parser.set_defaults(run=run)


def model_layers(model, size=None, layout=None):
    """pyviz_fast.layers for the model at ``size`` (N or (H, W) px; default: the size the model
    declares, else Settings.size) with its own input channel count and the ``layout`` overrides
    ({layer: layout}, as Settings.layout), or CliError."""
    import pyviz_fast as pvf
    from pyviz_fast.engine.layout import parse_overrides
    from pyviz_fast.engine.models import declared_input_size, input_channels
    from pyviz_fast.engine.units import check_layer_name

    hw = pvf.Settings(size=size or declared_input_size(model) or pvf.Settings().size).hw
    try:  # a layer --layout names is the flag's error, not one of running the model
        for name in parse_overrides(layout) or {}:
            check_layer_name(name, model, "given a layout")
    except ValueError as error:
        raise CliError(f"--layout: {error}") from None
    try:
        return pvf.layers(model, input_size=(input_channels(model), *hw), layout=layout)
    except (ValueError, RuntimeError, TypeError) as error:
        raise CliError(f"cannot run the model on a {hw[0]}x{hw[1]} px input (--size sets it): {error}") from None


def run(args) -> int:
    model, _ = load_model(args)
    infos = model_layers(model, args.size, args.layout)
    if args.atlas:
        keep = set(default_atlas_layers(model, infos))
        infos = [info for info in infos if info.name in keep]
    rows = [(info.name, getattr(info.type, "__name__", str(info.type)),
             "-" if info.shape is None else "[" + ", ".join(map(str, info.shape)) + "]",
             # which axis holds the channels: [8, 8, 8] alone does not say
             (info.layout or "-") + ("?" if info.layout_guessed else ""),
             "-" if info.channels is None else str(info.channels), _note(info)) for info in infos]
    header = ("layer", "type", "output", "layout", "channels", "note" if any(row[-1] for row in rows) else "")
    widths = [max(len(row[k]) for row in rows + [header]) for k in range(len(header))]
    for row in [header] + rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 0


def _note(info) -> str:
    """What a reader of the listing must know about a layer: a shared module's output is its first
    call's; an output rewritten in place later is read as it was made; an output not batch-first
    cannot be read per image."""
    if info.shape is None:
        return "its output holds no tensor (an object such as a detection model's image list): nothing to render"
    notes = [f"runs {info.calls}x per forward: the first call is listed and rendered"] if info.calls > 1 else []
    if info.rewritten:
        notes.append("rewritten in place later in the forward: read as made (a copy)")
    if info.layout_guessed:
        notes.append(f"layout guessed (nothing told it): channels read on the first axis; --layout {info.name}=nhwc "
                     "if they are last")
    if not info.batched:
        notes.append("first dimension is not the batch (sequence-first, or windows folded in): shape listed "
                     "whole; no unit of it can be rendered")
    return "; ".join(notes)
