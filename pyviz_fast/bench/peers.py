"""Adapters that run the tools users would otherwise pick, at their own defaults, on our cases.

Each adapter renders one image per channel of one layer in a single batch, at the requested
size and step count, and returns the final [0, 1] images so that every tool is scored by the
same code (``pyviz_fast.bench.objective``). Everything else is the peer's default: its
parameterization, optimizer, learning rate and transforms.

Peers are optional: ``peer_status()`` says which are importable and why not. Compatibility
shims needed on torch 2.14 / current kornia (applied only when the peer is used, each
documented at its function, and listed in BENCHMARKS.md):

- torch-lucent 0.1.8: ``lucent.optvis.render`` imports ``IPython.display`` (notebook display
  only) -> a stub module, present only while lucent is imported, when IPython is not installed; ``lucent.optvis.transform`` calls
  ``kornia.get_rotation_matrix2d`` / ``kornia.warp_affine``, which kornia 0.9 only exports from
  ``kornia.geometry.transform`` -> top-level aliases; Lucent picks ``cuda:0`` whenever CUDA is
  available -> the adapter refuses other devices on a CUDA machine.
- torch-dreams 4.0.0: imports ``cv2`` at package import (declared as opencv-python;
  opencv-python-headless provides the same module); no code shim.

>>> run = run_peer("torch-lucent", googlenet, "inception4a", range(16), size=128, steps=64)
>>> run.images.shape  # and run.seconds, run.image_steps_per_s
torch.Size([16, 3, 128, 128])
"""
import importlib
import importlib.metadata
import random
import sys
import time
import types
from dataclasses import dataclass, field

import numpy as np
import torch

from pyviz_fast.bench.objective import IMAGENET
from pyviz_fast.bench.timing import time_once

PEERS = ("torch-lucent", "torch-dreams")


@dataclass
class PeerRun:
    """One peer's render of a batch of channels: final images [N, 3, H, W] in [0, 1] on the CPU.

    checkpoints: [(steps, seconds since the call began, images)] at each requested step count
    of the same run (the last is the final image); seconds is the whole call.
    """

    tool: str
    version: str
    images: torch.Tensor
    seconds: float
    steps: int
    settings: dict = field(default_factory=dict)  # the peer's defaults that were in force
    checkpoints: list = field(default_factory=list, repr=False)

    @property
    def image_steps_per_s(self) -> float:
        return self.images.shape[0] * self.steps / self.seconds


class _Clock:
    """Seconds since creation, synchronizing CUDA first so queued work is counted."""

    def __init__(self, device):
        self.cuda = torch.device(device).type == "cuda"
        self.start = self.now()

    def now(self):
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def elapsed(self):
        return self.now() - self.start


def _shim_lucent():
    """Make torch-lucent 0.1.8 importable and runnable on torch 2.14 with kornia 0.9."""
    import kornia
    from kornia.geometry import transform as kornia_transform

    for name in ("get_rotation_matrix2d", "warp_affine"):  # lucent's random_rotate uses them
        if not hasattr(kornia, name):
            setattr(kornia, name, getattr(kornia_transform, name))
    try:
        importlib.import_module("IPython.display")
    except ImportError:  # lucent.misc.io.showing imports it for notebook display only
        ipython = types.ModuleType("IPython")
        ipython.display = types.ModuleType("IPython.display")
        sys.modules.update({"IPython": ipython, "IPython.display": ipython.display})
        try:
            importlib.import_module("lucent.optvis.render")
        finally:  # others (matplotlib's pyplot) take any IPython module for the real one: remove the stub
            del sys.modules["IPython"], sys.modules["IPython.display"]


def peer_status() -> dict:
    """{peer name: version string, or None plus the reason in ``reasons``} for every peer."""
    status = {}
    for name, module in (("torch-lucent", "lucent.optvis.render"), ("torch-dreams", "torch_dreams")):
        try:
            if name == "torch-lucent":
                _shim_lucent()
            importlib.import_module(module)
            status[name] = {"version": importlib.metadata.version(name), "reason": None}
        except Exception as error:  # noqa: BLE001 - any import failure means "skip this peer"
            status[name] = {"version": None, "reason": f"{type(error).__name__}: {error}"}
    return status


def _seed_everything(seed):
    """Peers draw from the global torch, numpy and random streams; seed all three."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def _lucent_render(model, layer, channels, *, checkpoints, device, size, normalization, seed):
    """torch-lucent at its defaults: FFT + decorrelated color param, Adam 0.05, standard
    transforms, and (below 224 px) the whole model on a bilinear upsample to 224 px.

    Lucent keeps the image at each of its ``thresholds``; a last, identity transform notes the
    time each step's forward starts, which is when the previous step has finished."""
    _shim_lucent()
    from lucent.optvis import objectives, param, render, transform
    from torchvision.transforms import Normalize

    device = torch.device(device)
    if torch.cuda.is_available() and device != torch.device("cuda:0"):
        raise ValueError(f"torch-lucent hard-codes cuda:0 when CUDA is available; got device {device}")
    name = layer.replace(".", "_")  # lucent names nested modules "a_b"
    objective = objectives.Objective.sum([objectives.channel(name, c, batch=b) for b, c in enumerate(channels)])
    transforms = list(transform.standard_transforms)
    if normalization is not None:  # same as lucent's preprocess=True for ImageNet models
        transforms.append(Normalize(*normalization))
    clock, step_starts = _Clock(device), []
    transforms.append(lambda x: step_starts.append(clock.elapsed()) or x)
    _seed_everything(seed)
    images = render.render_vis(model, objective, lambda: param.image(size, batch=len(channels)),
                               transforms=transforms, thresholds=tuple(checkpoints), preprocess=False,
                               show_image=False, progress=False)
    end = clock.elapsed()
    seconds = [step_starts[k] if k < len(step_starts) else end for k in checkpoints]
    settings = {"param": "fft+decorrelate, sd 0.01", "optimizer": "Adam lr 0.05",
                "transforms": "pad 12, jitter 8, scale 0.9-1.1, rotate +-10, jitter 4",
                "forward_size": max(size, 224)}
    return [(k, t, torch.from_numpy(im).permute(0, 3, 1, 2).contiguous())
            for k, t, im in zip(checkpoints, seconds, images)], settings


def _dreams_render(model, layer, channels, *, checkpoints, device, size, normalization, seed):
    """torch-dreams at its defaults: FFT param, Adam 9e-3 per image, random affine
    (rotate 15 degrees, resize 0.5-1.2), gradient clip 1; its objective per image.

    Checkpoints: ``Dreamer.render`` continues from the image parameter (and its optimizers)
    it is given, so the run is split into segments ending at each checkpoint."""
    from torch_dreams import Dreamer
    from torch_dreams.batched_image_param import BatchedAutoImageParam
    from torch_dreams.batched_objective import BatchedObjective
    from torchvision.transforms import Normalize

    module = dict(model.named_modules())[layer]
    dreamer = Dreamer(model, quiet=True, device=str(device))
    if normalization != IMAGENET:  # torch-dreams normalizes for ImageNet unless told otherwise
        dreamer.set_custom_normalization(torch.nn.Identity() if normalization is None
                                         else Normalize(*normalization))
    _seed_everything(seed)
    batch = BatchedAutoImageParam(batch_size=len(channels), height=size, width=size, device=str(device))

    def channel_loss(channel):
        return lambda outputs: -outputs[0][:, channel].mean()

    objective = BatchedObjective([channel_loss(int(c)) for c in channels])
    clock, done, out = _Clock(device), 0, []
    for k in checkpoints:
        batch = dreamer.render(layers=[module], image_parameter=batch, iters=k - done, custom_func=objective)
        done = k
        seconds = clock.elapsed()
        out.append((k, seconds, torch.cat([p.postprocess(device=str(device)).detach().cpu()
                                           for p in batch.image_params])))
    settings = {"param": "fft+decorrelate, sd 0.01, one Adam per image", "optimizer": "Adam lr 9e-3",
                "transforms": "RandomAffine 15 deg, random resize 0.5-1.2", "grad_clip": 1.0,
                "forward_size": "0.5-1.2x requested"}
    return out, settings


_ADAPTERS = {"torch-lucent": _lucent_render, "torch-dreams": _dreams_render}


def run_peer(tool, model, layer, channels, *, size=128, steps=64, device="cpu",
             normalization=IMAGENET, seed=0, checkpoints=()) -> PeerRun:
    """Render one image per channel of ``layer`` with ``tool`` at its defaults, in one batch.

    model: eval-mode module on ``device``; channels: channel indices (the batch);
    normalization: the model's input (mean, std), or None when the model normalizes inside;
    checkpoints: step counts below ``steps`` at which to keep the images and the time too.
    The time covers the peer's whole call (setup, ``steps`` optimizer steps, readback).
    """
    if tool not in _ADAPTERS:
        raise ValueError(f"tool must be one of {', '.join(PEERS)}; got {tool!r}")
    if steps < 1 or any(not 1 <= k <= steps for k in checkpoints):
        raise ValueError(f"steps must be >= 1 and checkpoints within 1..steps; got steps={steps}, "
                         f"checkpoints={list(checkpoints)}")
    channels = [int(c) for c in channels]
    marks = sorted(set(checkpoints) | {steps})
    (kept, settings), seconds = time_once(
        lambda: _ADAPTERS[tool](model, layer, channels, checkpoints=marks, size=size, device=device,
                                normalization=normalization, seed=seed), device=device)
    return PeerRun(tool=tool, version=importlib.metadata.version(tool), images=kept[-1][2].float(),
                   seconds=seconds, steps=steps, settings=settings,
                   checkpoints=[(k, t, im.float()) for k, t, im in kept])
