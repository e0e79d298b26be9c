"""The ``pyviz-fast`` command line (also ``python -m pyviz_fast``).

Each command lives in its own module with ``register(subparsers)`` and ``run(args) -> int``;
``main`` turns every expected failure into one line on stderr and an exit code:
0 ok, 1 some units failed, 2 usage or input/output error, 130 interrupted.

>>> main(["atlas", "conv2", "--out", "runs/a", "--steps", "32", "--size", "64"])
0
"""
import argparse
import sys
import warnings

from pyviz_fast.cli import atlas, bench, dream, filters, layers, render, saliency, serve
from pyviz_fast.cli.common import EXIT_INTERRUPTED, EXIT_USAGE, CliError

COMMANDS = (layers, render, atlas, dream, saliency, filters, bench, serve)

EPILOG = """examples:
  pyviz-fast layers
  pyviz-fast render conv3:0-3 fc:2 --steps 64 --out renders/
  pyviz-fast atlas --out audit/shapesnet            # every channel of the conv blocks + gallery
  pyviz-fast atlas conv3 conv4 --out audit/run --shard 0/2
  python -m torch.distributed.run --nproc_per_node 2 -m pyviz_fast atlas conv4 --out audit/run
  pyviz-fast dream photo.jpg --layer conv3 --octaves 3 --out dream.png --gif
  pyviz-fast dream photo.jpg --zoom-frames 96 --zoom 1.05 --out zoom.mp4
  pyviz-fast saliency photo.jpg --unit fc:3 --out saliency/
  pyviz-fast filters --out filters.png
  pyviz-fast bench
  pyviz-fast serve --runs audit/                    # the web app at http://127.0.0.1:8000

exit codes: 0 ok, 1 some units failed, 2 usage or input/output error, 130 interrupted
"""


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line usage error (the full usage is one --help away) and module
    docstrings as plain-text descriptions."""

    def __init__(self, *args, description=None, **kwargs):
        super().__init__(*args, description=description and description.replace("``", ""), **kwargs)

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pyviz-fast", description="Fast feature visualization of PyTorch vision models.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"pyviz-fast: warning: {message}", file=file or sys.stderr)  # one line, no source excerpt


def main(argv=None) -> int:
    parser = build_parser()
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            args = parser.parse_args(argv)
            return args.run(args)
    except SystemExit as exit_:  # argparse: --help (0) or a usage error (2, message already printed)
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    except CliError as error:
        first_line = (str(error).strip().splitlines() or ["unknown error"])[0]  # torch errors run on for pages
        print(f"pyviz-fast: error: {first_line}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("pyviz-fast: interrupted; finished results are saved "
              "(rerun the same command to resume an atlas or a zoom)",
              file=sys.stderr)
        return EXIT_INTERRUPTED
