"""Dataset grounding of an atlas run: the grounder's dataset pass run resumably into the run
directory, example crops saved, and every unit's grounding fields kept for the manifest.

The grounder (``AtlasJob.grounder``, e.g. ``pyviz_fast.engine.dataset_pass.DatasetGrounder``) is
any object with ``key`` (a JSON-able dict naming the dataset and its parameters), ``examples``
(K), ``spec``, ``dataset``, ``adopt(execution)``, ``source(index)``, ``label_name(label)``,
``run_pass(units, resume=, checkpoint=, progress=)`` and ``signals(units, images, grounding,
on_examples=)``; this module does not import the engine.

Files::

    dataset/state.pt         the pass's resumable state (a killed pass resumes from its last checkpoint)
    dataset/pass.pt          the finished pass: a rerun with the same key and units skips it
    dataset/grounding.jsonl  one record per unit: the fields merged into manifest.jsonl
    dataset/summary.json     spec, number of examples, K: what the gallery says it was grounded on
    examples/<layer>/<unit>/top<k>.png, bottom<k>.png   crops around the receptive field

Manifest fields added per unit: ``examples`` and ``bottom`` (best first: source (path or dataset
index), index, label, activation, box [x0, y0, x1, y1] in the image at render size, crop),
``stats`` (mean, std, min, max, q01, q10, q50, q90, q99, count), ``dead_on_data``,
``visualization_activation``, ``percentile`` and ``path_similarity`` ([{layer, top, random}]).
"""
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pyviz_fast.audit.files import save_png_atomic, strict_json_dumps, to_pil, write_atomic, write_text_atomic
from pyviz_fast.audit.manifest import has_image, read_records
from pyviz_fast.audit.names import stem, unit_stem
from pyviz_fast.audit.writer import thumbnail

STATE, PASS, RECORDS, SUMMARY = "dataset/state.pt", "dataset/pass.pt", "dataset/grounding.jsonl", "dataset/summary.json"
MIN_CROP = 24  # px: a 3x3 receptive field is shown with some context around it


def _save(path: Path, value) -> None:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    write_atomic(path, buffer.getvalue())


def _load(path: Path, key: dict):
    """The saved value whose key is ``key``, else None (absent, unreadable or of another pass)."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError, ValueError):
        return None
    return saved["value"] if isinstance(saved, dict) and saved.get("key") == key else None


def _key(grounder, units) -> dict:
    names = hashlib.sha256("\n".join(map(str, units)).encode()).hexdigest()[:16]
    return {**grounder.key, "units": names}


def _crop(image: torch.Tensor, box) -> Image.Image:
    """The box of ``image`` [C, H, W] widened to at least MIN_CROP px, as a PIL image <= 96 px."""
    height, width = image.shape[-2:]
    x0, y0, x1, y1 = box or (0, 0, width, height)
    for low, high, size, axis in ((x0, x1, width, 0), (y0, y1, height, 1)):
        grow = max(0, min(MIN_CROP, size) - (high - low))
        low = max(0, min(low - grow // 2, size - (high - low + grow)))
        if axis == 0:
            x0, x1 = low, low + (high - low) + grow
        else:
            y0, y1 = low, low + (high - low) + grow
    patch = (image[:, y0:y1, x0:x1].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return thumbnail(to_pil(patch))


def _read_image(path: Path) -> torch.Tensor:
    with Image.open(path) as image:
        array = np.asarray(image, dtype=np.float32) / 255.0
    array = array[:, :, None] if array.ndim == 2 else array
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def _visualizations(root: Path, units, records: dict) -> torch.Tensor:
    """float32 [U, C, H, W]: each unit's rendered PNG (zeros for units without an image)."""
    images = {str(u): _read_image(root / records[str(u)]["file"]) for u in units if str(u) in records}
    blank = torch.zeros_like(next(iter(images.values())))
    return torch.stack([images.get(str(u), blank) for u in units])


def ground_run(root, grounder, units, records: list[dict], progress_factory=None, execution=None) -> list[dict]:
    """Ground ``units`` (their PNGs named by ``records``) on the grounder's dataset, with the run's
    ``execution`` record (the one its renders used); writes the files listed in the module
    docstring and returns the grounding records (aligned with units)."""
    root = Path(root)
    grounder.adopt(execution)
    key = _key(grounder, units)
    grounding = _load(root / PASS, key)
    if grounding is None:
        progress = progress_factory(len(grounder.dataset)) if progress_factory else None
        try:
            grounding = grounder.run_pass(units, resume=_load(root / STATE, key), progress=progress,
                                          checkpoint=lambda state: _save(root / STATE, {"key": key, "value": state}))
        finally:
            if progress is not None:
                progress.close()
        _save(root / PASS, {"key": key, "value": grounding})
        (root / STATE).unlink(missing_ok=True)
    by_unit = {r["unit"]: r for r in records if has_image(r)}
    wanted: dict[int, list] = {}
    for u, unit in enumerate(units):
        for kind, listing in (("top", grounding.top[u]), ("bottom", grounding.bottom[u])):
            for rank, example in enumerate(listing):
                crop = f"examples/{stem(unit.layer)}/{unit_stem(unit.layer, str(unit))}/{kind}{rank}.png"
                example.update(crop=crop, source=grounder.source(example["index"]))
                wanted.setdefault(example["index"], []).append(example)

    def save_crops(indices, labels, images):
        for index, label, image in zip(indices, labels, images):
            for example in wanted.get(index, []):
                example["label"] = grounder.label_name(label)
                if not (root / example["crop"]).is_file():
                    save_png_atomic(root / example["crop"], _crop(image, example["box"]), fsync=False)

    signals = grounder.signals(units, _visualizations(root, units, by_unit), grounding, on_examples=save_crops)
    out = []
    for u, unit in enumerate(units):
        imaged = str(unit) in by_unit
        out.append({"unit": str(unit), "examples": grounding.top[u], "bottom": grounding.bottom[u],
                    "stats": grounding.stats[u], "dead_on_data": grounding.dead_on_data[u],
                    **({k: v for k, v in signals[u].items()} if imaged else
                       {"visualization_activation": None, "percentile": None, "path_similarity": []})})
    write_text_atomic(root / RECORDS, "".join(strict_json_dumps(r) + "\n" for r in out))
    write_text_atomic(root / SUMMARY, strict_json_dumps({"spec": grounder.spec, "examples": grounding.examples,
                                                         "k": grounder.examples, "seconds": grounding.seconds}))
    return out


def grounding_fields(root) -> dict[str, dict]:
    """{unit: grounding fields} from a run directory's dataset/grounding.jsonl ({} when not grounded)."""
    return {r["unit"]: {k: v for k, v in r.items() if k != "unit"} for r in read_records(Path(root, RECORDS))}


def grounding_summary(root) -> dict | None:
    try:
        return json.loads(Path(root, SUMMARY).read_text())
    except (OSError, ValueError):
        return None
