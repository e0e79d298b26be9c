"""``pyviz-fast render``: chosen units (the API's unit syntax) to one PNG each, optionally a GIF
of each unit's optimization."""
import argparse

from pyviz_fast.audit.files import save_png_atomic, to_pil, write_atomic
from pyviz_fast.audit.run_dir import safe_name
from pyviz_fast.cli.common import CliError, add_common_flags, load_model, output_dir, report_execution, say
from pyviz_fast.cli.frames import FrameRecorder, gif_bytes
from pyviz_fast.cli.layers import model_layers
from pyviz_fast.cli.settings_flags import settings_from_args
from pyviz_fast.cli.units import expand_units

EXAMPLES = """examples:
  pyviz-fast render conv3:0-3 fc:2 --out renders/
  pyviz-fast render "conv4:5@neuron" "0.5*conv3:1+0.5*conv3:2" --steps 256 --size 160 --out renders/
  pyviz-fast render fc:0 --gif --frames 24 --out renders/     # also renders/fc_0.gif

Unit syntax: layer:7, layer:0-15, layer (all channels), layer:7@neuron, layer@deepdream,
fc:3 (class logit), -layer:7, 0.5*a:1+0.5*a:2. Files are named after the unit.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser("render", help="render units to PNGs", description=__doc__, epilog=EXAMPLES,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("units", nargs="+", metavar="UNIT", help="unit specs, e.g. conv3:0-3 fc:2")
    parser.add_argument("-o", "--out", default=".", help="output directory (default: %(default)s)")
    add_gif_flags(parser)
    add_common_flags(parser)
    parser.set_defaults(run=run)


def add_gif_flags(parser) -> None:
    parser.add_argument("--gif", action="store_true",
                        help="also save the optimization's progression as a GIF, recorded during the same "
                             "render (the PNG is the same as without --gif and is the GIF's last frame)")
    parser.add_argument("--frames", type=_frame_count, default=32,
                        help="GIF frames from the render, at most: one every ceil(steps/frames) steps and the "
                             "last (dream adds the input photo as the first frame; default: %(default)s)")


def _frame_count(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return int(text)


def render_units(model, units, settings, args, callback=None):
    """``pvf.render`` with the command's flags; its errors as CliError."""
    import pyviz_fast as pvf
    try:
        return pvf.render(model, units, settings, backend=args.backend, device=args.device, seed=args.seed,
                          progress=not args.quiet, callback=callback)
    except (ValueError, TypeError, RuntimeError) as error:
        raise CliError(f"render failed: {error}") from None


def _gif_writer(units, out):
    """A FrameRecorder ``finished`` that writes unit ``units[row]``'s GIF beside its PNG."""
    def write(row, frames):
        write_atomic(out / f"{safe_name(str(units[row]))}.gif", gif_bytes(frames))
    return write


def run(args) -> int:
    try:
        settings = settings_from_args(args)
    except (ValueError, TypeError) as error:
        raise CliError(str(error)) from None
    model, _ = load_model(args)
    units = expand_units(args.units, model, model_layers(model, settings.hw[0]))
    out = output_dir(args.out)
    try:
        recorder = FrameRecorder(settings.steps, args.frames, _gif_writer(units, out)) if args.gif else None
        result = render_units(model, units, settings, args, recorder)
        rows = [(to_pil(image), status, float(value), reason) for image, status, value, reason
                in zip(result.to_uint8(), result.status, result.objective, result.reasons)]
        for unit, (image, status, value, reason) in zip(units, rows):
            path = out / f"{safe_name(str(unit))}.png"
            save_png_atomic(path, image)
            say(args, f"{str(unit):<24} {status:<9} objective {value:.4g}  {path}" + (f"  ({reason})" if reason else ""))
    except OSError as error:
        raise CliError(f"cannot write to {str(out)!r}: {error}") from None
    report_execution(args, result.info.get("execution"))
    return 0 if all(status == "ok" for _, status, _, _ in rows) else 1
