"""``pyviz-fast accentuate``: what in a photo drives a unit. Starting from the photo, maximize the
unit while the activations at a lower layer stay close to the photo's (feature accentuation);
or, with ``--caricature LAYER``, exaggerate what that layer sees in the photo (Lucid). Writes the
result, and a panel of the photo, the result and their difference."""
import argparse
from pathlib import Path
from typing import Optional

from pyviz_fast.audit.files import save_png_atomic, to_pil
from pyviz_fast.cli.common import CliError, add_image_command_flags, load_model, output_dir, read_image, say
from pyviz_fast.cli.settings_flags import settings_at_image_size, value_parser
from pyviz_fast.engine.accentuate import (DEFAULT_GAIN, DEFAULTS, PATCH_MODEL_DEFAULTS, accentuation_panel,
                                          difference_image, photo_defaults)
from pyviz_fast.engine.result import images_to_uint8

EXAMPLES = """examples:
  pyviz-fast accentuate photo.png --unit conv4:3 --out accent.png      # also accent_panel.png, accent_difference.png
  pyviz-fast accentuate photo.png --unit fc:5 --layer conv2 --gain 3 --out accent.png   # gentler
  pyviz-fast accentuate photo.png --unit fc:5 --weight 2 --gain none --out accent.png   # a fixed weight
  pyviz-fast accentuate photo.png --caricature conv3 --power 2 --out caricature.png
"""


_read_gain = value_parser(Optional[float])  # a number, or a none word as every optional flag takes


def _gain(text):
    """--gain: a number, or 'none' for a fixed closeness weight (the engine checks the number)."""
    try:
        return _read_gain(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 1 or 'none', got {text!r}") from None


PATCH_MODEL_NOTE = ("On a model that cuts its input into patches (a ViT) the defaults below change to "
                    + " ".join(f"--{name.replace('_', '-')} {value}" for name, value in PATCH_MODEL_DEFAULTS.items())
                    + ".")


def register(subparsers) -> None:
    parser = subparsers.add_parser("accentuate", help="accentuate a unit in a photo (or a layer's caricature)",
                                   description=f"{__doc__}\n{PATCH_MODEL_NOTE}", epilog=EXAMPLES,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image", help="input photo")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--unit", help="the unit to accentuate, e.g. conv4:3 or fc:5")
    target.add_argument("--caricature", metavar="LAYER", help="a layer whose caricature of the photo to render")
    parser.add_argument("--layer", default=None,
                        help="accentuation: the lower layer kept close to the photo "
                             "(default: the block halfway below the unit)")
    parser.add_argument("--weight", type=float, default=1.0,
                        help="accentuation: closeness strength relative to the unit (default: %(default)s)")
    parser.add_argument("--gain", type=_gain, default=DEFAULT_GAIN,
                        help="accentuation: how far to raise the unit, as a factor of its value on the photo; "
                             "the closeness weight steers it there ('none': keep --weight fixed; default: %(default)s)")
    parser.add_argument("--power", type=float, default=1.0,
                        help="caricature: the cosine's exponent (default: %(default)s)")
    add_image_command_flags(parser, "accent.png", DEFAULTS, run)


def run(args) -> int:
    import pyviz_fast as pvf

    photo = read_image(args.image)
    model, _ = load_model(args)
    common = dict(backend=args.backend, device=args.device, seed=args.seed, progress=not args.quiet)
    try:
        settings = settings_at_image_size(args, photo_defaults(model), photo, model)
        if args.caricature:
            result = pvf.caricature(model, photo, args.caricature, power=args.power, settings=settings, **common)
        else:
            if len(pvf.parse_units(args.unit, model=model)) != 1:
                raise ValueError(f"accentuate needs one unit, {args.unit!r} names several")
            result = pvf.accentuate(model, photo, args.unit, layer=args.layer, weight=args.weight,
                                    gain=args.gain, settings=settings, **common)
    except (ValueError, TypeError, RuntimeError) as error:
        raise CliError(str(error)) from None
    out = Path(args.out)
    output_dir(out.parent if str(out.parent) else ".")
    photo, image = result.info["photo"], result.images[0]
    outputs = {out: image, out.with_name(f"{out.stem}_difference.png"): difference_image(photo, image),
               out.with_name(f"{out.stem}_panel.png"): accentuation_panel(photo, image)}
    try:
        for path, picture in outputs.items():
            save_png_atomic(path, to_pil(images_to_uint8(picture[None])[0]))
    except OSError as error:
        raise CliError(f"cannot write {str(out)!r}: {error}") from None
    say(args, f"{result.units[0]} ({result.status[0]}, objective {float(result.info['photo_objective'][0]):.4g} on the photo -> "
              f"{float(result.objective[0]):.4g}) -> {', '.join(map(str, outputs))}")
    return 0 if result.status[0] == "ok" else 1
