"""``pyviz-fast dream``: DeepDream an input image: amplify what a layer (mean squared activation)
or a channel sees in it, over octaves, to a PNG (and optionally a GIF of the progression).

The photo is converted to the model's input channels (gray for 1, RGB for 3, RGBA for 4) and
keeps its aspect ratio: --size N makes its shorter side N px, --size HxW is exact, and without
--size it keeps its own size."""
import argparse

from pyviz_fast.audit.files import save_png_atomic, to_pil, write_atomic
from pyviz_fast.cli.common import CliError, add_common_flags, fit_size, load_model, output_file, read_image, say
from pyviz_fast.cli.frames import FrameRecorder, gif_bytes
from pyviz_fast.engine.result import images_to_uint8
from pyviz_fast.cli.layers import default_atlas_layers, model_layers
from pyviz_fast.cli.render import add_gif_flags, render_units
from pyviz_fast.cli.settings_flags import given_settings, settings_from_args

# Gentler than a render from noise, so the photo stays recognizable; the engine's octaves
# rescale the photo itself (no detail is added back between them), so one stage by default.
DREAM_DEFAULTS = {"steps": 32, "lr": 0.01}

EXAMPLES = """examples:
  pyviz-fast dream photo.png --out dream.png                     # a middle conv block, DeepDream objective
  pyviz-fast dream photo.png --layer conv4 --steps 64 --lr 0.02 --out dream.png
  pyviz-fast dream photo.png --unit conv3:7 --gif --out dream.png  # one channel; also dream.gif
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser("dream", help="DeepDream an input image", description=__doc__, epilog=EXAMPLES,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image", help="input image file")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--layer", default=None,
                        help="layer whose mean squared activation to amplify (default: the middle conv block)")
    target.add_argument("--unit", default=None, help="a unit spec instead, e.g. conv3:7")
    parser.add_argument("-o", "--out", default="dream.png",
                        help="output .png, or a directory to write dream.png in (default: %(default)s)")
    add_gif_flags(parser)
    add_common_flags(parser, settings_exclude=("init", "init_image"), settings_defaults=DREAM_DEFAULTS,
                     settings_helps={"size": "output size: N = the shorter side in px (the photo's aspect ratio "
                                             "kept), or HxW exact (default: the photo's own size)"})
    parser.set_defaults(run=run)


def dream_unit(args, model, infos) -> str:
    if args.unit:
        return args.unit
    if args.layer:
        return f"{args.layer}@deepdream"
    blocks = default_atlas_layers(model, infos)
    if not blocks:
        raise CliError("the model has no conv/block layers to default to; use --layer or --unit")
    return f"{blocks[len(blocks) // 2]}@deepdream"


def run(args) -> int:
    import pyviz_fast as pvf
    from pyviz_fast.engine.models import input_channels

    model, _ = load_model(args)
    given = given_settings(args)
    image = read_image(args.image, given.get("channels") or input_channels(model))
    photo_hw = tuple(image.shape[-2:])
    settings = settings_from_args(args, DREAM_DEFAULTS, init="image", init_image=image)
    settings = settings.replace(size=fit_size(settings.size, photo_hw) if "size" in given else photo_hw).validate()
    unit_spec = dream_unit(args, model, model_layers(model, settings.hw))
    units = pvf.parse_units(unit_spec, model=model)
    if len(units) != 1:
        raise CliError(f"dream needs one unit, {unit_spec!r} names {len(units)}")
    out = output_file(args.out, "dream.png")
    frames = []  # the photo, then the render's progression
    recorder = FrameRecorder(settings.steps, args.frames, lambda row, recorded: frames.extend(recorded),
                             first=to_pil(images_to_uint8(image[None])[0])) if args.gif else None
    result = render_units(model, units, settings, args, recorder)
    try:
        save_png_atomic(out, to_pil(result.to_uint8()[0]))
        if args.gif:
            write_atomic(out.with_suffix(".gif"), gif_bytes(frames))
    except OSError as error:
        raise CliError(f"cannot write {str(out)!r}: {error}") from None
    say(args, f"dream of {units[0]} ({result.status[0]}, objective {float(result.objective[0]):.4g}) -> {out}"
              + (f" and {out.with_suffix('.gif')}" if args.gif else ""))
    return 0 if result.status[0] in ("ok", "dead") else 1
