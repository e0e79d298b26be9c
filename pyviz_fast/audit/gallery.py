"""The gallery of a run directory: a static, data-driven page that opens from file:// with no server.

Files (all relative links)::

    index.html              a small fixed shell: controls, an empty grid, the two scripts below
    gallery/app.js, .css    the viewer (vanilla JS, shipped in ``gallery_page/``, no build step)
    gallery/data.js         every unit's summary as columns: ``window.PVF_ATLAS = JSON.parse("...")``
    gallery/layers/<l>.js   per layer, each unit's details (objective curve, failure reason, dataset
                            examples and statistics, its facets' files and objectives, its RGBA
                            variant), loaded when a detail view needs them

A run with ``facets`` > 1 shows a unit's facets side by side in its grid cell and in its detail
view (next to its top dataset examples when grounded); a run with an attribution map (MaCo) has
a toggle in the detail view that shows the RGBA variants over a checkerboard. A class layer's
units show their class name (manifest field ``class``) in their cell and detail view.

The page draws only the cells in view of its scrolling grid (the page itself stays one screen
tall), so its cost does not grow with the unit count: a 20,000 unit atlas is a 1.4 KB
``index.html`` plus one data file. Names from the model are only ever set
as text by the script, so a layer called ``<img onerror=...>`` stays text. ``write_gallery``
rewrites a layer's detail file only when its content changed. Seeds are carried as text (a
64-bit seed is past the integers a JavaScript number holds exactly).

>>> write_gallery("run1", records, run_info, sheets={"conv1": "sheets/conv1.png"})
"""
import json
import shutil
from datetime import datetime, timezone
from html import escape
from html.parser import HTMLParser
from pathlib import Path

from pyviz_fast.audit.files import strict_json_dumps, write_text_atomic
from pyviz_fast.audit.names import stem

ASSETS = Path(__file__).with_name("gallery_page")
DATA = "gallery/data.js"
_DATA_PREFIX, _DETAIL_PREFIX = "window.PVF_ATLAS = JSON.parse(", "PVF_ATLAS_DETAIL("

_SHELL = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>pyviz_fast atlas: {model}</title>
<link rel="stylesheet" href="gallery/style.css">
</head><body>
<header><h1 id="title">Atlas of {model}{shard}</h1>{coverage}<p id="summary">Loading the atlas…</p>
<p>Click a unit for its full image, objective curve, numbers and dataset examples; the address
keeps the view (layer, filter, search, sort, unit) so it can be linked.
<a href="manifest.jsonl">manifest.jsonl</a> · <a href="run.json">run.json</a></p></header>
<details><summary>layers</summary><table id="layers"></table></details>
<details><summary>settings</summary><table id="settings"></table></details>
<div class="controls">
<label>layer <select id="layer"></select></label>
<label>show <select id="status"></select></label>
<label>search <input id="q" type="search" placeholder="unit, e.g. conv3:12" autocomplete="off"></label>
<label>sort <select id="sort"></select></label>
<span id="count"></span>
</div>
<div id="layer-info"></div>
<div id="scroller"><div id="grid"></div></div>
<button id="top" type="button">↑ top</button>
<div id="detail" hidden></div>
<noscript><p>The gallery needs JavaScript; the images are under images/, the data in manifest.jsonl.</p></noscript>
<script src="gallery/data.js"></script>
<script src="gallery/app.js"></script>
</body></html>
"""

# summary columns of data.js: name -> value from a record
_COLUMNS = {
    "index": lambda r: r.get("index"),
    "unit": lambda r: r["unit"],
    "value": lambda r: r.get("value"),
    "start": lambda r: (r.get("activation") or {}).get("start"),
    "max": lambda r: (r.get("activation") or {}).get("max"),
    "rise": lambda r: (r.get("activation") or {}).get("rise"),
    "status": lambda r: r.get("status", "failed"),
    "dead": lambda r: pictured_flag(r, "dead"),
    "stalled": lambda r: pictured_flag(r, "stalled"),
    "flat": lambda r: pictured_flag(r, "flat"),
    "file": lambda r: r.get("file"),
    "thumb": lambda r: r.get("thumb"),
    "percentile": lambda r: r.get("percentile"),
    "data_dead": lambda r: int(bool(r.get("dead_on_data"))),
    "warn": lambda r: int(path_warning(r)),
}
# columns only some runs have: each facet's small picture (thumbnail or PNG) with several facets
# per unit; the unit's class name (a class layer's units, when the model names its classes)
_OPTIONAL_COLUMNS = {
    "facets": lambda r: [f.get("thumb") or f["file"] for f in r["facets"]] if r.get("facets") else None,
    "class": lambda r: r.get("class"),
}
_DETAIL_FIELDS = ("curve", "reason", "seed", "examples", "bottom", "stats", "path_similarity", "percentile",
                  "visualization_activation", "dead_on_data", "rgba", "facets")


def pictured_flag(record: dict, flag: str) -> int:
    """1 if the record has ``flag`` ('dead', 'stalled', 'flat') set and a picture (a unit without one failed)."""
    return int(bool(record.get(flag)) and bool(record.get("file")))


def flag_count(records: list[dict], flag: str) -> int:
    """How many of ``records`` have ``flag`` and a picture, as the gallery counts them."""
    return sum(pictured_flag(r, flag) for r in records)


def failed(record: dict) -> bool:
    """Failed, or with non-finite steps skipped ('dead' units rendered and only never moved)."""
    return record.get("status") not in ("ok", "dead")


def path_warning(record: dict) -> bool:
    """The picture is no closer to the unit's top dataset examples than to random ones at some layer
    below it (Geirhos et al.): it may reach the unit along a path natural images do not take."""
    return any(p["top"] is not None and p["random"] is not None and p["top"] <= p["random"]
               for p in record.get("path_similarity") or [])


def _js_json(prefix: str, value, suffix: str = ");\n") -> str:
    """A script that hands ``value`` to the page as strict JSON inside a JS string literal (so no
    name in the data can be read as code or as an object key such as __proto__)."""
    return prefix + json.dumps(strict_json_dumps(value, separators=(",", ":"))) + suffix


def _exact(seed):
    """A seed as text: JavaScript numbers hold integers up to 2**53 only (3343425448318634897 showed
    as 3343425448318635000)."""
    return None if seed is None else str(seed)


def _detail(record: dict) -> dict:
    """A unit's fields of its layer's detail file, its seed as text (``_exact``)."""
    detail = {field: record.get(field) for field in _DETAIL_FIELDS if record.get(field) is not None}
    if "seed" in detail:
        detail["seed"] = _exact(detail["seed"])
    return detail


def _layer_rows(records: list[dict]) -> dict[str, list[dict]]:
    by_layer: dict[str, list[dict]] = {}
    for record in records:
        by_layer.setdefault(record["layer"], []).append(record)
    return by_layer


def gallery_data(records: list[dict], run_info: dict, sheets: dict[str, str], *, complete: bool = True,
                 dataset: dict | None = None, expected: int | None = None) -> tuple[dict, dict[str, list]]:
    """(the summary of data.js, {detail file: per-unit details of one layer}) for ``records``
    (already in display order, each layer's units together)."""
    by_layer = _layer_rows(records)
    layers, details = [], {}
    getters = dict(_COLUMNS, **{name: get for name, get in _OPTIONAL_COLUMNS.items() if any(map(get, records))})
    columns = {name: [] for name in ("layer", *getters)}
    for k, (layer, rows) in enumerate(by_layer.items()):
        detail = f"gallery/layers/{stem(layer)}.js"
        grounded = any("dead_on_data" in r for r in rows)
        layers.append({
            "name": layer, "count": len(rows), "sheet": sheets.get(layer), "detail": detail,
            "dead": flag_count(rows, "dead"),
            "stalled": flag_count(rows, "stalled"),
            "flat": flag_count(rows, "flat"),
            "failed": sum(1 for r in rows if failed(r)),
            "calls": max(r.get("layer_calls", 1) for r in rows),  # > 1: a shared module, its first call shown
            "data_dead": sum(_COLUMNS["data_dead"](r) for r in rows) if grounded else None,
            "warn": sum(_COLUMNS["warn"](r) for r in rows) if grounded else None,
        })
        details[detail] = [_detail(r) for r in rows]
        for record in rows:
            columns["layer"].append(k)
            for name, get in getters.items():
                columns[name].append(get(record))
    run = {key: run_info.get(key) for key in ("model", "seed", "settings_hash", "settings")}
    run["seed"] = _exact(run["seed"])
    run.update(units=len(records), dead=sum(columns["dead"]), stalled=sum(columns["stalled"]),
               flat=sum(columns["flat"]), failed=sum(1 for r in records if failed(r)), complete=complete,
               updated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"), dataset=dataset,
               expected=expected)
    return {"version": 1, "run": run, "layers": layers, "units": columns}, details


def _coverage(count: int, expected: int | None, shard: str | None) -> tuple[str, str]:
    """(title suffix, note) when the page shows part of the work list (one --shard of several, or
    an unfinished run); written into index.html itself, so it shows without the script."""
    if not expected or count >= expected:
        return "", ""
    by_shard = bool(shard) and not shard.endswith("/1")
    how = (f"this is shard {escape(shard)} of the work; render the other shards into this directory to complete it"
           if by_shard else "the run is unfinished; rerun the same command to complete it")
    return ((f" (shard {escape(shard)})" if by_shard else ""),
            f'<p class="partial"><strong>Partial:</strong> {count} of the {expected} units of the work list: {how}.</p>')


def _write_if_changed(path: Path, text: str) -> None:
    try:
        if path.read_text(encoding="utf-8") == text:
            return
    except OSError:
        pass
    write_text_atomic(path, text)


def write_gallery(root, records: list[dict], run_info: dict, sheets: dict[str, str], expected: int | None = None,
                  shard: str | None = None, *, complete: bool = True, dataset: dict | None = None) -> Path:
    """Write (or refresh) the gallery of run directory ``root``; returns the path of index.html.
    expected: units in the whole work list; shard: 'i/n' of the process writing it (both say when
    the page is partial). complete=False marks a run still in progress: the open page reloads its
    data every 10 s."""
    root = Path(root)
    summary, details = gallery_data(records, run_info, sheets, complete=complete, dataset=dataset, expected=expected)
    for asset in ("app.js", "style.css"):
        target = root / "gallery" / asset
        if not target.is_file() or target.read_bytes() != (ASSETS / asset).read_bytes():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ASSETS / asset, target)
    for detail, units in details.items():
        layer = next(k for k, info in enumerate(summary["layers"]) if info["detail"] == detail)
        _write_if_changed(root / detail, _js_json(f"{_DETAIL_PREFIX}{layer}, JSON.parse(", units, "));\n"))
    write_text_atomic(root / DATA, _js_json(_DATA_PREFIX, summary))
    title, note = _coverage(len(records), expected, shard)
    _write_if_changed(root / "index.html", _SHELL.format(model=escape(str(run_info.get("model"))), shard=title,
                                                         coverage=note))
    return root / "index.html"


def _read_js_json(path: Path, prefix: str):
    text = path.read_text(encoding="utf-8")
    if not text.startswith(prefix):
        raise ValueError(f"{path} is not a gallery data file")
    literal = text[len(prefix):].rstrip().rstrip(";").rstrip(")")
    if prefix == _DETAIL_PREFIX:
        literal = literal.split(", JSON.parse(", 1)[1]
    return json.loads(json.loads(literal))


def read_gallery_data(root) -> dict:
    """The summary the page loads (gallery/data.js) as a dict."""
    return _read_js_json(Path(root, DATA), _DATA_PREFIX)


class _LinkCollector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links = []

    def handle_starttag(self, tag, attrs):
        self.links += [value for name, value in attrs if name in ("href", "src") and value and not value.startswith("#")]


def gallery_links(root) -> list[str]:
    """Every file the gallery of run directory ``root`` links to or shows (run-relative): the page's
    own links, and from its data every image, thumbnail, contact sheet, detail file and dataset
    example crop. To check a copied or merged run: ``[l for l in gallery_links(r) if not (r / l).is_file()]``."""
    collector = _LinkCollector()
    collector.feed(Path(root, "index.html").read_text(encoding="utf-8"))
    links = list(collector.links) + ["gallery/app.js", "gallery/style.css"]
    summary = read_gallery_data(root)
    links += [path for column in ("file", "thumb") for path in summary["units"][column] if path]
    links += [path for paths in summary["units"].get("facets") or [] for path in paths or []]
    for layer in summary["layers"]:
        links += [layer["detail"]] + ([layer["sheet"]] if layer["sheet"] else [])
        for unit in _read_js_json(Path(root, layer["detail"]), _DETAIL_PREFIX):
            links += [ex["crop"] for key in ("examples", "bottom") for ex in unit.get(key) or [] if ex.get("crop")]
            links += [unit["rgba"]] if unit.get("rgba") else []
            links += [f[key] for f in unit.get("facets") or [] for key in ("file", "thumb", "rgba") if f.get(key)]
    return list(dict.fromkeys(links))
