"""Side-by-side cases: pyviz_fast against the peers, each at its own defaults, scored alike.

- ``peer_rows``: image-steps/s and the final objective (``channel_objective`` of the final
  images) of each installed peer and of pyviz_fast on one batch of channels;
- ``ttq_rows``: time-to-quality: seconds each tool needs until the channels of a whole layer
  beat a quality bar, found by climbing a ladder of step counts (each rung a fresh run, so a
  tool whose schedule depends on the step count is run as a user would run it).

The quality bar is tool-independent: a channel passes when its objective on the rendered
image reaches the strongest mean activation any of ``reference_images`` (real data, e.g.
freshly generated shapes for ShapesNet) gives that channel; the layer passes when a
``fraction`` of its channels do.

>>> rows = peer_rows(model, "googlenet", "inception4a", range(16), size=128, steps=64,
...                  normalization=IMAGENET)
"""
import math
import statistics

import torch

import pyviz_fast as pvf
from pyviz_fast.bench.objective import channel_objective, layer_output
from pyviz_fast.bench.peers import PEERS, peer_status, run_peer
from pyviz_fast.bench.results import Row
from pyviz_fast.bench.timing import time_once

OURS = "pyviz_fast"


def _case(model_name, layer, channels, size, steps):
    return f"{model_name} {layer}:{channels[0]}-{channels[-1]} {size}px {steps} steps"


def _label(tool, status):
    """'torch-lucent 0.1.8' for an installed peer, the bare name otherwise (and for pyviz_fast)."""
    version = status.get(tool, {}).get("version")
    return f"{tool} {version}" if version else tool


def _skipped_row(section, case, tool, reason):
    return Row(section, case, tool, math.nan, "image-steps/s", extra={"skipped": reason})


def _ours_timed(model, layer, channels, *, size, steps, execution, backend, device, seed):
    """(images, seconds) of one pyviz_fast render of the case under ``execution``."""
    settings = pvf.Settings(size=size, steps=steps, batch_size=len(channels), precision=execution[0],
                            memory_format=execution[1])
    units = [f"{layer}:{c}" for c in channels]
    result, seconds = time_once(lambda: pvf.render(model, units, settings, backend=backend, device=device,
                                                   seed=seed, progress=False), device=device)
    return result.images, seconds


def peer_rows(model, model_name, layer, channels, *, size, steps, normalization, device="cpu", tools=PEERS,
              executions=(("fp32", "contiguous"), ("bf16", "channels_last")), backend="auto", seed=0):
    """One row per peer and per pyviz_fast execution (precision, memory format); torch-lucent
    is the baseline. pyviz_fast is rendered before the first peer and again after each, and its
    median is reported, so a change of machine load during a long peer run hits both sides."""
    channels = list(channels)
    case = _case(model_name, layer, channels, size, steps)
    status = peer_status()
    baseline = _label("torch-lucent", status) if status["torch-lucent"]["version"] else None
    ours = {execution: [] for execution in executions}
    common = {"size": size, "backend": backend, "device": device, "seed": seed}

    def render_ours():
        for execution in executions:
            ours[execution].append(_ours_timed(model, layer, channels, steps=steps, execution=execution, **common))

    for execution in executions:  # prime, untimed
        _ours_timed(model, layer, channels, steps=2, execution=execution, **common)
    render_ours()
    rows = []
    for tool in tools:
        if not status[tool]["version"]:
            rows.append(_skipped_row("peers", case, tool, f"not installed: {status[tool]['reason']}"))
            continue
        run_peer(tool, model, layer, channels, size=size, steps=1, device=device, normalization=normalization,
                 seed=seed)  # primes the model's kernels for the peer's shapes, untimed
        run = run_peer(tool, model, layer, channels, size=size, steps=steps, device=device,
                       normalization=normalization, seed=seed)
        rows.append(_scored_row(case, _label(tool, status), baseline, run.image_steps_per_s, [run.seconds],
                                model, layer, channels, run.images, normalization, defaults=run.settings))
        render_ours()
    for (precision, memory_format), runs in ours.items():
        seconds = [t for _, t in runs]
        label = f"{OURS} defaults (auto)" if precision == memory_format == "auto" else f"{OURS} {precision}/{memory_format}"
        rows.append(_scored_row(case, label, baseline,
                                len(channels) * steps / statistics.median(seconds), seconds, model, layer, channels,
                                runs[-1][0], normalization))
    return rows


def _scored_row(case, label, baseline, rate, seconds, model, layer, channels, images, normalization, **extra):
    """A peers row whose final images are scored by ``channel_objective``."""
    score = channel_objective(model, layer, channels, images.to(next(model.parameters()).device), normalization)
    spread = max(seconds) - min(seconds) if len(seconds) > 1 else math.nan
    return Row("peers", case, label, rate, "image-steps/s", statistics.median(seconds), spread, len(seconds),
               baseline=None if label == baseline else baseline, params={"batch": len(channels)},
               extra={"objective_median": float(score.median()), "objective_mean": float(score.mean()),
                      "seconds": seconds, **extra})


def channel_bar(model, layer, reference_images, normalization) -> torch.Tensor:
    """float32 [C]: each channel's strongest mean activation over ``reference_images`` [N, 3, H, W]."""
    with torch.no_grad():
        x = reference_images.float()
        if normalization is not None:
            mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in normalization)
            x = (x - mean) / std
        act = layer_output(model, layer, x).float()
    return act.flatten(2).mean(dim=2).amax(dim=0).cpu()


def _ours_render(model, layer, channels, *, size, steps, device, normalization, seed):
    del normalization  # the engine knows the model's own (pyviz_fast.engine.models.input_normalization)
    result = pvf.render(model, [f"{layer}:{c}" for c in channels], pvf.Settings(size=size, steps=steps),
                        device=device, seed=seed, progress=False)
    return result.images


def _prime(tool, model, layer, channels, *, size, device, normalization, seed):
    """One untimed 1-step run of ``tool`` so that the timed runs find the kernels' caches warm."""
    if tool == OURS:
        _ours_render(model, layer, channels, size=size, steps=1, device=device, normalization=normalization, seed=seed)
    else:
        run_peer(tool, model, layer, channels, size=size, steps=1, device=device, normalization=normalization,
                 seed=seed)


def _ladder(tool, model, layer, channels, *, ladder, size, device, normalization, seed):
    """Yield (steps, seconds, images) for each rung of ``ladder``.

    pyviz_fast: a fresh render per rung (its blur and lr schedules depend on the step count).
    Peers run constant-lr Adam, so a k-step run is the first k steps of a longer one: one run
    to the top rung keeps the images and time at every rung."""
    if tool == OURS:
        for steps in ladder:
            images, seconds = time_once(lambda: _ours_render(model, layer, channels, size=size, steps=steps,
                                                             device=device, normalization=normalization, seed=seed),
                                        device=device)
            yield steps, seconds, images
        return
    run = run_peer(tool, model, layer, channels, size=size, steps=max(ladder), device=device,
                   normalization=normalization, seed=seed, checkpoints=ladder)
    yield from run.checkpoints


def ttq_rows(model, model_name, layer, *, size, reference_images, normalization, ladder=(8, 16, 32, 64),
             fraction=0.5, tools=(OURS, *PEERS), device="cpu", seed=0, log=None):
    """Seconds each tool needs for ``fraction`` of ``layer``'s channels to beat their bar.

    Each tool climbs ``ladder`` (step counts, batch = every channel, see ``_ladder``) until the
    layer passes or the ladder ends. Row rate = channels per second of the passing rung;
    ``extra['ladder']`` keeps every rung; ``log`` (e.g. print) is told each rung.
    """
    bar = channel_bar(model, layer, reference_images.to(device), normalization)
    channels = list(range(bar.numel()))
    case = f"{model_name} {layer} all {len(channels)} channels {size}px, {fraction:.0%} beat best real image"
    status = peer_status()
    baseline = _label("torch-lucent", status) if status["torch-lucent"]["version"] else None
    rows = []
    for tool in tools:
        if tool != OURS and not status[tool]["version"]:
            rows.append(_skipped_row("ttq", case, tool, f"not installed: {status[tool]['reason']}"))
            continue
        _prime(tool, model, layer, channels[:2], size=size, device=device, normalization=normalization, seed=seed)
        rungs, passed = [], None
        for steps, seconds, images in _ladder(tool, model, layer, channels, ladder=ladder, size=size, device=device,
                                              normalization=normalization, seed=seed):
            score = channel_objective(model, layer, channels, images.to(device), normalization)
            share = float((score >= bar).float().mean())
            rungs.append({"steps": steps, "seconds": seconds, "share_passing": share,
                          "objective_median": float(score.median())})
            if log:
                log(f"  ttq {tool}: {steps} steps, {seconds:.1f} s, {share:.0%} of channels pass")
            if share >= fraction:
                passed = rungs[-1]
                break
        label = _label(tool, status)
        seconds = passed["seconds"] if passed else math.nan
        rows.append(Row("ttq", case, label, len(channels) / seconds, "units/s@quality",
                        seconds, math.nan, len(rungs), baseline=None if label == baseline else baseline,
                        params={"layer": layer, "channels": len(channels), "size": size, "fraction": fraction},
                        extra={"reached_at_steps": passed["steps"] if passed else None, "ladder": rungs,
                               "bar_median": float(bar.median()), "objective_median": rungs[-1]["objective_median"]}))
    return rows
