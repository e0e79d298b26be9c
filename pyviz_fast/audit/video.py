"""Frames on disk and the videos made of them (the DeepDream zoom).

A frames folder holds ``frame_00000.png``, ``frame_00001.png``, ... each written atomically as
it is made, and ``frames.json``: what the frames were made with, and the execution (precision,
memory format) an 'auto' setting chose for the first frames. A killed run leaves whole frames
only; rerun with the same parameters, it goes on after the last one with that execution. MP4 is encoded
with PyAV (``pip install av``: its wheel ships FFmpeg and the H.264 encoder, no system ffmpeg);
GIF with Pillow, also the fallback for an MP4 when PyAV is missing.

>>> frames = FrameDir("dream.frames"); frames.prepare({"unit": "conv3@deepdream", ...})
>>> frames.save(0, pil_image); frames.count()
1
>>> write_video(frames.paths(), "dream.mp4", fps=24)
PosixPath('dream.mp4')
"""
import json
import re
from pathlib import Path

from PIL import Image

from pyviz_fast.audit.files import remove_partials, save_png_atomic, write_atomic, write_text_atomic

PARAMS_FILE = "frames.json"
EXECUTION_KEY = "execution"  # kept beside the parameters, not compared with them
_FRAME = re.compile(r"^frame_(\d{5,})\.png$")
VIDEO_SUFFIXES = (".mp4", ".gif")
# A GIF's frame delays are in 1/100 s, and browsers play a delay of 10 ms or less at 100 ms.
MAX_GIF_FPS = 50


class FrameDirError(ValueError):
    """The frames folder cannot be used for this run."""


class FrameDir:
    """A folder of numbered PNG frames and the parameters they were made with."""

    def __init__(self, root):
        self.root = Path(root)

    def prepare(self, params: dict) -> None:
        """Create the folder, or check that the frames in it were made with ``params``."""
        self.root.mkdir(parents=True, exist_ok=True)
        remove_partials(self.root)
        path = self.root / PARAMS_FILE
        new = json.loads(json.dumps(params, default=str))
        if path.exists() and self.count():
            old = json.loads(path.read_text())
            execution = old.pop(EXECUTION_KEY, None)
            changed = sorted(key for key in old.keys() | new.keys() if old.get(key) != new.get(key))
            if changed:
                raise FrameDirError(f"{str(self.root)!r} holds frames made with other parameters "
                                    f"(differ: {', '.join(changed)}); delete it or write elsewhere")
            if execution is not None:  # the frames on disk were made with it
                new[EXECUTION_KEY] = execution
        self._write(new)

    def _write(self, params: dict) -> None:
        write_text_atomic(self.root / PARAMS_FILE, json.dumps(params, sort_keys=True, indent=1))

    def execution(self) -> dict | None:
        """The execution record the frames were made with (``record_execution``), or None."""
        return json.loads((self.root / PARAMS_FILE).read_text()).get(EXECUTION_KEY)

    def record_execution(self, record: dict) -> None:
        """Keep ``record`` (JSON) as the execution of every frame of this folder."""
        params = json.loads((self.root / PARAMS_FILE).read_text())
        self._write({**params, EXECUTION_KEY: record})

    def path(self, k: int) -> Path:
        return self.root / f"frame_{k:05d}.png"

    def count(self) -> int:
        """How many frames 0, 1, 2, ... are there without a gap."""
        numbers = {int(m.group(1)) for p in self.root.glob("frame_*.png") if (m := _FRAME.match(p.name))}
        k = 0
        while k in numbers:
            k += 1
        return k

    def save(self, k: int, image: Image.Image) -> Path:
        path = self.path(k)
        save_png_atomic(path, image)
        return path

    def paths(self, frames: int | None = None) -> list[Path]:
        """The first ``frames`` frames (default: all of them)."""
        return [self.path(k) for k in range(self.count() if frames is None else frames)]


def mp4_available() -> bool:
    try:
        import av  # noqa: F401  (only whether it imports)
    except ImportError:
        return False
    return True


def _even(image: Image.Image) -> Image.Image:
    """H.264 in yuv420p needs even sides: drop a last odd row / column."""
    width, height = image.size
    return image if width % 2 == 0 and height % 2 == 0 else image.crop((0, 0, width - width % 2, height - height % 2))


def _write_mp4(paths, out: Path, fps: int) -> None:
    import av

    partial = out.with_name(f".{out.name}.partial")
    try:
        with av.open(str(partial), mode="w", format="mp4") as container:
            stream = None
            for path in paths:
                with Image.open(path) as image:
                    image = _even(image.convert("RGB"))
                if stream is None:
                    stream = container.add_stream("libx264", rate=fps)
                    stream.width, stream.height = image.size
                    stream.pix_fmt = "yuv420p"
                    stream.options = {"crf": "18"}  # visually lossless: dream detail is fine-grained
                for packet in stream.encode(av.VideoFrame.from_image(image)):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)


def _write_gif(paths, out: Path, fps: int) -> None:
    import io
    frames = []
    for path in paths:
        with Image.open(path) as image:
            frames.append(image.convert("RGB"))
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=round(1000 / fps), loop=0)
    write_atomic(out, buffer.getvalue())


def video_path(out, fps: int) -> Path:
    """The path ``write_video`` writes for ``out`` (a .gif when an MP4 was asked for and PyAV is
    missing), or ValueError if the suffix or, for a GIF, ``fps`` cannot be written: check before
    making the frames."""
    out = Path(out)
    if out.suffix.lower() not in VIDEO_SUFFIXES:
        raise ValueError(f"video must end in {' or '.join(VIDEO_SUFFIXES)}, got {str(out)!r}")
    if out.suffix.lower() == ".mp4" and mp4_available():
        return out
    if fps > MAX_GIF_FPS:
        instead = " (PyAV is not installed: pip install av)" if out.suffix.lower() == ".mp4" else ""
        raise ValueError(f"fps must be <= {MAX_GIF_FPS} for a GIF{instead}, got {fps}: its frame delays are in "
                         "1/100 s and browsers play 10 ms or less at 100 ms; an .mp4 takes any fps")
    return out.with_suffix(".gif")


def write_video(paths, out, fps: int = 24) -> Path:
    """Encode the PNG ``paths`` as ``out`` (.mp4 or .gif) at ``fps``; returns the path written
    (``video_path``)."""
    out, paths = video_path(out, fps), list(paths)
    if not paths:
        raise ValueError("no frames to encode")
    (_write_mp4 if out.suffix.lower() == ".mp4" else _write_gif)(paths, out, fps)
    return out
