"""``render``: many units per forward/backward pass, one fused ascent step per optimization step.

Per step, for a batch of B images (each its own unit, layer and kind):
  1. the parameterization gives the model inputs (pixel: the jittered image; fourier/maco: an
     image made from a spectrum, maco as many noisy crops);
  2. ONE truncated forward + backward of the whole batch through the task's objective;
  3. ONE update by the parameterization (pixel: ``ops.fused_ascent_step``: un-jitter, blur,
     normalize, clip, update, decay, clamp and the next jitter, for every image at once).
What the images maximize is a *task* (``goals``: units, facets with a diversity penalty,
accentuation of a photo, style transfer); how they are made is a *parameterization*
(``parameterizations``: pixel, fourier, maco). Both are modules behind small interfaces; this
file is the loop. Every random draw comes from the row's own generators, a chunk of steps at a
time (draws.py; MaCo's crop noise step by step), so memory does not grow with the step count
(nor does the recorded trajectory: trajectory.py). Everything that can be checked is checked
before the first step; what only shows mid-run (non-finite values, a failing batch) becomes a
per-unit status. An optional callback sees the batch's images after every step (``StepInfo``),
e.g. to record the progression. ``Renderer`` splits a render into its set-up (prepare the
model, probe the layers, bind the task, decide the execution) and the renders themselves, so
many renders (a zoom's frames) set up once; ``render`` is one set-up and one render.

>>> res = render(model, ["conv3:0-15", "fc:3"], Settings(size=128, steps=64), seed=0)
"""
import math
import reprlib
import time
from dataclasses import dataclass, fields

import torch

from pyviz_fast import ops
from pyviz_fast.backend import available_device, resolve_backend
from pyviz_fast.engine import autotune
from pyviz_fast.engine.draws import Draws, check_seed, unit_seed
from pyviz_fast.engine.execution import PreparedModel
from pyviz_fast.engine.goals import Optimized
from pyviz_fast.engine.goals.units import UnitTask
from pyviz_fast.engine.init import initial_images
from pyviz_fast.engine.layers import probe_activations, shared_layers
from pyviz_fast.engine.model_defaults import with_model_defaults
from pyviz_fast.engine.models import input_channels, load_model
from pyviz_fast.engine.parameterizations import PARAMETERIZATIONS
from pyviz_fast.engine.parameterizations import check as check_parameterization
from pyviz_fast.engine.redirect import ascent_gradients, mark_targets
from pyviz_fast.engine.result import RenderResult
from pyviz_fast.engine.schedules import decay, stages
from pyviz_fast.engine.settings import Settings, check_settings
from pyviz_fast.engine.trajectory import MAX_POINTS, Trajectory
from pyviz_fast.engine.transforms import is_identity, random_affine
from pyviz_fast.engine.truncate import LayerNotCalled
from pyviz_fast.engine.units import check_layer_name, parse_units


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

    def __init__(self, prepared, settings, backend, seed, channels, stage_plan, shapes, goals=None, evaluate=True):
        self.prepared, self.s, self.backend, self.seed, self.evaluate = prepared, settings, backend, seed, evaluate
        self.channels, self.stages, self.shapes = channels, stage_plan, shapes
        self._goals = {} if goals is None else goals  # see goal()
        self.device = prepared.device
        s = settings
        self.sigmas = decay(s.blur_start, s.blur_end, s.steps, s.schedule)
        self.lrs = decay(s.lr, s.lr if s.lr_end is None else s.lr_end, s.steps, s.schedule)
        self.transform = not is_identity(s.scale_range, s.rotate)
        self.clock = {"forward_backward": 0.0, "step": 0.0}

    def goal(self, task, rows, hw, crops):
        """``task.objective(rows, hw, crops, self)``, made once: goals keep no state, so the next
        render of the same rows by a Renderer (a zoom's next frame) reuses them. One batch's goals
        are kept at most."""
        key = (rows.start, rows.stop, hw, crops)
        if key not in self._goals:
            if any(other[:2] != key[:2] for other in self._goals):
                self._goals.clear()
            self._goals[key] = task.objective(rows, hw, crops, self)
        return self._goals[key]

    def objective_and_grad(self, inputs, wrt, goal, affine, step):
        """(reported objective [B], gradients of the optimized one w.r.t. each of ``wrt``) at
        optimization step ``step`` (the first ``redirect_steps`` use redirected ReLUs); ``affine``:
        the batch's scale/rotation draws (``Draws.affine``), read only when the settings transform.
        Runs in the caller's grad mode (``_render_batch`` enables it once per batch)."""
        start = time.perf_counter()
        if self.transform:
            inputs = random_affine(inputs, affine[step].repeat_interleave(goal.crops, 0), self.s.scale_range,
                                   self.s.rotate)
        redirect = step < self.s.redirect_steps
        reported, grads = ascent_gradients(lambda: goal(self._activations(inputs, goal, redirect)), wrt, redirect,
                                           inputs=inputs.shape[0])
        self.clock["forward_backward"] += time.perf_counter() - start
        return reported, grads

    def _activations(self, inputs, goal, redirect):
        acts = self.prepared(inputs, goal.layers, taps=goal.taps)
        if redirect:  # redirect only the units' own ReLUs (a step without redirection has none to mark)
            mark_targets(acts[layer] for layer in goal.main.layers)
        return acts

    def reference(self, images, layers):
        """{layer: activation} of ``images`` without gradients (targets such as a photo's activations)."""
        with torch.no_grad():
            return {k: v.detach() for k, v in self.prepared(images.to(self.device), layers).items()}


def _render_batch(run, task, rows, after_step):
    s = run.s
    draws = Draws.for_units(task.keys[rows], run.seed, s.steps, s.jitter)
    param = PARAMETERIZATIONS[s.param](run, draws, lambda hw: task.start(rows, hw, run))
    trajectory = Trajectory(s.steps, rows.stop - rows.start, run.device)
    hw = goal = None
    with torch.enable_grad():  # the steps' forward and backward, whatever the caller's mode: set once, not per step
        for t in range(s.steps):
            size = param.begin(t)
            if size != hw:
                hw, goal = size, run.goal(task, rows, size, param.crops)
            inputs, wrt = param.inputs(t)
            objective, grads = run.objective_and_grad(inputs, wrt, goal, draws.affine, t)
            start = time.perf_counter()
            flagged = param.update(t, grads)
            run.clock["step"] += time.perf_counter() - start
            trajectory.record(t, objective, flagged)
            if after_step is not None:
                after_step(t, param.images())
    images = param.images()
    objective = _final_objective(run, task, rows, images, hw, goal, param.crops) if run.evaluate else objective.float()
    photo = _photo_objective(run, task, rows, draws, hw, goal, param.crops) if run.evaluate else None
    alpha, spread = param.alpha(), trajectory.spread(objective)
    return (images.float().cpu(), objective.cpu(), trajectory.values.T.cpu(), spread.cpu(),
            trajectory.bad_steps().cpu(), draws.seeds, None if alpha is None else alpha.float().cpu(),
            None if photo is None else photo.cpu())


def _final_objective(run, task, rows, images, hw, goal, crops):
    """The objective of the final images themselves (un-jittered, centre of a canvas, one view): a forward."""
    view = images if tuple(images.shape[-2:]) == hw else _center_crop(images, hw)
    final_goal = goal if crops == 1 else run.goal(task, rows, hw, 1)
    with torch.no_grad():
        return final_goal(run.prepared(view, final_goal.layers, taps=final_goal.taps))[0].float()


def _photo_objective(run, task, rows, draws, hw, goal, crops):
    """The objective of the photo the rows start from (the task's, or an image init), scored as the
    final images are (``_final_objective``: the final size, no jitter): what the render raised it
    from. The trajectory's first point cannot say it: it is the first step's jittered input. None
    for a random start."""
    s = run.s
    start_hw = (s.canvas, s.canvas) if s.canvas is not None else hw
    photo = task.start(rows, start_hw, run)
    if photo is None and s.init == "image":
        photo = initial_images(s, draws, run.channels, start_hw)
    return None if photo is None else _final_objective(run, task, rows, photo.to(run.device), hw, goal, crops)


def _center_crop(images, hw):
    top, left = (images.shape[-2] - hw[0]) // 2, (images.shape[-1] - hw[1]) // 2
    return images[..., top:top + hw[0], left:left + hw[1]]


def _status(objective, image, bad_steps, steps, start, spread):
    if not math.isfinite(objective) or not all(map(math.isfinite, torch.aminmax(image))):  # one pass; NaN propagates
        return "failed", "the objective or image is not finite (activations overflow or NaN in the model)"
    if bad_steps >= steps:
        return "failed", "every step had a non-finite gradient; the image never changed"
    if bad_steps:
        return "nonfinite", f"{bad_steps} of {steps} steps had a non-finite objective or gradient (skipped)"
    if spread == 0:  # not one step moved it: a weak but live unit still moves a little
        return "dead", (f"the objective stayed at {start:.4g} for all {steps} steps: the unit does not respond "
                        "to the image (e.g. a ReLU channel that is 0 everywhere, so its gradient is 0)")
    return "ok", ""


def _probe(prepared, layers, channels, stage_plan, layout):
    """{hw: {layer: Activation}} at every size the render uses, each layer's layout learned from
    the probe (layout.py; ``layout``: the Settings' overrides)."""
    sizes = [hw for hw, _ in stage_plan]
    try:
        return probe_activations(prepared, layers, channels, sizes, layout)
    except LayerNotCalled:  # an auxiliary head gated by the root's training flag? (GoogLeNet)
        prepared.enable_training_heads()
    return probe_activations(prepared, layers, channels, sizes, layout)


def _set_up(prepared, task, settings, backend, seed, channels, stage_plan, renders=1):
    """Probe, bind the task, and decide the execution (and batch size) the renders run with:
    'auto' settings are decided by a trial on the first batch (autotune.py), whose images are
    then discarded; the trial is weighed against all ``renders`` renders' steps. Returns
    (settings with the decided batch size, shapes, decision, {layer: calls} of the shared layers)."""
    prepared.check_channels(channels)
    shapes = _probe(prepared, task.layers, channels, stage_plan, settings.layout)
    shared = shared_layers(prepared, task.layers, channels, stage_plan[-1][0])
    task.bind(shapes)
    trial = _Run(prepared, settings, backend, seed, channels, stage_plan, shapes)
    hw = stage_plan[-1][0]
    first = min(len(task.units), settings.batch_size if settings.batch_size != "auto" else 16)
    first = max(task.group, first // task.group * task.group)

    def plan_for(count):
        return Optimized(task.objective(slice(0, count), hw, 1, trial))

    def images_for(count):
        start = task.start(slice(0, count), hw, trial)
        if start is not None:
            return start.to(prepared.device)
        draws = Draws.for_units(task.keys[:count], seed, 1, settings.jitter)
        return initial_images(settings, draws, channels, hw).to(prepared.device)
    planned = settings.replace(steps=settings.steps * renders) if renders > 1 else settings
    decision = autotune.choose(prepared, planned, task.units, first, plan_for, images_for)
    if decision.batch_size is not None:
        settings = settings.replace(batch_size=decision.batch_size)
    return settings, shapes, decision, shared


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
    with Renderer(model, units, settings, backend=backend, device=device, seed=seed, batch_size=batch_size,
                  **overrides) as renderer:
        return renderer.render(seed=seed, progress=progress, callback=callback)


def _unit_task(model, units, settings):
    if settings.diversity_layer is not None:
        check_layer_name(settings.diversity_layer, model, "given as diversity_layer (--diversity-layer)")
    return UnitTask(parse_units(units, model), settings)


def resolve_model(model, device, seed):
    """An ``nn.Module`` as given, or built from a spec string (random init seeded by ``seed``);
    ValueError first when ``device`` is not on this machine, ``seed`` not an integer, or ``model``
    neither."""
    available_device(device)
    check_seed(seed)
    if isinstance(model, str):
        return load_model(model, device=device, seed=seed)[0]
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"model must be a torch.nn.Module or a model spec string (see load_model), "
                         f"got {reprlib.repr(model)}")
    return model


def choose_execution(model, units, settings=None, *, device="cpu", seed=0, batch_size=None, **overrides):
    """The execution (precision, memory format, compile; and batch size for batch_size='auto')
    that ``render`` would run these units with, decided the same way; an ``autotune.Decision``.

    For callers that make the choice once and pass it explicitly to many renders (an atlas does,
    recording it in run.json). Its ``record()`` is JSON; ``explain()`` prints the trial.

    >>> decision = choose_execution(model, "inception4a:0-15", size=128)
    >>> res = render(model, units, settings.replace(**decision.settings()))
    """
    with Renderer(model, units, settings, device=device, seed=seed, batch_size=batch_size, **overrides) as renderer:
        return renderer.decision


def resolve_settings(settings, overrides, batch_size=None, starts_from_images=False):
    """``settings`` (default ``Settings()``) with ``overrides``, validated for the parameterization."""
    settings = (check_settings(settings) or Settings()).replace(**overrides)
    if batch_size is not None:
        settings = settings.replace(batch_size=batch_size)
    check_parameterization(settings.validate(), starts_from_images)
    return settings


def render_task(model, task, settings, *, backend=None, device="cpu", seed=0, progress=False, callback=None,
                started=None):
    """Render a task (see ``goals``) on an ``nn.Module`` with validated ``settings``: the engine
    behind ``render``, ``accentuate`` and ``style_transfer``. Returns a ``RenderResult``."""
    with Renderer.for_task(model, task, settings, backend=backend, device=device, seed=seed,
                           started=started) as renderer:
        return renderer.render(seed=seed, progress=progress, callback=callback)


# Settings a Renderer's set-up depends on (the prepared model, the probed sizes, the bound task):
# fixed while it is open.
_SETUP_FIELDS = ("size", "steps", "octaves", "octave_scale", "canvas", "param", "precision", "memory_format",
                 "compile", "channels", "mean", "std", "layout", "facets", "diversity", "diversity_floor",
                 "diversity_layer")


class Renderer:
    """``render`` in two parts, for many renders of the same model and units at the same sizes
    (the frames of a zoom): entering prepares the model, parses the units, probes their layers
    and decides the execution once; each ``render(...)`` call then only renders. Arguments as
    for ``render`` (``seed`` here is the one the execution trial and a spec's model use).
    ``render`` and ``render_task`` are one set-up and one render of a Renderer. renders: how
    many renders it will make (a zoom's frames); an 'auto' execution's trial is worth making
    when all of them together have enough steps (autotune.py), as ``choose_execution`` would
    decide with ``steps`` times as many.

    >>> with Renderer(model, "conv3@deepdream", settings, renders=len(frames)) as renderer:
    ...     for k, frame in enumerate(frames):
    ...         res = renderer.render(seed=k, init_image=frame)   # other settings per call
    """

    def __init__(self, model, units, settings=None, *, backend=None, device="cpu", seed=0, batch_size=None,
                 renders=1, **overrides):
        started = time.perf_counter()
        given = set(overrides) if settings is None else {field.name for field in fields(Settings)}
        settings = resolve_settings(settings, overrides, batch_size)
        model = resolve_model(model, device, seed)
        settings = with_model_defaults(settings, model, given)
        self._open(model, _unit_task(model, units, settings), settings, backend, device, seed, started, renders)

    @classmethod
    def for_task(cls, model, task, settings, *, backend=None, device="cpu", seed=0, started=None):
        """A Renderer of a task (``goals``) on an ``nn.Module`` with validated ``settings``; ``started``:
        when the caller's set-up began (counted in the first render's timings)."""
        renderer = cls.__new__(cls)
        renderer._open(model, task, settings, backend, device, seed, started or time.perf_counter())
        return renderer

    @torch.inference_mode(False)  # a caller's inference mode: autograd could not record the render
    def _open(self, model, task, settings, backend, device, seed, started, renders=1):
        if isinstance(renders, bool) or not isinstance(renders, int) or renders < 1:
            raise ValueError(f"renders must be an integer >= 1, got {renders!r}")
        self.model, self.task, self.settings, self._seed, self._started = model, task, settings, seed, started
        self._renders, self._goals = renders, {}  # the goals of the last batch rendered (_Run.goal)
        self.device = torch.device(device)
        self.backend = resolve_backend(backend, self.device)
        self.channels = settings.channels or input_channels(model)
        self.stage_plan = stages(settings.hw, settings.steps, settings.octaves, settings.octave_scale)
        self._prepared = PreparedModel(model, settings, self.device)

    @torch.inference_mode(False)  # a caller's inference mode: autograd could not record the render
    def __enter__(self):
        prepared = self._prepared.__enter__()
        try:
            self.settings, self.shapes, self.decision, self.shared_layers = _set_up(
                prepared, self.task, self.settings, self.backend, self._seed, self.channels, self.stage_plan,
                self._renders)
        except BaseException:
            self._prepared.__exit__(None, None, None)
            raise
        self._setup = time.perf_counter() - self._started  # counted in the first render's timings
        return self

    def __exit__(self, *exc):
        self._prepared.__exit__(*exc)

    @property
    def units(self):
        return self.task.units

    @torch.inference_mode(False)  # a caller's inference mode: autograd could not record the render
    def render(self, *, seed=0, progress=False, callback=None, evaluate=True, **changes):
        """One render (a ``RenderResult``); ``changes`` replace settings fields other than those the
        set-up depends on (sizes, steps, octaves, execution, the task): e.g. init_image, lr, jitter.
        evaluate=False skips the forward of the final images: ``res.objective`` is then the last
        step's (of its jittered input, before that step's update), for callers that keep only the
        images (a zoom's frames); the status still checks the images and every step."""
        started = time.perf_counter()
        check_seed(seed)
        settings = self.settings.replace(**changes) if changes else self.settings  # replace validates
        fixed = [name for name in _SETUP_FIELDS if getattr(settings, name) != getattr(self.settings, name)]
        if fixed:
            raise ValueError(f"a Renderer keeps {', '.join(fixed)} as it was set up; use a new one to change them")
        run = _Run(self._prepared, settings, self.backend, seed, self.channels, self.stage_plan, self.shapes,
                   self._goals, evaluate)
        try:
            outputs = _render_all(run, self.task, progress, callback)
        except _CallbackError as wrapped:
            raise wrapped.__cause__ from None
        finally:
            ops.release_cached_memory()  # the steps' outputs are kept for reuse only while rendering
        images, objective, trajectory, seeds, status, reasons, alpha, photo_objective = outputs
        setup, self._setup = self._setup, 0.0
        timings = {"total": setup + time.perf_counter() - started, "setup": setup, **run.clock}
        prepared = self._prepared
        info = {"precision": prepared.precision, "memory_format": prepared.memory_format, "backend": self.backend,
                "device": str(self.device), "compile": prepared.execution.compile, "channels": self.channels,
                "batch_size": settings.batch_size, "execution": self.decision.record(), "facets": self.task.group,
                "shared_layers": self.shared_layers}
        if not photo_objective.isnan().all():  # the render started from a photo
            info["photo_objective"] = photo_objective
        return RenderResult(images, self.task.units, objective, trajectory, seeds, status, reasons, timings,
                            settings, info, alpha)


def _render_all(run, task, progress, callback):
    s, n = run.s, len(task.units)
    final_hw = (s.canvas, s.canvas) if s.canvas is not None else run.stages[-1][0]
    images = torch.zeros(n, run.channels, *final_hw)
    objective, photo_objective = torch.full((n,), math.nan), torch.full((n,), math.nan)
    trajectory = torch.full((n, min(s.steps, MAX_POINTS)), math.nan)
    seeds, status, reasons = [None] * n, ["failed"] * n, [""] * n
    alpha = None
    batch_size = max(task.group, s.batch_size // task.group * task.group)  # a unit's facets share a batch
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=n * s.steps, unit="unit-step", desc="render")
    batches = math.ceil(n / batch_size)
    try:
        for start in range(0, n, batch_size):
            rows = slice(start, min(n, start + batch_size))
            batch = task.units[rows]
            if bar is not None:
                bar.set_postfix_str(f"batch {start // batch_size + 1}/{batches}", refresh=False)
            try:
                after_step = _step_hook(bar, callback, batch, rows, s.steps)
                imgs, obj, traj, spread, bad, batch_seeds, batch_alpha, photo = _render_batch(run, task, rows,
                                                                                              after_step)
            except RuntimeError as error:  # e.g. out of memory: this batch fails, the others go on
                seeds[rows] = [unit_seed(run.seed, key) for key in task.keys[rows]]
                first_line = (str(error).splitlines() or [""])[0][:300]
                reasons[rows] = [f"batch failed: {type(error).__name__}: {first_line}"] * len(batch)
            else:
                images[rows], objective[rows], trajectory[rows], seeds[rows] = imgs, obj, traj, batch_seeds
                if batch_alpha is not None:
                    alpha = torch.zeros(n, 1, *final_hw) if alpha is None else alpha
                    alpha[rows] = batch_alpha
                if photo is not None:
                    photo_objective[rows] = photo
                for i in range(len(batch)):
                    status[start + i], reasons[start + i] = _status(obj[i].item(), imgs[i], int(bad[i]), s.steps,
                                                                    traj[i, 0].item(), spread[i].item())
            if bar is not None:  # a failed batch skips its remaining steps
                bar.update(rows.stop * s.steps - bar.n)
    finally:
        if bar is not None:
            bar.close()
    return images, objective, trajectory, seeds, status, reasons, alpha, photo_objective
