"""What every command shares: common flags, model loading, input images, progress, errors.

Exit codes: 0 ok, 1 some units failed, 2 usage or input/output errors, 3 internal error, 130 interrupted.

Conventions every command follows (also in ``pyviz-fast --help`` and the README):

- ``-o/--out``: a command that writes one file per unit (render, atlas, saliency) takes a
  directory, created if needed; a command that writes one image (dream, filters) takes a
  ``.png`` path, or an existing directory (or a path ending in ``/``) to put its default file
  name in (``output_file``).
- ``--size``: N is the shorter side of the image in px, HxW (or H,W) the exact size. With no
  input photo (render, atlas, layers) N gives an N x N square; with one (dream, accentuate,
  style, saliency) the photo keeps its aspect ratio (``settings_flags.fit_size``).
- input photos are converted to the model's input channel count (``read_image``).
"""
import argparse
import contextlib
import os
import signal
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from pyviz_fast.backend import BACKENDS
from pyviz_fast.cli.settings_flags import add_settings_flags

EXIT_OK, EXIT_FAILED_UNITS, EXIT_USAGE, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class CliError(Exception):
    """A usage or input/output problem: printed as one line, exit code 2."""


def add_common_flags(parser: argparse.ArgumentParser, *, settings: bool = True, settings_exclude=(),
                     settings_defaults=None, settings_helps=None) -> None:
    group = parser.add_argument_group("common")
    group.add_argument("--model", default="shapesnet",
                       help="model spec: shapesnet (the shipped default), shapes_resnet, shapes_vit, "
                            "torchvision:NAME, timm:NAME, a TorchScript file, or package.module:factory (default: %(default)s)")
    group.add_argument("--weights", default="none",
                       help="none, DEFAULT or a state-dict path (loaded into any --model; none and DEFAULT keep the "
                            "shipped, TorchScript or factory model's own weights)")
    group.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1 (default: %(default)s)")
    group.add_argument("--backend", default="auto", choices=BACKENDS,
                       help="op backend: fused kernels, pure-PyTorch reference, or auto (default: %(default)s)")
    group.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    group.add_argument("--labels", default=None, metavar="FILE",
                       help="class names, one per line in output order, for units such as fc:NAME and in "
                            "messages (default: the model's own: shapesnet's, torchvision weights' categories)")
    group.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no summary, no warnings")
    group.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the traceback of an error instead of one line")
    if settings:
        group.add_argument("--explain", action="store_true",
                           help="print the table of the 'auto' execution trial (each candidate's speed and "
                                "why any was rejected), not just the one line naming the choice")
        add_settings_flags(parser, exclude=settings_exclude, defaults=settings_defaults, helps=settings_helps)


# --size of the commands that start from a photo (settings_flags.settings_at_image_size)
PHOTO_SIZE_HELP = ("output size: N = the shorter side in px (the photo's aspect ratio kept), or HxW exact "
                   "(default: the photo's own size)")


def add_image_command_flags(parser, default_out, settings_defaults, run) -> None:
    """The tail of a command that starts from input images (no init flags): --out, the common
    flags with the command's own settings defaults, and its ``run``."""
    parser.add_argument("-o", "--out", default=default_out, help="output PNG (default: %(default)s)")
    add_common_flags(parser, settings_exclude=("init", "init_image"), settings_defaults=settings_defaults,
                     settings_helps={"size": PHOTO_SIZE_HELP})
    parser.set_defaults(run=run)


def check_device(name: str) -> torch.device:
    """The torch.device for --device, or CliError when it is malformed or absent here."""
    from pyviz_fast.backend import available_device
    try:
        return available_device(name)
    except ValueError as error:
        raise CliError(f"--{error}".replace("'cpu'", "--device cpu")) from None


def load_model(args):
    """(model, info) for --model/--weights/--device and --labels, or CliError."""
    model, info = _load_spec(args)
    if getattr(args, "labels", None):
        model.class_names = read_labels(args.labels)
    return model, info


def _load_spec(args):
    """(model, info) for --model/--weights/--device, or CliError naming the spec."""
    from pyviz_fast.engine.models import load_model as engine_load_model
    device = check_device(args.device)
    try:
        return engine_load_model(args.model, weights=args.weights, device=device, seed=args.seed)
    except (ValueError, TypeError, FileNotFoundError, ImportError, RuntimeError, OSError) as error:
        raise CliError(f"cannot load model {args.model!r}: {error}") from None


def read_labels(path) -> tuple:
    """Class names from a text file, one per line (blank lines and '#' comments skipped)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise CliError(f"--labels {str(path)!r} cannot be read as a text file ({error})") from None
    names = tuple(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))
    if not names:
        raise CliError(f"--labels {str(path)!r} has no class names (one per line)")
    return names


_IMAGE_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def read_image(path, channels: int = 3) -> torch.Tensor:
    """float32 [channels, H, W] in [0, 1] from an image file, converted to the model's channels:
    1 -> luminance (ITU-R 601 weights), 3 -> RGB (gray repeated, alpha dropped), 4 -> RGBA (opaque
    alpha added); any other channel count is an error."""
    path = Path(path)
    if channels not in _IMAGE_MODES:
        raise CliError(f"the model takes {channels} input channels; an image file gives 1 (gray), 3 (RGB) or 4 (RGBA)")
    if not path.is_file():
        raise CliError(f"input image {str(path)!r} does not exist or is not a file")
    try:
        with Image.open(path) as image:
            image = image.convert(_IMAGE_MODES[channels])
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise CliError(f"input {str(path)!r} is not a readable image ({error})") from None
    array = np.asarray(image, dtype=np.float32) / 255.0
    array = array[:, :, None] if array.ndim == 2 else array
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def output_file(path, default_name: str) -> Path:
    """The .png file for ``-o`` of a one-image command: ``path`` itself, or ``path/default_name``
    when ``path`` is an existing directory or ends in a separator. Parents are created; CliError
    when the name does not end in .png."""
    text = str(path)
    out = Path(path)
    if text.endswith(("/", os.sep)) or out.is_dir():
        out = out / default_name
    if out.suffix.lower() != ".png":
        raise CliError(f"-o/--out {text!r} must be a .png file or a directory (this command writes one PNG)")
    output_dir(out.parent)
    return out


def output_dir(path) -> Path:
    """Create ``path`` (with parents) and check it is writable, or CliError."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CliError(f"cannot create output directory {str(path)!r}: {error.strerror or error}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise CliError(f"output directory {str(path)!r} is not writable")
    return path


def progress_bar(total: int, quiet: bool, unit: str = "unit"):
    """A tqdm bar on stderr (rate in units/s and ETA), disabled by --quiet."""
    from tqdm import tqdm
    return tqdm(total=total, unit=unit, disable=quiet, file=sys.stderr, dynamic_ncols=True, smoothing=0.1)


class StepProgress:
    """One bar over a whole command's units x steps that moves after every optimization step.

    It is a render callback (``with_callback`` chains another, e.g. a GIF recorder) that advances
    by the batch's unit count per step, and has ``update(units)`` (``run_atlas``'s progress
    interface: units finished) that catches the bar up to whole batches, so a batch that failed
    part-way still counts in full.
    """

    def __init__(self, units: int, steps: int, quiet: bool):
        self.steps, self.quiet, self.done = steps, quiet, 0
        self.bar = progress_bar(units * steps, quiet, unit="unit-step")

    def __call__(self, info) -> None:
        self.bar.update(len(info.units))

    def with_callback(self, other):
        """This bar and ``other`` (a render callback, or None) as one callback."""
        if other is None:
            return self
        return lambda info: (self(info), other(info))

    def update(self, units: int) -> None:
        self.done += units
        self.bar.update(self.done * self.steps - self.bar.n)

    def write(self, message: str) -> None:
        """Print a line on stdout without breaking the bar (nothing under --quiet)."""
        if not self.quiet:
            self.bar.write(message, file=sys.stdout)

    def close(self) -> None:
        self.bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


@contextlib.contextmanager
def interrupt_on_sigterm():
    """SIGTERM (torchrun, schedulers, ``kill``) stops like Ctrl-C, so finished batches are kept."""
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def report_execution(args, record: dict | None) -> None:
    """One line naming the execution the model ran with (with --explain, the trial's table)."""
    from pyviz_fast.engine.autotune import Decision
    if record:
        text = Decision.from_record(record, source=record.get("source", "record")).explain()
        say(args, text if getattr(args, "explain", False) else text.splitlines()[0])


def say(args, message: str) -> None:
    """Print a summary line unless --quiet."""
    if not getattr(args, "quiet", False):
        print(message)
