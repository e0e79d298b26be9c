"""``pyviz-fast render``: chosen units (the API's unit syntax) to one PNG each, optionally a GIF
of each unit's optimization."""
import argparse

from pyviz_fast.audit.files import save_png_atomic, to_pil, write_atomic
from pyviz_fast.audit.run_dir import safe_name
from pyviz_fast.cli.common import CliError, add_common_flags, load_model, output_dir, progress_bar, say
from pyviz_fast.cli.frames import gif_bytes, render_progression
from pyviz_fast.cli.layers import model_layers
from pyviz_fast.cli.settings_flags import settings_from_args
from pyviz_fast.cli.units import expand_units

EXAMPLES = """examples:
  pyviz-fast render conv3:0-3 fc:2 --out renders/
  pyviz-fast render "conv4:5@neuron" "0.5*conv3:1+0.5*conv3:2" --steps 256 --size 160 --out renders/
  pyviz-fast render fc:0 --gif --frames 12 --out renders/     # also renders/fc_0.gif

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
                        help="also save the optimization's progression as a GIF (rendered in --frames "
                             "consecutive segments; the PNG is the last frame)")
    parser.add_argument("--frames", type=int, default=8,
                        help="segments the run is split into, one GIF frame each (dream adds the input "
                             "photo as the first frame; default: %(default)s)")


def _render_all(model, units, settings, args):
    import pyviz_fast as pvf
    try:
        return pvf.render(model, units, settings, backend=args.backend, device=args.device, seed=args.seed,
                          progress=not args.quiet)
    except (ValueError, TypeError, RuntimeError) as error:
        raise CliError(f"render failed: {error}") from None


def _render_gifs(model, units, settings, args, out):
    """Render each unit as a progression, write its GIF; rows of (last frame, status, value, reason)."""
    results = []
    bar = progress_bar(len(units), args.quiet)
    try:
        for unit in units:
            try:
                frames, result = render_progression(model, unit, settings, frames=args.frames, seed=args.seed,
                                                    backend=args.backend, device=args.device)
            except (ValueError, TypeError, RuntimeError) as error:
                raise CliError(f"render of {str(unit)!r} failed: {error}") from None
            write_atomic(out / f"{safe_name(str(unit))}.gif", gif_bytes(frames))
            results.append((frames[-1], result.status[0], float(result.objective[0]), result.reasons[0]))
            bar.update(1)
    finally:
        bar.close()
    return results


def run(args) -> int:
    if args.frames < 1:
        raise CliError(f"--frames must be >= 1, got {args.frames}")
    try:
        settings = settings_from_args(args)
    except (ValueError, TypeError) as error:
        raise CliError(str(error)) from None
    model, _ = load_model(args)
    units = expand_units(args.units, model, model_layers(model, settings.hw[0]))
    out = output_dir(args.out)
    try:
        if args.gif:
            rows = _render_gifs(model, units, settings, args, out)
        else:
            result = _render_all(model, units, settings, args)
            rows = [(to_pil(image), status, float(value), reason) for image, status, value, reason
                    in zip(result.to_uint8(), result.status, result.objective, result.reasons)]
        for unit, (image, status, value, reason) in zip(units, rows):
            path = out / f"{safe_name(str(unit))}.png"
            save_png_atomic(path, image)
            say(args, f"{str(unit):<24} {status:<9} objective {value:.4g}  {path}" + (f"  ({reason})" if reason else ""))
    except OSError as error:
        raise CliError(f"cannot write to {str(out)!r}: {error}") from None
    return 0 if all(status == "ok" for _, status, _, _ in rows) else 1
