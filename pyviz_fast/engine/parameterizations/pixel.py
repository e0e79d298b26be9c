"""Pixels optimized directly: the fused step (or Adam/NAdam), octaves, and random crops of a canvas.

With 'ascent' each step is ONE ``ops.fused_ascent_step`` for the whole batch: un-jitter, blur,
normalize, clip, update, decay, clamp and the next step's jitter, so the next model input is
ready without another pass over the images. With 'adam'/'nadam' the same processed gradient
goes to a torch optimizer. Octaves resize the images between stages (``init.octave_start``: a
photo's dream restarts from the photo at the new size plus its detail); ``canvas`` optimizes a
random crop of a larger image each step (Øygard).
"""
import torch

from pyviz_fast import ops
from pyviz_fast.engine.init import initial_images, octave_start, photo_sizes
from pyviz_fast.engine.parameterizations.optim import Ascent, nonfinite_rows
from pyviz_fast.engine.pyramid import laplacian_normalize


def _crop_index(canvas, offsets, hw):
    """Advanced-indexing tuple selecting one hw crop per image at ``offsets`` (fractions of the free range)."""
    B, C, Hc, Wc = canvas.shape
    dev = canvas.device
    top = (offsets[:, 0] * (Hc - hw[0] + 1)).long().clamp(max=Hc - hw[0]).to(dev)
    left = (offsets[:, 1] * (Wc - hw[1] + 1)).long().clamp(max=Wc - hw[1]).to(dev)
    rows = (top[:, None] + torch.arange(hw[0], device=dev))[:, None, :, None]
    cols = (left[:, None] + torch.arange(hw[1], device=dev))[:, None, None, :]
    return torch.arange(B, device=dev)[:, None, None, None], torch.arange(C, device=dev)[None, :, None, None], rows, cols


class PixelImage:
    crops = 1

    def __init__(self, run, draws, start):
        self.run, self.s, self.draws = run, run.s, draws
        self.shifts = draws.shifts.to(run.device)
        self.canvas = self.s.canvas is not None
        start_hw = (self.s.canvas, self.s.canvas) if self.canvas else run.stages[0][0]
        given = start(start_hw)
        self.photo = photo_sizes(self.s, run.channels)
        self.x = (initial_images(self.s, draws, run.channels, start_hw, self.photo) if given is None
                  else given).to(run.device)
        self.stage_at = {}  # first step of each stage -> its size
        t = 0
        for hw, count in run.stages:
            self.stage_at[t] = hw
            t += count
        self.hw, self.inp, self.index, self.view, self.optimizer = None, None, None, None, None
        self.step = ops.AscentStep(norm=self.s.norm, eps=self.s.eps, clip=self.s.clip, decay=self.s.decay,
                                   center=self.s.center, lo=self.s.lo, hi=self.s.hi, backend=run.backend)
        self.sigma = torch.empty(self.x.shape[0], device=run.device)  # refilled per step: a tensor made once

    def begin(self, t):
        if t in self.stage_at:  # a new octave: resize, restart the optimizer and the jittered input
            self.hw = self.stage_at[t]
            if not self.canvas and tuple(self.x.shape[-2:]) != self.hw:
                self.x = octave_start(self.x, self.hw, self.s, self.photo)
            if self.s.optimizer != "ascent":
                self.optimizer = Ascent(self.s.optimizer, self.x, self.s.lr)
            self.inp = None
        return self.hw

    def inputs(self, t):
        self.index = _crop_index(self.x, self.draws.crops[t], self.hw) if self.canvas else None
        self.view = self.x[self.index] if self.canvas else self.x
        if self.inp is None:
            self.inp = ops.jitter(self.view.detach(), self.shifts[t], backend=self.run.backend)
        self.inp = self.inp.detach().requires_grad_(True)
        return self.inp, (self.inp,)

    def update(self, t, grads):
        s, run, b = self.s, self.run, self.run.backend
        grad, = grads
        if s.laplacian_levels:
            grad = laplacian_normalize(grad, s.laplacian_levels, s.eps)
        if self.optimizer is None:
            # pixels are finite after the first step: each step's output is clamped to [lo, hi]
            new, self.inp, nonfinite = self.step(self.view, grad, self.shifts[t], self.shifts[t + 1],
                                                 self.sigma.fill_(run.sigmas[t]), run.lrs[t], check_pixels=t == 0)
        else:
            new, nonfinite = self._optimizer_update(grad, t)
            self.inp = None
        if s.image_blur_every and (t + 1) % s.image_blur_every == 0:
            new, self.inp = ops.gaussian_blur(new, s.image_blur_sigma, backend=b), None
        if self.canvas:
            self.x[self.index] = new
            self.inp = None
        elif self.optimizer is None:
            self.x = new
        elif new is not self.x:  # the optimizer updates x in place; an image blur made a new tensor
            self.x.copy_(new)
        return nonfinite

    def _optimizer_update(self, grad, t):
        """The optimizer's step on the pixels x (in place) with the processed gradient of the view
        x[index] (the whole image without a canvas); returns (updated view, non-finite flags)."""
        s, run, b = self.s, self.run, self.run.backend
        g = ops.gaussian_blur(ops.jitter(grad, -self.shifts[t], backend=b), run.sigmas[t], backend=b)
        g, nonfinite = nonfinite_rows(ops.clip_grad(ops.normalize_grad(g, s.norm, s.eps, backend=b), s.clip, backend=b))
        if self.index is not None:
            full = torch.zeros_like(self.x)
            full[self.index] = g
            g = full
        self.optimizer.step(g, run.lrs[t])
        self.x.sub_(s.decay * (self.x - s.center)).clamp_(s.lo, s.hi)
        return (self.x if self.index is None else self.x[self.index]), nonfinite

    def images(self):
        return self.x.detach()

    def alpha(self):
        return None
