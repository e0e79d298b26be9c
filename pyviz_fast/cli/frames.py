"""GIFs of an optimization's progression, for ``--gif``, recorded during the render itself.

``FrameRecorder`` is a ``render`` callback: it keeps the images after every k-th step (and the
last step) as frames and hands each unit's frames over when its batch ends, so the render is
the same as without ``--gif``, the last frame is the final image (the PNG) and only one batch's
frames are held in memory at a time.

>>> gifs = {}
>>> recorder = FrameRecorder(steps=64, frames=32, finished=lambda row, frames: gifs.update({row: frames}))
>>> res = pvf.render(model, "conv3:0-3", steps=64, callback=recorder)
>>> len(gifs[0]), gifs[0][-1].size   # PIL images, one every 2 steps
(32, (128, 128))
"""
import io
import math

from PIL import Image

from pyviz_fast.audit.files import to_pil
from pyviz_fast.engine.result import images_to_uint8


class FrameRecorder:
    """A render callback that calls ``finished(row, frames)`` once per unit when its batch ends.

    row: the unit's index in the render's result. frames: PIL images, ``first`` (if given, e.g.
    the input photo), then the images after steps k, 2k, ... and the last step, all resized to the
    final image's size (octaves start smaller); k = ceil(steps / frames), so at most ``frames``
    of them come from the render.
    """

    def __init__(self, steps: int, frames: int, finished, first: Image.Image | None = None):
        self.every = math.ceil(steps / max(1, min(frames, steps)))
        self.finished, self.first = finished, first
        self.frames = {}

    def __call__(self, info) -> None:
        last = info.step == info.steps - 1
        if info.step == 0:  # a new batch: drop what a failed batch left
            self.frames = {}
        if not last and (info.step + 1) % self.every:
            return
        for i, image in enumerate(images_to_uint8(info.images.cpu())):
            self.frames.setdefault(info.rows.start + i, []).append(to_pil(image))
        if last:
            for row, frames in self.frames.items():
                frames = ([self.first] if self.first is not None else []) + frames
                size = frames[-1].size
                self.finished(row, [f if f.size == size else f.resize(size, Image.BILINEAR) for f in frames])
            self.frames = {}


def gif_bytes(frames: list[Image.Image], frame_ms: int = 100) -> bytes:
    """An endlessly looping GIF; the last frame is held ten times as long."""
    buffer = io.BytesIO()
    durations = [frame_ms] * (len(frames) - 1) + [10 * frame_ms]
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=durations, loop=0)
    return buffer.getvalue()
