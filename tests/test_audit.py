"""The audit machinery (run directory, manifest, resume, shards, writer, gallery) with a fake renderer.

The fake renderer makes each unit's image and objective a function of the unit alone, so runs
split in any way must agree exactly; unit 3 of every layer is dead (flat trajectory) and unit 5
fails, to exercise the flags.
"""
import errno
import json
import os
import subprocess
import sys
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
from pyviz_fast.audit import writer as audit_writer
from pyviz_fast.audit.atlas import trajectory_stats
from pyviz_fast.audit.gallery import gallery_links
from pyviz_fast.audit.manifest import ManifestPart, merge_parts
from pyviz_fast.engine.units import Unit

SIZE, STEPS = 12, 5
UNITS = [Unit.channel("conv1", c) for c in range(7)] + [Unit.channel("conv2", c) for c in range(6)]
RECORD_FIELDS = {"model", "layer", "unit", "objective", "seed", "settings_hash", "value", "activation", "status",
                 "file", "seconds", "backend", "device", "dead"}


class FakeRenderer:
    """render_batch(units, execution) -> a RenderResult-like object; counts the units it rendered."""

    def __init__(self, interrupt_after_batches=None):
        self.rendered = []
        self.batches = 0
        self.interrupt_after_batches = interrupt_after_batches

    def __call__(self, units, execution=None):
        if self.interrupt_after_batches is not None and self.batches >= self.interrupt_after_batches:
            raise KeyboardInterrupt
        self.batches += 1
        self.rendered += [str(u) for u in units]
        seeds = [zlib.crc32(str(u).encode()) for u in units]
        images = torch.stack([torch.rand(3, SIZE, SIZE, generator=torch.Generator().manual_seed(s)) for s in seeds])
        trajectory = torch.stack([torch.full((STEPS,), 0.5) if u.index == 3 else torch.linspace(0, 1 + u.index, STEPS)
                                  for u in units])
        status = ["failed" if u.index == 5 else "ok" for u in units]
        return SimpleNamespace(
            images=images, objective=trajectory[:, -1], trajectory=trajectory, seeds=seeds, status=status,
            reasons=["synthetic failure" if s == "failed" else "" for s in status],
            to_uint8=lambda: (images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy())


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
    ok = [r for r in records if r["status"] == "ok"]
    assert len(ok) == len(UNITS) - 2 and outcome.failed == 2 and outcome.exit_code == 1
    for record in ok:
        with Image.open(tmp_path / record["file"]) as image:
            assert image.size == (SIZE, SIZE)
            assert np.asarray(image).std() > 0
    assert {r["unit"] for r in records if r["dead"]} == {"conv1:3", "conv2:3"}
    links = gallery_links(tmp_path)
    assert links and all((tmp_path / link).is_file() for link in links)
    assert {"sheets/conv1.png", "sheets/conv2.png"} <= set(links)
    assert set(r["file"] for r in ok) <= set(links)
    html = Path(tmp_path, "index.html").read_text()
    assert html.count('class="dead"') == 2 and html.count('class="failed"') == 2


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
    (tmp_path / "images" / "conv2" / "conv2_1.png").unlink()
    again = FakeRenderer()
    run_atlas(UNITS, again, job(tmp_path))
    assert "conv2:1" in again.rendered and (tmp_path / "images" / "conv2" / "conv2_1.png").is_file()
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
        if len(calls) > 9:  # the first batch (4 PNGs + 4 thumbnails) fits, the second does not
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
    assert trajectory_stats([0.0, 0.0, 0.0])["dead"]
    assert trajectory_stats([2.0, 1.5, 1.0])["dead"]
    rising = trajectory_stats([0.1, 0.5, 0.4])
    assert not rising["dead"] and rising["rise"] == pytest.approx(0.4) and rising["max"] == 0.5
    assert trajectory_stats([float("nan")])["dead"]


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
    images = np.zeros((1, 4, 4, 3), np.uint8)
    started = time.perf_counter()
    writer.submit(images, [{"unit": "a:0", "file": "a0.png"}])
    writer.submit(images, [{"unit": "a:1", "file": "a1.png"}])
    assert time.perf_counter() - started < 0.3  # the caller went on while the thread wrote
    writer.close()
    assert [r["unit"] for r in read_records(tmp_path / "part.jsonl")] == ["a:0", "a:1"]
    assert (tmp_path / "a0.png").is_file() and (tmp_path / "a1.png").is_file()
