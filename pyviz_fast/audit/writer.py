"""A background writer: PNG encoding and manifest appends overlap with rendering.

The render loop hands each finished batch (uint8 images + their manifest records) to
``BatchWriter.submit`` and goes on rendering; a thread encodes the PNGs and thumbnails, writes
them atomically, then appends the batch's records to the manifest part (flush + fsync). The
queue is bounded, so a slow disk slows the renderer instead of filling memory. An error in the
thread (a full disk, say) is raised in the caller by the next ``submit`` or by ``close``.

>>> with BatchWriter(run_root, part) as writer:
...     writer.submit(images_uint8, records)  # images [N, H, W, C]; records[i]["file"] run-relative
"""
import queue
import threading
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


def write_batch(root: Path, part: ManifestPart, images: np.ndarray, records: list[dict]) -> None:
    """Write a batch's PNGs (and thumbnails), then its records: a record never precedes its file."""
    for image, record in zip(images, records):
        if record.get("file"):
            pil = to_pil(image)
            save_png_atomic(root / record["file"], pil)
            if record.get("thumb"):
                save_png_atomic(root / record["thumb"], thumbnail(pil), fsync=False)
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

    def submit(self, images: np.ndarray, records: list[dict]) -> None:
        """Queue a batch; images uint8 [N, H, W, C] aligned with records."""
        self._raise_if_failed()
        if len(images) != len(records):
            raise ValueError(f"images and records must align, got {len(images)} images and {len(records)} records")
        self._queue.put((np.asarray(images), list(records)))

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
