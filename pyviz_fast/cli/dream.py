"""``pyviz-fast dream``: DeepDream an input image: amplify what a layer (mean squared activation)
or a channel sees in it, over octaves, to a PNG (and optionally a GIF of the progression); or,
with --zoom-frames, the endless-zoom video: dream, zoom into the frame, dream again.

The photo is converted to the model's input channels (gray for 1, RGB for 3, RGBA for 4) and
keeps its aspect ratio: --size N makes its shorter side N px, --size HxW is exact, and without
--size it keeps its own size."""
import argparse
import dataclasses
import hashlib
import warnings
from pathlib import Path

from pyviz_fast.audit.files import save_png_atomic, to_pil, write_atomic
from pyviz_fast.audit.video import VIDEO_SUFFIXES, FrameDir, FrameDirError, video_path, write_video
from pyviz_fast.cli.common import (PHOTO_SIZE_HELP, CliError, add_common_flags, load_model, output_dir,
                                   output_file, progress_bar, read_image, report_execution, say)
from pyviz_fast.cli.frames import FrameRecorder, gif_bytes
from pyviz_fast.cli.layers import model_layers
from pyviz_fast.cli.render import add_gif_flags, count_flag, render_units
from pyviz_fast.cli.settings_flags import given_settings, settings_at_image_size
from pyviz_fast.engine.autotune import Decision
from pyviz_fast.engine.blocks import default_atlas_layers
from pyviz_fast.engine.dream import DREAM_DEFAULTS, dream_unit as check_dream_unit
from pyviz_fast.engine.result import images_to_uint8
from pyviz_fast.engine.zoom import ZOOM_DEFAULTS, check_zoom

EXAMPLES = """examples:
  pyviz-fast dream photo.png --out dream.png                     # a middle conv block, DeepDream objective
  pyviz-fast dream photo.png --layer conv4 --steps 64 --lr 0.02 --out dream.png
  pyviz-fast dream photo.png --unit conv3:7 --gif --out dream.png  # one channel; also dream.gif
  pyviz-fast dream photo.png --zoom-frames 96 --zoom 1.05 --rotate 1 --out zoom.mp4   # frames in zoom.frames/
  pyviz-fast dream photo.png --zoom-frames 48 --unit conv3:7 --out zoom.gif
  pyviz-fast dream photo.png --zoom-frames 48 --out zoom/         # a folder of PNG frames only

A zoom writes each frame as it is made; a killed zoom, rerun with the same command, goes on after
its last frame (and a larger --zoom-frames extends a finished one). Per frame the dream defaults to
""" + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in ZOOM_DEFAULTS.items()) + """ (flags override;
one octave for a model that runs at one input size only, such as torchvision's ViT).
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser("dream", help="DeepDream an input image, or a zoom video of dreams",
                                   description=__doc__, epilog=EXAMPLES,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image", help="input image file")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--layer", default=None,
                        help="layer whose mean squared activation to amplify (default: the middle conv block)")
    target.add_argument("--unit", default=None, help="a unit spec instead, e.g. conv3:7")
    parser.add_argument("-o", "--out", default=None,
                        help="output .png, or a directory to write dream.png in (default: dream.png); with "
                             "--zoom-frames a video .mp4 / .gif (its frames in NAME.frames/ beside it) or a folder "
                             "for the PNG frames alone (default: dream.mp4)")
    add_gif_flags(parser)
    zoom = parser.add_argument_group("zoom video")
    zoom.add_argument("--zoom-frames", type=count_flag, default=None, metavar="N",
                      help="make a zoom video of N frames: frame 0 is the photo dreamed, each next one the last "
                           "zoomed about its centre and dreamed again")
    zoom.add_argument("--zoom", type=float, default=1.05, help="scale per frame, > 1 (default: %(default)s)")
    zoom.add_argument("--rotate", type=float, default=0.0,
                      help="degrees per frame, counter-clockwise (default: %(default)s); the corners a turn "
                           "uncovers are the frame mirrored at its edges, never black")
    zoom.add_argument("--fps", type=count_flag, default=24, help="video frames per second (default: %(default)s)")
    # --rotate is the zoom's turn per frame here, not the setting's random turn per step
    add_common_flags(parser, settings_exclude=("init", "init_image", "rotate"), settings_defaults=DREAM_DEFAULTS,
                     settings_helps={"size": PHOTO_SIZE_HELP})
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


def _photo_settings_unit(args, model, defaults):
    """(the photo [C, H, W] at the model's channels, validated Settings at the photo's size
    unless --size, the unit spec)."""
    from pyviz_fast.engine.models import input_channels

    image = read_image(args.image, given_settings(args).get("channels") or input_channels(model))
    settings = settings_at_image_size(args, defaults, image, model, init="image", init_image=image)
    unit_spec = dream_unit(args, model, model_layers(model, settings.hw, settings.layout))
    try:
        check_dream_unit(model, unit_spec)
    except ValueError as error:
        raise CliError(str(error)) from None
    return image, settings, unit_spec


def run(args) -> int:
    if args.zoom_frames is not None:
        return run_zoom(args)
    import pyviz_fast as pvf

    model, _ = load_model(args)
    image, settings, unit_spec = _photo_settings_unit(args, model, DREAM_DEFAULTS)
    units = pvf.parse_units(unit_spec, model=model)
    out = output_file(args.out or "dream.png", "dream.png")
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
    say(args, f"dream of {units[0]} ({result.status[0]}, objective {float(result.info['photo_objective'][0]):.4g} -> "
              f"{float(result.objective[0]):.4g}) -> {out}"
              + (f" and {out.with_suffix('.gif')}" if args.gif else ""))
    return 0 if result.status[0] in ("ok", "dead") else 1


def _zoom_outputs(out_text):
    """(frames folder, video path or None) for --out with --zoom-frames."""
    out = Path(out_text or "dream.mp4")
    if out.suffix.lower() in VIDEO_SUFFIXES:
        return out.with_name(out.stem + ".frames"), out
    if out.suffix:
        raise CliError(f"--out {out_text!r}: a zoom writes a video ({' or '.join(VIDEO_SUFFIXES)}) or a folder "
                       "of PNG frames (a name without a suffix)")
    return out, None


def _file_digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def run_zoom(args) -> int:
    import pyviz_fast as pvf

    if args.gif:
        raise CliError("--gif records one dream's progression; for a zoom GIF use --out NAME.gif")
    try:
        check_zoom(args.zoom, args.rotate, args.zoom_frames)
    except ValueError as error:
        raise CliError(f"--zoom/--rotate: {error}") from None
    folder, video = _zoom_outputs(args.out)
    if video is not None:
        try:
            video_path(video, args.fps)
        except ValueError as error:
            raise CliError(f"--fps: {error}") from None
    model, _ = load_model(args)
    image, settings, unit_spec = _photo_settings_unit(args, model, ZOOM_DEFAULTS)
    frames = FrameDir(output_dir(folder))
    made_with = {"image": _file_digest(args.image), "model": args.model, "weights": args.weights, "unit": unit_spec,
                 "zoom": args.zoom, "rotate": args.rotate, "seed": args.seed,
                 "settings": {k: v for k, v in dataclasses.asdict(settings).items() if k != "init_image"}}
    try:
        frames.prepare(made_with)
    except (FrameDirError, OSError) as error:
        raise CliError(str(error)) from None
    first = min(frames.count(), args.zoom_frames)
    # 'auto' precision / memory format are decided by timing: decided once, with the first frames,
    # and reused on resume, or a resumed zoom mixes executions (frames differing by 25/255)
    execution = frames.execution()
    if execution is None:
        try:
            execution = pvf.choose_execution(model, unit_spec, settings, device=args.device, seed=args.seed,
                                             batch_size=1, renders=max(1, args.zoom_frames - first)).record()
        except (ValueError, TypeError, RuntimeError) as error:
            raise CliError(f"zoom failed: {error}") from None
        frames.record_execution(execution)
    settings = settings.replace(**Decision.from_record(execution).settings())
    start = image if first == 0 else read_image(frames.path(first - 1), image.shape[0])
    bar = progress_bar(args.zoom_frames, args.quiet, unit="frame")
    bar.update(first)
    try:
        for k, frame in pvf.dream_zoom(model, start, unit_spec, args.zoom_frames, zoom=args.zoom, rotate=args.rotate,
                                       settings=settings, first=first, backend=args.backend, device=args.device,
                                       seed=args.seed):
            frames.save(k, to_pil(images_to_uint8(frame[None])[0]))
            bar.update(1)
    except (ValueError, TypeError, RuntimeError) as error:
        raise CliError(f"zoom failed: {error}") from None
    except OSError as error:
        raise CliError(f"cannot write frames to {str(folder)!r}: {error}") from None
    finally:
        bar.close()
    if video is not None:
        try:
            written = write_video(frames.paths(args.zoom_frames), video, fps=args.fps)
        except OSError as error:
            raise CliError(f"cannot write {str(video)!r}: {error}") from None
        if written != video:
            warnings.warn(f"PyAV is not installed (pip install av): wrote the GIF {written} instead of {video}")
        video = written
    report_execution(args, execution)
    resumed = f" (resumed after frame {first - 1})" if 0 < first < args.zoom_frames else ""
    say(args, f"zoom of {unit_spec}: {args.zoom_frames} frames{resumed} in {folder}"
              + (f" -> {video}" if video else ""))
    return 0
