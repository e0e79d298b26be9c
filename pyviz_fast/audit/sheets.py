"""Contact sheets: many images tiled in a labelled grid (one per layer; also the filter montage).

>>> sheet = montage([Image.open(p) for p in paths], labels=["0", "1"], tile=64)
>>> sheet.size  # ceil(sqrt(n)) columns of 64 px tiles with a label strip under each
"""
import math
from pathlib import Path

from PIL import Image, ImageDraw

from pyviz_fast.audit.files import save_png_atomic

GAP = 2
LABEL_HEIGHT = 12
BACKGROUND = (32, 32, 32)


def montage(images: list[Image.Image], labels: list[str] | None = None, *, tile: int = 64,
            columns: int | None = None) -> Image.Image:
    """Tile ``images`` (resized to ``tile`` px, nearest-neighbour) in a grid, optional labels below.

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
        if labels:
            draw.text((x + 1, y + tile), labels[k][: tile // 6], fill=(220, 220, 220))
    return sheet


def write_layer_sheets(root, records: list[dict], sheet_path, *, tile: int = 64) -> dict[str, str]:
    """One contact sheet per layer from the records' thumbnails (their PNGs when there is none);
    returns {layer: run-relative path}. sheet_path(layer) gives the run-relative file name."""
    by_layer: dict[str, list[dict]] = {}
    for record in records:
        if record.get("file"):
            by_layer.setdefault(record["layer"], []).append(record)
    written = {}
    for layer, layer_records in by_layer.items():
        images = []
        for record in layer_records:
            with Image.open(Path(root, record.get("thumb") or record["file"])) as image:
                images.append(image.convert("RGB"))
        labels = [str(r.get("index", r["unit"])) for r in layer_records]
        save_png_atomic(Path(root, sheet_path(layer)), montage(images, labels, tile=tile), fsync=False)
        written[layer] = sheet_path(layer)
    return written
