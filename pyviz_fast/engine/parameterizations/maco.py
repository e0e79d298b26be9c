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

from pyviz_fast import ops
from pyviz_fast.engine.parameterizations.fourier import COLOR_SQRT
from pyviz_fast.engine.parameterizations.optim import Ascent, nonfinite_rows
from pyviz_fast.engine.parameterizations.spectrum import magnitude
from pyviz_fast.engine.schedules import decay

BOX_STD, MIN_BOX = 0.05, 0.05
GAIN = 2.0  # standardized image -> sigmoid: pixel std ~0.2 around 0.5


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
        centers = torch.where(wraps[:, None], where, inside)  # [steps, B, k, (y, x)]
        self.boxes = torch.cat([sizes[..., None], centers], -1)  # on the CPU, as ops.periodic_crops reads them
        self.noise = decay(*s.maco_noise, s.steps, "linear")
        self.accumulated = torch.zeros(len(draws.seeds), 1, H, W, device=run.device)

    def image(self):
        spectrum = torch.polar(self.magnitude.expand_as(self.phase), self.phase)
        x = torch.fft.irfft2(spectrum, s=self.hw)
        x = x - x.mean(dim=(1, 2, 3), keepdim=True)
        # The sample std from the centred image: half the time of x.std (forward and backward).
        spread = x.square().sum(dim=(1, 2, 3), keepdim=True) / max(x[0].numel() - 1, 1)
        x = x / spread.sqrt().clamp(min=1e-8)
        if self.color is not None:
            x = torch.einsum("oc,bchw->bohw", self.color, x)
        return torch.sigmoid(GAIN * x)

    def begin(self, t):
        return self.hw

    def inputs(self, t):
        image = self.image()
        B, C, H, W = image.shape
        noise = None
        if self.noise[t] > 0:
            noise = torch.empty(B, self.crops, C, H, W)
            for row, g in zip(noise, self.draws.generators):  # each unit's own stream, drawn in place
                torch.randn(self.crops, C, H, W, generator=g, out=row)
            noise = noise.view(B * self.crops, C, H, W).to(image.device)
        crops = ops.periodic_crops(image, self.boxes[t], noise, self.noise[t], backend=self.run.backend)
        return crops, (self.phase, image)

    def update(self, t, grads):
        grad, nonfinite = nonfinite_rows(grads[0])
        attribution, _ = nonfinite_rows(grads[1].abs().sum(1, keepdim=True))  # zeroed after the sum: C x less
        with torch.no_grad():
            self.accumulated += attribution
            self.optimizer.step(grad, self.run.s.maco_lr)
        return nonfinite

    def images(self):
        with torch.no_grad():
            return self.image()

    def alpha(self):
        """The accumulated |gradient| per image, scaled so its 99th percentile is 1, clamped to [0, 1]."""
        top = torch.quantile(self.accumulated.flatten(1), 0.99, dim=1).clamp(min=1e-12)
        return (self.accumulated / top[:, None, None, None]).clamp(0, 1)
