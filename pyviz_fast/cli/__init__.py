"""The ``pyviz-fast`` command line (also ``python -m pyviz_fast``).

Each command lives in its own module with ``register(subparsers)`` and ``run(args) -> int``;
``main`` turns every failure into one line on stderr and an exit code:
0 ok, 1 some units failed, 2 usage or input/output error, 3 internal error (a bug in pyviz_fast:
please report it), 130 interrupted.

Errors: a bad input (a flag, a file, a model spec, a unit, a setting the engine rejects with
ValueError/TypeError) is one ``pyviz-fast: error: ...`` line and exit code 2. Anything else is a
bug and is one ``pyviz-fast: error: internal error ...`` line and exit code 3; ``--debug`` (before
or after the command) shows the full traceback of either instead.

>>> main(["atlas", "conv2", "--out", "runs/a", "--steps", "32", "--size", "64"])
0
"""
import argparse
import contextlib
import logging
import re
import sys
import warnings

import pyviz_fast
from pyviz_fast.cli import accentuate, atlas, bench, dream, filters, layers, render, saliency, serve, style
from pyviz_fast.cli.common import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE, CliError
from pyviz_fast.cli.settings_flags import split_size_error
from pyviz_fast.engine.allocator import keep_freed_memory_unless_opted_out

COMMANDS = (layers, render, atlas, dream, accentuate, style, saliency, filters, bench, serve)

EPILOG = """examples:
  pyviz-fast layers
  pyviz-fast render conv3:0-3 fc:2 --steps 64 --out renders/
  pyviz-fast atlas --out audit/shapesnet            # every channel of the conv blocks + gallery
  pyviz-fast atlas conv3 conv4 --out audit/run --shard 0/2
  python -m torch.distributed.run --nproc_per_node 2 -m pyviz_fast atlas conv4 --out audit/run
  pyviz-fast dream photo.jpg --layer conv3 --octaves 3 --out dream.png --gif
  pyviz-fast dream photo.jpg --zoom-frames 96 --zoom 1.05 --out zoom.mp4
  pyviz-fast accentuate photo.jpg --unit conv4:3 --out accent.png
  pyviz-fast style content.png style.png --out styled.png
  pyviz-fast saliency photo.jpg --unit fc:3 --out saliency/
  pyviz-fast filters --out filters.png
  pyviz-fast bench
  pyviz-fast serve --runs audit/                    # the web app at http://127.0.0.1:8000

-o/--out: a command that writes one file per unit (render, atlas, saliency) takes a directory;
one that writes a single image (dream, filters) takes a .png path, or a directory to put its
default file name in. --size N is the shorter side of the image in px (square when there is no
input photo); --size HxW (or H,W) is exact.

exit codes: 0 ok, 1 some units failed, 2 usage or input/output error, 3 internal error (a bug;
--debug shows its traceback), 130 interrupted
"""


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line usage error (the full usage is one --help away) and module
    docstrings as plain-text descriptions."""

    def __init__(self, *args, description=None, **kwargs):
        super().__init__(*args, description=description and description.replace("``", ""), **kwargs)
        # no flag starts with a digit: "-1/2", "-0.5,0.2" and "-1e-3" are values, not unknown flags
        self._negative_number_matcher = re.compile(r"^-\.?\d")

    def error(self, message):
        self.exit(EXIT_USAGE, f"pyviz-fast: error: {message} (see {self.prog} --help)\n")

    def parse_known_args(self, args=None, namespace=None):
        message = split_size_error(sys.argv[1:] if args is None else args)
        if message:
            self.error(message)
        return super().parse_known_args(args, namespace)


def _one_line(text: str) -> str:
    return (str(text).strip().splitlines() or ["unknown error"])[0]  # torch errors run on for pages


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pyviz-fast", description="Fast feature visualization of PyTorch vision models.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {pyviz_fast.__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error instead of one line")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"pyviz-fast: warning: {message}", file=file or sys.stderr)  # one line, no source excerpt


@contextlib.contextmanager
def _quiet(enabled: bool):
    """-q: nothing on stderr but errors: no Python warnings, no torch log warnings (torch.compile's).
    The logging levels are restored afterwards (main also runs in-process, e.g. in tests)."""
    if not enabled:
        yield
        return
    import torch
    logger = logging.getLogger("torch")
    level = logger.level
    warnings.simplefilter("ignore")  # inside main's catch_warnings, which restores the filters
    logger.setLevel(logging.ERROR)
    torch._logging.set_logs(all=logging.ERROR)
    try:
        yield
    finally:
        torch._logging.set_logs()  # torch's default log settings
        logger.setLevel(level)


def main(argv=None) -> int:
    if argv is None:  # run as a program: the process is ours to tune (not when a caller passes argv)
        keep_freed_memory_unless_opted_out()
    parser = build_parser()
    args = None
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            args = parser.parse_args(argv)
            with _quiet(getattr(args, "quiet", False)):
                return args.run(args)
    except SystemExit as exit_:  # argparse: --help (0) or a usage error (2, message already printed)
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    except KeyboardInterrupt:
        print("pyviz-fast: interrupted; finished results are saved "
              "(rerun the same command to resume an atlas or a zoom)",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # noqa: BLE001  (one line unless --debug; see the module docstring)
        if getattr(args, "debug", False):
            raise
        if isinstance(error, (CliError, ValueError, TypeError)):  # the engine's input checks raise the latter
            print(f"pyviz-fast: error: {_one_line(error)}", file=sys.stderr)
            return EXIT_USAGE
        print(f"pyviz-fast: error: internal error {type(error).__name__}: {_one_line(error)} "
              "(a bug in pyviz_fast: rerun with --debug for the traceback and please report it)", file=sys.stderr)
        return EXIT_INTERNAL
