"""The other commands and the error cases, through ``pyviz_fast.cli.main`` on the shipped model
(in-process: the same code as the console script, without a new interpreter per case)."""
import argparse
import dataclasses
import errno
import io
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence

from pyviz_fast.audit import read_records
from pyviz_fast.audit import writer as audit_writer
from pyviz_fast.cli import main
from pyviz_fast.cli.settings_flags import add_settings_flags, settings_from_args
from pyviz_fast.engine.settings import Settings

SMALL = ["--size", "40", "--steps", "4", "-q"]
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """A 48x56 RGB test image: stripes on a color ramp."""
    array = np.zeros((48, 56, 3), np.uint8)
    array[::6] = 255
    array[:, :, 1] = np.arange(56)[None] * 4
    path = tmp_path_factory.mktemp("inputs") / "stripes.png"
    Image.fromarray(array).save(path)
    return path


def decoded(path):
    with Image.open(path) as image:
        image.load()
        return image


def one_line_error(capsys, *fragments):
    lines = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("pyviz-fast: warning:")]
    assert len(lines) == 1 and lines[0].startswith("pyviz-fast"), lines  # no traceback, no usage dump
    err = lines[0]
    for fragment in fragments:
        assert fragment in err, err
    return err


def test_console_script_and_module_entry_point_show_help():
    done = subprocess.run([sys.executable, "-m", "pyviz_fast", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0
    for command in ("layers", "render", "atlas", "dream", "saliency", "filters", "bench", "examples:"):
        assert command in done.stdout


@pytest.mark.parametrize("command", ["layers", "render", "atlas", "dream", "saliency", "filters", "bench"])
def test_every_command_has_help_with_examples(command, capsys):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "--model" in out and "--device" in out and "--backend" in out


def test_layers_lists_shapes_and_channels(capsys):
    assert main(["layers", "--size", "64"]) == 0
    lines = capsys.readouterr().out.splitlines()
    table = {line.split()[0]: line.split() for line in lines[1:]}
    assert table["conv1"][-1] == "16" and table["conv4"][-1] == "96" and table["fc"][-1] == "10"
    assert "[32, 32, 32]" in " ".join(table["conv2"])  # 64 px input, pooled once
    assert main(["layers", "--atlas"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]] == ["conv1", "conv2", "conv3", "conv4"]


class TinyViT(torch.nn.Module):
    """A conv patch stem and two transformer blocks: tokens [B, N, D]."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 4, stride=4)
        layer = torch.nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)
        self.blocks = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)

    def forward(self, x):
        return self.blocks(self.stem(x).flatten(2).transpose(1, 2)).mean(1)


def test_default_atlas_layers_are_conv_blocks_and_transformer_blocks():
    import pyviz_fast as pvf
    from pyviz_fast.engine.blocks import default_atlas_layers

    model = TinyViT().eval()
    infos = pvf.layers(model, input_size=(3, 32, 32))
    assert default_atlas_layers(model, infos) == ["stem", "blocks.layers.0", "blocks.layers.1"]


def test_render_writes_one_png_per_unit(tmp_path, capsys):
    assert main(["render", "conv3:0-1", "fc:2", "--out", str(tmp_path), *SMALL]) == 0
    names = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert names == ["conv3/0.png", "conv3/1.png", "fc/2.png", "render.json", "render.jsonl"]  # as in an atlas
    images = [np.asarray(decoded(tmp_path / n)) for n in names if n.endswith(".png")]
    assert all(image.shape == (40, 40, 3) for image in images)
    assert np.abs(images[0].astype(int) - images[1].astype(int)).mean() > 1  # different units, different images


def gif_frames(path):
    with Image.open(path) as gif:
        return [np.asarray(frame.convert("RGB"), dtype=np.float32) for frame in ImageSequence.Iterator(gif)]


def as_gif_frame(path):
    """The PNG at ``path`` through a one-frame GIF's palette, as the GIF's last frame should look."""
    buffer = io.BytesIO()
    decoded(path).save(buffer, format="GIF")
    return np.asarray(Image.open(buffer).convert("RGB"), dtype=np.float32)


def test_render_gif_records_the_same_render(tmp_path):
    plain, with_gif = tmp_path / "plain", tmp_path / "gif"
    flags = [*SMALL, "--steps", "6", "--batch-size", "1"]
    assert main(["render", "fc:1", "conv3:2", "--out", str(plain), *flags]) == 0
    assert main(["render", "fc:1", "conv3:2", "--gif", "--frames", "3", "--out", str(with_gif), *flags]) == 0
    for name in ["fc/1", "conv3/2"]:
        png = np.asarray(decoded(with_gif / f"{name}.png"), dtype=np.float32)
        assert np.array_equal(png, np.asarray(decoded(plain / f"{name}.png"), dtype=np.float32))
        frames = gif_frames(with_gif / f"{name}.gif")
        assert len(frames) == 3  # after steps 2, 4 and 6
        assert np.array_equal(frames[-1], as_gif_frame(with_gif / f"{name}.png"))  # the PNG, in GIF colors
        assert np.abs(frames[0] - png).mean() > 2 * np.abs(frames[-1] - png).mean()  # the image progresses


def test_dream_changes_the_photo(tmp_path, photo, capsys):
    out = tmp_path / "dream.png"
    assert main(["dream", str(photo), "--layer", "conv2", "--out", str(out), "--steps", "6", "--lr", "0.05",
                 "--gif", "--frames", "2"]) == 0
    assert "dream of conv2@deepdream" in capsys.readouterr().out
    result = np.asarray(decoded(out), dtype=np.float32)
    original = np.asarray(decoded(photo), dtype=np.float32)
    assert result.shape == original.shape  # the photo's own size
    assert 1 < np.abs(result - original).mean() < 80  # changed, yet still the photo
    frames = gif_frames(tmp_path / "dream.gif")
    assert len(frames) == 3  # the photo, after step 3, after step 6
    assert np.array_equal(frames[0], as_gif_frame(photo)) and np.array_equal(frames[-1], as_gif_frame(out))
    plain = tmp_path / "plain.png"
    assert main(["dream", str(photo), "--layer", "conv2", "--out", str(plain), "--steps", "6", "--lr", "0.05"]) == 0
    assert np.array_equal(np.asarray(decoded(plain)), np.asarray(decoded(out)))  # --gif changes nothing


def test_saliency_writes_heatmap_and_overlay(tmp_path, photo, capsys):
    assert main(["saliency", str(photo), "--unit", "fc:0", "--out", str(tmp_path)]) == 0
    assert "saliency of fc:0" in capsys.readouterr().out
    heat = np.asarray(decoded(tmp_path / "stripes_saliency.png"), dtype=np.float32)
    overlay = np.asarray(decoded(tmp_path / "stripes_overlay.png"), dtype=np.float32)
    assert heat.shape == overlay.shape == (48, 56, 3)
    assert heat.std() > 1  # not a flat map
    assert main(["saliency", str(photo), "--out", str(tmp_path), "-q"]) == 0  # default: the predicted class
    gray = tmp_path / "gray.png"
    Image.open(photo).convert("L").save(gray)
    assert main(["saliency", str(gray), "--out", str(tmp_path), "-q"]) == 0  # a gray photo, color model
    assert decoded(tmp_path / "gray_overlay.png").size == (56, 48)


def test_saliency_is_the_input_gradient_of_the_logit(photo):
    from pyviz_fast.cli.common import read_image
    from pyviz_fast.cli.saliency import saliency
    from pyviz_fast.zoo import shapesnet

    model = shapesnet()
    image = read_image(photo)
    heat, unit, value = saliency(model, image, "fc:2")
    x = image[None].clone().requires_grad_(True)
    logit = model(x)[0, 2]  # ShapesNet normalizes its input itself
    logit.backward()
    expected = x.grad[0].abs().amax(0)
    expected = (expected / torch.quantile(expected.flatten(), 0.995)).clamp(0, 1).numpy()
    assert unit == "fc:2" and value == pytest.approx(float(logit), rel=1e-4)
    np.testing.assert_allclose(heat, expected, atol=1e-4)


def test_filters_montage_shows_every_first_layer_kernel(tmp_path, capsys):
    out = tmp_path / "filters.png"
    assert main(["filters", "--out", str(out), "--tile", "10"]) == 0
    assert "16 kernels of conv1.conv" in capsys.readouterr().out
    montage = decoded(out)
    assert montage.size == (4 * 12 + 2, 4 * (12 + 12) + 2)  # 4x4 tiles of 10 px, 2 px gaps, label strips


def test_bench_prints_a_ratio_table(capsys):
    assert main(["bench", "--batch", "2", "--size", "32", "--steps", "2", "--units", "conv1:0-1"]) == 0
    out = capsys.readouterr().out
    assert "fused_ascent_step" in out and "vs baseline" in out and "reference" in out


# ---- bad input: one line naming the problem, exit code 2, nothing written lost ----

def test_unknown_model_spec(capsys):
    assert main(["layers", "--model", "torchvision:no_such_net"]) == 2
    one_line_error(capsys, "cannot load model 'torchvision:no_such_net'", "unknown torchvision model")
    assert main(["layers", "--model", "missing_file.pt"]) == 2
    one_line_error(capsys, "missing_file.pt", "does not exist")


def test_bad_device(tmp_path, capsys):
    assert main(["layers", "--device", "toaster"]) == 2
    one_line_error(capsys, "--device 'toaster' is not a torch device")
    if not torch.cuda.is_available():
        assert main(["atlas", "conv1:0", "--device", "cuda", "--out", str(tmp_path / "run")]) == 2
        one_line_error(capsys, "CUDA is not available")
        assert not (tmp_path / "run").exists()


def test_unknown_layer_and_channel_out_of_range(tmp_path, capsys):
    assert main(["atlas", "conv9", "--out", str(tmp_path), *SMALL]) == 2
    one_line_error(capsys, "unknown layer 'conv9'", "closest")
    assert main(["render", "conv2:40", "--out", str(tmp_path), *SMALL]) == 2
    one_line_error(capsys, "'conv2' (output [B, 32, 20, 20] (nchw)) has 32 channels", "got channel 40")
    assert main(["render", "conv2:1", "--layout", "conv9=nhwc", "--out", str(tmp_path), *SMALL]) == 2
    assert "cannot run the model" not in one_line_error(capsys, "--layout: unknown layer 'conv9' given a layout")
    assert not list(tmp_path.iterdir())


def test_force_replaces_a_run_made_with_other_settings(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["atlas", "conv1:0-2", "--out", str(run), *SMALL]) == 0
    assert main(["atlas", "conv1:0-1", "--out", str(run), *SMALL, "--steps", "3"]) == 2
    one_line_error(capsys, "different settings (steps: 4 -> 3)")
    assert main(["atlas", "conv1:0-1", "--out", str(run), *SMALL, "--steps", "3", "--force"]) == 0
    assert [r["unit"] for r in read_records(run / "manifest.jsonl")] == ["conv1:0", "conv1:1"]
    assert not (run / "images" / "conv1" / "conv1_2.png").exists()  # nothing of the old run is mixed in


def test_bad_settings_and_flags(tmp_path, capsys):
    assert main(["render", "conv1:0", "--out", str(tmp_path), "--precision", "fp64"]) == 2
    one_line_error(capsys, "precision must be one of")
    assert main(["render", "conv1:0", "--steps", "many"]) == 2
    one_line_error(capsys, "--steps", "many")
    for command in (["render", "fc:1"], ["dream", "photo.png"]):
        assert main([*command, "--gif", "--frames", "0"]) == 2
        one_line_error(capsys, "--frames", "integer >= 1", "'0'")
    assert main(["atlas", "--shard", "2/2", "--out", str(tmp_path)]) == 2
    one_line_error(capsys, "--shard")


def test_unreadable_and_non_image_inputs(tmp_path, capsys):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    assert main(["saliency", str(text), "--out", str(tmp_path)]) == 2
    one_line_error(capsys, "is not a readable image")
    assert main(["dream", str(tmp_path / "absent.jpg"), "--out", str(tmp_path / "d.png")]) == 2
    one_line_error(capsys, "does not exist")


def test_output_directory_that_cannot_be_created(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a directory should go")
    assert main(["atlas", "conv1:0-1", "--out", str(blocker / "run"), *SMALL]) == 2
    one_line_error(capsys, "cannot", str(blocker / "run"))
    assert main(["render", "conv1:0", "--out", str(blocker / "renders"), *SMALL]) == 2
    one_line_error(capsys, "cannot create output directory")


def test_full_disk_mid_atlas_keeps_what_was_written(tmp_path, capsys, monkeypatch):
    real_save = audit_writer.save_png_atomic
    written = []

    def save_until_full(path, image, **kwargs):
        if len(written) >= 2:  # room for the first batch: 2 images (40 px: no thumbnails, the page scales them)
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real_save(path, image, **kwargs)
        written.append(path)

    monkeypatch.setattr(audit_writer, "save_png_atomic", save_until_full)
    args = ["atlas", "conv1:0-5", "--out", str(tmp_path), "--batch-size", "2", *SMALL]
    assert main(args) == 2
    one_line_error(capsys, "No space left on device", "rerun to resume")
    records = read_records(tmp_path / "manifest.jsonl")
    assert [r["unit"] for r in records] == ["conv1:0", "conv1:1"]
    for record in records:
        decoded(tmp_path / record["file"])
    monkeypatch.setattr(audit_writer, "save_png_atomic", real_save)
    assert main(args) == 0  # space freed: the rerun completes the rest
    assert [r["unit"] for r in read_records(tmp_path / "manifest.jsonl")] == [f"conv1:{c}" for c in range(6)]


@pytest.fixture
def tiny_disk(tmp_path):
    """A 300 KB tmpfs (needs root and mount rights: skipped elsewhere); remount(size) resizes it."""
    mountpoint = tmp_path / "tiny"
    mountpoint.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(mountpoint)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")

    def remount(size):
        subprocess.run(["mount", "-o", f"remount,size={size}", str(mountpoint)], check=True)

    yield mountpoint, remount
    subprocess.run(["umount", str(mountpoint)], check=True)


def test_really_full_disk_then_rerun_after_freeing_space(tiny_disk, capsys):
    disk, remount = tiny_disk
    args = ["atlas", "conv3", "--out", str(disk / "run"), "--size", "64", "--steps", "2", "--batch-size", "8", "-q"]
    assert main(args) == 2
    one_line_error(capsys, "No space left on device", "rerun to resume")
    saved = read_records(disk / "run" / "parts" / "shard-000-of-001.jsonl")  # the merge itself may not fit
    assert 0 < len(saved) < 64
    for record in saved:
        decoded(disk / "run" / record["file"])
    remount("20m")
    assert main(args) == 0
    final = read_records(disk / "run" / "manifest.jsonl")
    assert sorted(r["unit"] for r in final) == sorted(f"conv3:{c}" for c in range(64))
    assert all(r in final for r in saved)  # nothing written before the full disk was redone


# ---- settings flags come from the Settings dataclass ----

def test_every_settings_field_is_a_flag_with_help():
    parser = argparse.ArgumentParser()
    add_settings_flags(parser)
    flags = {action.dest: action for action in parser._actions}
    for field in dataclasses.fields(Settings):
        action = flags[f"setting_{field.name}"]
        assert f"--{field.name.replace('_', '-')}" in action.option_strings
        assert action.help and "default" in action.help


def test_settings_flags_parse_types_and_keep_dataclass_defaults():
    parser = argparse.ArgumentParser()
    add_settings_flags(parser)
    settings = settings_from_args(parser.parse_args(
        ["--size", "64,48", "--lr-end", "none", "--no-decorrelate", "--scale-range", "0.9,1.1", "--clip", "inf"]))
    assert settings.size == (64, 48) and settings.lr_end is None and settings.decorrelate is False
    assert settings.scale_range == (0.9, 1.1) and settings.clip == float("inf")
    assert settings.steps == Settings().steps  # not given: the dataclass default


def test_a_new_settings_field_appears_as_a_flag_by_itself():
    @dataclasses.dataclass
    class Extended(Settings):
        sparkle: float = dataclasses.field(default=0.0, metadata={"help": "how much sparkle"})

    parser = argparse.ArgumentParser()
    add_settings_flags(parser, settings_cls=Extended)
    assert parser.parse_args(["--sparkle", "0.5"]).setting_sparkle == 0.5
    assert "how much sparkle" in parser.format_help()


def test_command_defaults_sit_between_the_dataclass_and_the_flags():
    from pyviz_fast.cli import build_parser
    from pyviz_fast.cli.dream import DREAM_DEFAULTS

    parser = build_parser()
    plain = settings_from_args(parser.parse_args(["dream", "photo.png"]), DREAM_DEFAULTS)
    assert (plain.steps, plain.lr) == (DREAM_DEFAULTS["steps"], DREAM_DEFAULTS["lr"]) != (Settings().steps, Settings().lr)
    assert settings_from_args(parser.parse_args(["dream", "photo.png", "--steps", "5"]), DREAM_DEFAULTS).steps == 5
    assert f"(default: {DREAM_DEFAULTS['steps']})" in " ".join(parser._subparsers._group_actions[0]
                                                             .choices["dream"].format_help().split())


def test_help_text_names_the_settings_from_their_docstring():
    parser = argparse.ArgumentParser()
    add_settings_flags(parser)
    text = " ".join(parser.format_help().split())
    assert "optimization steps in total" in text and "roll the input by up to" in text
