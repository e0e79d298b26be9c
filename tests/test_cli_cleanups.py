"""One rule where two places had their own: render's file names (the atlas's injective ones), a
photo's --size (dream, accentuate, style), whole layers expanded to channels (CLI and engine),
--layout on every command that counts channels, and --size given two words."""
import numpy as np
import pytest
from PIL import Image

from pyviz_fast.audit import read_records
from pyviz_fast.cli import main
from pyviz_fast.cli.layers import model_layers
from pyviz_fast.cli.units import expand_units
from pyviz_fast.engine.units import expand_whole_layers, parse_units
from pyviz_fast.zoo import shapesnet

TINY = ["--steps", "1", "-q"]


def image(path):
    with Image.open(path) as opened:
        return np.asarray(opened)


def test_render_never_gives_two_units_one_file(tmp_path):
    # 'conv3:1' and '-conv3:1' were both conv3_1.png: the second overwrote the first
    assert main(["render", "conv3:1", "-1*conv3:1", "conv3:1@neuron", "--size", "32", "--out", str(tmp_path), *TINY]) == 0
    records = read_records(tmp_path / "render.jsonl")
    files = [r["file"] for r in records]
    assert [r["unit"] for r in records] == ["conv3:1", "-conv3:1", "conv3:1@neuron"]
    assert len(set(files)) == 3 and all((tmp_path / f).is_file() for f in files)
    maximized, minimized = image(tmp_path / files[0]), image(tmp_path / files[1])
    assert np.abs(maximized.astype(int) - minimized.astype(int)).mean() > 1  # two renders, both kept


PHOTO_COMMANDS = {"dream": [], "accentuate": ["--unit", "fc:3"],
                  "style": ["--style-layers", "conv1", "--content-layer", "conv2"]}


@pytest.mark.parametrize("command", sorted(PHOTO_COMMANDS))
def test_a_photo_keeps_its_aspect_ratio_under_size_n_in_every_command(tmp_path, command):
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 45, 3), dtype=np.uint8)).save(photo)
    out = tmp_path / "out.png"
    photos = [str(photo)] * (2 if command == "style" else 1)  # style: content and one style
    for size, shape in (("32", (32, 48)), ("32x40", (32, 40))):  # N: the shorter side, as dream always did
        assert main([command, *photos, *PHOTO_COMMANDS[command], "--size", size, "--out", str(out), *TINY]) == 0
        assert image(out).shape[:2] == shape, size


def test_whole_layers_expand_by_one_rule_in_the_cli_and_the_engine():
    model = shapesnet()
    infos = model_layers(model, 32)
    from_cli = [str(u) for u in expand_units(["conv2", "fc:1"], model, infos)]
    from_engine = [str(u) for u in expand_whole_layers(parse_units(["conv2", "fc:1"]), {i.name: i for i in infos})]
    assert from_cli == from_engine == [f"conv2:{c}" for c in range(32)] + ["fc:1"]
    with pytest.raises(ValueError, match="layer 'conv2' has no channels to expand.*conv2:0"):
        expand_whole_layers(parse_units("conv2"), {"conv2": None})


def test_layers_takes_layout_as_render_and_atlas_do(tmp_path, capsys):
    assert main(["layers", "--size", "32", "--layout", "conv3=nhwc"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:]}
    assert rows["conv3"][-1] == "8" and rows["conv4"][-1] == "96"  # conv3's [64, 8, 8] read as H, W, C
    assert main(["render", "conv3", "--layout", "conv3=nhwc", "--size", "32", "--out", str(tmp_path), *TINY]) == 0
    assert len(read_records(tmp_path / "render.jsonl")) == 8  # the whole layer under the same override
    assert main(["layers", "--layout", "conv3=sideways"]) == 2
    assert "layout of layer 'conv3' must be one of nchw, nhwc, tokens, vector" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["layers", "--size", "32", "40"], ["render", "conv3:0", "--size", "32", "40"],
                                  ["render", "--size=32", "40", "conv3:0"], ["atlas", "--size", "32", "40"],
                                  ["dream", "photo.png", "--size", "32", "40"]])
def test_size_given_as_two_words_is_a_clear_error(argv, capsys, tmp_path):
    assert main([*argv, "--out", str(tmp_path / "o")] if argv[0] != "layers" else argv) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "Traceback" not in error
    assert "--size takes one value: N, HxW or H,W" in error and "--size 32x40" in error and "'--size 32 40'" in error
    assert not (tmp_path / "o").exists()
