"""End to end, as a user runs them: ``pyviz-fast atlas`` and ``render`` with ``--param maco`` (an
RGBA variant of every picture whose alpha channel is the attribution map) and ``--facets N`` (N
pictures per unit) on the shipped ShapesNet, in subprocesses."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import pyviz_fast as pvf
from pyviz_fast.audit import read_records
from pyviz_fast.audit.gallery import gallery_links, read_gallery_data
from pyviz_fast.audit.manifest import record_images

# fp32 and a contiguous layout fixed, so the test can render the same units in this process
FIXED = {"size": 32, "steps": 4, "precision": "fp32", "memory_format": "contiguous"}
FLAGS = ["--size", "32", "--steps", "4", "--precision", "fp32", "--memory-format", "contiguous", "--seed", "3", "-q"]
MACO = ["--param", "maco", "--maco-crops", "2"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def pyviz(*args):
    return subprocess.run([sys.executable, "-m", "pyviz_fast", *map(str, args)], capture_output=True, text=True,
                          timeout=600, env=ENV)


def pixels(path):
    with Image.open(path) as image:
        return image.mode, np.asarray(image)


def as_uint8(maps: torch.Tensor) -> np.ndarray:
    return (maps.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


@pytest.fixture(scope="module")
def maco_atlas(tmp_path_factory):
    root = tmp_path_factory.mktemp("maco") / "run"
    done = pyviz("atlas", "conv2:0-1", "fc:3", *MACO, *FLAGS, "--batch-size", "2", "--out", root)
    assert done.returncode == 0, done.stderr
    return root


def test_maco_atlas_writes_rgba_variants_whose_alpha_is_the_map(maco_atlas):
    records = read_records(maco_atlas / "manifest.jsonl")
    assert [r["unit"] for r in records] == ["conv2:0", "conv2:1", "fc:3"]
    res = pvf.render(pvf.zoo.shapesnet(), [r["unit"] for r in records], param="maco", maco_crops=2, seed=3, **FIXED)
    for row, record in enumerate(records):
        assert record["rgba"] == record["file"].replace(".png", "~rgba.png")
        mode, rgb = pixels(maco_atlas / record["file"])
        rgba_mode, rgba = pixels(maco_atlas / record["rgba"])
        assert (mode, rgba_mode, rgba.shape) == ("RGB", "RGBA", (32, 32, 4))
        assert np.array_equal(rgba[..., :3], rgb)  # the picture itself, with the map as its alpha
        expected = as_uint8(res.alpha[row, 0])
        assert np.abs(rgba[..., 3].astype(int) - expected).mean() <= 1.0, record["unit"]  # the same map
        assert rgba[..., 3].std() > 5  # a map, not a constant
    assert {r["rgba"] for r in records} <= set(gallery_links(maco_atlas))


def test_a_lost_rgba_variant_is_rendered_again_on_resume(maco_atlas):
    records = {r["unit"]: r for r in read_records(maco_atlas / "manifest.jsonl")}
    lost = maco_atlas / records["conv2:1"]["rgba"]
    kept = {unit: (maco_atlas / r["rgba"]).stat().st_mtime_ns for unit, r in records.items() if unit != "conv2:1"}
    lost.unlink()
    done = pyviz("atlas", "conv2:0-1", "fc:3", *MACO, *FLAGS, "--batch-size", "2", "--out", maco_atlas)
    assert done.returncode == 0, done.stderr
    assert lost.is_file() and pixels(lost)[0] == "RGBA"
    assert {unit: (maco_atlas / records[unit]["rgba"]).stat().st_mtime_ns for unit in kept} == kept  # only it


def test_facets_atlas_gives_three_pictures_per_unit_like_render(tmp_path):
    atlas, renders = tmp_path / "atlas", tmp_path / "renders"
    done = pyviz("atlas", "conv3:0-1", "--facets", "3", "--diversity", "0.5", *FLAGS, "--out", atlas)
    assert done.returncode == 0, done.stderr
    records = read_records(atlas / "manifest.jsonl")
    assert [r["unit"] for r in records] == ["conv3:0", "conv3:1"]
    assert sorted(p.name for p in (atlas / "images" / "conv3").iterdir()) == \
        ["0.png", "0~facet1.png", "0~facet2.png", "1.png", "1~facet1.png", "1~facet2.png"]
    for record in records:
        assert len(record["facets"]) == 3 and record_images(record) == [f["file"] for f in record["facets"]]
        images = [pixels(atlas / f["file"])[1].astype(np.float32) for f in record["facets"]]
        assert all(image.shape == (32, 32, 3) for image in images)
        assert min(np.abs(a - b).mean() for k, a in enumerate(images) for b in images[k + 1:]) > 2  # distinct
    data = read_gallery_data(atlas)
    assert [len(f) for f in data["units"]["facets"]] == [3, 3]
    assert all((atlas / link).is_file() for link in gallery_links(atlas))

    done = pyviz("render", "conv3:0-1", "--facets", "3", "--diversity", "0.5", *FLAGS, "--out", renders)
    assert done.returncode == 0, done.stderr
    rendered = read_records(renders / "render.jsonl")
    assert [r["unit"] for r in rendered] == ["conv3:0"] * 3 + ["conv3:1"] * 3
    for record in records:  # render names its files as the atlas does, and makes the same pictures
        for facet in record["facets"]:
            name = facet["file"].removeprefix("images/")
            assert name in {r["file"] for r in rendered}
            difference = np.abs(pixels(renders / name)[1].astype(np.float32)
                                - pixels(atlas / facet["file"])[1].astype(np.float32)).mean()
            assert difference <= 2.0, (name, difference)


def test_render_maco_facets_rgba_alpha_is_the_map(tmp_path):
    done = pyviz("render", "fc:1", *MACO, "--facets", "2", *FLAGS, "--out", tmp_path)
    assert done.returncode == 0, done.stderr
    records = read_records(tmp_path / "render.jsonl")
    assert [(r["file"], r["rgba"]) for r in records] == [("fc/1.png", "fc/1~rgba.png"),
                                                         ("fc/1~facet1.png", "fc/1~facet1~rgba.png")]
    res = pvf.render(pvf.zoo.shapesnet(), "fc:1", param="maco", maco_crops=2, facets=2, seed=3, **FIXED)
    for row, record in enumerate(records):
        _, rgb = pixels(tmp_path / record["file"])
        mode, rgba = pixels(tmp_path / record["rgba"])
        assert mode == "RGBA" and np.array_equal(rgba[..., :3], rgb)
        assert np.abs(rgba[..., 3].astype(int) - as_uint8(res.alpha[row, 0])).mean() <= 1.0
