"""Run an audit: render a work list of units in batches into a run directory, resumably.

``run_atlas`` is independent of the engine: it takes ``render_batch(units, execution) -> result`` where the
result has the fields of ``pyviz_fast.RenderResult`` it uses (``to_uint8()``, ``objective``,
``trajectory``, ``seeds``, ``status``, ``reasons``; ``alpha`` and ``to_uint8_rgba()`` when it
makes an attribution map), with ``job.facets`` rows per unit. Units need ``str(unit)`` (their key)
and ``.layer``; ``.kind`` and ``.index`` are recorded when present, and the class name
``job.class_name(unit)`` gives.

Flow per process: skip the units already recorded in any manifest part (resume), take this
process's shard of the rest, render batch after batch while a writer thread saves PNGs and
appends manifest records, then (the last shard to finish / rank 0 after a barrier) merge the
parts into ``manifest.jsonl``, contact sheets and the gallery. Rank 0 also refreshes them every
``refresh_units`` units or ``refresh_seconds`` seconds, so a long run can be watched and a
killed one still has a gallery of what it finished.

>>> outcome = run_atlas(units, lambda batch, execution: pvf.render(model, batch, settings), job)
>>> outcome.exit_code  # 0 all ok, 1 some units failed
"""
import fcntl
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pyviz_fast.audit.distributed import Distributed
from pyviz_fast.audit.execution import settle_execution
from pyviz_fast.audit.gallery import write_gallery
from pyviz_fast.audit.grounding import ground_run, grounding_fields, grounding_summary
from pyviz_fast.audit.manifest import collect_records, has_image, merge_parts, record_images
from pyviz_fast.audit.run_dir import RunDir, RunDirError, shard_record
from pyviz_fast.audit.shards import Shard
from pyviz_fast.audit.sheets import write_layer_sheets
from pyviz_fast.audit.writer import BatchWriter, Picture, needs_thumbnail

CURVE_POINTS = 64


@dataclass
class AtlasJob:
    """What to render and how (everything except the units and the renderer)."""
    root: Path
    model: str  # the model spec, recorded and hashed
    seed: int
    settings: dict  # JSON-able settings that decide the images, hashed
    backend: str = "auto"
    device: str = "cpu"
    batch_size: int = 16  # images per batch (a unit has ``facets`` of them)
    facets: int = 1  # images per unit (consecutive rows of a result): settings.facets
    shard: Shard = field(default_factory=Shard)
    force: bool = False
    fingerprint: str | None = None  # the model's (pyviz_fast.model_fingerprint): recorded, checked on resume
    rewritten: tuple = ()  # the run's layers whose output the model rewrites in place (LayerInfo.rewritten)
    # refresh manifest and gallery during the run after this many units or seconds, whichever first
    refresh_units: int = 1000
    refresh_seconds: float = 30.0
    # ground every unit in a dataset after rendering (see audit.grounding); None: no dataset
    grounder: object = None
    # unit -> its class name or None (the engine's ClassNames.name_of), recorded as "class"
    class_name: Callable | None = None

    def __post_init__(self):
        if not isinstance(self.facets, int) or isinstance(self.facets, bool) or self.facets < 1:
            raise ValueError(f"facets must be an int >= 1 (images per unit), got {self.facets!r}")


@dataclass
class AtlasOutcome:
    total: int = 0  # units of the work list
    skipped: int = 0  # already done by an earlier run (resume), over all ranks
    rendered: int = 0  # rendered and written by this command (all ranks; not other --shard processes)
    failed: int = 0  # units of the work list whose record says failed / nonfinite
    merged: list = field(default_factory=list)  # the merged manifest (process that merged)
    run_info: dict = field(default_factory=dict)
    execution: dict | None = None  # the execution record every batch ran with (audit/execution.py)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


def trajectory_stats(trajectory) -> dict:
    """Objective statistics over the run (its final value last). A unit whose objective never rose
    above its start is ``dead`` when it does not respond (it never moved, or it ends off, <= 0) and
    ``stalled`` when it does (it moved and ends firing, yet no step beat the starting noise: a weak
    render of a live unit, not a dead one)."""
    values = [float(v) for v in trajectory if math.isfinite(float(v))]
    if not values:
        return {"start": None, "max": None, "rise": None, "dead": True, "stalled": False}
    top, tolerance = max(values), 1e-6 * (1.0 + abs(values[0]))
    never_rose = top - values[0] <= tolerance
    responds = top - min(values) > tolerance and values[-1] > 0
    return {"start": values[0], "max": top, "rise": top - values[0],
            "dead": never_rose and not responds, "stalled": never_rose and responds}


# A picture whose every channel spans at most this many of 255 levels shows one flat colour: a unit
# that fires most for one colour everywhere (ShapesNet's colour channels), or a render that collapsed
# (a random-weight ViT's Fourier images go all white or black); its dataset examples tell which.
FLAT_LEVELS = 2


def flat_pictures(images) -> list[bool]:
    """Per uint8 picture of ``images`` [N, H, W, C]: True where every channel spans at most
    ``FLAT_LEVELS`` levels (the PNG shows one colour)."""
    spans = images.max(axis=(1, 2)).astype(int) - images.min(axis=(1, 2))
    return (spans <= FLAT_LEVELS).all(axis=-1).tolist()


def _unit_fields(unit) -> dict:
    index = getattr(unit, "index", None)
    return {"unit": str(unit), "layer": unit.layer, "objective": getattr(unit, "kind", None),
            "index": index if isinstance(index, int) else None}


def _finite_or_none(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def curve(trajectory: list, points: int = CURVE_POINTS) -> list:
    """The objective trajectory thinned to at most ``points`` values (first and last kept), 4
    significant digits, non-finite values as None: what the gallery plots per unit."""
    if len(trajectory) > points:
        step = (len(trajectory) - 1) / (points - 1)
        trajectory = [trajectory[round(k * step)] for k in range(points)]
    return [float(f"{v:.4g}") if math.isfinite(v) else None for v in map(float, trajectory)]


def execution_label(execution: dict | None) -> str | None:
    """'bf16/channels_last' (+ '/compiled') of an execution record, for manifest records."""
    if not execution:
        return None
    return f"{execution['precision']}/{execution['memory_format']}" + ("/compiled" if execution.get("compile") else "")


_WORST_FIRST = ("failed", "nonfinite", "dead", "ok")


def _worst(statuses: list[str]) -> str:
    """A unit's status from its facets': the worst (a batch fails or skips steps for all alike)."""
    return min(statuses, key=lambda s: _WORST_FIRST.index(s) if s in _WORST_FIRST else 0)


def _pictures(run: RunDir, layer: str, unit: str, rows: range, images, rgba, thumbs: bool) -> tuple[list, list]:
    """(Pictures to write, their manifest entries {file, thumb[, rgba]}) of a unit's facets ``rows``."""
    pictures, entries = [], []
    for facet, row in enumerate(rows):
        entry = {"file": run.image_path(layer, unit, facet=facet),
                 "thumb": run.thumb_path(layer, unit, facet=facet) if thumbs else None}
        pictures.append(Picture(entry["file"], images[row], entry["thumb"]))
        if rgba is not None:
            entry["rgba"] = run.image_path(layer, unit, facet=facet, variant="rgba")
            pictures.append(Picture(entry["rgba"], rgba[row]))
        entries.append(entry)
    return pictures, entries


def build_records(units, result, run: RunDir, job: AtlasJob, info: dict, shard: Shard,
                  seconds: float, execution: dict | None = None) -> tuple[list[dict], list[list[Picture]]]:
    """Manifest records for one rendered batch (aligned with ``units``) and each record's pictures.

    A unit's ``job.facets`` facets are consecutive rows of the result; its record's numbers are facet
    0's (the unit's own seed, as rendered without facets), ``facets`` lists every facet's files and
    objective, and its status is the worst of theirs; it is ``flat`` when any facet's picture is one
    colour (``flat_pictures``). With an attribution map (``result.alpha``,
    MaCo), each picture gets an RGBA variant ('rgba') whose alpha channel is the map."""
    facets = job.facets
    if len(result.images) != len(units) * facets:
        raise ValueError(f"the renderer returned {len(result.images)} images for {len(units)} units "
                         f"of {facets} facets each")
    images = result.to_uint8()
    flat = flat_pictures(images)
    rgba = result.to_uint8_rgba() if getattr(result, "alpha", None) is not None else None
    thumbs = needs_thumbnail(*result.images.shape[-2:])
    shared = (getattr(result, "info", None) or {}).get("shared_layers") or {}  # {layer: calls per forward}
    records, pictures = [], []
    for i, unit in enumerate(units):
        fields = _unit_fields(unit)
        rows = range(i * facets, (i + 1) * facets)
        first = rows[0]
        status = _worst([result.status[r] for r in rows])
        reason = next((result.reasons[r] for r in rows if result.reasons[r]), "") if result.reasons else ""
        trajectory = result.trajectory[first].tolist() if result.trajectory is not None else []
        stats = trajectory_stats(trajectory + [float(result.objective[first])])  # the final value counts too
        ok = status != "failed"  # 'nonfinite' units still have an image
        unit_pictures, entries = (_pictures(run, fields["layer"], fields["unit"], rows, images, rgba, thumbs)
                                  if ok else ([], [{"file": None, "thumb": None}]))
        record = {
            **fields, "model": job.model, "seed": int(result.seeds[first]), "settings_hash": info["settings_hash"],
            "value": _finite_or_none(result.objective[first]),
            "activation": {k: stats[k] for k in ("start", "max", "rise")},
            "dead": stats["dead"], "stalled": stats["stalled"], "flat": ok and any(flat[r] for r in rows),
            "status": status, "reason": reason or None,
            **entries[0],
            "curve": curve(trajectory),
            "seconds": round(seconds / len(units), 6), "backend": job.backend, "device": job.device,
            "execution": execution_label(execution), "shard": str(shard),
        }
        name = job.class_name(unit) if job.class_name else None
        if name is not None:
            record["class"] = name
        if fields["layer"] in shared:  # a module run several times per forward: its first call was rendered
            record["layer_calls"] = shared[fields["layer"]]
        if facets > 1 and ok:
            record["facets"] = [{**entry, "value": _finite_or_none(result.objective[row]), "seed": int(result.seeds[row])}
                                for entry, row in zip(entries, rows)]
        records.append(record)
        pictures.append(unit_pictures)
    return records, pictures


def pending_units(units, run: RunDir) -> list:
    """Units without a finished record: never rendered, failed (retried), or with a PNG gone."""
    done = {record["unit"] for record in collect_records(run.root)
            if has_image(record) and all((run.root / path).is_file() for path in record_images(record))}
    return [u for u in units if str(u) not in done]


class RefreshTimer:
    """Calls ``refresh()`` after the first update, then once ``units`` units or ``seconds`` seconds
    have passed since the last call."""

    def __init__(self, refresh: Callable | None, units: int, seconds: float):
        self.refresh, self.units, self.seconds = refresh, units, seconds
        self._count, self._since = 0, -math.inf

    def update(self, done: int) -> None:
        self._count += done
        if self.refresh and (self._count >= self.units or time.monotonic() - self._since >= self.seconds):
            self.refresh()
            self._count, self._since = 0, time.monotonic()


def render_units(units, render_batch: Callable, run: RunDir, job: AtlasJob, info: dict, shard: Shard,
                 progress=None, execution=None, refresh: Callable | None = None) -> int:
    """Render ``units`` in batches and write them; returns how many were written. ``refresh()`` (the
    gallery of what is on disk so far) is called by the writer after the first batch, then every
    job.refresh_units units / refresh_seconds s.

    On an interrupt or error, every batch already rendered is still written before it propagates."""
    timer = RefreshTimer(refresh, job.refresh_units, job.refresh_seconds)
    writer = BatchWriter(run.root, run.part_path(*shard), on_written=timer.update)  # refreshes what is on disk
    per_batch = max(1, ((execution or {}).get("batch_size") or job.batch_size) // job.facets)  # images -> units
    try:
        for start in range(0, len(units), per_batch):
            batch = units[start:start + per_batch]
            began = time.perf_counter()
            result = render_batch(batch, execution)
            records, pictures = build_records(batch, result, run, job, info, shard, time.perf_counter() - began,
                                              execution)
            writer.submit(pictures, records)
            if progress is not None:
                progress.update(len(batch))
    finally:
        writer.close()
    return writer.written


def finalize(run: RunDir, info: dict, layer_order: dict[str, int], expected: int | None = None,
             shard: Shard | None = None, *, complete: bool = True) -> list[dict]:
    """Merge the manifest parts, write contact sheets and the gallery (serialized by a file lock,
    so concurrent ``--shard`` processes in one directory leave the union of everything).
    expected / shard: the work list's size and this process's --shard, for the gallery to say
    when it shows only part of the work. complete=False: a refresh during the run (the page then
    reloads its data by itself)."""
    with open(run.root / ".merge.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        records = merge_parts(run.root, layer_order, grounding_fields(run.root))
        sheets = write_layer_sheets(run.root, records, run.sheet_path)
        write_gallery(run.root, records, info, sheets, expected, None if shard is None else str(shard),
                      complete=complete, dataset=grounding_summary(run.root))
    return records


def grounding_record(grounder) -> dict | None:
    """What a grounded run records in run.json: another dataset or number of examples would replace
    every unit's grounding. None without a dataset."""
    return None if grounder is None else {"dataset": grounder.spec, "examples": grounder.examples}


def prepare_run(run: RunDir, job: AtlasJob, dist: Distributed, units: list) -> dict:
    """Rank 0 creates or validates the run directory first; then every other rank validates it.
    A failure on rank 0 is re-raised on every rank so none is left waiting."""
    error = None
    agreed = {"shards": shard_record(units, job.shard.count), "grounding": grounding_record(job.grounder)}
    if dist.is_main:
        try:
            run.prepare(job.model, job.seed, job.settings, force=job.force, fingerprint=job.fingerprint,
                        rewritten=job.rewritten, agreed=agreed)
        except (OSError, ValueError) as caught:
            error = caught
    if dist.max(1 if error else 0):
        if error:
            raise error
        raise RunDirError(f"rank 0 could not prepare the run directory {str(run.root)!r} (see its message)")
    return run.check(job.model, job.seed, job.settings, job.fingerprint, job.rewritten, agreed)


def ground_when_complete(run: RunDir, job: AtlasJob, units: list, progress_factory=None, execution=None) -> bool:
    """Run the job's dataset grounding once every unit of the work list has a record (with --shard
    by hand, the last shard to finish does it); returns whether it ran."""
    records = collect_records(run.root)
    if job.grounder is None or not {str(u) for u in units} <= {r["unit"] for r in records}:
        return False
    ground_run(run.root, job.grounder, units, records, progress_factory, execution)
    return True


def run_atlas(units: list, render_batch: Callable, job: AtlasJob, dist: Distributed | None = None,
              progress_factory: Callable | None = None, decide_execution: Callable | None = None,
              grounding_progress: Callable | None = None) -> AtlasOutcome:
    """Render every unit of ``units`` not yet in the run directory; ground them on the job's dataset
    (if any); merge; report.

    progress_factory(total) -> an object with update(n) and close() (e.g. tqdm), or None; the same
    for grounding_progress (its total counts dataset examples).
    decide_execution() -> the JSON record of the execution (precision, memory format, compile,
    batch size) when the run has none yet; every batch gets the run's record (None without it)."""
    dist = dist or Distributed()
    run = RunDir(job.root)
    info = prepare_run(run, job, dist, units)
    execution = settle_execution(run, dist, decide_execution)
    shard = job.shard.split(dist.rank, dist.world_size)
    mine = shard.select(list(units))
    todo = pending_units(mine, run)
    outcome = AtlasOutcome(total=len(units), skipped=len(mine) - len(todo), run_info=info, execution=execution)
    progress = progress_factory(len(todo)) if progress_factory and todo else None
    layer_order = {}
    for unit in units:
        layer_order.setdefault(unit.layer, len(layer_order))
    refresh = (lambda: finalize(run, info, layer_order, len(units), job.shard, complete=False)) if dist.is_main else None
    error = None
    try:
        outcome.rendered = render_units(todo, render_batch, run, job, info, shard, progress, execution, refresh)
    except BaseException as caught:  # noqa: BLE001  (other ranks must still reach the barrier)
        error = caught
    finally:
        if progress is not None:
            progress.close()
    # collectives: every rank arrives here, failed or not, so none waits forever for another
    outcome.rendered, outcome.skipped = dist.sum(outcome.rendered), dist.sum(outcome.skipped)
    try:
        if dist.is_main:
            if error is None:
                try:
                    ground_when_complete(run, job, units, grounding_progress, execution)
                except BaseException as caught:  # noqa: BLE001  (the pass keeps its checkpoint; the gallery is still merged)
                    error = caught
            outcome.merged = finalize(run, info, layer_order, len(units), job.shard)
    except OSError:
        if error is None:
            raise  # otherwise the first error (e.g. the full disk that also stops the merge) is the news
    finally:
        dist.barrier()
    if error is not None:
        raise error
    keys = {str(u) for u in (units if outcome.merged else mine)}
    source = outcome.merged or collect_records(run.root)
    outcome.failed = sum(1 for r in source if r["unit"] in keys and r.get("status") not in ("ok", "dead"))
    return outcome
