"""``pyviz-fast serve``: a local web app to pick a layer and unit, watch its visualization form
step by step, compare units side by side, DeepDream an uploaded photo and browse atlas runs.
Bound to 127.0.0.1 unless --host says otherwise; only the --model specs given here can be loaded."""
import argparse
from pathlib import Path

from pyviz_fast.cli.common import CliError, check_device, say

EXAMPLES = """examples:
  pyviz-fast serve                                  # the shipped model at http://127.0.0.1:8000
  pyviz-fast serve --model shapesnet --model torchvision:googlenet --port 8080
  pyviz-fast serve --runs audit/                    # also browse the atlas runs under audit/
  pyviz-fast serve --host 0.0.0.0                   # reachable from other machines: mind who can
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser("serve", help="a local web app: pick units, watch them render live",
                                   description=__doc__, epilog=EXAMPLES,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", default=None, metavar="SPEC",
                        help="a model spec the page may use (repeat for several; default: shapesnet)")
    parser.add_argument("--runs", action="append", default=[], metavar="DIR",
                        help="an atlas run directory, or a folder of them, to browse (repeatable)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="torch device (default: %(default)s)")
    parser.add_argument("--interval", type=float, default=0.25,
                        help="seconds between the images a render shows while it runs (default: %(default)s)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no start-up line")
    parser.set_defaults(run=run)


def run(args) -> int:
    try:
        from pyviz_fast.serve import CannotListen, create_app, serve, url
    except ImportError as error:
        raise CliError(f"serve needs the gui extra: pip install 'pyviz_fast[gui]' ({error})") from None
    if not 0 < args.port < 65536:
        raise CliError(f"--port must be in 1..65535, got {args.port}")
    if not args.interval >= 0:
        raise CliError(f"--interval must be >= 0 seconds, got {args.interval}")
    check_device(args.device)
    for root in args.runs:  # a later run appears under an existing folder; a typo never would
        if not Path(root).is_dir():
            what = "is not a directory" if Path(root).exists() else "does not exist"
            raise CliError(f"--runs {root} {what}; give an atlas run directory, or a folder of them")
    app = create_app(args.model or ["shapesnet"], runs=args.runs, device=args.device, interval=args.interval)
    for spec in app.state.models.specs:  # a bad spec fails here, not on the first click
        try:
            app.state.models.model(spec)
        except (ValueError, TypeError, FileNotFoundError, ImportError, RuntimeError, OSError) as error:
            raise CliError(f"cannot load model {spec!r}: {error}") from None
    try:
        serve(app, host=args.host, port=args.port, ready=lambda: say(
            args, f"pyviz-fast serve: {url(args.host, args.port)}  (models: {', '.join(app.state.models.specs)}; "
                  "Ctrl-C stops)"))
    except CannotListen as error:
        raise CliError(str(error)) from None
    return 0
