"""Image statistics that tell a good feature visualization from noise, per image of a batch.

Used by the visual-quality tests on the shipped shapes model, and handy for checking renders
of any model: where the spectral energy of an image lies (orientation, high frequencies) and
which color channel dominates it.

Frequencies and angles follow the shapes data convention (``shapes_data``): screen
coordinates with x to the right and y *up*; an angle is the direction of a wave vector, in
degrees counter-clockwise from the x axis, taken modulo 180 (a spectrum is symmetric).
Horizontal stripes ("stripes_0") have their energy at 90 deg.

Example::

    >>> from pyviz_fast.zoo.shapes_data import make_batch
    >>> images, _ = make_batch(2, size=64, seed=0, labels=torch.tensor([0, 2]))  # stripes 0 / 90
    >>> ratio = orientation_energy(images, 90.0) / orientation_energy(images, 0.0)
    >>> bool(ratio[0] > 2 and ratio[1] < 0.5)
    True
"""
import math

import torch


def _check_images(images):
    if not torch.is_tensor(images) or images.dim() != 4 or not images.is_floating_point():
        shape = list(images.shape) if torch.is_tensor(images) else type(images).__name__
        raise ValueError(f"images must be a float tensor [N, C, H, W]; got {shape}")
    return images.detach().float().cpu()


def power_spectrum(images):
    """Per-image power spectrum summed over channels, DC removed, Hann-windowed.

    The window keeps the jump between opposite borders (an image is not periodic) from
    putting spurious energy on the horizontal and vertical frequency axes.

    Returns:
        (power [N, H, W], fx [H, W], fy [H, W]) with fx, fy in cycles per pixel (screen
        convention, y up), in ``torch.fft.fft2`` order.
    """
    x = _check_images(images)
    h, w = x.shape[-2:]
    x = x - x.mean(dim=(-2, -1), keepdim=True)
    window = torch.hann_window(h, periodic=False)[:, None] * torch.hann_window(w, periodic=False)[None, :]
    power = torch.fft.fft2(x * window).abs().square().sum(dim=1)
    fy_rows = torch.fft.fftfreq(h)[:, None].expand(h, w)
    fx = torch.fft.fftfreq(w)[None, :].expand(h, w)
    return power, fx, -fy_rows  # row index grows downwards, screen y grows upwards


def orientation_energy(images, angle_deg, half_width_deg=22.5, min_freq=1 / 32):
    """Spectral energy [N] of each image in the angular band ``angle_deg +- half_width_deg``.

    Only frequencies with ``|f| >= min_freq`` cycles/px count (the lowest ones have no
    well-defined orientation on a small image).
    """
    power, fx, fy = power_spectrum(images)
    angle = torch.rad2deg(torch.atan2(fy, fx)) % 180.0
    distance = torch.abs((angle - angle_deg + 90.0) % 180.0 - 90.0)
    band = (distance <= half_width_deg) & (torch.sqrt(fx ** 2 + fy ** 2) >= min_freq)
    return (power * band).sum(dim=(-2, -1))


def orientation_ratio(images, angle_deg, half_width_deg=22.5):
    """Energy around ``angle_deg`` divided by energy around the orthogonal angle: [N]."""
    along = orientation_energy(images, angle_deg, half_width_deg)
    across = orientation_energy(images, angle_deg + 90.0, half_width_deg)
    return along / across.clamp_min(1e-12)


def high_frequency_energy(images, cutoff=0.25):
    """Energy [N] of each image at radial frequencies >= ``cutoff`` cycles/px (0.25: the highest
    octave below Nyquist), as a per-pixel variance (Parseval): the windowed image's variance
    carried by those frequencies, summed over channels."""
    power, fx, fy = power_spectrum(images)
    high = torch.sqrt(fx ** 2 + fy ** 2) >= cutoff
    pixels = power.shape[-2] * power.shape[-1]
    return (power * high).sum(dim=(-2, -1)) / pixels ** 2


def color_dominance(images, channel):
    """Mean of ``channel`` minus the larger mean of the other channels, per image: [N].

    Positive when the channel dominates; e.g. > 0.1 means clearly redder (channel 0) than
    both green and blue on a [0, 1] scale.
    """
    means = _check_images(images).mean(dim=(-2, -1))
    if not 0 <= channel < means.shape[1]:
        raise ValueError(f"channel must be in 0..{means.shape[1] - 1}; got {channel}")
    others = torch.cat([means[:, :channel], means[:, channel + 1:]], dim=1)
    return means[:, channel] - others.max(dim=1).values


def random_shift_and_crop(images, generator, max_shift=None, min_crop=0.8):
    """Each image circularly shifted by a random offset, then a random square-ish crop of
    ``min_crop``..1 of its side resized back to the full size (bilinear). Same shape out.

    Used to check that a visualization is a robust pattern, not an adversarial one.
    """
    x = _check_images(images)
    n, _, h, w = x.shape
    max_shift = max_shift if max_shift is not None else min(h, w) // 4
    out = torch.empty_like(x)
    for i in range(n):
        dy, dx = (int(v) for v in torch.randint(-max_shift, max_shift + 1, (2,), generator=generator))
        scale = min_crop + (1 - min_crop) * float(torch.rand((), generator=generator))
        ch, cw = max(1, math.floor(h * scale)), max(1, math.floor(w * scale))
        top = int(torch.randint(0, h - ch + 1, (), generator=generator))
        left = int(torch.randint(0, w - cw + 1, (), generator=generator))
        crop = torch.roll(x[i:i + 1], (dy, dx), dims=(-2, -1))[..., top:top + ch, left:left + cw]
        out[i:i + 1] = torch.nn.functional.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False)
    return out
