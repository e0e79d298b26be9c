"""End to end: the real ``python -m pyviz_fast atlas`` on the shipped model at small sizes —
files, resume, settings mismatch, SIGKILL and Ctrl-C mid-run, --shard, torchrun."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pyviz_fast.audit import read_records
from pyviz_fast.audit.files import PARTIAL_MARK
from pyviz_fast.audit.gallery import gallery_links, read_gallery_data

SMALL = ["--size", "40", "--steps", "6", "--batch-size", "4", "--seed", "3", "-q"]
UNITS = ["conv1:0-5", "conv2:0-3"]
UNIT_NAMES = [f"conv1:{c}" for c in range(6)] + [f"conv2:{c}" for c in range(4)]
FIELDS = {"model", "layer", "unit", "objective", "seed", "settings_hash", "value", "activation", "status", "file",
          "seconds", "backend", "device", "dead", "stalled"}
# A run long enough to be interrupted: 96 units in batches of 2 (a rerun may batch differently).
LONG = ["conv4", "--size", "32", "--steps", "6", "--batch-size", "2", "--seed", "3"]
LONG_UNITS = [f"conv4:{c}" for c in range(96)]
# One thread per process: tiny renders on a shared 2-core machine are many times faster so.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def pyviz(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "pyviz_fast", *args], capture_output=True, text=True,
                          timeout=timeout, env=ENV)


def manifest(root):
    return read_records(Path(root, "manifest.jsonl"))


def part_records(root):
    return [r for path in sorted(Path(root, "parts").glob("*.jsonl")) for r in read_records(path)]


def pixels(path):
    with Image.open(path) as image:
        image.load()
        return np.asarray(image, dtype=np.float32)


def assert_complete_run(root, units, size=40):
    """Every unit exactly once, every PNG whole and decodable, no partial files, gallery links resolve."""
    records = manifest(root)
    assert sorted(r["unit"] for r in records) == sorted(units)
    for record in records:
        assert FIELDS <= set(record), record
        if record["file"]:
            assert pixels(Path(root, record["file"])).shape[:2] == (size, size)
    assert not [p for p in Path(root).rglob("*") if PARTIAL_MARK in p.name]
    for png in Path(root).rglob("*.png"):
        pixels(png)  # raises on a truncated file
    links = gallery_links(root)
    assert links and all(Path(root, link).is_file() for link in links)
    assert {r["file"] for r in records if r["file"]} <= set(links)


def assert_same_run(root, other, tolerance=2.0):
    """Same units, settings, seeds and images (mean |pixel difference| <= tolerance levels of 255)."""
    mine, theirs = manifest(root), {r["unit"]: r for r in manifest(other)}
    assert [r["unit"] for r in mine] == [r["unit"] for r in manifest(other)]
    for record in mine:
        twin = theirs[record["unit"]]
        assert (record["seed"], record["settings_hash"], record["status"], record["file"]) == \
               (twin["seed"], twin["settings_hash"], twin["status"], twin["file"])
        difference = np.abs(pixels(Path(root, record["file"])) - pixels(Path(other, twin["file"]))).mean()
        assert difference <= tolerance, (record["unit"], difference)


@pytest.fixture(scope="module")
def single_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("atlas") / "single"
    done = pyviz("atlas", *UNITS, "--out", str(root), *SMALL)
    assert done.returncode == 0, done.stderr
    return root


def test_atlas_writes_pngs_manifest_sheets_and_gallery(single_run):
    assert_complete_run(single_run, UNIT_NAMES)
    records = manifest(single_run)
    assert {r["model"] for r in records} == {"shapesnet"} and {r["status"] for r in records} == {"ok"}
    assert len({r["settings_hash"] for r in records}) == 1
    assert len({r["seed"] for r in records}) == len(records)  # per-unit seeds
    assert all(isinstance(r["value"], float) and r["activation"]["max"] is not None for r in records)
    assert Path(single_run, "sheets", "conv1.png").is_file() and Path(single_run, "sheets", "conv2.png").is_file()
    run_info = json.loads(Path(single_run, "run.json").read_text())
    assert run_info["settings"]["steps"] == 6 and run_info["seed"] == 3


def test_rerun_renders_nothing_new(single_run):
    before = {p: p.stat().st_mtime_ns for p in Path(single_run, "images").rglob("*.png")}
    again = pyviz("atlas", *UNITS, "--out", str(single_run), *SMALL[:-1])
    assert again.returncode == 0, again.stderr
    assert "0 rendered now, 10 already done" in again.stdout
    assert {p: p.stat().st_mtime_ns for p in Path(single_run, "images").rglob("*.png")} == before
    assert len(manifest(single_run)) == 10


def test_other_settings_in_the_run_directory_are_an_error(single_run):
    before = Path(single_run, "manifest.jsonl").read_bytes()
    refused = pyviz("atlas", *UNITS, "--out", str(single_run), *SMALL, "--steps", "7")
    assert refused.returncode == 2
    assert "different settings (steps: 6 -> 7)" in refused.stderr and "--force" in refused.stderr
    assert len([line for line in refused.stderr.splitlines() if "warning" not in line]) == 1
    # batch_invariant is hashed only when set: run directories made before it existed resume
    invariant = pyviz("atlas", *UNITS, "--out", str(single_run), *SMALL, "--batch-invariant")
    assert invariant.returncode == 2 and "batch_invariant" in invariant.stderr
    assert Path(single_run, "manifest.jsonl").read_bytes() == before


def test_shards_by_hand_equal_a_single_run(single_run, tmp_path):
    for shard in ("0/2", "1/2"):
        done = pyviz("atlas", *UNITS, "--out", str(tmp_path), *SMALL, "--shard", shard)
        assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in Path(tmp_path, "parts").iterdir()) == ["shard-000-of-002.jsonl",
                                                                         "shard-001-of-002.jsonl"]
    assert_complete_run(tmp_path, UNIT_NAMES)
    assert_same_run(tmp_path, single_run)


def test_torchrun_two_cpu_ranks_equal_a_single_run(single_run, tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "pyviz_fast", "atlas", *UNITS, "--out", str(tmp_path), *SMALL[:-1]]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=ENV)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("atlas: 10 units (10 rendered now, 0 already done)") == 1  # rank 0 sums up
    ranks = {r["shard"] for r in part_records(tmp_path)}
    assert ranks == {"0/2", "1/2"}  # both ranks rendered, into their own parts
    recorded = json.loads(Path(tmp_path, "run.json").read_text())["execution"]  # rank 0 decided for both
    label = f"{recorded['precision']}/{recorded['memory_format']}"
    assert {r["execution"] for r in part_records(tmp_path)} == {label}
    assert_complete_run(tmp_path, UNIT_NAMES)
    assert_same_run(tmp_path, single_run)


def _start_and_wait_for_records(root, minimum=4):
    process = subprocess.Popen([sys.executable, "-m", "pyviz_fast", "atlas", *LONG, "--out", str(root)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.monotonic() + 120
    while len(part_records(root)) < minimum:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the atlas wrote no records in time"
        time.sleep(0.01)
    return process


def test_sigkill_mid_run_then_rerun_completes_without_redoing_or_losing(tmp_path):
    process = _start_and_wait_for_records(tmp_path)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    watched = read_gallery_data(tmp_path)  # refreshed during the run: a killed run has a gallery
    assert not watched["run"]["complete"] and len(watched["units"]["unit"]) >= 2
    saved = {r["unit"]: r for r in part_records(tmp_path)}
    assert 4 <= len(saved) < len(LONG_UNITS), "the kill must land mid-run"
    stamps = {unit: Path(tmp_path, r["file"]).stat().st_mtime_ns for unit, r in saved.items()}
    for record in saved.values():
        pixels(Path(tmp_path, record["file"]))  # whatever has a record is whole
    again = pyviz("atlas", *LONG, "--out", str(tmp_path), "--batch-size", "32")
    assert again.returncode == 0, again.stderr
    assert f"{len(LONG_UNITS) - len(saved)} rendered now, {len(saved)} already done" in again.stdout
    assert_complete_run(tmp_path, LONG_UNITS, size=32)
    final = {r["unit"]: r for r in manifest(tmp_path)}
    assert all(final[unit] == record for unit, record in saved.items())
    assert all(Path(tmp_path, saved[u]["file"]).stat().st_mtime_ns == stamp for u, stamp in stamps.items())


def test_ctrl_c_stops_with_a_message_and_keeps_what_was_rendered(tmp_path):
    process = _start_and_wait_for_records(tmp_path)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130
    assert "interrupted" in stderr and "resume" in stderr
    saved = part_records(tmp_path)
    assert 4 <= len(saved) < len(LONG_UNITS)
    assert [r["unit"] for r in manifest(tmp_path)] == sorted((r["unit"] for r in saved),
                                                             key=lambda u: int(u.split(":")[1]))
    for record in saved:
        pixels(Path(tmp_path, record["file"]))


def test_sigterm_is_handled_like_ctrl_c(tmp_path):
    process = _start_and_wait_for_records(tmp_path)
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=120)
    assert process.returncode == 130
    assert len(manifest(tmp_path)) == len(part_records(tmp_path)) >= 4


ODD_MODEL = '''
from collections import OrderedDict
from torch import nn


def make():
    return nn.Sequential(OrderedDict([
        ("stem<α>", nn.Conv2d(3, 3, 3, padding=1)),
        ("conv-2", nn.Sequential(nn.ReLU(), nn.Conv2d(3, 2, 3, padding=1))),
        ("pool", nn.AdaptiveAvgPool2d(1)), ("flat", nn.Flatten())]))
'''


def test_every_layer_that_layers_atlas_lists_can_be_rendered_by_atlas(tmp_path):
    (tmp_path / "oddnet.py").write_text(ODD_MODEL)
    env = {**ENV, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), ENV.get("PYTHONPATH")]))}

    def run(*args):
        return subprocess.run([sys.executable, "-m", "pyviz_fast", *args, "--model", "oddnet:make"],
                              capture_output=True, text=True, timeout=300, env=env)

    listed = run("layers", "--atlas", "--size", "32")
    assert listed.returncode == 0, listed.stderr
    names = [line.split()[0] for line in listed.stdout.splitlines()[1:]]
    assert names == ["stem<α>", "conv-2"]
    common = ["--out", str(tmp_path / "run"), "--size", "32", "--steps", "2", "-q"]
    by_default = run("atlas", *common)
    assert by_default.returncode == 0, by_default.stderr
    by_name = run("atlas", *names, *common)  # the same layers named on the command line
    assert by_name.returncode == 0, by_name.stderr
    records = manifest(tmp_path / "run")
    assert sorted(r["unit"] for r in records) == ["conv-2:0", "conv-2:1", "stem<α>:0", "stem<α>:1", "stem<α>:2"]
    assert all(Path(tmp_path, "run", r["file"]).is_file() for r in records)


def test_dataset_grounding_on_shapesnet_top_examples_are_of_each_class_unit_s_class(tmp_path, browser):
    from pyviz_fast.zoo import SHAPES_CLASSES
    done = pyviz("atlas", "conv2:0-1", "fc", "--out", str(tmp_path), "--size", "64", "--steps", "4",
                 "--dataset", "shapes:2000", "--examples", "3", "--workers", "1", "-q", timeout=900)
    assert done.returncode == 0, done.stderr
    records = {r["unit"]: r for r in manifest(tmp_path)}
    for k, name in enumerate(SHAPES_CLASSES):
        assert [e["label"] for e in records[f"fc:{k}"]["examples"]] == [name] * 3, k
    for record in records.values():
        assert 0 <= record["percentile"] <= 100 and record["stats"]["count"] == 2000
        assert isinstance(record["dead_on_data"], bool) and len(record["bottom"]) == 3
    assert [p["layer"] for p in records["fc:0"]["path_similarity"]] == ["conv2"]
    assert [link for link in gallery_links(tmp_path) if not Path(tmp_path, link).is_file()] == []
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto((tmp_path / "index.html").as_uri() + "#unit=fc%3A7")
    page.wait_for_selector("#detail .examples img")
    assert "red" in page.inner_text("#detail .examples")


def test_a_unit_the_layer_lacks_fails_before_the_run_directory_holds_its_settings(tmp_path):
    """The failed run's run.json refused the corrected command ('holds a run made with different settings')."""
    done = pyviz("atlas", "conv2:3@neuron(99,99)", "--out", str(tmp_path), *SMALL)
    assert done.returncode == 2 and "neuron position (99, 99) is outside the grid (20, 20)" in done.stderr
    assert not (tmp_path / "run.json").exists()
    done = pyviz("atlas", "conv2:3@neuron(5,5)", "--out", str(tmp_path), *SMALL, "--size", "48")
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("flags, message", [
    (["--dataset", "shapes:0"], "--dataset 'shapes:0': dataset spec 'shapes:0': shapes:N needs a positive count"),
    (["--dataset", "no_such_module:make"], "cannot import module 'no_such_module'"),
    (["--dataset", "shapes:10", "--examples", "-3"], "--examples must be >= 1, got -3"),
    (["--dataset", "shapes:10", "--workers", "-1"], "--workers must be >= 0, got -1"),
])
def test_bad_dataset_flags_are_one_line_errors(tmp_path, flags, message):
    done = pyviz("atlas", "conv1:0", "--out", str(tmp_path), *SMALL, *flags)
    assert done.returncode == 2 and message in done.stderr
    assert [line for line in done.stderr.splitlines() if line.strip()] == [done.stderr.strip()]
    assert not (tmp_path / "images").exists()  # nothing rendered before the bad flag was caught
