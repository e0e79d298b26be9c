"""Throughput plots (PNG) of sweep rows: one line per (section, variant), rate against a parameter.

matplotlib is optional (``pip install pyviz_fast[plot]``): without it ``plot_sweep`` returns
None and says why, and the tables and JSON are still written.

>>> plot_sweep(rows, "batch", "throughput_vs_batch.png", title="fused step, 128 px")
PosixPath('throughput_vs_batch.png')
"""
import warnings
from collections import defaultdict
from pathlib import Path


def plot_sweep(rows, param, path, *, title="", sections=None):
    """Plot ``row.rate`` against ``row.params[param]`` for the rows whose ``extra['sweep']`` is
    ``param`` (and, if given, whose section is in ``sections``); log-log axes. Returns the path."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: works with no display
        import matplotlib.pyplot as plt
    except ImportError as error:
        warnings.warn(f"no plot {path}: matplotlib is not installed ({error})", RuntimeWarning, stacklevel=2)
        return None
    series = defaultdict(list)
    units = set()
    for row in rows:
        if row.extra.get("sweep") != param or (sections and row.section not in sections):
            continue
        what = row.section.split("-vs-")[0]  # "render-vs-batch" -> "render"
        series[f"{what}: {row.variant}"].append((row.params[param], row.rate))
        units.add(row.unit)
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, points in sorted(series.items()):
        points.sort()
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel(param)
    ax.set_ylabel(" / ".join(sorted(units)))
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
