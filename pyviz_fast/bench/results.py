"""Benchmark rows, their JSON file (rows + metadata) and the human-readable ratio table.

A row is one measured variant of one case ("fused" on "fused_ascent_step B=32 224px"); rows
of the same section and case are compared by the ratio of their rates to the row named as
their ``baseline``.

>>> rows = [Row("ops", "step B=32 224px", "reference", 6.2, "image-steps/s"),
...         Row("ops", "step B=32 224px", "fused", 60.0, "image-steps/s", baseline="reference")]
>>> round(ratio(rows[1], rows), 2)
9.68
>>> print(format_ratio_table(rows))  # one line per row, the last column "9.68x reference"
"""
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class Row:
    """One measured variant of one benchmark case. ``rate`` is higher-is-better, in ``unit``."""

    section: str  # ops | e2e | peers | ttq | atlas | sweep
    case: str  # what is being compared, e.g. "googlenet inception4a:0-15 128px B=16 fp32"
    variant: str  # fused | reference | ceiling | lucent | torch-dreams | ...
    rate: float
    unit: str  # image-steps/s, units/s, GB/s, 1/s (time-to-quality)
    median_s: float = math.nan
    iqr_s: float = math.nan
    runs: int = 0
    baseline: str = None  # variant of the same section+case this row's ratio is taken against
    params: dict = field(default_factory=dict)  # batch, size, dtype, model, layer, steps, ...
    extra: dict = field(default_factory=dict)  # objective values, bandwidth, notes


def ratio(row: Row, rows) -> float:
    """``row.rate`` over the rate of its baseline among ``rows`` (nan without one)."""
    if row.baseline is None:
        return math.nan
    for other in rows:
        if (other.section, other.case, other.variant) == (row.section, row.case, row.baseline):
            return row.rate / other.rate if other.rate else math.nan
    return math.nan


def _fmt(value, digits=3):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _note(row):
    """The objective a tool reached, an op's difference from the reference, or why a row has no rate."""
    if "max_abs_diff_vs_reference" in row.extra:
        return f"max abs diff vs reference {row.extra['max_abs_diff_vs_reference']:.2g}"
    if "timings_s" in row.extra and "forward_backward" in row.extra["timings_s"]:
        t = row.extra["timings_s"]
        return f"model share {t['forward_backward'] / t['total']:.2f} (fwd+bwd s / render s)"
    if "skipped" in row.extra:
        return f"skipped: {row.extra['skipped']}"[:80]
    if "chose" in row.extra:
        return f"chose {row.extra['chose']}"
    if row.extra.get("best_fixed"):
        return "best fixed execution"
    if "objective_median" in row.extra:
        mean = row.extra.get("objective_mean")
        return f"objective median {row.extra['objective_median']:.4g}" + ("" if mean is None else f", mean {mean:.4g}")
    return ""


def table_lines(rows, markdown=False):
    """Rows as a table: section, case, variant, rate, median time +- IQR, ratio to its baseline,
    and a note (the objective reached, or why a row was skipped)."""
    header = ["section", "case", "variant", "rate", "unit", "median ms", "IQR ms", "vs baseline", "note"]
    body = []
    for row in rows:
        r = ratio(row, rows)
        vs = "-" if math.isnan(r) else f"{r:.2f}x {row.baseline}"
        body.append([row.section, row.case, row.variant, _fmt(row.rate), row.unit,
                     _fmt(row.median_s * 1e3), _fmt(row.iqr_s * 1e3), vs, _note(row)])
    if markdown:
        return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + \
               ["| " + " | ".join(cells) + " |" for cells in body]
    widths = [max(len(line[i]) for line in [header] + body) for i in range(len(header))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in [header] + body]


def format_ratio_table(rows, markdown=False) -> str:
    """The table ``pyviz-fast bench`` prints: every row with its ratio to its baseline."""
    return "\n".join(table_lines(list(rows), markdown=markdown))


def write_results(path, rows, metadata) -> Path:
    """Write ``{"metadata": ..., "rows": [...]}`` as JSON (nan becomes null) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"metadata": metadata, "rows": [asdict(row) for row in rows]}
    path.write_text(json.dumps(_nan_to_none(payload), indent=1) + "\n")
    return path


def read_results(path):
    """(metadata, rows) from a file written by ``write_results``."""
    payload = json.loads(Path(path).read_text())
    rows = [Row(**{k: (math.nan if v is None and k in ("rate", "median_s", "iqr_s") else v)
                   for k, v in row.items()}) for row in payload["rows"]]
    return payload["metadata"], rows


def _nan_to_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_none(v) for v in value]
    return value
