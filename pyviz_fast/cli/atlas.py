"""``pyviz-fast atlas``: every channel of one or more layers into a resumable run directory with a
manifest, contact sheets and an ``index.html`` gallery. Also runs under torchrun (one shard per
rank, rank 0 merges)."""
import argparse
import dataclasses

from pyviz_fast.audit import AtlasJob, Distributed, RunDir, RunDirError, Shard, WriterError, run_atlas
from pyviz_fast.audit.gallery import flag_count
from pyviz_fast.audit.run_dir import safe_name
from pyviz_fast.cli.common import (CliError, StepProgress, add_common_flags, check_device, interrupt_on_sigterm,
                                   load_model, progress_bar, report_execution, say)
from pyviz_fast.cli.layers import model_layers
from pyviz_fast.cli.settings_flags import settings_from_args, settings_for_model
from pyviz_fast.cli.units import expand_units
from pyviz_fast.engine.autotune import Decision
from pyviz_fast.engine.blocks import default_atlas_layers
from pyviz_fast.engine.units import ClassNames

EXAMPLES = """examples:
  pyviz-fast atlas --out audit/shapesnet                 # the conv blocks of the shipped model
  pyviz-fast atlas conv3 conv4:0-15 --out audit/run --steps 64 --size 96
  pyviz-fast atlas conv4 --out audit/run --shard 1/4     # a quarter of the work, by hand
  pyviz-fast atlas conv4 fc --out audit/g --dataset shapes:2000 --examples 8   # with dataset examples
  pyviz-fast atlas --model torchvision:resnet50 --weights r50.pth --dataset /data/imagenet/val --workers 4
  python -m torch.distributed.run --nproc_per_node 2 -m pyviz_fast atlas conv4 --out audit/run
  torchrun --nnodes 2 --nproc_per_node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \
      -m pyviz_fast atlas --model torchvision:resnet50 --device cuda --out /shared/audit/r50
      (one GPU per local rank, NCCL; several nodes need --out on a shared file system)

Re-running the same command resumes: only units without a manifest record are rendered, and a
killed dataset pass goes on from its last checkpoint (every 30 s).
--dataset SPEC: a folder of images (class sub-folders become labels), shapes:N (the shipped
generator) or package.module:factory (a torch Dataset); each unit then gets its top and bottom
examples (cropped to its receptive field), activation statistics, the percentile of its picture
among the dataset's activations, and warnings (dead on data, path similarity).
Other settings in an existing run directory are an error unless --force (which discards it), and
so are another --dataset or --examples than the run was grounded with (a run rendered without
--dataset can be grounded later by a rerun with it).
"""

# Settings that do not change the images (DESIGN.md: a unit's result does not depend on its batch).
NOT_HASHED = ("batch_size", "compile")
# settings newer than some run directories: hashed only when not at their default, so that those
# directories still resume
HASHED_WHEN_SET = {"batch_invariant": False}


def register(subparsers) -> None:
    parser = subparsers.add_parser("atlas", help="render every channel of layers into a gallery (resumable)",
                                   description=__doc__, epilog=EXAMPLES,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("units", nargs="*", metavar="LAYER_OR_UNITS",
                        help="layers (all channels) or unit specs; default: the model's conv/block layers")
    parser.add_argument("-o", "--out", default=None,
                        help="run directory, created or reused to resume (default: atlas_<model>)")
    parser.add_argument("--shard", type=_shard, default=Shard(), metavar="I/N",
                        help="render only shard I of N (0-based) of the work list")
    parser.add_argument("--force", action="store_true",
                        help="discard a previous run in --out made with other settings")
    parser.add_argument("--dataset", default=None, metavar="SPEC",
                        help="ground every unit in real images: a folder, shapes:N or package.module:factory")
    parser.add_argument("--examples", type=int, default=8, metavar="K",
                        help="top and bottom dataset examples kept per unit (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=2, metavar="N",
                        help="DataLoader worker processes for --dataset (default: %(default)s)")
    add_common_flags(parser)
    parser.set_defaults(run=run)


def hashed_settings(settings, weights="none") -> dict:
    """What decides the images besides model spec and seed: the settings and the model's weights."""
    values = {k: v for k, v in dataclasses.asdict(settings).items()
              if k not in NOT_HASHED and not (k in HASHED_WHEN_SET and v == HASHED_WHEN_SET[k])}
    return {**values, "weights": weights}


def _shard(text: str) -> Shard:
    try:
        return Shard.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def grounder(args, model, settings, device):
    """The dataset grounder for --dataset/--examples/--workers, None without --dataset, or CliError."""
    if args.dataset is None:
        return None
    if args.examples < 1:
        raise CliError(f"--examples must be >= 1, got {args.examples}")
    if args.workers < 0:
        raise CliError(f"--workers must be >= 0, got {args.workers}")
    from pyviz_fast.engine.dataset_pass import DatasetGrounder
    try:
        return DatasetGrounder(model, settings, args.dataset, examples=args.examples, device=device,
                               workers=args.workers, seed=args.seed)
    except (ValueError, TypeError, OSError) as error:
        raise CliError(f"--dataset {args.dataset!r}: {error}") from None


def run(args) -> int:
    import pyviz_fast as pvf

    settings = settings_from_args(args)
    args.out = args.out or f"atlas_{safe_name(args.model)}"
    check_device(args.device)
    dist = Distributed.from_env(args.device)
    args.device = dist.device
    try:
        model, _ = load_model(args)
        settings = settings_for_model(args, settings, model)
        infos = model_layers(model, settings.hw, settings.layout)
        specs = args.units or default_atlas_layers(model, infos)
        if not specs:
            raise CliError("the model has no conv/block layers to default to; name layers or units")
        units = expand_units(specs, model, infos)
        read = {layer for unit in units for layer in unit.layers}
        rewritten = tuple(info.name for info in infos if info.rewritten and info.name in read)
        job = AtlasJob(root=args.out, model=args.model, seed=args.seed,
                       settings=hashed_settings(settings, args.weights), backend=args.backend,
                       device=dist.device, batch_size=settings.batch_size if settings.batch_size != "auto" else 32,
                       facets=settings.facets,
                       shard=args.shard, force=args.force, fingerprint=pvf.model_fingerprint(model),
                       rewritten=rewritten, class_name=ClassNames(model).name_of,
                       grounder=grounder(args, model, settings, dist.device))

        def decide_execution():  # once per run: a resumed run, other shards and ranks reuse run.json's record
            return pvf.choose_execution(model, units, settings, device=dist.device, seed=args.seed).record()

        quiet = args.quiet or not dist.is_main
        bars = []

        def progress_factory(total):  # one bar over the run that moves every step
            bars.append(StepProgress(total, settings.steps, quiet))
            return bars[-1]

        def render_batch(batch, execution):
            chosen = Decision.from_record(execution).settings()
            return pvf.render(model, batch, settings.replace(**chosen), backend=args.backend, device=dist.device,
                              seed=args.seed, batch_size=len(batch) * settings.facets, progress=False,
                              callback=bars[-1] if bars else None)

        try:
            with interrupt_on_sigterm():
                outcome = run_atlas(units, render_batch, job, dist, progress_factory=progress_factory,
                                    decide_execution=decide_execution,
                                    grounding_progress=lambda total: progress_bar(total, quiet, "example"))
        except RunDirError as error:  # other settings in --out, or rank 0 could not set it up
            raise CliError(str(error)) from None
        except WriterError as error:
            raise CliError(f"{error}; results written before it are intact, rerun to resume") from None
        except OSError as error:
            raise CliError(f"cannot write to {args.out!r}: {error}") from None
        except (ValueError, RuntimeError) as error:
            raise CliError(f"rendering failed: {error}") from None
    finally:
        dist.close()
    if dist.is_main:
        report_execution(args, outcome.execution)
        dead, stalled, flat = (flag_count(outcome.merged, flag) for flag in ("dead", "stalled", "flat"))
        shard = f" shard {args.shard} ({len(outcome.merged)} of the {outcome.total} units are in the directory)" \
            if args.shard.count > 1 else ""
        say(args, f"atlas{shard}: {outcome.total} units ({outcome.rendered} rendered now, {outcome.skipped} already done), "
                  f"{outcome.failed} failed, {dead} dead, {stalled} stalled, {flat} flat; "
                  f"gallery: {RunDir(args.out).root / 'index.html'}")
    return outcome.exit_code
