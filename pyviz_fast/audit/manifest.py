"""The manifest: one JSON record per rendered unit, one record per line.

Each writer (a process, a ``--shard`` or a torchrun rank) appends to its own part file under
``parts/``; a batch's records go out in one write followed by flush + fsync, after the batch's
PNGs are in place, so a record always points at a complete image. ``merge_parts`` unions the
parts into ``manifest.jsonl``. A line cut short by a kill is skipped on reading and cut off
before the next append.

>>> part = ManifestPart("run/parts/shard-000-of-001.jsonl")
>>> part.append([{"unit": "conv1:0", "status": "ok", ...}])
>>> [r["unit"] for r in read_records("run/parts/shard-000-of-001.jsonl")]
['conv1:0']
"""
import json
import os
from pathlib import Path

from pyviz_fast.audit.files import strict_json_dumps, write_text_atomic


def read_records(path) -> list[dict]:
    """The complete records of a JSONL file, skipping a torn last line; [] when it is absent."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    with open(path, "rb") as handle:
        for line in handle:
            if not line.endswith(b"\n"):
                break  # torn by a kill mid-append: its batch is not finished
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def _cut_torn_tail(path: Path) -> None:
    """Truncate after the last newline so the next append starts a fresh line."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as handle:
        data = handle.read()
        if data.endswith(b"\n"):
            return
        handle.truncate(data.rfind(b"\n") + 1)


class ManifestPart:
    """An append-only JSONL file owned by one writer."""

    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _cut_torn_tail(self.path)

    def append(self, records: list[dict]) -> None:
        """Append ``records`` in one write and force them to disk."""
        text = "".join(strict_json_dumps(record) + "\n" for record in records)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())


def part_paths(run_dir) -> list[Path]:
    return sorted(Path(run_dir, "parts").glob("*.jsonl"))


def has_image(record: dict) -> bool:
    """A finished unit: rendered ('ok', or 'nonfinite' with some skipped steps) with its PNG named."""
    return record.get("status") != "failed" and bool(record.get("file"))


def record_images(record: dict) -> list[str]:
    """The run-relative full-size PNGs a record names: its picture, each facet's and their RGBA
    variants (thumbnails aside)."""
    entries = [record] + list(record.get("facets") or [])
    return list(dict.fromkeys(e[key] for e in entries for key in ("file", "rgba") if e.get(key)))


def unique_records(records) -> list[dict]:
    """One record per unit: its latest record with an image, else its latest (failed) record."""
    chosen: dict[str, dict] = {}
    for record in records:
        previous = chosen.get(record["unit"])
        if previous is None or has_image(record) or not has_image(previous):
            chosen[record["unit"]] = record
    return list(chosen.values())


def collect_records(run_dir) -> list[dict]:
    """Every unit's record across all part files of a run directory (unordered, unique)."""
    return unique_records(record for path in part_paths(run_dir) for record in read_records(path))


def record_order(record: dict, layer_order: dict[str, int]):
    """Sort key: layers in model order (unknown ones last, by name), then unit index, then name."""
    index = record.get("index")
    return (layer_order.get(record["layer"], len(layer_order)), record["layer"],
            index if isinstance(index, int) else -1, record["unit"])


def merge_parts(run_dir, layer_order: dict[str, int] | None = None, extra: dict[str, dict] | None = None) -> list[dict]:
    """Write ``manifest.jsonl`` as the ordered union of the part files, each record completed by
    ``extra[unit]`` (e.g. its dataset grounding) when given; returns its records."""
    layer_order, extra = layer_order or {}, extra or {}
    records = sorted(collect_records(run_dir), key=lambda r: record_order(r, layer_order))
    for record in records:
        record.update(extra.get(record["unit"], {}))
    write_text_atomic(Path(run_dir, "manifest.jsonl"),
                      "".join(strict_json_dumps(r) + "\n" for r in records))
    return records
