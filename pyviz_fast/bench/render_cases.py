"""End-to-end benchmark cases: ``pyviz_fast.render`` per backend against the model's ceiling.

The ceiling is the bare truncated forward + backward of the same model, batch, size and
execution settings (precision, memory format), run through the engine's own ``PreparedModel``
so that it differs from a render only by what a render adds: init, jitter, the ascent step,
schedules and bookkeeping. Rates are image-steps per second (one image through one step).
On a loaded machine the load can change between the ceiling's and the render's timing, so the
ceiling is timed around every render, and each render row also carries ``model_share``: the
render's own forward+backward seconds over its total (the engine's clocks), the share of a
render that is the model, measured within the same calls and so immune to load drift.

>>> rows = e2e_rows(model, "googlenet", "inception4a", range(16), size=128, steps=64,
...                 execution=("fp32", "contiguous"))
>>> [row.variant for row in rows]
['ceiling', 'fused', 'reference']
"""
import math
import statistics

import torch

import pyviz_fast as pvf
from pyviz_fast.bench.results import Row
from pyviz_fast.bench.timing import Measurement, quartile_spread, time_callable
from pyviz_fast.engine.execution import PreparedModel
from pyviz_fast.engine.goals import Optimized
from pyviz_fast.engine.layers import probe_activations
from pyviz_fast.engine.objectives import ObjectivePlan
from pyviz_fast.engine.units import OUTPUT, Unit

EXECUTIONS = {"auto": ("auto", "auto"), "fp32": ("fp32", "contiguous"), "fastest": ("bf16", "channels_last")}


def _exec_label(execution):
    precision, memory_format = execution
    if execution == EXECUTIONS["auto"]:
        return "auto"
    return precision + ("+cl" if memory_format == "channels_last" else "")


def layer_channels(units, model):
    """(layer, [channel indices]) of a spec of channel units of one layer, e.g. 'conv3:0-7'."""
    parsed = pvf.parse_units(units, model=model)
    layers = {unit.layer for unit in parsed}
    if len(layers) != 1 or any(unit.kind != "channel" for unit in parsed):
        raise ValueError(f"units must be channels of one layer (e.g. 'conv3:0-7') to have a ceiling; got {units!r}")
    return layers.pop(), [unit.index for unit in parsed]


def unit_spec(layer, channels):
    """'layer:0-15' for a contiguous range, else 'layer:3,7,9' style list of units."""
    channels = list(channels)
    if channels == list(range(channels[0], channels[0] + len(channels))):
        return f"{layer}:{channels[0]}-{channels[-1]}"
    return [f"{layer}:{c}" for c in channels]


def fwd_bwd_call(prepared, layer, channels, size, full_model=False, seed=0, units=None, goal=None):
    """A callable doing one forward (truncated at ``layer`` unless ``full_model``) and backward
    to the input of a batch of len(channels) images, each maximizing its own channel through the
    engine's own objective (``ObjectivePlan``), exactly as one render step does. units: other
    Units of ``layer`` instead (one image each), e.g. ``[Unit.deepdream(layer)]``. goal: a task's
    ``Goal`` (``engine/goals``) of len(channels) images to ascend instead, through its own layers
    (e.g. the style loss: the bare work a style transfer step cannot avoid)."""
    units = units or [Unit.channel(layer, c) for c in channels]
    if goal is None:
        shapes = probe_activations(prepared, [layer], 3, [(size, size)])[(size, size)]
        plan = ObjectivePlan(units, shapes, device=prepared.device)
    else:
        plan = Optimized(goal)
    layers = [layer, OUTPUT] if full_model else plan.layers
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(len(units), 3, size, size, generator=gen).to(prepared.device).requires_grad_(True)

    def call():
        objective = plan(prepared(images, layers, taps=plan.taps))
        grad, = torch.autograd.grad(objective.sum(), images)
        return grad
    return call


def ceiling_measurement(model, layer, channels, *, size, execution, device="cpu", full_model=False, timing=None):
    """Timing of the bare forward+backward under ``execution`` = (precision, memory_format)."""
    settings = pvf.Settings(size=size, precision=execution[0], memory_format=execution[1])
    with PreparedModel(model, settings, device) as prepared:
        return time_callable(fwd_bwd_call(prepared, layer, channels, size, full_model), device=device,
                             **(timing or {}))


def render_measurement(model, units, settings, *, backend, device="cpu", runs=2, prime=True):
    """Timing of whole ``pvf.render`` calls (init, every step, readback) and the last result.

    A render takes seconds, so instead of a full untimed warm-up call a 2-step render primes
    the kernels' caches (oneDNN primitives, allocator) when ``prime``; then ``runs`` timed calls.
    """
    results = []

    def call():
        results.append(pvf.render(model, units, settings, backend=backend, device=device, seed=0, progress=False))
    if prime:
        pvf.render(model, units, settings.replace(steps=min(2, settings.steps)), backend=backend, device=device,
                   seed=0, progress=False)
    measurement = time_callable(call, device=device, warmup=0, min_runs=runs, max_runs=runs, min_time_s=0.0)
    return measurement, results[-1]


def e2e_rows(model, model_name, layer, channels, *, size, steps, execution, device="cpu",
             backends=("fused", "reference"), section="e2e", timing=None, runs=2):
    """Ceiling, then each backend's render, of one batch of channels; ratios against the ceiling."""
    channels = list(channels)
    batch, label = len(channels), _exec_label(execution)
    case = f"{model_name} {layer} B={batch} {size}px {label}"
    params = {"model": model_name, "layer": layer, "batch": batch, "size": size, "steps": steps,
              "precision": execution[0], "memory_format": execution[1]}
    settings = pvf.Settings(size=size, steps=steps, batch_size=batch, precision=execution[0],
                            memory_format=execution[1])
    ceiling_samples, rows = [], []
    for backend in backends:  # the ceiling is timed before each render and after the last: same load
        ceiling_samples += ceiling_measurement(model, layer, channels, size=size, execution=execution, device=device,
                                               timing=timing).samples_s
        m, result = render_measurement(model, unit_spec(layer, channels), settings, backend=backend, device=device,
                                       runs=runs)
        timings = {k: v for k, v in result.timings.items() if isinstance(v, (int, float))}
        share = timings.get("forward_backward", math.nan) / timings.get("total", math.nan)
        rows.append(Row(section, case, backend, m.rate(batch * steps), "image-steps/s", m.median_s, m.iqr_s, m.runs,
                        baseline="ceiling", params=params,
                        extra={"engine_objective_median": float(result.objective.median()), "timings_s": timings,
                               "model_share": share}))
    ceiling_samples += ceiling_measurement(model, layer, channels, size=size, execution=execution, device=device,
                                           timing=timing).samples_s
    ceiling = Measurement(statistics.median(ceiling_samples), quartile_spread(ceiling_samples), min(ceiling_samples),
                          len(ceiling_samples), ceiling_samples)
    return [Row(section, case, "ceiling", ceiling.rate(batch), "image-steps/s", ceiling.median_s, ceiling.iqr_s,
                ceiling.runs, params=params)] + rows


def truncation_rows(model, model_name, layer, channels, *, size, execution, device="cpu", timing=None):
    """Forward+backward stopping at ``layer`` against the same objective on the full model."""
    channels = list(channels)
    case = f"{model_name} {layer} B={len(channels)} {size}px {_exec_label(execution)}"
    params = {"model": model_name, "layer": layer, "batch": len(channels), "size": size}
    rows = []
    for variant, full in (("full model", True), ("truncated", False)):
        m = ceiling_measurement(model, layer, channels, size=size, execution=execution, device=device,
                                full_model=full, timing=timing)
        rows.append(Row("truncation", case, variant, m.rate(len(channels)), "image-steps/s", m.median_s, m.iqr_s,
                        m.runs, baseline=None if full else "full model", params=params))
    return rows


def atlas_row(model, model_name, layer, *, settings, backend="auto", device="cpu"):
    """Units per second of rendering every channel of ``layer`` (the engine batches them)."""
    m, result = render_measurement(model, layer, settings, backend=backend, device=device, runs=1)
    units = len(result.units)
    return Row("atlas", f"{model_name} {layer} (all {units} channels) {settings.hw[0]}px {settings.steps} steps",
               f"{backend} B={settings.batch_size}", units / m.median_s, "units/s", m.median_s, m.iqr_s, m.runs,
               params={"model": model_name, "layer": layer, "units": units, "size": settings.hw[0],
                       "steps": settings.steps, "batch_size": settings.batch_size, "precision": settings.precision})
