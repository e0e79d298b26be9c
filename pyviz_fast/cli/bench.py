"""``pyviz-fast bench``: a short fused-vs-reference comparison (the fused ascent step, and end to
end on the shipped model beside its forward+backward ceiling) and each fixed execution beside
'auto', printed as a ratio table (``--json`` adds the CPU model and flags). The core
is ``pyviz_fast.bench.quick.run_quick_bench``; the full suite lives in ``benchmarks/``."""
import argparse
import math

import torch

from pyviz_fast.cli.common import CliError, add_common_flags, load_model, say

EXAMPLES = """examples:
  pyviz-fast bench                       # about a minute on a 2-core CPU
  pyviz-fast bench --batch-size 32 --size 224 --json bench.json
  pyviz-fast bench --device cuda
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser("bench", help="fused vs reference backends: ops and end to end, as ratios",
                                   description=__doc__, epilog=EXAMPLES,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", "--batch", dest="batch", type=int, default=16,
                        help="images per step (default: %(default)s; --batch is an old spelling)")
    parser.add_argument("--size", type=int, default=128, help="image size in px (default: %(default)s)")
    parser.add_argument("--units", default="conv3:0-7", help="units for the end-to-end case (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=16, help="steps of the end-to-end render (default: %(default)s)")
    parser.add_argument("--json", default=None, help="also write the rows and metadata to this JSON file")
    add_common_flags(parser, settings=False)
    parser.set_defaults(run=run)


def run(args) -> int:
    from pyviz_fast.bench.quick import available_backends, run_quick_bench
    from pyviz_fast.bench.results import format_ratio_table

    if args.batch < 1 or args.size < 1 or args.steps < 1:
        raise CliError(f"--batch-size, --size and --steps must be >= 1, got {args.batch}, {args.size}, {args.steps}")
    model, _ = load_model(args)
    torch.manual_seed(args.seed)
    try:
        rows = run_quick_bench(model, device=args.device, batch=args.batch, size=args.size, units=args.units,
                               steps=args.steps, model_name=args.model)
    except (ValueError, RuntimeError) as error:
        raise CliError(f"benchmark failed: {error}") from None
    print(format_ratio_table(rows))
    if len(available_backends(args.device)) == 1:
        say(args, "(the fused backend is not built for this device: reference only)")
    if args.json:
        from pyviz_fast.bench.metadata import collect_metadata
        from pyviz_fast.bench.results import write_results
        try:
            write_results(args.json, rows, collect_metadata(device=args.device))
        except OSError as error:
            raise CliError(f"cannot write {args.json!r}: {error}") from None
        say(args, f"results: {args.json}")
    return 0 if all(math.isfinite(row.rate) for row in rows) else 1
