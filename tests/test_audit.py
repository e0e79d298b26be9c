"""The audit machinery (run directory, manifest, resume, shards, writer, gallery) with a fake renderer.

The fake renderer makes each unit's image and objective a function of the unit alone, so runs
split in any way must agree exactly; unit 3 of every layer is dead (flat trajectory), unit 5
fails and unit 6 (conv1's only) has a picture of one grey, to exercise the flags.
"""
import errno
import fcntl
import json
import math
import os
import re
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from pyviz_fast.audit import AtlasJob, RunDir, SettingsMismatchError, Shard, WriterError, read_records, run_atlas
from pyviz_fast.audit import files as audit_files
from pyviz_fast.audit import run_dir as audit_run_dir
from pyviz_fast.audit import writer as audit_writer
from pyviz_fast.audit.atlas import flat_pictures, trajectory_stats
from pyviz_fast.audit.execution import settle_execution
from pyviz_fast.audit.gallery import gallery_data, gallery_links, read_gallery_data
from pyviz_fast.audit.manifest import ManifestPart, merge_parts, record_images
from pyviz_fast.audit.run_dir import shard_record
from pyviz_fast.engine.units import Unit

SIZE, STEPS = 12, 5
UNITS = [Unit.channel("conv1", c) for c in range(7)] + [Unit.channel("conv2", c) for c in range(6)]
RECORD_FIELDS = {"model", "layer", "unit", "objective", "seed", "settings_hash", "value", "activation", "status",
                 "file", "seconds", "backend", "device", "dead", "stalled", "flat"}


class FakeRenderer:
    """render_batch(units, execution) -> a RenderResult-like object; counts the units it rendered."""

    def __init__(self, interrupt_after_batches=None, size=SIZE, facets=1, alpha=False):
        self.size, self.facets, self.alpha = size, facets, alpha
        self.rendered = []
        self.batches = 0
        self.interrupt_after_batches = interrupt_after_batches

    def __call__(self, units, execution=None):
        """facets > 1: that many rows per unit (facet f's seed key '<unit>#f'); alpha: an attribution map."""
        if self.interrupt_after_batches is not None and self.batches >= self.interrupt_after_batches:
            raise KeyboardInterrupt
        self.batches += 1
        self.rendered += [str(u) for u in units]
        rows = [u for u in units for _ in range(self.facets)]
        seeds = [zlib.crc32(f"{u}#{f}".encode() if f else str(u).encode()) for u in units for f in range(self.facets)]
        images = torch.stack([torch.full((3, self.size, self.size), 0.2 + 0.1 * (k % self.facets))  # flat: a grey
                              if u.index == 6 else
                              torch.rand(3, self.size, self.size, generator=torch.Generator().manual_seed(s))
                              for k, (u, s) in enumerate(zip(rows, seeds))])
        trajectory = torch.stack([torch.full((STEPS,), 0.5) if u.index == 3  # dead: never moves
                                  else torch.linspace(2.0, 0.5, STEPS) if u.index == 4  # stalled: fires, only falls
                                  else torch.linspace(0, 1 + u.index, STEPS) for u in rows])
        status = ["failed" if u.index == 5 else "dead" if u.index == 3 else "ok" for u in rows]  # as the engine says
        alpha = images.mean(1, keepdim=True) if self.alpha else None

        def to_uint8(images=images):
            return (images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()

        return SimpleNamespace(
            images=images, objective=trajectory[:, -1], trajectory=trajectory, seeds=seeds, status=status,
            reasons=["synthetic failure" if s == "failed" else "" for s in status], alpha=alpha, to_uint8=to_uint8,
            to_uint8_rgba=lambda: to_uint8(torch.cat([images, alpha], 1)))


def job(root, **changes):
    return AtlasJob(**{"root": Path(root), "model": "fake", "seed": 0, "settings": {"steps": STEPS},
                       "batch_size": 4, **changes})


def manifest(root):
    return read_records(Path(root, "manifest.jsonl"))


def test_atlas_writes_images_manifest_sheets_and_gallery(tmp_path):
    outcome = run_atlas(UNITS, FakeRenderer(), job(tmp_path))
    records = manifest(tmp_path)
    assert [r["unit"] for r in records] == [str(u) for u in UNITS]
    assert all(RECORD_FIELDS <= set(r) for r in records)
    ok = [r for r in records if r["status"] in ("ok", "dead")]  # dead units have an image
    assert len(ok) == len(UNITS) - 2 and outcome.failed == 2 and outcome.exit_code == 1
    for record in ok:
        with Image.open(tmp_path / record["file"]) as image:
            assert image.size == (SIZE, SIZE)
            assert (np.asarray(image).std() > 0) != record["flat"]
    assert {r["unit"] for r in records if r["dead"]} == {"conv1:3", "conv2:3"}
    assert {r["unit"] for r in records if r["stalled"]} == {"conv1:4", "conv2:4"}
    assert {r["unit"] for r in records if r["flat"]} == {"conv1:6"}
    links = gallery_links(tmp_path)
    assert links and all((tmp_path / link).is_file() for link in links)
    assert {"sheets/conv1.png", "sheets/conv2.png"} <= set(links)
    assert set(r["file"] for r in ok) <= set(links)
    data = read_gallery_data(tmp_path)
    assert data["units"]["unit"] == [str(u) for u in UNITS] and data["run"]["complete"]
    assert sum(data["units"]["dead"]) == 2 and data["run"]["failed"] == 2 and data["run"]["stalled"] == 2
    assert data["run"]["flat"] == 1
    assert [(layer["name"], layer["dead"], layer["stalled"], layer["flat"], layer["failed"])
            for layer in data["layers"]] == [("conv1", 1, 1, 1, 1), ("conv2", 1, 1, 0, 1)]


def test_rerun_renders_only_what_is_missing(tmp_path):
    run_atlas(UNITS, FakeRenderer(), job(tmp_path))
    before = {r["unit"]: r for r in manifest(tmp_path)}
    again = FakeRenderer()
    outcome = run_atlas(UNITS, again, job(tmp_path, batch_size=3))
    assert sorted(again.rendered) == ["conv1:5", "conv2:5"]  # only the failed units are retried
    after = manifest(tmp_path)
    assert len(after) == len(UNITS) and outcome.skipped == len(UNITS) - 2
    assert all(r == before[r["unit"]] for r in after if r["status"] == "ok")


def test_missing_image_is_rendered_again(tmp_path):
    run_atlas(UNITS, FakeRenderer(), job(tmp_path))
    (tmp_path / "images" / "conv2" / "1.png").unlink()
    again = FakeRenderer()
    run_atlas(UNITS, again, job(tmp_path))
    assert "conv2:1" in again.rendered and (tmp_path / "images" / "conv2" / "1.png").is_file()
    assert [r["unit"] for r in manifest(tmp_path)].count("conv2:1") == 1


def test_other_settings_are_refused_unless_forced(tmp_path):
    run_atlas(UNITS, FakeRenderer(), job(tmp_path))
    with pytest.raises(SettingsMismatchError, match=r"steps: 5 -> 6.*--force"):
        run_atlas(UNITS, FakeRenderer(), job(tmp_path, settings={"steps": 6}))
    with pytest.raises(SettingsMismatchError, match=r"seed: 0 -> 1"):
        run_atlas(UNITS, FakeRenderer(), job(tmp_path, seed=1))
    assert len(manifest(tmp_path)) == len(UNITS)  # the refused runs changed nothing
    forced = FakeRenderer()
    run_atlas(UNITS[:2], forced, job(tmp_path, settings={"steps": 6}, force=True))
    assert forced.rendered == ["conv1:0", "conv1:1"]
    assert [r["unit"] for r in manifest(tmp_path)] == ["conv1:0", "conv1:1"]
    assert not (tmp_path / "images" / "conv2").exists()
    assert json.loads((tmp_path / "run.json").read_text())["settings"] == {"steps": 6}


def test_shards_together_equal_a_single_run(tmp_path):
    run_atlas(UNITS, FakeRenderer(), job(tmp_path / "single"))
    first, second = FakeRenderer(), FakeRenderer()
    run_atlas(UNITS, first, job(tmp_path / "sharded", shard=Shard(0, 2)))
    run_atlas(UNITS, second, job(tmp_path / "sharded", shard=Shard(1, 2)))
    assert not set(first.rendered) & set(second.rendered)
    assert sorted(first.rendered + second.rendered) == sorted(str(u) for u in UNITS)
    strip = ("seconds", "shard")
    single = [{k: v for k, v in r.items() if k not in strip} for r in manifest(tmp_path / "single")]
    sharded = [{k: v for k, v in r.items() if k not in strip} for r in manifest(tmp_path / "sharded")]
    assert sharded == single
    for record in single:
        if record["file"]:
            assert (tmp_path / "single" / record["file"]).read_bytes() == (tmp_path / "sharded" / record["file"]).read_bytes()


@pytest.mark.parametrize("units, shard, message", [
    (UNITS[:-2], Shard(1, 2), "13 -> 11 units"),
    (UNITS, Shard(1, 3), "2 -> 3 shards"),
    (UNITS[::-1], Shard(1, 2), "another work list of as many units"),
])
def test_a_shard_of_another_work_list_or_count_is_refused(tmp_path, units, shard, message):
    """Shards of different command lines merged silently: some units were in no shard, yet the
    gallery said the run was complete."""
    run_atlas(UNITS, FakeRenderer(), job(tmp_path, shard=Shard(0, 2)))
    with pytest.raises(SettingsMismatchError, match=f"split into 2 shards of a list of 13 units; this --shard has {message}"):
        run_atlas(units, FakeRenderer(), job(tmp_path, shard=shard))
    run_atlas(UNITS, FakeRenderer(), job(tmp_path, shard=Shard(1, 2)))  # the same split goes on
    run_atlas(units, FakeRenderer(), job(tmp_path, shard=shard, force=True))


def _between_read_and_write(monkeypatch, first, second):
    """Run ``first``; when it is about to write run.json (after reading it), run ``second`` in a thread
    as another --shard process would: through to its end, or until it must wait for a lock ``first``
    holds. Deterministic: a LOCK_NB probe, not a timeout, tells that ``second`` would wait."""
    write, flock = audit_run_dir.write_text_atomic, fcntl.flock
    settled = threading.Event()  # ``second`` has finished, or waits for ``first``

    def run_second():
        try:
            second()
        finally:
            settled.set()

    worker = threading.Thread(target=run_second)

    def probing_flock(fd, operation):
        if threading.current_thread() is worker and operation == fcntl.LOCK_EX:
            try:
                return flock(fd, operation | fcntl.LOCK_NB)
            except BlockingIOError:
                settled.set()
        return flock(fd, operation)

    def write_after_second(path, text):
        if threading.current_thread() is not worker and worker.ident is None:  # first's write, once
            worker.start()
            assert settled.wait(10)
        write(path, text)

    monkeypatch.setattr(fcntl, "flock", probing_flock)
    monkeypatch.setattr(audit_run_dir, "write_text_atomic", write_after_second)
    first()
    worker.join(10)
    assert worker.ident is not None and not worker.is_alive()


@pytest.mark.parametrize("execution_first", [True, False])
def test_concurrent_shards_keep_both_their_run_json_records(tmp_path, monkeypatch, execution_first):
    """One --shard process recorded its execution (under .execution.lock only) while another's prepare
    added the shard split to run.json: the later write, made from an older read, dropped the other's record."""
    run, shards = RunDir(tmp_path), {"shards": shard_record(UNITS, 2)}
    run.prepare("fake", 0, {"steps": STEPS})  # an unsharded run before: the split is a new record
    dist = SimpleNamespace(is_main=True, broadcast=lambda value: value)

    def record_execution():
        settle_execution(run, dist, decide=lambda: {"precision": "fp32"})

    def prepare_shard():
        RunDir(tmp_path).prepare("fake", 0, {"steps": STEPS}, agreed=shards)

    if execution_first:
        _between_read_and_write(monkeypatch, record_execution, prepare_shard)
    else:
        _between_read_and_write(monkeypatch, prepare_shard, record_execution)
    info = run.read_run_info()
    assert (info.get("execution"), info.get("shards")) == ({"precision": "fp32"}, shards["shards"])


def test_shard_parsing_and_partition():
    assert Shard.parse("1/4") == Shard(1, 4)
    for bad in ("4/4", "1", "a/b", "-1/2", "0/0"):
        with pytest.raises(ValueError, match="--shard"):
            Shard.parse(bad)
    work = list(range(10))
    shards = [Shard(i, 3).select(work) for i in range(3)]
    assert sorted(sum(shards, [])) == work
    ranks = [Shard(1, 2).split(rank, 2) for rank in range(2)]
    assert ranks == [Shard(1, 4), Shard(3, 4)]
    assert sorted(sum((s.select(work) for s in ranks), [])) == Shard(1, 2).select(work)


def test_torn_manifest_line_is_skipped_and_cut_before_the_next_append(tmp_path):
    path = tmp_path / "part.jsonl"
    ManifestPart(path).append([{"unit": "a:0"}, {"unit": "a:1"}])
    with open(path, "a") as handle:
        handle.write('{"unit": "a:2", "sta')  # a kill in the middle of a write
    assert [r["unit"] for r in read_records(path)] == ["a:0", "a:1"]
    ManifestPart(path).append([{"unit": "a:3"}])
    assert [r["unit"] for r in read_records(path)] == ["a:0", "a:1", "a:3"]
    assert path.read_text().count("\n") == 3


def test_full_disk_stops_cleanly_and_a_rerun_completes(tmp_path, monkeypatch):
    real_save = audit_writer.save_png_atomic
    calls = []

    def save_until_disk_full(path, image, **kwargs):
        calls.append(path)
        if len(calls) > 4:  # the first batch (4 PNGs; 12 px images need no thumbnails) fits, the second does not
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real_save(path, image, **kwargs)

    monkeypatch.setattr(audit_writer, "save_png_atomic", save_until_disk_full)
    with pytest.raises(WriterError, match="No space left on device"):
        run_atlas(UNITS, FakeRenderer(), job(tmp_path))
    records = manifest(tmp_path)
    assert [r["unit"] for r in records] == ["conv1:0", "conv1:1", "conv1:2", "conv1:3"]
    assert not list(tmp_path.rglob(f"*{audit_files.PARTIAL_MARK}*"))
    monkeypatch.setattr(audit_writer, "save_png_atomic", real_save)
    again = FakeRenderer()
    run_atlas(UNITS, again, job(tmp_path))
    assert "conv1:0" not in again.rendered
    assert sorted(r["unit"] for r in manifest(tmp_path)) == sorted(str(u) for u in UNITS)


def test_interrupt_keeps_rendered_batches(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        run_atlas(UNITS, FakeRenderer(interrupt_after_batches=2), job(tmp_path))
    assert len(manifest(tmp_path)) == 8  # the two batches rendered before Ctrl-C are on disk
    again = FakeRenderer()
    run_atlas(UNITS, again, job(tmp_path))
    assert len(again.rendered) == len(UNITS) - 8 + 1  # the rest, plus the failed conv1:5 retried


def test_write_atomic_leaves_old_content_or_new_never_partial(tmp_path, monkeypatch):
    target = tmp_path / "a.png"
    audit_files.write_atomic(target, b"old")

    def failing_replace(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(audit_files.os, "replace", failing_replace)
    with pytest.raises(OSError):
        audit_files.write_atomic(target, b"new content")
    assert target.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [target]


def test_partials_of_a_killed_run_are_removed_on_prepare(tmp_path):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid, live_pid = int(finished.stdout), os.getppid()  # a process that is gone, one that is not
    folder = tmp_path / "images" / "conv1"
    folder.mkdir(parents=True)
    stale = folder / f".conv1_0.png{audit_files.PARTIAL_MARK}{dead_pid}"
    in_progress = folder / f".conv1_1.png{audit_files.PARTIAL_MARK}{live_pid}"  # another --shard writing
    for partial in (stale, in_progress):
        partial.write_bytes(b"\x89PNG half")
    RunDir(tmp_path).prepare("fake", 0, {"steps": 1})
    assert not stale.exists() and in_progress.exists()


def test_trajectory_stats_flags_units_that_never_rose():
    # never rose and does not respond: dead; never rose but moves and ends firing: stalled, not dead
    for values, dead, stalled in (([0.0, 0.0, 0.0], True, False), ([0.5, 0.5, 0.5], True, False),
                                  ([1.0, 0.5, 0.0], True, False), ([float("nan")], True, False),
                                  ([2.0, 1.5, 1.0], False, True), ([0.1, 0.5, 0.4], False, False)):
        stats = trajectory_stats(values)
        assert (stats["dead"], stats["stalled"]) == (dead, stalled), values
    rising = trajectory_stats([0.1, 0.5, 0.4])
    assert rising["rise"] == pytest.approx(0.4) and rising["max"] == 0.5


def test_a_picture_is_flat_when_every_channel_spans_at_most_two_levels():
    grey = np.full((2, 5, 4, 3), 100, np.uint8)
    grey[0, 0, 0] = (102, 98, 101)  # each channel within 2 levels: still one colour to the eye
    grey[1, 4, 3, 2] = 103          # blue spans 3 levels somewhere
    assert flat_pictures(grey) == [True, False]
    assert flat_pictures(np.zeros((1, 1, 1, 1), np.uint8)) == [True]  # a one-pixel grey image is one colour


def test_merge_orders_layers_as_given(tmp_path):
    part = ManifestPart(RunDir(tmp_path).part_path(0, 1))
    part.append([{"unit": "b:1", "layer": "b", "index": 1}, {"unit": "a:0", "layer": "a", "index": 0},
                 {"unit": "b:0", "layer": "b", "index": 0}])
    assert [r["unit"] for r in merge_parts(tmp_path, {"b": 0, "a": 1})] == ["b:0", "b:1", "a:0"]


def test_writer_overlaps_writing_with_the_caller(tmp_path, monkeypatch):
    real_write = audit_writer.write_batch

    def slow_write(*args):
        time.sleep(0.3)
        real_write(*args)

    monkeypatch.setattr(audit_writer, "write_batch", slow_write)
    writer = audit_writer.BatchWriter(tmp_path, tmp_path / "part.jsonl")
    image = np.zeros((4, 4, 3), np.uint8)
    started = time.perf_counter()
    writer.submit([[audit_writer.Picture("a0.png", image)]], [{"unit": "a:0", "file": "a0.png"}])
    writer.submit([[audit_writer.Picture("a1.png", image)]], [{"unit": "a:1", "file": "a1.png"}])
    assert time.perf_counter() - started < 0.3  # the caller went on while the thread wrote
    writer.close()
    assert [r["unit"] for r in read_records(tmp_path / "part.jsonl")] == ["a:0", "a:1"]
    assert (tmp_path / "a0.png").is_file() and (tmp_path / "a1.png").is_file()


# ---- names that never collide, thumbnails, sheets, strict JSON (issue 12) ----

HOSTILE_LAYERS = ["conv_α", "conv_β", "a<b", "a>b", "..", ".", "Conv", "conv", "x~2e", "~"]


def test_file_names_are_injective_and_stay_inside_the_run_for_any_layer_name(tmp_path):
    units = [Unit.channel(layer, c) for layer in HOSTILE_LAYERS for c in range(2)]
    run_atlas(units, FakeRenderer(size=128), job(tmp_path))
    records = manifest(tmp_path)
    files = [r["file"] for r in records] + [r["thumb"] for r in records]
    assert len(set(files)) == len(files) == 2 * len(units)  # no image shares a name, none is its thumbnail
    sheets = {RunDir(tmp_path).sheet_path(layer) for layer in HOSTILE_LAYERS}
    assert len(sheets) == len(HOSTILE_LAYERS) and all((tmp_path / s).is_file() for s in sheets)
    root = tmp_path.resolve()
    for name in files + sorted(sheets):
        parts = Path(name).parts
        assert "." not in parts and ".." not in parts and not any(p.startswith(".") for p in parts), name
        assert (tmp_path / name).resolve().is_relative_to(root)
    for record in records:  # the full image is still full size: no thumbnail overwrote it
        with Image.open(tmp_path / record["file"]) as image:
            assert image.size == (128, 128)


def test_stems_are_unique_ascii_and_readable_for_ordinary_names():
    from pyviz_fast.audit.names import stem
    stems = [stem(layer) for layer in HOSTILE_LAYERS]
    assert len(set(stems)) == len(stems) and len({s.lower() for s in stems}) == len(stems)
    assert stem("layer3.0.downsample") == "layer3.0.downsample"  # ordinary names stay readable
    assert all(c.isascii() and (c.isalnum() or c in "._-~") for s in stems for c in s)
    long = "x" * 300
    assert len(stem(long)) < 200 and stem(long) != stem(long + "y")


def test_gallery_is_refreshed_during_the_run(tmp_path):
    seen = []

    class Watching(FakeRenderer):
        def __call__(self, units, execution=None):
            if self.batches == 3:  # the writer refreshes after the first batch it wrote, then every 4 units
                deadline = time.monotonic() + 10
                while not (tmp_path / "gallery" / "data.js").is_file() and time.monotonic() < deadline:
                    time.sleep(0.01)
                seen.append(read_gallery_data(tmp_path))
            return super().__call__(units, execution)

    run_atlas(UNITS, Watching(), job(tmp_path, refresh_units=4))
    assert seen and not seen[0]["run"]["complete"] and 4 <= len(seen[0]["units"]["unit"]) < len(UNITS)
    assert read_gallery_data(tmp_path)["run"]["complete"]


def test_thumbnails_are_never_larger_than_their_originals(tmp_path):
    run_atlas(UNITS[:2], FakeRenderer(size=SIZE), job(tmp_path / "small"))
    assert all(r["thumb"] is None for r in manifest(tmp_path / "small"))  # shown from the PNG, scaled by CSS
    assert not (tmp_path / "small" / "thumbs").exists()
    run_atlas(UNITS[:2], FakeRenderer(size=200), job(tmp_path / "large"))
    for record in manifest(tmp_path / "large"):
        with Image.open(tmp_path / "large" / record["thumb"]) as thumb:
            assert max(thumb.size) == audit_writer.THUMB_SIZE < 200


def test_contact_sheets_are_rebuilt_only_when_their_units_change(tmp_path):
    run_atlas(UNITS, FakeRenderer(), job(tmp_path))
    sheets = {layer: tmp_path / RunDir(tmp_path).sheet_path(layer) for layer in ("conv1", "conv2")}
    stamps = {layer: path.stat().st_mtime_ns for layer, path in sheets.items()}
    time.sleep(0.01)
    run_atlas(UNITS, FakeRenderer(), job(tmp_path))  # retries the failed units: same records again
    assert {layer: path.stat().st_mtime_ns for layer, path in sheets.items()} == stamps
    run_atlas(UNITS + [Unit.channel("conv2", 6)], FakeRenderer(), job(tmp_path))
    assert sheets["conv1"].stat().st_mtime_ns == stamps["conv1"]
    assert sheets["conv2"].stat().st_mtime_ns != stamps["conv2"]


def test_dead_units_are_framed_on_contact_sheets(tmp_path):
    from pyviz_fast.audit.sheets import MARKS, montage
    gray = Image.new("RGB", (8, 8), (128, 128, 128))
    sheet = np.asarray(montage([gray, gray], ["0", "1"], tile=32, columns=2, marks=["dead", None]))
    assert tuple(sheet[2, 2]) == MARKS["dead"] and tuple(sheet[2, 2 + 34]) == (128, 128, 128)


def test_contact_sheets_frame_units_as_the_gallery_flags_them(tmp_path):
    from pyviz_fast.audit.sheets import GAP, LABEL_HEIGHT, MARKS
    run_atlas(UNITS, FakeRenderer(), job(tmp_path))
    pictured = [r["unit"] for r in manifest(tmp_path) if r["layer"] == "conv1" and r.get("file")]
    columns = math.ceil(math.sqrt(len(pictured)))
    with Image.open(tmp_path / RunDir(tmp_path).sheet_path("conv1")) as image:
        sheet = np.asarray(image.convert("RGB"))

    def corner(unit):  # the top-left pixel of the unit's tile (64 px tiles)
        k = pictured.index(unit)
        return tuple(sheet[GAP + k // columns * (64 + LABEL_HEIGHT + GAP), GAP + k % columns * (64 + GAP)])

    assert corner("conv1:6") == MARKS["flat"] and corner("conv1:3") == MARKS["dead"]
    assert corner("conv1:0") not in MARKS.values()


def test_run_json_and_manifest_are_strict_json_with_inf_settings(tmp_path):
    def no_constants(name):
        raise AssertionError(f"not JSON: {name}")

    settings = {"steps": STEPS, "clip": float("inf"), "lo": float("-inf")}
    run_atlas(UNITS[:3], FakeRenderer(), job(tmp_path, settings=settings))
    info = json.loads((tmp_path / "run.json").read_text(), parse_constant=no_constants)
    assert info["settings"]["clip"] == "inf" and info["settings"]["lo"] == "-inf"
    for line in (tmp_path / "manifest.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=no_constants)
    again = FakeRenderer()
    run_atlas(UNITS[:3], again, job(tmp_path, settings=settings))  # the same settings still resume
    assert again.rendered == []


# ---- dataset grounding wiring (a fake grounder; the real pass is in test_dataset_pass.py) ----

class FakeGrounder:
    """The grounder interface of audit.grounding with made-up numbers: unit 2 of a layer is dead on
    data, unit 1 has a low percentile, unit 4 a path warning."""
    spec, examples = "fake:6", 2

    def __init__(self, interrupt=False):
        self.key = {"dataset": self.spec, "examples": self.examples}
        self.dataset = list(range(6))
        self.interrupt, self.passes, self.resumed = interrupt, 0, []

    def adopt(self, execution):
        self.execution = execution

    def source(self, index):
        return f"img{index}.png"

    def label_name(self, label):
        return None if label < 0 else f"class{label}"

    def run_pass(self, units, resume=None, checkpoint=None, progress=None):
        self.resumed.append(resume)
        if self.interrupt:
            checkpoint({"done": 3})
            raise KeyboardInterrupt
        self.passes += 1
        return SimpleNamespace(
            top=[[{"index": 1, "activation": 2.0, "box": [0, 0, 4, 4]}, {"index": 3, "activation": 1.0, "box": None}]
                 for _ in units],
            bottom=[[{"index": 0, "activation": -1.0, "box": None}] for _ in units],
            stats=[{"mean": 0.5, "std": 0.1, "min": -1.0, "max": 2.0, "q50": 0.4, "q90": 1.5, "q99": 1.9, "count": 6}
                   for _ in units],
            dead_on_data=[u.index == 2 for u in units], examples=6, seconds=0.1)

    def signals(self, units, images, grounding, on_examples=None):
        assert images.shape == (len(units), 3, SIZE, SIZE)
        on_examples([0, 1, 3], [0, 1, -1], torch.rand(3, 3, 40, 40))
        return [{"visualization_activation": 1.0, "percentile": 30.0 if u.index == 1 else 99.0,
                 "path_similarity": [{"layer": "conv1", "top": 0.2, "random": 0.5}] if u.index == 4 else []}
                for u in units]


def test_grounding_reaches_the_manifest_and_the_gallery(tmp_path):
    grounder = FakeGrounder()
    run_atlas(UNITS, FakeRenderer(), job(tmp_path, grounder=grounder))
    records = {r["unit"]: r for r in manifest(tmp_path)}
    first = records["conv2:4"]["examples"][0]
    assert (first["source"], first["label"], first["activation"], first["box"]) == ("img1.png", "class1", 2.0, [0, 0, 4, 4])
    assert records["conv2:4"]["examples"][1]["label"] is None and records["conv1:1"]["percentile"] == 30.0
    assert records["conv1:2"]["dead_on_data"] and not records["conv1:0"]["dead_on_data"]
    assert records["conv1:5"]["percentile"] is None  # failed: no picture to place among the data
    with Image.open(tmp_path / first["crop"]) as crop:
        assert crop.size == (24, 24)  # a 4 px receptive field shown with context
    assert [link for link in gallery_links(tmp_path) if not (tmp_path / link).is_file()] == []
    data = read_gallery_data(tmp_path)
    assert data["run"]["dataset"]["spec"] == "fake:6" and sum(data["units"]["warn"]) == 2
    assert sum(data["units"]["data_dead"]) == 2 and data["layers"][0]["data_dead"] == 1
    again = FakeGrounder()
    run_atlas(UNITS, FakeRenderer(), job(tmp_path, grounder=again))
    assert again.passes == 0  # the finished pass is reused; the signals are recomputed


@pytest.mark.parametrize("change, message", [
    ({"spec": "fake:9"}, "grounded in dataset 'fake:6' with 2 examples per unit; this run asks for 'fake:9' with 2"),
    ({"examples": 1}, "grounded in dataset 'fake:6' with 2 examples per unit; this run asks for 'fake:6' with 1"),
])
def test_another_dataset_or_examples_is_refused(tmp_path, change, message):
    """Another --dataset or --examples on a rerun replaced every unit's grounding silently (and
    fewer examples left the old ones' crops behind)."""
    run_atlas(UNITS, FakeRenderer(), job(tmp_path, grounder=FakeGrounder()))
    other = FakeGrounder()
    for name, value in change.items():
        setattr(other, name, value)
    with pytest.raises(SettingsMismatchError, match=re.escape(message)):
        run_atlas(UNITS, FakeRenderer(), job(tmp_path, grounder=other))
    run_atlas(UNITS, FakeRenderer(), job(tmp_path))  # a rerun without a dataset replaces nothing
    run_atlas(UNITS, FakeRenderer(), job(tmp_path, grounder=other, force=True))
    assert (tmp_path / "examples").is_dir() and other.passes == 1


def test_a_run_without_a_grounding_record_is_grounded_by_a_rerun(tmp_path):
    """An atlas rendered without a dataset (or grounded before run.json recorded its dataset) takes
    one on a rerun, without rendering again; the dataset it took is then the run's."""
    run_atlas(UNITS, FakeRenderer(), job(tmp_path))
    again, grounder = FakeRenderer(), FakeGrounder()
    run_atlas(UNITS, again, job(tmp_path, grounder=grounder))
    assert sorted(again.rendered) == ["conv1:5", "conv2:5"] and grounder.passes == 1  # the failed units alone
    assert json.loads((tmp_path / "run.json").read_text())["grounding"] == {"dataset": "fake:6", "examples": 2}
    other = FakeGrounder()
    other.spec = "fake:9"
    with pytest.raises(SettingsMismatchError, match="grounded in dataset 'fake:6'"):
        run_atlas(UNITS, FakeRenderer(), job(tmp_path, grounder=other))


def test_an_interrupted_dataset_pass_resumes_from_its_checkpoint(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        run_atlas(UNITS, FakeRenderer(), job(tmp_path, grounder=FakeGrounder(interrupt=True)))
    assert read_gallery_data(tmp_path)["units"]["unit"] == [str(u) for u in UNITS]  # the gallery is there
    assert (tmp_path / "dataset" / "state.pt").is_file()
    resumed, renderer = FakeGrounder(), FakeRenderer()
    run_atlas(UNITS, renderer, job(tmp_path, grounder=resumed))
    assert resumed.resumed == [{"done": 3}] and resumed.passes == 1
    assert not (tmp_path / "dataset" / "state.pt").exists()
    other = FakeGrounder()
    other.key = {**other.key, "examples": 3}  # another pass: the old result is not reused
    run_atlas(UNITS, FakeRenderer(), job(tmp_path, grounder=other))
    assert other.resumed == [None] and other.passes == 1


# ---- a unit's facets and MaCo's RGBA variants (issue 13) ----

def pixels_of(path):
    with Image.open(path) as image:
        return image.mode, np.asarray(image)


def test_facets_and_rgba_variants_are_files_of_their_own(tmp_path):
    renderer = FakeRenderer(size=128, facets=3, alpha=True)
    run_atlas(UNITS, renderer, job(tmp_path, facets=3, batch_size=6))  # 6 images: 2 units of 3 facets a batch
    assert renderer.batches == 7
    records = {r["unit"]: r for r in manifest(tmp_path)}
    for unit, record in records.items():
        if record["status"] == "failed":
            assert record["file"] is None and "facets" not in record and record_images(record) == []
            continue
        facets = record["facets"]
        assert len(facets) == 3 and facets[0]["file"] == record["file"] and facets[0]["rgba"] == record["rgba"]
        assert len(set(record_images(record))) == 6  # 3 pictures and their 3 RGBA variants
        assert [f["seed"] for f in facets] == [zlib.crc32(k.encode()) for k in (unit, f"{unit}#1", f"{unit}#2")]
        for f in facets:
            mode, rgb = pixels_of(tmp_path / f["file"])
            rgba_mode, rgba = pixels_of(tmp_path / f["rgba"])
            assert (mode, rgba_mode) == ("RGB", "RGBA") and np.array_equal(rgba[..., :3], rgb)
            expected = np.round(rgb.astype(np.float64).mean(-1))  # the fake map: the mean of the channels
            assert np.abs(rgba[..., 3] - expected).max() <= 1
            with Image.open(tmp_path / f["thumb"]) as thumb:
                assert max(thumb.size) == 96
        assert len({pixels_of(tmp_path / f["file"])[1].tobytes() for f in facets}) == 3
    links = gallery_links(tmp_path)
    wanted = {path for r in records.values() for path in record_images(r)}
    assert wanted <= set(links) and all((tmp_path / link).is_file() for link in links)
    data = read_gallery_data(tmp_path)
    shown = dict(zip(data["units"]["unit"], data["units"]["facets"]))
    assert shown["conv1:0"] == [f["thumb"] for f in records["conv1:0"]["facets"]] and shown["conv1:5"] is None


def test_the_gallery_carries_seeds_past_2_to_the_53_exactly():
    """The page read seeds as JavaScript numbers: 3343425448318634897 showed as 3343425448318635000."""
    seed = 3343425448318634897
    record = {"unit": "conv1:0", "layer": "conv1", "seed": seed, "status": "ok", "file": "images/conv1/0.png"}
    summary, details = gallery_data([record], {"model": "m", "seed": seed, "settings": {}}, {})
    assert summary["run"]["seed"] == str(seed) and details["gallery/layers/conv1.js"][0]["seed"] == str(seed)


def test_class_names_reach_the_manifest_and_the_gallery(tmp_path):
    """An atlas of fc:rings recorded {'unit': 'fc:5', 'index': 5} and its cell said fc:5; render said 'rings'."""
    run_atlas(UNITS, FakeRenderer(), job(tmp_path, class_name=lambda u: f"class{u.index}" if u.layer == "conv2" else None))
    records = {r["unit"]: r for r in manifest(tmp_path)}
    assert records["conv2:4"]["class"] == "class4" and "class" not in records["conv1:4"]
    shown = dict(zip(*(read_gallery_data(tmp_path)["units"][k] for k in ("unit", "class"))))
    assert shown["conv2:1"] == "class1" and shown["conv1:1"] is None


def test_without_facets_the_gallery_data_has_no_facets_column(tmp_path):
    run_atlas(UNITS[:2], FakeRenderer(), job(tmp_path))
    assert "facets" not in read_gallery_data(tmp_path)["units"] and "class" not in read_gallery_data(tmp_path)["units"]
    assert all("facets" not in r and "rgba" not in r for r in manifest(tmp_path))


def test_a_record_never_precedes_its_variants_and_a_lost_variant_is_rendered_again(tmp_path, monkeypatch):
    real_save = audit_writer.save_png_atomic

    def failing_save(path, image, **kwargs):
        if str(path).endswith("~facet1~rgba.png") and "conv2" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(path, image, **kwargs)

    monkeypatch.setattr(audit_writer, "save_png_atomic", failing_save)
    with pytest.raises(WriterError):
        run_atlas(UNITS, FakeRenderer(facets=2, alpha=True), job(tmp_path, facets=2, batch_size=4))
    recorded = [r["unit"] for r in read_records(RunDir(tmp_path).part_path(0, 1))]
    # batches of 2 units: the one of conv1:6 and conv2:0, whose variant failed, has no record, nor any later
    assert recorded == [f"conv1:{c}" for c in range(6)]
    monkeypatch.setattr(audit_writer, "save_png_atomic", real_save)
    run_atlas(UNITS, FakeRenderer(facets=2, alpha=True), job(tmp_path, facets=2, batch_size=4))
    records = {r["unit"]: r for r in manifest(tmp_path)}
    assert all((tmp_path / path).is_file() for r in records.values() for path in record_images(r))
    (tmp_path / records["conv1:2"]["facets"][1]["rgba"]).unlink()
    again = FakeRenderer(facets=2, alpha=True)
    run_atlas(UNITS, again, job(tmp_path, facets=2, batch_size=4))
    assert sorted(again.rendered) == ["conv1:2", "conv1:5", "conv2:5"]  # the lost variant's unit, and the failed
    assert (tmp_path / records["conv1:2"]["facets"][1]["rgba"]).is_file()


def test_facet_and_variant_names_are_injective_for_any_layer_name(tmp_path):
    units = [Unit.channel(layer, c) for layer in HOSTILE_LAYERS for c in range(2)]
    run_atlas(units, FakeRenderer(size=128, facets=2, alpha=True), job(tmp_path, facets=2))
    records = manifest(tmp_path)
    files = [f[key] for r in records for f in r["facets"] for key in ("file", "thumb", "rgba")]
    assert len(set(files)) == len(files) == 6 * len(units)
    root = tmp_path.resolve()
    for name in files:
        assert not any(p.startswith(".") for p in Path(name).parts) and (tmp_path / name).resolve().is_relative_to(root)


def test_unit_file_suffixes_never_occur_in_a_stem():
    from pyviz_fast.audit.names import stem, unit_file
    tricky = ["conv", "conv~facet1", "conv~rgba", "conv\u00fa", "c~fa", "x" * 300, "Conv~rgba", "\U0001f600"]
    assert all("~fa" not in stem(t) and "~r" not in stem(t) for t in tricky)
    paths = [unit_file(layer, f"{layer}:{c}", facet=f, variant=v) for layer in tricky for c in (0, 1)
             for f in (0, 1, 12) for v in ("", "rgba")]
    assert len(set(paths)) == len(paths)
    with pytest.raises(ValueError, match="variant must be one of"):
        unit_file("conv", "conv:0", variant="alpha")


def test_a_renderer_that_returns_other_than_facets_rows_per_unit_is_named(tmp_path):
    with pytest.raises(ValueError, match="returned 12 images for 4 units of 2 facets each"):
        run_atlas(UNITS[:4], FakeRenderer(facets=3), job(tmp_path, facets=2, batch_size=8))
    with pytest.raises(ValueError, match="facets must be an int >= 1"):
        job(tmp_path, facets=0)
