"""What every command shares: common flags, model loading, input images, progress, errors.

Exit codes: 0 ok, 1 some units failed, 2 usage or input/output errors, 130 interrupted.
"""
import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from pyviz_fast.backend import BACKENDS
from pyviz_fast.cli.settings_flags import add_settings_flags

EXIT_OK, EXIT_FAILED_UNITS, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class CliError(Exception):
    """A usage or input/output problem: printed as one line, exit code 2."""


def add_common_flags(parser: argparse.ArgumentParser, *, settings: bool = True, settings_exclude=(),
                     settings_defaults=None) -> None:
    group = parser.add_argument_group("common")
    group.add_argument("--model", default="shapesnet",
                       help="model spec: shapesnet (the shipped model), torchvision:NAME, timm:NAME, "
                            "a TorchScript file, or package.module:factory (default: %(default)s)")
    group.add_argument("--weights", default="none",
                       help="weights for torchvision:/timm: specs: none, DEFAULT or a state-dict path")
    group.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1 (default: %(default)s)")
    group.add_argument("--backend", default="auto", choices=BACKENDS,
                       help="op backend: fused kernels, pure-PyTorch reference, or auto (default: %(default)s)")
    group.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    group.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no summary")
    if settings:
        group.add_argument("--explain", action="store_true",
                           help="print the table of the 'auto' execution trial (each candidate's speed and "
                                "why any was rejected), not just the one line naming the choice")
        add_settings_flags(parser, exclude=settings_exclude, defaults=settings_defaults)


def check_device(name: str) -> torch.device:
    """The torch.device for --device, or CliError when it is malformed or absent here."""
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise CliError(f"--device {name!r} is not a torch device ({error})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CliError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return device


def load_model(args):
    """(model, info) for --model/--weights/--device, or CliError naming the spec."""
    from pyviz_fast.engine.models import load_model as engine_load_model
    device = check_device(args.device)
    try:
        return engine_load_model(args.model, weights=args.weights, device=device, seed=args.seed)
    except (ValueError, TypeError, FileNotFoundError, ImportError, RuntimeError, OSError) as error:
        raise CliError(f"cannot load model {args.model!r}: {error}") from None


def read_image(path) -> torch.Tensor:
    """float32 [C, H, W] in [0, 1] from an image file (RGB, gray, or RGBA without alpha -> RGB)."""
    path = Path(path)
    if not path.is_file():
        raise CliError(f"input image {str(path)!r} does not exist or is not a file")
    try:
        with Image.open(path) as image:
            image = image.convert("RGB") if image.mode not in ("RGB", "L") else image.copy()
    except (UnidentifiedImageError, OSError) as error:
        raise CliError(f"input {str(path)!r} is not a readable image ({error})") from None
    array = np.asarray(image, dtype=np.float32) / 255.0
    array = array[:, :, None] if array.ndim == 2 else array
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


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
