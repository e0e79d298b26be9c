"""A background writer: PNG encoding and manifest appends overlap with rendering.

The render loop hands each finished batch (each record's pictures + the manifest records) to
``BatchWriter.submit`` and goes on rendering; a thread encodes the PNGs and thumbnails, writes
them atomically, then appends the batch's records to the manifest part (flush + fsync), so a
record never names a picture that is not whole on disk. The queue is bounded, so a slow disk
slows the renderer instead of filling memory. An error in the thread (a full disk, say) is
raised in the caller by the next ``submit`` or by ``close``.

>>> with BatchWriter(run_root, part) as writer:
...     writer.submit([[Picture("images/conv1/0.png", image_uint8_hwc, thumb=None)]], records)
"""
import queue
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from pyviz_fast.audit.files import save_png_atomic, to_pil
from pyviz_fast.audit.manifest import ManifestPart

THUMB_SIZE = 96
_STOP = object()


class WriterError(OSError):
    """Writing a finished batch failed; what was written before is intact."""


def needs_thumbnail(height: int, width: int, size: int = THUMB_SIZE) -> bool:
    """Only images larger than a gallery cell get a thumbnail; smaller ones are shown from their
    own PNG, scaled by CSS (a thumbnail is never larger than its original)."""
    return max(height, width) > size


def thumbnail(image: Image.Image, size: int = THUMB_SIZE) -> Image.Image:
    """Shrink to fit into size x size (never enlarges)."""
    scale = min(1.0, size / max(image.size))
    new_size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(new_size, Image.LANCZOS) if scale < 1 else image.copy()


@dataclass(frozen=True)
class Picture:
    """One PNG to write: ``image`` uint8 [H, W, C] (4 channels: RGBA) at the root-relative ``path``,
    and its thumbnail at ``thumb`` (None: no thumbnail)."""
    path: str
    image: np.ndarray
    thumb: str | None = None


def write_batch(root: Path, part: ManifestPart, pictures: list[list[Picture]], records: list[dict]) -> None:
    """Write a batch's PNGs (and thumbnails), then its records: a record never precedes its files."""
    for picture in (p for per_record in pictures for p in per_record):
        pil = to_pil(picture.image)
        save_png_atomic(root / picture.path, pil)
        if picture.thumb:
            save_png_atomic(root / picture.thumb, thumbnail(pil), fsync=False)
    part.append(records)


class BatchWriter:
    """on_written(n): called in the writer thread after each batch's n records are on disk."""

    def __init__(self, root, part_path, *, max_pending: int = 2, on_written=None):
        self.root = Path(root)
        self.part = ManifestPart(part_path)
        self.on_written = on_written
        self.written = 0  # records safely on disk
        self._queue: queue.Queue = queue.Queue(maxsize=max_pending)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="pyviz-fast-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if self._error is not None:
                continue  # drain: after a failure nothing later may land before what failed
            try:
                write_batch(self.root, self.part, *item)
                self.written += len(item[1])
                if self.on_written is not None:
                    self.on_written(len(item[1]))
            except BaseException as error:  # noqa: BLE001  (re-raised in the caller's thread)
                self._error = error

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise WriterError(f"writing results failed: {self._error}") from self._error

    def submit(self, pictures: list[list[Picture]], records: list[dict]) -> None:
        """Queue a batch: ``pictures[i]``, the PNGs of ``records[i]`` (none for a failed unit)."""
        self._raise_if_failed()
        if len(pictures) != len(records):
            raise ValueError(f"pictures and records must align, got pictures of {len(pictures)} records "
                             f"and {len(records)} records")
        self._queue.put(([list(p) for p in pictures], list(records)))

    def close(self) -> None:
        """Finish every queued batch, then raise the thread's error if there was one."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
        self._raise_if_failed()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
