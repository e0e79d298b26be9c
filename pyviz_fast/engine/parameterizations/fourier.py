"""Lucid-style image parameterization: a 1/f-scaled Fourier spectrum, decorrelated color, sigmoid.

Optimizing the spectrum instead of the pixels whitens the gradient (every frequency learns at
a similar rate), and mixing the channels through the square root of natural images' color
covariance decorrelates color, which together give Lucid's smooth, saturated look.

>>> image = FourierImage(draws, channels=3, hw=(128, 128))
>>> images = image()            # float32 [B, 3, 128, 128] in (0, 1), differentiable w.r.t. image.spectrum

``FourierParam`` is the parameterization the render loop drives (see ``parameterizations``):
jitter by a differentiable roll, then either a mean-|g| normalized step on the spectrum
('ascent') or a torch optimizer's.
"""
import torch

from pyviz_fast import ops
from pyviz_fast.engine.parameterizations.optim import Ascent, nonfinite_rows

# Square root of the color covariance of natural (ImageNet) images, rows = RGB output.
COLOR_SQRT = torch.tensor([[0.26, 0.09, 0.02],
                           [0.27, 0.00, -0.05],
                           [0.27, -0.09, 0.03]])


class FourierImage:
    """Images [B, C, H, W] = sigmoid(color(irfft2(spectrum * 1/f))); ``spectrum`` is the parameter."""

    def __init__(self, draws, channels, hw, decorrelate=True, device="cpu", init_std=0.01):
        H, W = hw
        self.hw = (H, W)
        fy = torch.fft.fftfreq(H)[:, None]
        fx = torch.fft.rfftfreq(W)[None, :]
        freq = torch.sqrt(fy * fy + fx * fx).clamp(min=1.0 / max(H, W))
        self.scale = (1.0 / freq * (H * W) ** 0.5).to(device)  # [H, W//2+1]
        noise = init_std * draws.normal((channels, H, W // 2 + 1, 2))
        self.spectrum = noise.to(device).requires_grad_(True)
        self.color = None
        if decorrelate and channels == 3:
            color = COLOR_SQRT / COLOR_SQRT.norm(dim=0).max()
            self.color = color.to(device)

    def __call__(self):
        spectrum = torch.view_as_complex(self.spectrum) * self.scale
        image = torch.fft.irfft2(spectrum, s=self.hw) / 4.0  # backward norm: divides by H*W
        if self.color is not None:
            image = torch.einsum("oc,bchw->bohw", self.color, image)
        return torch.sigmoid(image)


class FourierParam:
    crops = 1

    def __init__(self, run, draws, start=None):
        self.run, self.s = run, run.s
        self.hw = run.stages[-1][0]
        self.shifts = draws.shifts.to(run.device)
        self.image = FourierImage(draws, run.channels, self.hw, self.s.decorrelate, run.device)
        self.optimizer = None if self.s.optimizer == "ascent" else Ascent(self.s.optimizer, self.image.spectrum, self.s.lr)

    def begin(self, t):
        return self.hw

    def inputs(self, t):
        return ops.reference.jitter(self.image(), self.shifts[t]), (self.image.spectrum,)  # differentiable roll

    def update(self, t, grads):
        grad, nonfinite = nonfinite_rows(grads[0])
        with torch.no_grad():
            if self.optimizer is None:
                scale = grad.abs().flatten(1).mean(dim=1).view(-1, 1, 1, 1, 1) + self.s.eps
                self.image.spectrum.add_(self.run.lrs[t] * grad / scale)
            else:
                self.optimizer.step(grad, self.run.lrs[t])
        return nonfinite

    def images(self):
        with torch.no_grad():
            return self.image()

    def alpha(self):
        return None
