"""``pyviz-fast render``: chosen units (the API's unit syntax) to one PNG each in a directory,
optionally a GIF of each unit's optimization.

Each batch's PNGs are written as soon as the batch finishes, with one record per unit appended to
``render.jsonl`` (unit, class name, file, status, objective, reason, seed); ``render.json`` holds
what the render was made with (model, weights, seed, units, versions, and the settings with the
'auto' execution decided once for every batch) and is a valid ``--config`` file. Ctrl-C (or SIGTERM) keeps every finished batch. Both files describe the last
render into the directory."""
import argparse
import dataclasses
import json

import torch

from pyviz_fast.audit.atlas import flat_pictures
from pyviz_fast.audit.files import write_atomic, write_text_atomic
from pyviz_fast.audit.names import unit_file
from pyviz_fast.audit.writer import BatchWriter, Picture, WriterError
from pyviz_fast.cli.common import (CliError, StepProgress, add_common_flags, interrupt_on_sigterm, load_model,
                                   output_dir, report_execution)
from pyviz_fast.cli.frames import FrameRecorder, gif_bytes
from pyviz_fast.cli.layers import model_layers
from pyviz_fast.cli.settings_flags import settings_from_args, settings_for_model
from pyviz_fast.cli.units import expand_units

EXAMPLES = """examples:
  pyviz-fast render conv3:0-3 fc:2 --out renders/            # renders/conv3/0.png ... renders/fc/2.png
  pyviz-fast render "conv4:5@neuron" "0.5*conv3:1+0.5*conv3:2" --steps 256 --size 160 --out renders/
  pyviz-fast render fc:0 --gif --frames 24 --out renders/     # also renders/fc/0.gif
  pyviz-fast render fc:0-9 --param maco --maco-magnitude shapes --out renders/   # also fc/0~rgba.png ...
  pyviz-fast render conv4:5 --facets 4 --diversity 2 --out renders/     # conv4/5.png, 5~facet1.png ...

Unit syntax: layer:7, layer:0-15, layer (all channels), layer:7@neuron, layer@deepdream,
fc:3 or fc:NAME (class logit; names: the model's own or --labels FILE), -layer:7,
0.5*a:1+0.5*a:2. Files are named as in an atlas's images/: <layer>/<unit>.png, any other
character than letters, digits, '_', '-', '.' written as ~hh (conv4:5@neuron -> conv4/5~40neuron.png);
facet f > 0 of a unit adds ~facet<f>, MaCo's RGBA variant ~rgba. render.json and render.jsonl
describe them.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser("render", help="render units to PNGs", description=__doc__, epilog=EXAMPLES,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("units", nargs="+", metavar="UNIT", help="unit specs, e.g. conv3:0-3 fc:2")
    parser.add_argument("-o", "--out", default=".", help="output directory, created if needed (default: %(default)s)")
    add_gif_flags(parser)
    add_common_flags(parser)
    parser.set_defaults(run=run)


def add_gif_flags(parser) -> None:
    parser.add_argument("--gif", action="store_true",
                        help="also save the optimization's progression as a GIF, recorded during the same "
                             "render (the PNG is the same as without --gif and is the GIF's last frame)")
    parser.add_argument("--frames", type=count_flag, default=32,
                        help="GIF frames from the render, at most: one every ceil(steps/frames) steps and the "
                             "last (dream adds the input photo as the first frame; default: %(default)s)")


def count_flag(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return int(text)


def render_units(model, units, settings, args, callback=None, progress=None):
    """``pvf.render`` with the command's flags; its errors as CliError. progress: None for the
    engine's own bar (unless --quiet), False for none (the caller shows its own)."""
    import pyviz_fast as pvf
    try:
        return pvf.render(model, units, settings, backend=args.backend, device=args.device, seed=args.seed,
                          progress=not args.quiet if progress is None else progress, callback=callback)
    except (ValueError, TypeError, RuntimeError) as error:
        raise CliError(f"render failed: {error}") from None


def _file_name(units, row, facets, variant=""):
    """The out-relative file name (no suffix) of result row ``row`` (a unit's facets are consecutive
    rows): the atlas's injective '<layer>/<unit>[~facet<f>][~rgba]' (audit.names.unit_file)."""
    unit = units[row // facets]
    return unit_file(unit.layer, str(unit), facet=row % facets, variant=variant)


def _gif_writer(units, out, facets):
    """A FrameRecorder ``finished`` that writes row ``row``'s GIF beside its PNG."""
    def write(row, frames):
        write_atomic(out / f"{_file_name(units, row, facets)}.gif", gif_bytes(frames))
    return write


def run_info(args, settings, units) -> dict:
    """What render.json records: enough to make the same images again."""
    import pyviz_fast as pvf
    return {"command": "render", "model": args.model, "weights": args.weights, "labels": args.labels,
            "seed": args.seed, "backend": args.backend, "device": str(args.device),
            "settings": dataclasses.asdict(settings), "units": [str(u) for u in units],
            "pyviz_fast": pvf.__version__, "torch": torch.__version__}


def _records(result, names, files, rgba_files, images) -> list[dict]:
    """Each row's record; ``images``: the rows' uint8 pictures (flagged ``flat`` when one colour)."""
    return [{"unit": str(unit), "class": names.name_of(unit), "file": file, "status": status,
             "objective": float(value) if torch.isfinite(value) else None, "reason": reason or None, "seed": seed,
             "flat": flat, **({"rgba": rgba} if rgba else {})}
            for unit, file, rgba, status, value, reason, seed, flat
            in zip(result.units, files, rgba_files, result.status, result.objective, result.reasons, result.seeds,
                   flat_pictures(images))]


def _pictures(result, images, files, rgba_files) -> list[list[Picture]]:
    """Each row's PNG (``images``: uint8), and with an attribution map (MaCo) its RGBA variant whose
    alpha is the map."""
    rgba = result.to_uint8_rgba() if result.alpha is not None else None
    return [[Picture(file, images[row])] + ([Picture(rgba_files[row], rgba[row])] if rgba is not None else [])
            for row, file in enumerate(files)]


def _summary(record, out) -> str:
    label = record["unit"] + (f" ({record['class']})" if record["class"] else "")
    value = "n/a" if record["objective"] is None else f"{record['objective']:.4g}"
    return (f"{label:<24} {record['status']:<9} objective {value}  {out / record['file']}"
            + (f"  ({record['reason']})" if record["reason"] else "")
            + ("  (flat: the picture is one colour)" if record["flat"] else ""))


def decide_execution(model, units, settings, args):
    """The settings with 'auto' execution (precision, memory format, compile, batch size) decided
    once for the whole render, and the decision's record; errors as CliError."""
    import pyviz_fast as pvf
    try:
        decision = pvf.choose_execution(model, units, settings, device=args.device, seed=args.seed)
    except (ValueError, TypeError, RuntimeError) as error:
        raise CliError(f"render failed: {error}") from None
    return settings.replace(**decision.settings()), decision.record()


def run(args) -> int:
    from pyviz_fast.engine.units import ClassNames

    settings = settings_from_args(args)
    model, _ = load_model(args)
    settings = settings_for_model(args, settings, model)
    units = expand_units(args.units, model, model_layers(model, settings.hw, settings.layout))
    out = output_dir(args.out)
    settings, execution = decide_execution(model, units, settings, args)  # one choice for every batch
    names = ClassNames(model)
    statuses = []
    try:
        info = {**run_info(args, settings, units), "execution": execution}
        write_text_atomic(out / "render.json", json.dumps(info, indent=2, default=str))
        (out / "render.jsonl").unlink(missing_ok=True)
        progress = StepProgress(len(units), settings.steps, args.quiet)
        with interrupt_on_sigterm(), BatchWriter(out, out / "render.jsonl") as writer, progress:
            for start in range(0, len(units), settings.batch_size):  # each batch on disk as soon as it is done
                batch = units[start:start + settings.batch_size]
                recorder = (FrameRecorder(settings.steps, args.frames, _gif_writer(batch, out, settings.facets))
                            if args.gif else None)
                result = render_units(model, batch, settings, args, progress.with_callback(recorder), progress=False)
                rows = range(len(result.units))
                files = [f"{_file_name(batch, row, settings.facets)}.png" for row in rows]
                rgba_files = [f"{_file_name(batch, row, settings.facets, 'rgba')}.png" if result.alpha is not None
                              else None for row in rows]
                images = result.to_uint8()
                records = _records(result, names, files, rgba_files, images)
                writer.submit(_pictures(result, images, files, rgba_files), records)
                progress.update(len(batch))
                for record in records:
                    progress.write(_summary(record, out))
                statuses += result.status
    except WriterError as error:
        raise CliError(f"{error}; the PNGs written before it are intact") from None
    except OSError as error:
        raise CliError(f"cannot write to {str(out)!r}: {error}") from None
    report_execution(args, execution)
    return 0 if all(status in ("ok", "dead") for status in statuses) else 1
