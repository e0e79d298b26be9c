"""The static ``index.html`` gallery of a run directory.

Plain HTML + CSS with relative links, so it opens from the file system (file://) with no
server: one section per layer with its contact sheet, a grid of thumbnails captioned with the
unit and its final objective value, each linking to the full-size PNG. Dead units (activation
never rose) and failed units are flagged.

>>> write_gallery("run1", records, run_info, sheets={"conv1": "sheets/conv1.png"})
"""
from html import escape
from html.parser import HTMLParser
from pathlib import Path

from pyviz_fast.audit.files import write_text_atomic
from pyviz_fast.audit.run_dir import safe_name

_STYLE = """
body { font-family: sans-serif; background: #1b1b1b; color: #ddd; margin: 1.5em; }
a { color: #8cf; } h2 { margin-top: 1.5em; }
.grid { display: flex; flex-wrap: wrap; gap: 6px; }
figure { margin: 0; padding: 3px; background: #2a2a2a; border: 2px solid #2a2a2a; text-align: center; }
figure img { display: block; width: 96px; height: 96px; image-rendering: pixelated; }
figcaption { font-size: 11px; max-width: 96px; overflow: hidden; }
.partial { background: #543; padding: 4px 8px; }
figure.dead { border-color: #d93; } figure.failed { border-color: #d33; }
.badge { font-size: 10px; font-weight: bold; color: #111; padding: 0 3px; }
.dead .badge { background: #d93; } .failed .badge { background: #d33; }
table { border-collapse: collapse; font-size: 12px; } td { padding: 1px 8px; }
"""


def _card(record: dict) -> str:
    value = record.get("value")
    value_text = "n/a" if value is None else f"{value:.3g}"
    classes, badge = "", ""
    if record.get("status") != "ok":
        classes, badge = "failed", f'<span class="badge">{escape(record.get("status", "failed"))}</span> '
    elif record.get("dead"):
        classes, badge = "dead", '<span class="badge">dead</span> '
    title = escape(f'{record["unit"]}: {record.get("reason") or value_text}', quote=True)
    if record.get("file"):
        thumb = escape(record.get("thumb") or record["file"], quote=True)
        picture = f'<a href="{escape(record["file"], quote=True)}"><img src="{thumb}" alt="{title}" loading="lazy"></a>'
    else:
        picture = '<img alt="no image">'
    return (f'<figure class="{classes}" title="{title}">{picture}'
            f'<figcaption>{badge}{escape(record["unit"])}<br>{value_text}</figcaption></figure>')


def _coverage(records: list[dict], expected: int | None, shard: str | None) -> str:
    """A note when the page shows part of the work list (one --shard of several, or an unfinished run)."""
    if not expected or len(records) >= expected:
        return ""
    how = (f"this is shard {escape(shard)} of the work; render the other shards into this directory to complete it"
           if shard and not shard.endswith("/1") else "the run is unfinished; rerun the same command to complete it")
    return f'<p class="partial"><strong>Partial:</strong> {len(records)} of the {expected} units of the work list: {how}.</p>'


def render_gallery(records: list[dict], run_info: dict, sheets: dict[str, str], expected: int | None = None,
                   shard: str | None = None) -> str:
    """The gallery page for ``records`` (already in display order). expected: units in the whole
    work list; shard: 'i/n' of the process writing it (both say when the page is partial)."""
    coverage = _coverage(records, expected, shard)
    by_layer: dict[str, list[dict]] = {}
    for record in records:
        by_layer.setdefault(record["layer"], []).append(record)
    dead = sum(1 for r in records if r.get("dead") and r.get("file"))
    failed = sum(1 for r in records if r.get("status") != "ok")  # nonfinite counts: steps were skipped
    settings_rows = "".join(f"<tr><td>{escape(str(k))}</td><td>{escape(str(v))}</td></tr>"
                            for k, v in sorted(run_info.get("settings", {}).items()))
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>pyviz_fast atlas: {escape(str(run_info.get('model')))}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Atlas of {escape(str(run_info.get('model')))}" + (f" (shard {escape(shard)})" if coverage and shard
                                                                 and not shard.endswith("/1") else "") + "</h1>",
        coverage,
        f"<p>{len(records)} units in {len(by_layer)} layers; {dead} dead (activation never rose), "
        f"{failed} failed or with non-finite steps. Seed {escape(str(run_info.get('seed')))}, settings hash "
        f"<code>{escape(str(run_info.get('settings_hash')))}</code>. Click a thumbnail for the full image. "
        '<a href="manifest.jsonl">manifest.jsonl</a> · <a href="run.json">run.json</a></p>',
        f"<details><summary>settings</summary><table>{settings_rows}</table></details>",
        "<nav>" + " · ".join(f'<a href="#layer-{escape(safe_name(layer), quote=True)}">{escape(layer)}</a> '
                              f"({len(rs)})" for layer, rs in by_layer.items()) + "</nav>",
    ]
    for layer, layer_records in by_layer.items():
        parts.append(f'<h2 id="layer-{escape(safe_name(layer), quote=True)}">{escape(layer)}</h2>')
        if layer in sheets:
            parts.append(f'<p><a href="{escape(sheets[layer], quote=True)}">contact sheet</a></p>')
        parts.append('<div class="grid">' + "".join(_card(r) for r in layer_records) + "</div>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_gallery(root, records: list[dict], run_info: dict, sheets: dict[str, str], expected: int | None = None,
                  shard: str | None = None) -> Path:
    path = Path(root, "index.html")
    write_text_atomic(path, render_gallery(records, run_info, sheets, expected, shard))
    return path


class _LinkCollector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links = []

    def handle_starttag(self, tag, attrs):
        self.links += [value for name, value in attrs if name in ("href", "src") and value and not value.startswith("#")]


def gallery_links(root) -> list[str]:
    """Every file the gallery of run directory ``root`` links to or shows (run-relative), to check
    that a copied or merged run is complete: ``[l for l in gallery_links(r) if not (r / l).is_file()]``."""
    collector = _LinkCollector()
    collector.feed(Path(root, "index.html").read_text(encoding="utf-8"))
    return collector.links
