"""'auto' execution, decided by measurement on the real model, units and image size.

Which execution is fastest (precision x memory format, optionally torch.compile) depends on
the CPU or GPU, the model and the image size; rules from CPU flags were wrong on half of this
project's own machines (bf16 + channels_last ran googlenet 2.7x faster than fp32 on an AMD EPYC
without AMX, where the flag rule chose fp32). So, like ``torch.backends.cudnn.benchmark``,
'auto' tries each candidate on the first batch and keeps the fastest:

- The trial: for every candidate, ``TRIAL_PASSES`` forward+backward passes of the first batch,
  from its real initial images, each followed by a plain normalized ascent step; the first
  pass warms up (oneDNN primitives, compilation) and is not timed. The trial's images are then
  DISCARDED: the render starts from the same initial images with the chosen execution, so every
  unit's result equals that of a render with the chosen execution set explicitly.
- A candidate whose warm-up pass takes ``ABANDON_FACTOR`` x the fastest warm-up so far (and at
  least ``ABANDON_MIN_S``) is not timed further (status 'slow'): bf16 without the CPU's bf16 instructions (AVX2 only) ran
  googlenet 15-30x slower than fp32, and its two timed passes cost more than the render's
  first minute. A compiled candidate's warm-up compiles, so it is always timed.
- The quality guard: fp32 in the contiguous layout is the reference. A candidate whose
  objectives on the trial passes differ from the reference's by more than ``TOLERANCE`` of the
  batch's largest |objective| (fp16 overflow, a model that breaks in channels_last), whose
  values are not finite, or whose forward raises, is rejected with the reason.
- Short renders (fewer than ``TRIAL_WORTHWHILE`` x the trial's passes in all) are not worth a
  trial: they run the safe execution, fp32 contiguous, unless a decision is cached.
- Decisions are cached per (model class and weights, truncated layers, input shape, batch,
  device, torch version, candidates): in memory, and on disk under the user's cache directory
  when ``PYVIZ_FAST_AUTOTUNE_CACHE`` is set (1 = ``~/.cache/pyviz_fast``, or a directory).
- ``batch_size='auto'``: after the execution, batches of 8, 16, 32, ... (up to the unit count
  and a memory budget) are timed; the batch with the best throughput wins, stopping at the first
  that gains under 5%.

Timing noise can flip the choice between two close candidates, so the choice is data: it is in
``RenderResult.info['execution']`` and an atlas records it in run.json and reuses it. For
bit-identical results across machines set precision, memory_format (and compile) explicitly.

>>> decision = choose(prepared, settings, units, 16, plan_for, images_for)
>>> decision.execution, decision.source
(Execution(precision='bf16', memory_format='channels_last', compile=False), 'measured')
"""
import hashlib
import json
import math
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

TRIAL_PASSES = 3          # per candidate: one warm-up, then the timed ones
TRIAL_WORTHWHILE = 4      # a render needs this many times the trial's passes to be worth one
TOLERANCE = 0.05          # of the batch's largest |objective|, on every trial pass
ABANDON_FACTOR = 4        # a warm-up this many times the fastest one's is not timed further,
ABANDON_MIN_S = 0.25      # if it also took this long (a small model's warm-up is mostly set-up)
BATCH_GAIN = 1.05         # a larger batch must raise throughput by this factor to be kept
BATCH_MEMORY_SHARE = 0.25  # of the available RAM (CPU) or free device memory (CUDA)


@dataclass(frozen=True)
class Execution:
    """How the model runs: autocast precision, memory format, torch.compile."""
    precision: str = "fp32"
    memory_format: str = "contiguous"
    compile: bool = False

    def __str__(self):
        return f"{self.precision}/{self.memory_format}" + ("/compiled" if self.compile else "")


SAFE = Execution()


@dataclass
class Trial:
    execution: Execution
    rate: float = math.nan          # image-steps per second of forward+backward (nan when rejected)
    status: str = "ok"              # 'chosen' | 'ok' | 'slow' | 'rejected'
    reason: str = ""
    objectives: list = field(default_factory=list, repr=False)  # [passes][B] (not recorded)
    warmup: float = math.nan        # seconds of the first, untimed pass (not recorded)

    def record(self):
        return {"execution": str(self.execution), "image_steps_per_s": _finite(self.rate),
                "status": self.status, "reason": self.reason}


@dataclass
class Decision:
    """The execution a render runs with, and how it was chosen."""
    execution: Execution
    source: str                     # 'settings' | 'measured' | 'cache' | 'short render' | 'record'
    batch_size: int | None = None   # set when the settings asked for batch_size='auto'
    trials: list = field(default_factory=list)        # Trial (or its record) per candidate
    batch_trials: list = field(default_factory=list)  # {batch_size, image_steps_per_s, status}

    def record(self) -> dict:
        """JSON-able form, as RenderResult.info['execution'] and run.json keep it."""
        return {**asdict(self.execution), "batch_size": self.batch_size, "source": self.source,
                "trials": [t if isinstance(t, dict) else t.record() for t in self.trials],
                "batch_trials": list(self.batch_trials)}

    @classmethod
    def from_record(cls, record: dict, source="record") -> "Decision":
        execution = Execution(record["precision"], record["memory_format"], bool(record.get("compile", False)))
        return cls(execution, source, record.get("batch_size"), list(record.get("trials", [])),
                   list(record.get("batch_trials", [])))

    def settings(self) -> dict:
        """The Settings fields that make a render run exactly this execution (and batch size)."""
        fields = asdict(self.execution)
        return fields if self.batch_size is None else {**fields, "batch_size": self.batch_size}

    def explain(self) -> str:
        """A short table of the trial (or one line when nothing was measured)."""
        head = f"execution: {self.execution} ({self.source}" + (
            f", batch {self.batch_size})" if self.batch_size else ")")
        lines = [head]
        rows = [t if isinstance(t, dict) else t.record() for t in self.trials]
        if rows:
            lines.append(f"  {'candidate':28s} {'image-steps/s':>14s}  status")
        for row in rows:
            lines.append(f"  {row['execution']:28s} {_rate(row['image_steps_per_s'])}  {row['status']}"
                         + (f": {row['reason']}" if row['reason'] else ""))
        if self.batch_trials:
            lines.append(f"  {'batch size':28s} {'image-steps/s':>14s}  status")
        for row in self.batch_trials:
            lines.append(f"  {row['batch_size']:<28d} {_rate(row['image_steps_per_s'])}  {row['status']}")
        return "\n".join(lines)


def _rate(value):
    return f"{value:14.1f}" if value is not None else f"{'-':>14s}"


def _finite(value):
    return float(value) if math.isfinite(value) else None


def candidates(settings, device) -> list:
    """Every execution ``settings`` allows on ``device``; the reference (fp32 contiguous) first."""
    device = torch.device(device)
    if settings.precision != "auto":
        precisions = [settings.precision]
    elif device.type == "cuda":
        precisions = ["fp32"] + (["bf16"] if torch.cuda.is_bf16_supported() else []) + ["fp16"]
    else:  # CPU fp16 autocast runs through slow conversions except on AMX-FP16 parts: left out
        precisions = ["fp32", "bf16"]
    formats = [settings.memory_format] if settings.memory_format != "auto" else ["contiguous", "channels_last"]
    compiles = [False, True] if settings.compile == "auto" else [bool(settings.compile)]
    return [Execution(p, f, c) for c in compiles for p in precisions for f in formats]


def provisional(settings) -> Execution:
    """The execution a model is prepared with before any decision: settings' own choices, the
    safe ones where they say 'auto' (probing shapes must not depend on a fast path)."""
    return Execution(settings.precision if settings.precision != "auto" else SAFE.precision,
                     settings.memory_format if settings.memory_format != "auto" else SAFE.memory_format,
                     settings.compile is True)


# ---------------------------------------------------------------------------------------- cache

_MEMORY_CACHE: dict = {}


def _weights_state(model):
    """Cheap in-process identity of the weights: each tensor object and its version counter (which
    in-place changes such as load_state_dict bump; a memory-format conversion keeps both)."""
    return tuple((id(t), t._version) for t in list(model.parameters()) + list(model.buffers()))


def weights_digest(model) -> str:
    """A digest of the parameters' and buffers' values (for the disk cache: stable across runs)."""
    digest = hashlib.sha256()
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def _key_parts(model, layers, shape, device, options):
    return {"model": f"{type(model).__module__}.{type(model).__qualname__}", "layers": sorted(layers),
            "shape": list(shape), "device": str(device), "torch": torch.__version__,
            "candidates": [str(e) for e in options]}


def cache_dir():
    """The disk cache's directory, or None when ``PYVIZ_FAST_AUTOTUNE_CACHE`` is unset or 0."""
    value = os.environ.get("PYVIZ_FAST_AUTOTUNE_CACHE", "")
    if value in ("", "0"):
        return None
    if value == "1":
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        return Path(base) / "pyviz_fast"
    return Path(value)


class _Cache:
    """Decisions by key: in memory always, on disk when enabled."""

    def __init__(self, model, layers, shape, device, options, unit_count):
        parts = {**_key_parts(model, layers, shape, device, options), "auto_batch_units": unit_count}
        self.memory_key = (id(model), _weights_state(model), json.dumps(parts, sort_keys=True))
        self.directory = cache_dir()
        self.disk_key = None
        if self.directory is not None:
            parts["weights"] = weights_digest(model)
            self.disk_key = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]

    def _file(self):
        return self.directory / "autotune.json"

    def _disk(self) -> dict:
        try:
            return json.loads(self._file().read_text())
        except (OSError, ValueError):
            return {}

    def get(self):
        if self.memory_key in _MEMORY_CACHE:
            return _MEMORY_CACHE[self.memory_key]
        if self.disk_key is not None and self.disk_key in (entries := self._disk()):
            decision = Decision.from_record(entries[self.disk_key], source="cache")
            _MEMORY_CACHE[self.memory_key] = decision
            return decision
        return None

    def put(self, decision):
        _MEMORY_CACHE[self.memory_key] = Decision(decision.execution, "cache", decision.batch_size, decision.trials,
                                                  decision.batch_trials)
        if self.disk_key is None:
            return
        try:  # a cache that cannot be written costs a trial next time, nothing else
            self.directory.mkdir(parents=True, exist_ok=True)
            entries = self._disk()
            entries[self.disk_key] = decision.record()
            temporary = self._file().with_suffix(f".{os.getpid()}.tmp")
            temporary.write_text(json.dumps(entries, indent=1, sort_keys=True))
            os.replace(temporary, self._file())
        except OSError:
            pass


def clear_cache():
    """Forget every decision made in this process (the disk cache stays)."""
    _MEMORY_CACHE.clear()


# ---------------------------------------------------------------------------------------- trial

def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _ascend(prepared, plan, images, settings, passes, warmup_limit=math.inf):
    """``passes`` forward+backward passes with a plain normalized ascent step after each (only
    the first when it takes longer than ``warmup_limit`` seconds); returns (objectives
    [passes][B], seconds of each pass)."""
    x, objectives, seconds = images.clone(), [], []
    for _ in range(passes):
        start = time.perf_counter()
        with torch.enable_grad():
            inp = x.detach().requires_grad_(True)
            objective = plan(prepared(inp, plan.layers, taps=plan.taps))
            grad, = torch.autograd.grad(objective.sum(), inp)
        _sync(prepared.device)
        seconds.append(time.perf_counter() - start)
        objectives.append(objective.detach().float().cpu())
        if seconds[0] > warmup_limit:
            break
        scale = grad.abs().flatten(1).mean(1).view(-1, *[1] * (grad.dim() - 1)) + settings.eps
        x = (x + settings.lr * grad / scale).clamp(settings.lo, settings.hi)
    return objectives, seconds


def _try(prepared, plan, images, settings, execution, fastest_warmup) -> Trial:
    trial = Trial(execution)
    limit = math.inf if execution.compile else max(ABANDON_FACTOR * fastest_warmup, ABANDON_MIN_S)
    try:
        prepared.use(execution, plan.layers)
        trial.objectives, seconds = _ascend(prepared, plan, images, settings, TRIAL_PASSES, limit)
    except Exception as error:  # noqa: BLE001  (any failure of a candidate only rejects it)
        trial.status, trial.reason = "rejected", f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:200]}"
        return trial
    trial.warmup = seconds[0]
    if not all(torch.isfinite(o).all() for o in trial.objectives):
        trial.status, trial.reason = "rejected", "non-finite objective on the trial passes"
        return trial
    if len(seconds) < TRIAL_PASSES:
        trial.status = "slow"
        trial.reason = (f"its warm-up pass took {seconds[0]:.3g} s, {seconds[0] / fastest_warmup:.0f}x the fastest "
                        "candidate's: not timed further")
        return trial
    trial.rate = images.shape[0] / statistics.median(seconds[1:])
    return trial


def _guard(trials):
    """Reject candidates whose objectives drift from the reference's (the first fp32 one)."""
    reference = next((t for t in trials if t.execution.precision == "fp32" and t.status == "ok"), None)
    if reference is None:
        return
    for trial in trials:
        if trial is reference or trial.status != "ok":
            continue
        for step, (ours, theirs) in enumerate(zip(trial.objectives, reference.objectives)):
            scale = theirs.abs().max().item() + 1e-12
            drift = (ours - theirs).abs().max().item() / scale
            if drift > TOLERANCE:
                trial.status = "rejected"
                trial.reason = (f"objective drifts {drift:.1%} from {reference.execution} at trial pass {step + 1} "
                                f"(tolerance {TOLERANCE:.0%})")
                break


def measure(prepared, settings, plan, images, options) -> list:
    """Trial of each candidate execution; returns the trials, the fastest accepted one 'chosen'."""
    trials, fastest_warmup = [], math.inf
    for execution in options:
        trials.append(_try(prepared, plan, images, settings, execution, fastest_warmup))
        if trials[-1].status == "ok" and not execution.compile:
            fastest_warmup = min(fastest_warmup, trials[-1].warmup)
    _guard(trials)
    accepted = [t for t in trials if t.status == "ok"]
    if accepted:
        max(accepted, key=lambda t: t.rate).status = "chosen"
    return trials


def choose(prepared, settings, units, first_batch, plan_for, images_for) -> Decision:
    """Decide the execution (and with ``batch_size='auto'`` the batch size) of a render of
    ``units``; leaves ``prepared`` using the execution (see the module docstring).

    first_batch: the size of the batch the execution is tried on. plan_for(B) / images_for(B):
    the objective plan and the initial images of the first B units, made only when there is
    something to decide (a style loss's plan costs forward passes for its targets)."""
    options = candidates(settings, prepared.device)
    auto_batch = settings.batch_size == "auto"
    if len(options) == 1 and not auto_batch:
        decision = Decision(options[0], "settings")
        prepared.use(decision.execution, plan_for(first_batch).layers if decision.execution.compile else [])
        return decision
    plan, images = plan_for(first_batch), images_for(first_batch)
    passes = settings.steps * math.ceil(len(units) / first_batch)
    cache = _Cache(prepared.model, plan.layers, images.shape, prepared.device, options,
                   len(units) if auto_batch else None)
    decision = cache.get()
    if decision is None:
        decision = _decide(prepared, settings, options, plan, images, passes)
        if auto_batch and decision.source == "short render":
            decision.batch_size = first_batch
        elif auto_batch:
            prepared.use(decision.execution, plan.layers)
            decision.batch_size, decision.batch_trials = choose_batch_size(prepared, settings, plan_for,
                                                                           images_for, len(units))
        if decision.source != "short render":
            cache.put(decision)
    prepared.use(decision.execution, plan.layers)
    return decision


def _decide(prepared, settings, options, plan, images, passes) -> Decision:
    if len(options) == 1:
        return Decision(options[0], "settings")
    if passes < TRIAL_WORTHWHILE * TRIAL_PASSES * len(options):
        return Decision(SAFE if SAFE in options else options[0], "short render")
    trials = measure(prepared, settings, plan, images, options)
    chosen = next((t for t in trials if t.status == "chosen"), None)
    if chosen is None:
        reasons = "; ".join(f"{t.execution}: {t.reason}" for t in trials)
        raise RuntimeError(f"every candidate execution failed on the first batch: {reasons}")
    return Decision(chosen.execution, "measured", trials=trials)


def choose_batch_size(prepared, settings, plan_for, images_for, unit_count) -> tuple:
    """(batch size, trials) for ``batch_size='auto'``: the best throughput of a forward+backward
    over batches 8, 16, 32, ... up to ``unit_count`` and the memory budget.

    plan_for(B) / images_for(B): the objective plan and initial images of the first B units."""
    sizes, size = [], min(8, unit_count)
    while size <= unit_count:
        sizes.append(size)
        size *= 2
    if sizes[-1] != unit_count and unit_count <= 2 * sizes[-1]:
        sizes.append(unit_count)
    best, best_rate, trials, budget = sizes[0], 0.0, [], None
    for size in sizes:
        if budget is not None and size > budget:
            trials.append({"batch_size": size, "image_steps_per_s": None, "status": "over the memory budget"})
            break
        plan, images = plan_for(size), images_for(size)
        try:
            with _SavedBytes() as saved:
                _, seconds = _ascend(prepared, plan, images, settings, TRIAL_PASSES)
        except RuntimeError as error:  # out of memory, most likely: the previous size stands
            trials.append({"batch_size": size, "image_steps_per_s": None, "status": f"failed: {error}"[:200]})
            break
        rate = size / statistics.median(seconds[1:])
        per_image = max(1, saved.bytes // (TRIAL_PASSES * size))
        budget = _memory_budget(prepared.device) // per_image
        trials.append({"batch_size": size, "image_steps_per_s": rate, "status": "ok"})
        if rate < BATCH_GAIN * best_rate:
            break
        best, best_rate = size, rate
    return best, trials


class _SavedBytes:
    """Counts the bytes autograd saves for backward inside the block (activation memory)."""

    def __enter__(self):
        self.bytes = 0

        def pack(tensor):
            self.bytes += tensor.numel() * tensor.element_size()
            return tensor
        self._hooks = torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self._hooks.__exit__(*exc)


def _memory_budget(device) -> int:
    """Bytes a batch's activations may take: a share of free device memory or available RAM."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * BATCH_MEMORY_SHARE * 3)  # free memory is the hard limit: more of it may go
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        return int(int(fields["MemAvailable"].split()[0]) * 1024 * BATCH_MEMORY_SHARE)
    except (OSError, KeyError, ValueError):
        return 4 << 30
