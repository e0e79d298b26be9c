"""The DeepDream zoom video: the zoom itself, the API, and ``pyviz-fast dream --zoom-frames`` run as
a user runs it (a subprocess): the video decodes to N frames that differ, a killed run resumes
to the very frames an uninterrupted one makes, and bad input gets one clear error line."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import pyviz_fast as pvf
from pyviz_fast.audit import video
from pyviz_fast.cli import main
from pyviz_fast.engine import zoom
from pyviz_fast.engine.zoom import quantize, zoom_rotate

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")
FAST = {"steps": 2, "octaves": 1}


@pytest.fixture(scope="module")
def model():
    return pvf.load_model("shapesnet")[0]


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """A 40x48 RGB image: soft rings over a color ramp (fine detail and no flat areas)."""
    y, x = np.mgrid[0:40, 0:48].astype(np.float32)
    rings = 0.5 + 0.4 * np.sin(np.hypot(y - 20, x - 24) / 2.0)
    array = np.stack([rings, x / 48, 1 - rings], axis=-1)
    path = tmp_path_factory.mktemp("inputs") / "rings.png"
    Image.fromarray((array * 255).round().astype(np.uint8)).save(path)
    return path


def as_tensor(path):
    with Image.open(path) as image:
        return torch.from_numpy(np.asarray(image.convert("RGB"), np.float32) / 255).permute(2, 0, 1)


def test_pure_zoom_is_a_centre_crop_resized(photo):
    image = as_tensor(photo)[None]
    zoomed = zoom_rotate(image, 2.0)
    crop = image[..., 10:30, 12:36]  # the central half of 40x48
    expected = torch.nn.functional.interpolate(crop, size=(40, 48), mode="bilinear", align_corners=False)
    assert zoomed.shape == image.shape
    torch.testing.assert_close(zoomed[..., 2:-2, 2:-2], expected[..., 2:-2, 2:-2], atol=1e-5, rtol=0)


def test_rotation_reflects_instead_of_black_corners():
    image = 0.5 + 0.5 * torch.rand(1, 3, 40, 48)  # nothing below 0.5
    turned = zoom_rotate(image, 1.01, 30.0)
    assert turned.min() >= 0.5 - 1e-6  # a black (zero-padded) corner would pull pixels toward 0
    assert not torch.allclose(turned, zoom_rotate(image, 1.01, 0.0), atol=1e-2)  # it did turn


def test_octaves_keep_the_photos_detail(model, photo):
    """DeepDream octaves: a near-zero dream over 3 octaves gives back the photo, fine rings and all
    (upscaling the smallest octave's image would have blurred them away)."""
    image = as_tensor(photo).repeat(1, 2, 2)  # 80x96: the smallest octave is still >= 32 px
    res = pvf.dream(model, image, "conv2@deepdream", steps=3, octaves=3, octave_scale=1.5, lr=1e-6, jitter=0)
    torch.testing.assert_close(res.images[0], image, atol=0.02, rtol=0)


def test_dream_and_zoom_take_a_path_a_pil_image_or_a_uint8_tensor(model, photo):
    """As accentuate does (engine/init.load_image), at the image's own size."""
    image = as_tensor(photo)
    want = pvf.dream(model, image, "conv3:7", **FAST).images
    with Image.open(photo) as pil:
        for given in (str(photo), Path(photo), pil, (image * 255).round().to(torch.uint8)):
            assert torch.equal(pvf.dream(model, given, "conv3:7", **FAST).images, want)
    frames = [frame for given in (image, str(photo)) for _, frame in pvf.dream_zoom(model, given, "conv3:7", 1, **FAST)]
    assert torch.equal(*frames)


def test_renderer_renders_as_render_does_and_keeps_its_setup(model):
    settings = pvf.Settings(size=40, steps=3, octaves=2, octave_scale=1.2)
    grads = [p.requires_grad for p in model.parameters()]
    with pvf.Renderer(model, ["conv3:1", "fc:2"], settings) as renderer:
        first = renderer.render(seed=4)
        changed = renderer.render(seed=4, lr=0.2)
        unevaluated = renderer.render(seed=4, evaluate=False)
        with pytest.raises(ValueError, match="keeps size, steps"):
            renderer.render(size=48, steps=4)
    alone = pvf.render(model, ["conv3:1", "fc:2"], settings, seed=4)
    assert torch.equal(first.images, alone.images) and first.timings["setup"] > 0
    assert not torch.equal(changed.images, alone.images) and changed.timings["setup"] == 0
    # evaluate=False: the same images, and the last step's objective instead of a forward of them
    assert torch.equal(unevaluated.images, first.images) and unevaluated.status == first.status
    assert torch.equal(unevaluated.objective, unevaluated.trajectory[:, -1])
    assert not torch.equal(unevaluated.objective, first.objective)
    assert [p.requires_grad for p in model.parameters()] == grads
    assert next(model.parameters()).is_contiguous()  # the model is given back as it came


def test_api_frames_differ_and_resume_exactly(model, photo):
    image = as_tensor(photo)
    frames = [frame for _, frame in pvf.dream_zoom(model, image, "conv3:7", 4, zoom=1.1, rotate=3, **FAST)]
    assert len(frames) == 4 and all(f.shape == image.shape for f in frames)
    for a, b in zip(frames, frames[1:]):
        assert (a - b).abs().mean() > 0.01
    resumed = list(pvf.dream_zoom(model, frames[1], "conv3:7", 4, zoom=1.1, rotate=3, first=2, **FAST))
    assert [k for k, _ in resumed] == [2, 3]
    for (_, got), want in zip(resumed, frames[2:]):
        assert torch.equal(got, want)
        assert torch.equal(got, quantize(got))  # 8-bit exact: a PNG holds the frame as it was


def test_later_frames_skip_redirection_without_changing_them(model, photo, monkeypatch):
    """Frames after the first render without ReLU redirection: their unit fires from the start, so
    a redirected step would have given them the true gradient bit for bit."""
    image, eight = as_tensor(photo), {"steps": 8, "octaves": 1}  # 8 steps: the first one redirected
    skipped = [frame for _, frame in pvf.dream_zoom(model, image, "conv3:7", 3, zoom=1.1, **eight)]
    monkeypatch.setattr(zoom, "_DREAMED", {})
    redirected = [frame for _, frame in pvf.dream_zoom(model, image, "conv3:7", 3, zoom=1.1, **eight)]
    assert all(torch.equal(a, b) for a, b in zip(skipped, redirected))


@pytest.mark.parametrize("kwargs, message", [
    (dict(zoom=1.0), "zoom must be a number > 1"),
    (dict(zoom=0.9), "zoom must be a number > 1"),
    (dict(frames=0), "frames must be an integer >= 1"),
    (dict(unit="conv3"), "names a whole layer"),
    (dict(unit="conv9@deepdream"), "conv9"),
])
def test_api_errors(model, photo, kwargs, message):
    args = {"unit": "conv3@deepdream", "frames": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        next(pvf.dream_zoom(model, as_tensor(photo), args.pop("unit"), args.pop("frames"), **args))


def test_gif_when_pyav_is_missing(tmp_path, monkeypatch):
    paths = []
    for k in range(3):
        paths.append(tmp_path / f"f{k}.png")
        Image.new("RGB", (10, 8), (80 * k, 0, 0)).save(paths[-1])
    monkeypatch.setattr(video, "mp4_available", lambda: False)
    written = video.write_video(paths, tmp_path / "v.mp4", fps=10)
    assert written == tmp_path / "v.gif"
    with Image.open(written) as gif:
        assert gif.n_frames == 3


def test_gif_fps_is_what_browsers_play(tmp_path, monkeypatch):
    path, other = tmp_path / "f.png", tmp_path / "g.png"
    Image.new("RGB", (10, 8)).save(path)
    Image.new("RGB", (10, 8), (200, 0, 0)).save(other)  # Pillow merges equal frames
    written = video.write_video([path, other], tmp_path / "v.gif", fps=video.MAX_GIF_FPS)
    with Image.open(written) as gif:
        assert gif.info["duration"] == 20
    for out in ("v.gif", "v.mp4"):  # an MP4 without PyAV is written as a GIF
        monkeypatch.setattr(video, "mp4_available", lambda: False)
        with pytest.raises(ValueError, match="fps must be <= 50 for a GIF.*, got 60: its frame delays are in 1/100 s"):
            video.write_video([path], tmp_path / out, fps=60)
    monkeypatch.setattr(video, "mp4_available", lambda: True)
    assert video.video_path(tmp_path / "v.mp4", 1000) == tmp_path / "v.mp4"


# --- the command, as a user runs it ---------------------------------------------------------

def cli(*args, timeout=300, **popen):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "pyviz_fast", "dream", *map(str, args)]
    if popen:
        return subprocess.Popen(command, env=env, cwd=ROOT, **popen)
    return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def mp4_frames(path):
    av = pytest.importorskip("av", reason="pip install av (the MP4 encoder)")
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24").astype(np.float32) for frame in container.decode(video=0)]


ZOOM = ["--zoom", "1.1", "--rotate", "2", "--steps", "2", "--octaves", "1", "--unit", "conv3:7"]


def test_mp4_decodes_to_n_frames_that_differ(tmp_path, photo):
    done = cli(photo, "--zoom-frames", 5, *ZOOM, "--fps", 12, "--out", tmp_path / "zoom.mp4")
    assert done.returncode == 0, done.stderr
    assert "frame" in done.stderr  # the per-frame progress bar
    frames = mp4_frames(tmp_path / "zoom.mp4")
    assert len(frames) == 5 and frames[0].shape == (40, 48, 3)
    for a, b in zip(frames, frames[1:]):
        assert np.abs(a - b).mean() > 2  # each frame zoomed and dreamed further
    assert len(list((tmp_path / "zoom.frames").glob("frame_*.png"))) == 5
    gif = cli(photo, "--zoom-frames", 3, *ZOOM, "--out", tmp_path / "zoom.gif", "-q")
    assert gif.returncode == 0, gif.stderr
    with Image.open(tmp_path / "zoom.gif") as image:
        assert image.n_frames == 3


def test_zoom_gif_at_too_many_fps_is_refused_before_any_frame(tmp_path, photo):
    done = cli(photo, "--zoom-frames", 3, *ZOOM, "--fps", 100, "--out", tmp_path / "zoom.gif")
    assert done.returncode == 2 and "--fps: fps must be <= 50 for a GIF, got 100" in done.stderr, done.stderr
    assert not (tmp_path / "zoom.frames").exists()


def test_killed_zoom_resumes_to_the_same_frames(tmp_path, photo):
    whole = cli(photo, "--zoom-frames", 10, *ZOOM, "--out", tmp_path / "whole", "-q")
    assert whole.returncode == 0, whole.stderr
    folder = tmp_path / "killed"
    process = cli(photo, "--zoom-frames", 10, *ZOOM, "--out", folder, "-q", stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not (folder / "frame_00002.png").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    kept = len(list(folder.glob("frame_*.png")))
    assert 0 < kept < 10, f"the run was not killed midway (kept {kept} frames)"
    resumed = cli(photo, "--zoom-frames", 10, *ZOOM, "--out", folder)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed after frame {kept - 1}" in resumed.stdout
    for k in range(10):
        name = f"frame_{k:05d}.png"
        assert np.array_equal(np.asarray(Image.open(folder / name)), np.asarray(Image.open(tmp_path / "whole" / name)))
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no partial file left
    other = cli(photo, "--zoom-frames", 10, *ZOOM[:-1], "conv3:8", "--out", folder, "-q")
    assert other.returncode == 2 and "(differ: unit)" in other.stderr, other.stderr


def test_a_resumed_zoom_reuses_the_execution_of_its_first_frames(tmp_path, photo):
    folder = tmp_path / "zoom"
    first = cli(photo, "--zoom-frames", 2, *ZOOM, "--out", folder)
    assert first.returncode == 0, first.stderr
    params = json.loads((folder / "frames.json").read_text())
    decided = params["execution"]
    assert f"execution: {decided['precision']}/{decided['memory_format']}" in first.stdout
    # as if timing had chosen otherwise for the first frames: a resume must not decide again
    params["execution"] = {**decided, "memory_format": "channels_last", "source": "measured"}
    (folder / "frames.json").write_text(json.dumps(params))
    resumed = cli(photo, "--zoom-frames", 3, *ZOOM, "--out", folder)
    assert resumed.returncode == 0, resumed.stderr
    assert f"execution: {decided['precision']}/channels_last (measured)" in resumed.stdout, resumed.stdout
    assert json.loads((folder / "frames.json").read_text())["execution"]["memory_format"] == "channels_last"


@pytest.mark.parametrize("args, message", [
    (["{absent}", "--zoom-frames", "3"], "does not exist"),
    (["{corrupt}", "--zoom-frames", "3"], "is not a readable image"),
    (["{photo}", "--zoom-frames", "3", "--zoom", "1"], "zoom must be a number > 1"),
    (["{photo}", "--zoom-frames", "3", "--zoom", "0.8"], "zoom must be a number > 1"),
    (["{photo}", "--zoom-frames", "0"], "--zoom-frames: must be an integer >= 1, got '0'"),
    (["{photo}", "--zoom-frames", "3", "--layer", "conv9"], "conv9"),
    (["{photo}", "--zoom-frames", "3", "--out", "{tmp}/zoom.avi"], "a zoom writes a video"),
])
def test_bad_input_is_one_error_line(tmp_path, photo, args, message, capsys):
    """In-process (the console script's own ``main``; one subprocess case above shows the same
    code path end to end) to keep the suite quick."""
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG not really")
    names = {"absent": tmp_path / "absent.png", "corrupt": corrupt, "photo": photo, "tmp": tmp_path}
    args = [a.format(**names) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "out.mp4")]
    assert main(["dream", *args, "-q"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pyviz-fast"), lines
    assert message in lines[0]
    assert not (tmp_path / "out.mp4").exists()


def test_bad_zoom_from_the_console_script(tmp_path, photo):
    done = cli(photo, "--zoom-frames", "3", "--zoom", "1", "--out", tmp_path / "out.mp4")
    assert done.returncode == 2 and done.stderr.strip() == (
        "pyviz-fast: error: --zoom/--rotate: zoom must be a number > 1 (1.05 zooms in 5% a frame), got 1.0")
