"""Crash-safe file writes: a reader never sees a half-written file under its final name.

Every file is written to a hidden partial name in the same directory, flushed to disk, then
renamed over the final name with ``os.replace`` (atomic on POSIX). A process killed mid-write
leaves only a partial file, which ``remove_partials`` deletes on the next run.

>>> write_atomic("run/images/conv1/conv1_0.png", png_bytes)
"""
import io
import json
import math
import os
from pathlib import Path

import numpy as np
from PIL import Image

PARTIAL_MARK = ".partial-"


def _partial_name(path: Path) -> Path:
    return path.with_name(f".{path.name}{PARTIAL_MARK}{os.getpid()}")


def write_atomic(path, data: bytes, *, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` so that ``path`` holds either the old or the whole new content."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = _partial_name(path)
    try:
        with open(partial, "wb") as handle:
            handle.write(data)
            handle.flush()
            if fsync:  # the data reaches the disk before the name points at it
                os.fsync(handle.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)  # a full disk or an interrupt leaves nothing behind
        raise


def write_text_atomic(path, text: str) -> None:
    write_atomic(path, text.encode("utf-8"))


def strict_json(value):
    """``value`` with every non-finite float replaced by "inf", "-inf" or "nan" (strings), so that it
    serializes as strict JSON; other values are kept (tuples become lists, unknown types strings)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {str(k): strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def strict_json_dumps(value, **kwargs) -> str:
    """``json.dumps`` of ``strict_json(value)`` with sorted keys; never writes NaN or Infinity."""
    return json.dumps(strict_json(value), sort_keys=True, allow_nan=False, **kwargs)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def remove_partials(root) -> int:
    """Delete partial files left by killed runs under ``root``; returns how many. Partials of
    processes still running (another ``--shard`` writing into the same directory) are kept."""
    count = 0
    for partial in Path(root).rglob(f".*{PARTIAL_MARK}*"):
        pid = partial.name.rsplit(PARTIAL_MARK, 1)[1]
        if pid.isdigit() and int(pid) != os.getpid() and _process_alive(int(pid)):
            continue
        partial.unlink(missing_ok=True)
        count += 1
    return count


def to_pil(image: np.ndarray) -> Image.Image:
    """A PIL image from uint8 [H, W, C]: 1 channel gray, 3 RGB, 4 RGBA; other counts show their
    first three channels (zero-padded) as RGB."""
    if image.ndim != 3:
        raise ValueError(f"image must be uint8 [H, W, C], got shape {tuple(image.shape)}")
    channels = image.shape[2]
    if channels == 1:
        return Image.fromarray(image[:, :, 0], "L")
    if channels in (3, 4):
        return Image.fromarray(np.ascontiguousarray(image), "RGB" if channels == 3 else "RGBA")
    rgb = np.zeros(image.shape[:2] + (3,), np.uint8)
    rgb[:, :, : min(3, channels)] = image[:, :, :3]
    return Image.fromarray(rgb, "RGB")


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def save_png_atomic(path, image: Image.Image, *, fsync: bool = True) -> None:
    write_atomic(path, png_bytes(image), fsync=fsync)
