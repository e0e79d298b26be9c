"""The project's speed targets (issues 2, 3, 6), checked against the rows of one suite run.

A target is reported, never asserted: measured ratio, required ratio, met or missed (and by
how much). A target whose rows are missing (section not run, peer not installed) is 'n/a'.

>>> format_targets(evaluate_targets(rows))
"""
import math

from pyviz_fast.bench.results import ratio


def _find(rows, **want):
    """The first row whose attributes / params match ``want`` (params keys prefixed by 'p_')."""
    for row in rows:
        if all((row.params.get(k[2:]) if k.startswith("p_") else getattr(row, k)) == v for k, v in want.items()):
            return row
    return None


def _model_share(row):
    """forward+backward seconds / total seconds of the render (the engine's clocks)."""
    timings = row.extra.get("timings_s", {})
    return timings["forward_backward"] / timings["total"] if "forward_backward" in timings else math.nan


def _peers_fastest(rows):
    return next((r for r in rows if r.section == "peers" and r.variant == "pyviz_fast bf16/channels_last"), None)


TARGETS = (
    ("fused step >= 8x reference step (B=32, 224 px, fp32)", 8.0,
     lambda rows: _find(rows, section="ops", variant="fused", p_op="fused_ascent_step", p_batch=32, p_size=224,
                        p_dtype="torch.float32", p_grad_channels_last=False)),
    ("fused step effective bandwidth >= 40% of torch.clone (B=32, 224 px, fp32)", 0.4,
     lambda rows: next((r for r in rows if r.section == "bandwidth" and r.variant == "fused_ascent_step (fused)"), None)),
    ("render >= 0.8x bare fwd+bwd ceiling, googlenet inception4a:0-15, fp32", 0.8,
     lambda rows: _find(rows, section="e2e", variant="fused", p_model="googlenet", p_layer="inception4a",
                        p_precision="fp32")),
    ("render >= 0.8x bare fwd+bwd ceiling, googlenet inception4a:0-15, bf16 + channels_last", 0.8,
     lambda rows: _find(rows, section="e2e", variant="fused", p_model="googlenet", p_layer="inception4a",
                        p_precision="bf16")),
    ("fastest settings >= 10x torch-lucent image-steps/s (googlenet inception4a:0-15, 128 px)", 10.0,
     _peers_fastest),
)


def evaluate_targets(rows) -> list:
    """[{target, required, measured, status, detail}] for every target in ``TARGETS``.

    For the end-to-end targets the measured figure is the render's model share (its own
    forward+backward time over its total, immune to load drift); the ratio to the separately
    timed bare ceiling is given in the detail."""
    out = []
    for name, required, pick in TARGETS:
        row = pick(rows)
        measured = ratio(row, rows) if row is not None else math.nan
        detail = f"{measured:.2f}x vs {row.baseline}" if row is not None else ""
        if row is not None and row.section == "e2e":
            measured = _model_share(row)
            detail = f"model share {measured:.2f}; {detail} timed separately"
        if math.isnan(measured):
            status, detail = "n/a", "rows missing (section skipped, backend or peer unavailable)"
        elif measured >= required:
            status = "met"
        else:
            status, detail = "missed", f"{detail}: {measured / required:.0%} of the target"
        out.append({"target": name, "required": required, "measured": None if math.isnan(measured) else measured,
                    "status": status, "detail": detail})
    return out


def format_targets(targets) -> str:
    """Markdown table of ``evaluate_targets`` output."""
    lines = ["| target | required | measured | status |", "|---|---|---|---|"]
    for t in targets:
        measured = "-" if t["measured"] is None else f"{t['measured']:.2f}x"
        lines.append(f"| {t['target']} | {t['required']}x | {measured} | {t['status']}: {t['detail']} |")
    return "\n".join(lines)
