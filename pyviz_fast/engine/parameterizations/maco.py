"""MaCo (Fel et al., NeurIPS 2023): optimize only the phase of the image's spectrum.

The magnitude is fixed (``spectrum.magnitude``: 1/f or a dataset's), so the image keeps natural
energy at every frequency whatever the unit; the phase decides where the structure goes. Each
step scores ``maco_crops`` random crops of every image (side ``maco_box`` of the image,
shrinking over the run, plus Gaussian noise of ``maco_noise``), resized to the image size: the
model inputs of a batch of B images are B*k crops. The image is periodic (an inverse FFT), so a
crop may wrap around its edges and still see seamless content: a share ``maco_wrap`` of the crops
sit anywhere on the periodic plane, which teaches the pattern to survive a shift (the image
rolled); the others sit inside the image, which keeps the single view the result shows in focus.
(Reflecting at the border instead would show the model mirrored content: a 45-degree pattern
turns 135; crops bunched at the middle leave the border unoptimized.) The phase starts uniform in
[-pi, pi): a phase concentrated around 0 would add up to a bright spike at pixel (0, 0). The phase
ascends by NAdam (the paper's; Adam with optimizer='adam'). The absolute gradients w.r.t. the
image, accumulated over the run, are the attribution map (``alpha``): where the unit looked.

Random draws (phase init, crop boxes, noise) come from each unit's own generator.
"""
import math

import torch
import torch.nn.functional as F

from pyviz_fast.engine.parameterizations.fourier import COLOR_SQRT
from pyviz_fast.engine.parameterizations.optim import Ascent, nonfinite_rows
from pyviz_fast.engine.parameterizations.spectrum import magnitude
from pyviz_fast.engine.schedules import decay

BOX_STD, MIN_BOX = 0.05, 0.05
GAIN = 2.0  # standardized image -> sigmoid: pixel std ~0.2 around 0.5


def _centres(n):
    """Pixel centres in grid_sample's [-1, 1] units (align_corners=False), rounded as
    ``F.affine_grid`` computes them, so the crops' grids are bit for bit the ones it makes."""
    return torch.zeros(1) if n == 1 else torch.linspace(-1, 1, n) * (n - 1) / n


def _wrapping(crops, share):
    """bool [crops]: which crops may wrap around the image, ``share`` of them spread evenly (the
    first never does unless share is 1: a single crop stays inside the image)."""
    return torch.tensor([math.floor((j + 1) * share) > math.floor(j * share) for j in range(crops)])


class Maco:
    def __init__(self, run, draws, start=None):
        s = run.s
        self.run, self.draws, self.hw = run, draws, run.stages[-1][0]
        self.crops, C = s.maco_crops, run.channels
        H, W = self.hw
        self.color = None
        if s.decorrelate and C == 3:
            self.color = (COLOR_SQRT / COLOR_SQRT.norm(dim=0).max())
        color_rows = None if self.color is None else tuple(map(tuple, self.color.tolist()))
        self.magnitude = magnitude(s.maco_magnitude, C, self.hw, color_rows).to(run.device)
        self.color = None if self.color is None else self.color.to(run.device)
        self.phase = (math.pi * (2 * draws.uniform((C, H, W // 2 + 1)) - 1)).to(run.device).requires_grad_(True)
        self.optimizer = Ascent("adam" if s.optimizer == "adam" else "nadam", self.phase, s.maco_lr)
        boxes = torch.stack([torch.randn(s.steps, self.crops, 3, generator=g) for g in draws.generators], 1)
        sizes = torch.tensor(list(decay(*s.maco_box, s.steps, "linear")))[:, None, None] + BOX_STD * boxes[..., 2]
        sizes = sizes.clamp(MIN_BOX, 1.0)                                                  # [steps, B, k]
        where = torch.special.ndtr(boxes[..., :2])  # uniform in (0, 1)
        inside = sizes[..., None] / 2 + where * (1 - sizes[..., None])
        wraps = _wrapping(self.crops, s.maco_wrap)
        self.sizes = sizes.to(run.device)
        self.centers = torch.where(wraps[:, None], where, inside).to(run.device)  # [steps, B, k, (y, x)]
        # Crops read the image padded with its own periodic continuation: by half its side when some
        # wrap, else by the one pixel that the outermost samples of a full-size crop interpolate with.
        # Grid coordinates scale from the image's [-1, 1] to the padded image's.
        self.pad = ((H + 1) // 2, (W + 1) // 2) if bool(wraps.any()) else (1, 1)
        self.to_padded = torch.tensor([W / (W + 2 * self.pad[1]), H / (H + 2 * self.pad[0])], device=run.device)
        self.noise = decay(*s.maco_noise, s.steps, "linear")
        self.accumulated = torch.zeros(len(draws.seeds), 1, H, W, device=run.device)
        self.grid_x, self.grid_y = _centres(W).view(1, 1, W).to(run.device), _centres(H).view(1, H, 1).to(run.device)

    def image(self):
        spectrum = torch.polar(self.magnitude.expand_as(self.phase), self.phase)
        x = torch.fft.irfft2(spectrum, s=self.hw)
        x = (x - x.mean(dim=(1, 2, 3), keepdim=True)) / x.std(dim=(1, 2, 3), keepdim=True).clamp(min=1e-8)
        if self.color is not None:
            x = torch.einsum("oc,bchw->bohw", self.color, x)
        return torch.sigmoid(GAIN * x)

    def begin(self, t):
        return self.hw

    def _grid(self, t):
        """grid_sample's grid of step t's crops [B*k, H, W, (x, y)]: axis-aligned boxes of side
        ``sizes[t]`` about ``centers[t]`` (what ``affine_grid`` makes of a scale-and-shift theta,
        built by broadcasting at a fraction of its cost)."""
        size = self.sizes[t].reshape(-1, 1, 1)
        center = self.centers[t].reshape(-1, 2) * 2 - 1
        x = size * self.grid_x + center[:, 1, None, None]
        y = size * self.grid_y + center[:, 0, None, None]
        shape = (size.shape[0], self.grid_y.shape[1], self.grid_x.shape[2])
        return torch.stack([x.expand(shape), y.expand(shape)], -1)

    def inputs(self, t):
        image = self.image()
        B, C, H, W = image.shape
        (ph, pw), k = self.pad, self.crops
        source = F.pad(image, (pw, pw, ph, ph), mode="circular")
        # The k crops of an image as one tall grid over its source: no k copies of the source (and
        # of its gradient); the crops then move from [B, C, k, H, W] to the batch dim.
        grid = (self._grid(t) * self.to_padded).view(B, k * H, W, 2)
        crops = F.grid_sample(source, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        crops = crops.view(B, C, k, H, W).transpose(1, 2).reshape(B * k, C, H, W)
        if self.noise[t] > 0:
            noise = torch.empty(B, self.crops, C, H, W)
            for row, g in zip(noise, self.draws.generators):  # each unit's own stream, drawn in place
                torch.randn(self.crops, C, H, W, generator=g, out=row)
            crops = crops + noise.view_as(crops).to(crops.device).mul_(self.noise[t])
        return crops, (self.phase, image)

    def update(self, t, grads):
        grad, nonfinite = nonfinite_rows(grads[0])
        image_grad, _ = nonfinite_rows(grads[1])
        with torch.no_grad():
            self.accumulated += image_grad.abs().sum(1, keepdim=True)
            self.optimizer.step(grad, self.run.s.maco_lr)
        return nonfinite

    def images(self):
        with torch.no_grad():
            return self.image()

    def alpha(self):
        """The accumulated |gradient| per image, scaled so its 99th percentile is 1, clamped to [0, 1]."""
        top = torch.quantile(self.accumulated.flatten(1), 0.99, dim=1).clamp(min=1e-12)
        return (self.accumulated / top[:, None, None, None]).clamp(0, 1)
