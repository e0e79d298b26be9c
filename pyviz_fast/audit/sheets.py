"""Contact sheets: many images tiled in a labelled grid (one per layer; also the filter montage).

A layer's sheet frames units as the gallery does: non-finite steps in red, dead units (activation
never rose) in orange, flat pictures (one colour) in blue. ``sheets/signatures.json`` remembers
what each sheet was made from, so a rerun rebuilds only the sheets of layers whose units changed.

>>> pictures = [Image.new("RGB", (32, 32)) for _ in range(3)]
>>> montage(pictures, labels=["0", "1", "2"], tile=64).size  # 2 x 2 cells: 64 px, a label strip under each
(134, 158)
"""
import hashlib
import json
import math
from pathlib import Path

from PIL import Image, ImageDraw

from pyviz_fast.audit.files import save_png_atomic, strict_json_dumps, write_text_atomic

SIGNATURES = "sheets/signatures.json"
MARKS = {"dead": (221, 153, 51), "nonfinite": (221, 51, 51), "flat": (102, 153, 204)}

GAP = 2
LABEL_HEIGHT = 12
BACKGROUND = (32, 32, 32)


def montage(images: list[Image.Image], labels: list[str] | None = None, *, tile: int = 64,
            columns: int | None = None, marks: list[str | None] | None = None) -> Image.Image:
    """Tile ``images`` (resized to ``tile`` px, nearest-neighbour) in a grid, optional labels below;
    ``marks[k]`` (a key of MARKS, or None) frames tile k in that colour.

    Raises ValueError for an empty list."""
    if not images:
        raise ValueError("montage needs at least one image")
    columns = columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    label_height = LABEL_HEIGHT if labels else 0
    cell_w, cell_h = tile + GAP, tile + label_height + GAP
    sheet = Image.new("RGB", (columns * cell_w + GAP, rows * cell_h + GAP), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for k, image in enumerate(images):
        x, y = GAP + (k % columns) * cell_w, GAP + (k // columns) * cell_h
        sheet.paste(image.convert("RGB").resize((tile, tile), Image.NEAREST), (x, y))
        if marks and marks[k]:
            draw.rectangle((x, y, x + tile - 1, y + tile - 1), outline=MARKS[marks[k]], width=max(2, tile // 24))
        if labels:
            draw.text((x + 1, y + tile), labels[k][: tile // 6], fill=(220, 220, 220))
    return sheet


def _mark(record: dict) -> str | None:
    """The frame of a unit's tile: the first of non-finite, dead, flat that it is (one frame per tile;
    a dead unit's picture is often flat too, and "dead" says more)."""
    if record.get("status") == "nonfinite":
        return "nonfinite"
    return next((flag for flag in ("dead", "flat") if record.get(flag)), None)


def _signature(records: list[dict]) -> str:
    """What a layer's sheet shows: its units, their images and marks."""
    keys = [(r["unit"], r.get("file"), r.get("seed"), r.get("settings_hash"), _mark(r)) for r in records]
    return hashlib.sha256(strict_json_dumps(keys).encode()).hexdigest()[:16]


def _read_signatures(root) -> dict:
    try:
        return json.loads(Path(root, SIGNATURES).read_text())
    except (OSError, ValueError):
        return {}


def write_layer_sheets(root, records: list[dict], sheet_path, *, tile: int = 64) -> dict[str, str]:
    """One contact sheet per layer from the records' thumbnails (their PNGs when there is none),
    rebuilt only when the layer's units changed; returns {layer: run-relative path}.
    sheet_path(layer) gives the run-relative file name."""
    by_layer: dict[str, list[dict]] = {}
    for record in records:
        if record.get("file"):
            by_layer.setdefault(record["layer"], []).append(record)
    old, new = _read_signatures(root), {}
    written = {}
    for layer, layer_records in by_layer.items():
        path = sheet_path(layer)
        new[path] = _signature(layer_records)
        written[layer] = path
        if old.get(path) == new[path] and Path(root, path).is_file():
            continue
        images = []
        for record in layer_records:
            with Image.open(Path(root, record.get("thumb") or record["file"])) as image:
                images.append(image.convert("RGB"))
        labels = [str(r["unit"] if r.get("index") is None else r["index"]) for r in layer_records]
        sheet = montage(images, labels, tile=tile, marks=[_mark(r) for r in layer_records])
        save_png_atomic(Path(root, path), sheet, fsync=False)
    if new != old:
        write_text_atomic(Path(root, SIGNATURES), strict_json_dumps(new, indent=1))
    return written
