"""``render``: many units per forward/backward pass, one fused ascent step per optimization step.

Per step, for a batch of B units (each image its own unit, layer and kind):
  1. ONE truncated forward + backward of the whole batch (model input = jittered image);
  2. ONE ``ops.fused_ascent_step``: un-jitter, blur, normalize, clip, update, decay, clamp and
     the next jitter, for every image at once.
All random draws come from each unit's own generators, a chunk of steps at a time (draws.py), so
the loop does no per-item Python work and memory does not grow with the step count (nor does the
recorded trajectory: trajectory.py). Everything that can be checked is checked before the first
step; what only shows mid-run (non-finite values, a failing batch) becomes a per-unit status. An
optional callback sees the batch's images after every step (``StepInfo``), e.g. to record the
progression.

>>> res = render(model, ["conv3:0-15", "fc:3"], Settings(size=128, steps=64), seed=0)
"""
import math
import time
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from pyviz_fast import ops
from pyviz_fast.backend import resolve_backend
from pyviz_fast.engine import autotune
from pyviz_fast.engine.draws import Draws, unit_seed
from pyviz_fast.engine.execution import PreparedModel
from pyviz_fast.engine.init import initial_images
from pyviz_fast.engine.layers import probe_activations, probe_shapes
from pyviz_fast.engine.models import input_channels, load_model
from pyviz_fast.engine.objectives import ObjectivePlan, check_term
from pyviz_fast.engine.params import FourierImage
from pyviz_fast.engine.pyramid import laplacian_normalize
from pyviz_fast.engine.result import RenderResult
from pyviz_fast.engine.schedules import decay, stages
from pyviz_fast.engine.settings import Settings
from pyviz_fast.engine.trajectory import MAX_POINTS, Trajectory
from pyviz_fast.engine.transforms import is_identity, random_affine
from pyviz_fast.engine.truncate import LayerNotCalled
from pyviz_fast.engine.units import Unit, parse_units


def _expand_whole_layers(units, shapes):
    """'conv3' (no index) -> one unit per channel of conv3."""
    out = []
    for unit in units:
        term = unit.terms[0]
        if len(unit.terms) == 1 and term.index is None and term.kind in ("channel", "neuron"):
            out.extend(Unit((replace(term, index=i),)) for i in range(shapes[term.layer].channels))
        else:
            out.append(unit)
    return out


@dataclass(frozen=True)
class StepInfo:
    """What a ``render`` callback gets after each optimization step of a batch.

    step: index of the step just taken, 0 .. steps-1 (each batch runs all ``steps``).
    images: float [B, C, h, w] in [0, 1], detached, on the render's device: the batch's images
    after this step (at the current octave's size; the whole canvas with ``canvas``). They may be
    updated in place by the next step: copy what you keep. units: the batch's B Units.
    rows: where the batch sits in the result, ``res.images[rows]``.
    """
    step: int
    steps: int
    images: torch.Tensor
    units: list
    rows: slice


class _CallbackError(Exception):
    """Carries an exception out of the user's callback past the per-batch error handling."""


def _step_hook(bar, callback, units, rows, steps):
    """What runs after each step of one batch (advance the bar, call the callback), or None if nothing."""
    if bar is None and callback is None:
        return None

    def after_step(t, images):
        if bar is not None:
            bar.update(len(units))
        if callback is not None:
            try:
                callback(StepInfo(t, steps, images.detach().float(), units, rows))
            except Exception as error:
                raise _CallbackError() from error

    return after_step


class _Run:
    """What every batch of one render call shares: model, settings, schedules, shapes, clocks."""

    def __init__(self, prepared, settings, backend, seed, channels, stage_plan, shapes):
        self.prepared, self.s, self.backend, self.seed = prepared, settings, backend, seed
        self.channels, self.stages, self.shapes = channels, stage_plan, shapes
        self.device = prepared.device
        s = settings
        self.sigmas = decay(s.blur_start, s.blur_end, s.steps, s.schedule)
        self.lrs = decay(s.lr, s.lr if s.lr_end is None else s.lr_end, s.steps, s.schedule)
        self.transform = not is_identity(s.scale_range, s.rotate)
        self.clock = {"forward_backward": 0.0, "step": 0.0}

    def objective_and_grad(self, inp, wrt, plan, uniforms):
        """Objective [B] of images ``inp`` and its gradient w.r.t. ``wrt`` (inp itself or a parameter)."""
        start = time.perf_counter()
        with torch.enable_grad():
            view = random_affine(inp, uniforms, self.s.scale_range, self.s.rotate) if self.transform else inp
            objective = plan(self.prepared(view, plan.layers))
            grad, = torch.autograd.grad(objective.sum(), wrt)
        self.clock["forward_backward"] += time.perf_counter() - start
        return objective.detach(), grad

    def evaluate(self, images, plan):
        with torch.no_grad():
            return plan(self.prepared(images, plan.layers)).float()


def _crop_index(canvas, offsets, hw):
    """Advanced-indexing tuple selecting one hw crop per image at ``offsets`` (fractions of the free range)."""
    B, C, Hc, Wc = canvas.shape
    dev = canvas.device
    top = (offsets[:, 0] * (Hc - hw[0] + 1)).long().clamp(max=Hc - hw[0]).to(dev)
    left = (offsets[:, 1] * (Wc - hw[1] + 1)).long().clamp(max=Wc - hw[1]).to(dev)
    rows = (top[:, None] + torch.arange(hw[0], device=dev))[:, None, :, None]
    cols = (left[:, None] + torch.arange(hw[1], device=dev))[:, None, None, :]
    return torch.arange(B, device=dev)[:, None, None, None], torch.arange(C, device=dev)[None, :, None, None], rows, cols


def _processed_grad(run, grad, shifts, t):
    """Un-jitter, blur, normalize and clip a gradient with the ops (the Adam path); + non-finite flags."""
    s, b = run.s, run.backend
    g = ops.gaussian_blur(ops.jitter(grad, -shifts, backend=b), run.sigmas[t], backend=b)
    g = ops.clip_grad(ops.normalize_grad(g, s.norm, s.eps, backend=b), s.clip, backend=b)
    nonfinite = ~torch.isfinite(g).flatten(1).all(dim=1)
    return torch.where(nonfinite[:, None, None, None], torch.zeros((), device=g.device), g), nonfinite


def _adam_update(run, adam, x, index, grad, shifts, t):
    """torch.optim.Adam step on the pixels ``x`` (in place) with the processed gradient of the
    view ``x[index]`` (the whole image when index is None); returns (updated view, non-finite flags)."""
    s = run.s
    g, nonfinite = _processed_grad(run, grad, shifts, t)
    if index is not None:
        full = torch.zeros_like(x)
        full[index] = g
        g = full
    adam.param_groups[0]["lr"] = run.lrs[t]
    x.grad = -g  # the optimizer minimizes
    adam.step()
    with torch.no_grad():
        x.sub_(s.decay * (x - s.center)).clamp_(s.lo, s.hi)
    return (x if index is None else x[index]), nonfinite


def _pixel_loop(run, units, draws, shifts, trajectory, bad, after_step):
    """Optimize pixels (optionally a canvas, optionally over octaves); returns final images."""
    s, b = run.s, run.backend
    canvas = s.canvas is not None
    x = initial_images(s, draws, run.channels, (s.canvas, s.canvas) if canvas else run.stages[0][0]).to(run.device)
    t = 0
    for hw, count in run.stages:
        if not canvas and tuple(x.shape[-2:]) != hw:
            x = F.interpolate(x, size=hw, mode="bilinear", align_corners=False).clamp(s.lo, s.hi)
        plan = ObjectivePlan(units, run.shapes[hw], run.device)
        adam = torch.optim.Adam([x], lr=s.lr) if s.optimizer == "adam" else None
        inp = None
        for _ in range(count):
            index = _crop_index(x, draws.crops[t], hw) if canvas else None
            view = x[index] if canvas else x
            if inp is None:
                inp = ops.jitter(view, shifts[t], backend=b)
            inp = inp.detach().requires_grad_(True)
            objective, grad = run.objective_and_grad(inp, inp, plan, draws.affine[t])
            trajectory[t] = objective
            start = time.perf_counter()
            if s.laplacian_levels:
                grad = laplacian_normalize(grad, s.laplacian_levels, s.eps)
            if adam is None:
                new, inp, nonfinite = ops.fused_ascent_step(
                    view, grad, shifts[t], shifts[t + 1], run.sigmas[t], norm=s.norm, eps=s.eps, clip=s.clip,
                    lr=run.lrs[t], decay=s.decay, center=s.center, lo=s.lo, hi=s.hi, backend=b)
            else:
                new, nonfinite = _adam_update(run, adam, x, index, grad, shifts[t], t)
                inp = None
            bad += nonfinite | ~torch.isfinite(objective)
            if s.image_blur_every and (t + 1) % s.image_blur_every == 0:
                new, inp = ops.gaussian_blur(new, s.image_blur_sigma, backend=b), None
            if canvas:
                x[index] = new
                inp = None
            elif adam is None:
                x = new
            elif new is not x:  # Adam updates x in place; an image blur made a new tensor
                x.copy_(new)
            run.clock["step"] += time.perf_counter() - start
            if after_step is not None:
                after_step(t, x)
            t += 1
    return x.detach()


def _fourier_loop(run, units, draws, shifts, trajectory, bad, after_step):
    """Optimize a Fourier / decorrelated-color parameterization (Lucid's look) with autograd."""
    s = run.s
    hw = run.stages[-1][0]
    param = FourierImage(draws, run.channels, hw, s.decorrelate, run.device)
    adam = torch.optim.Adam([param.spectrum], lr=s.lr) if s.optimizer == "adam" else None
    plan = ObjectivePlan(units, run.shapes[hw], run.device)
    for t in range(s.steps):
        with torch.enable_grad():
            inp = ops.reference.jitter(param(), shifts[t])  # differentiable roll
            objective, grad = run.objective_and_grad(inp, param.spectrum, plan, draws.affine[t])
        trajectory[t] = objective
        start = time.perf_counter()
        nonfinite = ~torch.isfinite(grad).flatten(1).all(dim=1)
        grad = torch.where(nonfinite.view(-1, 1, 1, 1, 1), torch.zeros((), device=grad.device), grad)
        bad += nonfinite | ~torch.isfinite(objective)
        with torch.no_grad():
            if adam is None:
                scale = grad.abs().flatten(1).mean(dim=1).view(-1, 1, 1, 1, 1) + s.eps
                param.spectrum.add_(run.lrs[t] * grad / scale)
            else:
                adam.param_groups[0]["lr"] = run.lrs[t]
                param.spectrum.grad = -grad
                adam.step()
        run.clock["step"] += time.perf_counter() - start
        if after_step is not None:
            with torch.no_grad():
                after_step(t, param())
    with torch.no_grad():
        return param()


def _render_batch(run, units, after_step):
    s = run.s
    draws = Draws.for_units(units, run.seed, s.steps, s.jitter)
    shifts = draws.shifts.to(run.device)
    trajectory = Trajectory(s.steps, len(units), run.device)
    bad = torch.zeros(len(units), dtype=torch.int32, device=run.device)
    loop = _fourier_loop if s.param == "fourier" else _pixel_loop
    images = loop(run, units, draws, shifts, trajectory, bad, after_step)
    hw = run.stages[-1][0]
    final_view = images if s.canvas is None else _center_crop(images, hw)
    objective = run.evaluate(final_view, ObjectivePlan(units, run.shapes[hw], run.device))
    spread = trajectory.spread(objective)
    return images.float().cpu(), objective.cpu(), trajectory.values.T.cpu(), spread.cpu(), bad.cpu(), draws.seeds


def _center_crop(images, hw):
    top, left = (images.shape[-2] - hw[0]) // 2, (images.shape[-1] - hw[1]) // 2
    return images[..., top:top + hw[0], left:left + hw[1]]


def _status(objective, image, bad_steps, steps, start, spread):
    if not math.isfinite(objective) or not torch.isfinite(image).all():
        return "failed", "the objective or image is not finite (activations overflow or NaN in the model)"
    if bad_steps >= steps:
        return "failed", "every step had a non-finite gradient; the image never changed"
    if bad_steps:
        return "nonfinite", f"{bad_steps} of {steps} steps had a non-finite objective or gradient (skipped)"
    if spread == 0:  # not one step moved it: a weak but live unit still moves a little
        return "dead", (f"the objective stayed at {start:.4g} for all {steps} steps: the unit does not respond "
                        "to the image (e.g. a ReLU channel that is 0 everywhere, so its gradient is 0)")
    return "ok", ""


def _prepare_units(units, model, prepared, channels, stage_plan, layout):
    """Parse, probe every needed layer at every size used (learning its layout, see layout.py; ``layout``:
    the Settings' overrides), expand whole layers, check every term."""
    units = parse_units(units, model)
    names = list(dict.fromkeys(layer for u in units for layer in u.layers))
    try:
        probe_shapes(prepared, names, channels, stage_plan[-1][0])
    except LayerNotCalled:  # an auxiliary head gated by the root's training flag? (GoogLeNet)
        prepared.enable_training_heads()
    shapes = probe_activations(prepared, names, channels, [hw for hw, _ in stage_plan], layout)
    units = _expand_whole_layers(units, shapes[stage_plan[-1][0]])
    for per_layer in shapes.values():
        for unit in units:
            for term in unit.terms:
                check_term(term, unit, per_layer[term.layer])
    return units, shapes


def _choose_execution(prepared, settings, units, shapes, stage_plan, channels, seed):
    """The execution (and batch size) the render runs with: 'auto' settings are decided by a
    trial on the first batch (autotune.py), whose images are then discarded."""
    hw = stage_plan[-1][0]
    first = min(len(units), settings.batch_size if settings.batch_size != "auto" else 16)

    def plan_for(count):
        return ObjectivePlan(units[:count], shapes[hw], prepared.device)

    def images_for(count):
        draws = Draws.for_units(units[:count], seed, 1, settings.jitter)
        return initial_images(settings, draws, channels, hw).to(prepared.device)
    return autotune.choose(prepared, settings, units, first, plan_for, images_for)


def _resolve(model, settings, device, seed, batch_size, overrides):
    """(model, validated settings, torch.device, input channels, octave stages) of a call."""
    settings = (settings or Settings()).replace(**overrides)
    if batch_size is not None:
        settings = settings.replace(batch_size=batch_size)
    settings.validate()
    if settings.param == "fourier" and (settings.octaves > 1 or settings.canvas is not None):
        raise ValueError("param='fourier' works at one size: use octaves=1 and canvas=None")
    if isinstance(model, str):
        model, _ = load_model(model, device=device, seed=seed)
    channels = settings.channels or input_channels(model)
    stage_plan = stages(settings.hw, settings.steps, settings.octaves, settings.octave_scale)
    return model, settings, torch.device(device), channels, stage_plan


def choose_execution(model, units, settings=None, *, device="cpu", seed=0, batch_size=None, **overrides):
    """The execution (precision, memory format, compile; and batch size for batch_size='auto')
    that ``render`` would run these units with, decided the same way; an ``autotune.Decision``.

    For callers that make the choice once and pass it explicitly to many renders (an atlas does,
    recording it in run.json). Its ``record()`` is JSON; ``explain()`` prints the trial.

    >>> decision = choose_execution(model, "inception4a:0-15", size=128)
    >>> res = render(model, units, settings.replace(**decision.settings()))
    """
    model, settings, device, channels, stage_plan = _resolve(model, settings, device, seed, batch_size, overrides)
    with PreparedModel(model, settings, device) as prepared:
        prepared.check_channels(channels)
        units, shapes = _prepare_units(units, model, prepared, channels, stage_plan, settings.layout)
        return _choose_execution(prepared, settings, units, shapes, stage_plan, channels, seed)


def render(model, units, settings=None, *, backend=None, device="cpu", seed=0, batch_size=None,
           progress=False, callback=None, **overrides):
    """Render the image that most excites each unit; returns a ``RenderResult``.

    model: an ``nn.Module`` (or a spec string for ``load_model``). units: unit specs (see
    ``parse_units``), Unit objects, or a list of them. settings: a ``Settings`` (default
    ``Settings()``); keyword ``overrides`` replace its fields, e.g. ``steps=64``.
    backend: 'auto' | 'fused' | 'reference' (ops backend; None = the package default).
    seed: a unit's random draws depend on (seed, unit) only. batch_size: units per pass
    (overrides settings.batch_size). progress: show a tqdm bar on stderr that advances after
    every step by the batch's unit count (total: units x steps, in unit-steps; the postfix
    names the batch); it reads no values from the device.
    callback: None, or a function called after every optimization step of every batch with a
    ``StepInfo`` (step, steps, images [B, C, h, w] in [0, 1], units, rows), e.g. to record the
    progression. After a batch's last step its images are the final ``res.images[rows]``
    (``res.images`` is on the CPU). The callback runs on the hot path: it costs what it does
    (``.cpu()`` waits for the device); with None nothing is copied or synchronized. An exception
    it raises ends the render.

    >>> res = render(model, "inception4a:0-15", steps=64, size=128, seed=0)
    >>> res.images.shape
    torch.Size([16, 3, 128, 128])
    >>> frames = []
    >>> def keep(info):   # every 16th step's image of the batch's first unit
    ...     if info.step % 16 == 15:
    ...         frames.append(info.images[0].cpu())
    >>> res = render(model, "inception4a:0", steps=64, callback=keep)
    >>> len(frames)
    4
    """
    started = time.perf_counter()
    model, settings, device, channels, stage_plan = _resolve(model, settings, device, seed, batch_size, overrides)
    backend = resolve_backend(backend, device)
    with PreparedModel(model, settings, device) as prepared:
        prepared.check_channels(channels)
        units, shapes = _prepare_units(units, model, prepared, channels, stage_plan, settings.layout)
        decision = _choose_execution(prepared, settings, units, shapes, stage_plan, channels, seed)
        if decision.batch_size is not None:
            settings = settings.replace(batch_size=decision.batch_size)
        run = _Run(prepared, settings, backend, seed, channels, stage_plan, shapes)
        setup = time.perf_counter() - started
        try:
            outputs = _render_all(run, units, progress, callback)
        except _CallbackError as wrapped:
            raise wrapped.__cause__ from None
        finally:
            ops.release_cached_memory()  # the steps' outputs are kept for reuse only while rendering
    images, objective, trajectory, seeds, status, reasons = outputs
    timings = {"total": time.perf_counter() - started, "setup": setup, **run.clock}
    info = {"precision": prepared.precision, "memory_format": prepared.memory_format, "backend": backend,
            "device": str(device), "compile": prepared.execution.compile, "channels": channels,
            "batch_size": settings.batch_size, "execution": decision.record()}
    return RenderResult(images, units, objective, trajectory, seeds, status, reasons, timings, settings, info)


def _render_all(run, units, progress, callback):
    s = run.s
    final_hw = (s.canvas, s.canvas) if s.canvas is not None else run.stages[-1][0]
    images = torch.zeros(len(units), run.channels, *final_hw)
    objective = torch.full((len(units),), math.nan)
    trajectory = torch.full((len(units), min(s.steps, MAX_POINTS)), math.nan)
    seeds, status, reasons = [None] * len(units), ["failed"] * len(units), [""] * len(units)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(units) * s.steps, unit="unit-step", desc="render")
    batches = math.ceil(len(units) / s.batch_size)
    try:
        for start in range(0, len(units), s.batch_size):
            batch = units[start:start + s.batch_size]
            rows = slice(start, start + len(batch))
            if bar is not None:
                bar.set_postfix_str(f"batch {start // s.batch_size + 1}/{batches}", refresh=False)
            try:
                after_step = _step_hook(bar, callback, batch, rows, s.steps)
                imgs, obj, traj, spread, bad, batch_seeds = _render_batch(run, batch, after_step)
            except RuntimeError as error:  # e.g. out of memory: this batch fails, the others go on
                seeds[rows] = [unit_seed(run.seed, u) for u in batch]
                first_line = (str(error).splitlines() or [""])[0][:300]
                reasons[rows] = [f"batch failed: {type(error).__name__}: {first_line}"] * len(batch)
            else:
                images[rows], objective[rows], trajectory[rows], seeds[rows] = imgs, obj, traj, batch_seeds
                for i in range(len(batch)):
                    status[start + i], reasons[start + i] = _status(obj[i].item(), imgs[i], int(bad[i]), s.steps,
                                                                    traj[i, 0].item(), spread[i].item())
            if bar is not None:  # a failed batch skips its remaining steps
                bar.update(rows.stop * s.steps - bar.n)
    finally:
        if bar is not None:
            bar.close()
    return images, objective, trajectory, seeds, status, reasons
