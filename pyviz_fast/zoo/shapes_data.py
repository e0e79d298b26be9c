"""Procedural "shapes" images: ten classes whose look is unmistakable, generated in batches.

Every image is RGB float32 in [0, 1], any size (default 64 px), drawn from a seeded
``torch.Generator`` so that a (seed, n, size) triple always gives the same batch.

Classes (``SHAPES_CLASSES``, index = label):

====  ==============  =====================================================================
  0   stripes_0       straight stripes whose lines run at 0 deg (horizontal)
  1   stripes_45      stripes whose lines run at 45 deg (like "/" on screen)
  2   stripes_90      stripes whose lines run at 90 deg (vertical)
  3   stripes_135     stripes whose lines run at 135 deg (like "\\" on screen)
  4   checkerboard    axis-aligned checkerboard (square cells)
  5   rings           concentric rings around a random center
  6   dots            a square grid of round dots
  7   red             solid red blobs on a dull background
  8   green           solid green blobs on a dull background
  9   blue            solid blue blobs on a dull background
====  ==============  =====================================================================

Orientation convention (the quality tests depend on it): angles are measured on screen,
x to the right and y *up*, counter-clockwise. A ``stripes_<a>`` image is constant along the
direction ``a`` and oscillates along the normal ``a + 90``: its intensity is
``cos(2*pi*(-x*sin(a) + y*cos(a)) / period + phase)``. In the 2-D Fourier spectrum its
energy therefore lies on the line through the origin at angle ``a + 90`` (see
:func:`stripe_wave_angle`); e.g. stripes_0 (horizontal lines) has its energy on the
vertical frequency axis. Stripe angles are jittered by at most ``ANGLE_JITTER_DEG``.

Pattern classes (0-6) use two random colors of clearly different brightness, random
period (``PERIOD_RANGE`` px), phase, edge sharpness and position; color classes (7-9) use
1-4 random ellipses of a saturated color on a low-saturation background. Every image gets
random Gaussian pixel noise.

Example::

    >>> from pyviz_fast.zoo.shapes_data import make_batch, SHAPES_CLASSES
    >>> images, labels = make_batch(8, size=64, seed=0)
    >>> images.shape, labels.shape, SHAPES_CLASSES[int(labels[0])] in SHAPES_CLASSES
    (torch.Size([8, 3, 64, 64]), torch.Size([8]), True)
"""
import math

import torch

SHAPES_CLASSES = ("stripes_0", "stripes_45", "stripes_90", "stripes_135", "checkerboard",
                  "rings", "dots", "red", "green", "blue")
STRIPE_ANGLES_DEG = {"stripes_0": 0.0, "stripes_45": 45.0, "stripes_90": 90.0, "stripes_135": 135.0}
COLOR_CHANNELS = {"red": 0, "green": 1, "blue": 2}

PERIOD_RANGE = (5.0, 20.0)      # pixels per cycle, log-uniform
ANGLE_JITTER_DEG = 6.0          # stripes/checkerboard/dots stay within this of their axis
NOISE_STD_MAX = 0.08
MIN_SIZE = 8


def stripe_wave_angle(class_name: str) -> float:
    """Angle (deg, screen convention x right / y up, in [0, 180)) of the wave vector of a
    stripes class, i.e. where its energy lies in the 2-D spectrum: the stripe angle + 90."""
    if class_name not in STRIPE_ANGLES_DEG:
        raise ValueError(f"class_name must be one of {sorted(STRIPE_ANGLES_DEG)}; got {class_name!r}")
    return (STRIPE_ANGLES_DEG[class_name] + 90.0) % 180.0


def _uniform(gen, n, lo, hi, device):
    return lo + (hi - lo) * torch.rand(n, 1, 1, generator=gen, device=device)


def _log_uniform(gen, n, lo, hi, device):
    return torch.exp(_uniform(gen, n, math.log(lo), math.log(hi), device))


def _screen_coords(h, w, device):
    """Pixel-center coordinates relative to the image center, x right and y up: each [1, H, W]."""
    y = -(torch.arange(h, device=device, dtype=torch.float32) + 0.5 - h / 2)
    x = torch.arange(w, device=device, dtype=torch.float32) + 0.5 - w / 2
    return x.view(1, 1, w).expand(1, h, w), y.view(1, h, 1).expand(1, h, w)


def _rotate(x, y, angle_rad):
    """Coordinates along (u) and across (v) the direction ``angle_rad``."""
    c, s = torch.cos(angle_rad), torch.sin(angle_rad)
    return x * c + y * s, -x * s + y * c


def _sharpen(wave, sharpness):
    """Map a wave in [-1, 1] to a profile in [0, 1]: sine-like (sharpness ~1) to square (~10)."""
    return 0.5 + 0.5 * torch.tanh(sharpness * wave) / torch.tanh(sharpness)


def _pattern(kind, n, h, w, gen, device):
    """Gray pattern [n, H, W] in [0, 1] of one pattern class."""
    x, y = _screen_coords(h, w, device)
    period = _log_uniform(gen, n, *PERIOD_RANGE, device)
    sharpness = _log_uniform(gen, n, 1.0, 10.0, device)
    jitter = torch.deg2rad(_uniform(gen, n, -ANGLE_JITTER_DEG, ANGLE_JITTER_DEG, device))
    phase_u = _uniform(gen, n, 0.0, 2 * math.pi, device)
    phase_v = _uniform(gen, n, 0.0, 2 * math.pi, device)
    if kind in STRIPE_ANGLES_DEG:
        _, across = _rotate(x, y, math.radians(STRIPE_ANGLES_DEG[kind]) + jitter)
        return _sharpen(torch.cos(2 * math.pi * across / period + phase_u), sharpness)
    u, v = _rotate(x, y, jitter)
    if kind == "checkerboard":
        wave = torch.cos(2 * math.pi * u / period + phase_u) * torch.cos(2 * math.pi * v / period + phase_v)
        return _sharpen(wave, 3.0 * sharpness)
    if kind == "rings":
        half = min(h, w) / 2
        cx, cy = _uniform(gen, n, -0.7 * half, 0.7 * half, device), _uniform(gen, n, -0.7 * half, 0.7 * half, device)
        radius = torch.sqrt((x - cx) ** 2 + (y - cy) ** 2)
        return _sharpen(torch.cos(2 * math.pi * radius / period + phase_u), sharpness)
    if kind == "dots":
        # Distance (px) to the nearest grid point; dots cover well under half the area.
        du = torch.remainder(u / period + phase_u / (2 * math.pi), 1.0) - 0.5
        dv = torch.remainder(v / period + phase_v / (2 * math.pi), 1.0) - 0.5
        dist = torch.sqrt(du ** 2 + dv ** 2) * period
        dot_radius = _uniform(gen, n, 0.15, 0.32, device) * period
        return torch.sigmoid((dot_radius - dist) / 0.6)
    raise AssertionError(kind)


def _two_contrasting_colors(n, gen, device):
    """Two colors [n, 3, 1, 1] whose brightness differs by >= 0.3, in random order."""
    dark = _uniform(gen, n, 0.0, 0.5, device)
    bright = dark + _uniform(gen, n, 0.3, 1.0, device) * (1.0 - dark)
    bright = torch.maximum(bright, dark + 0.3)
    swap = torch.rand(n, 1, 1, generator=gen, device=device) < 0.5
    first, second = torch.where(swap, bright, dark), torch.where(swap, dark, bright)
    return (_tinted(first, 0.25, gen, device), _tinted(second, 0.25, gen, device))


def _tinted(level, amount, gen, device):
    """Gray levels [n, 1, 1] -> colors [n, 3, 1, 1]: each channel moved by up to +-amount."""
    offset = amount * (2 * torch.rand(level.shape[0], 3, 1, 1, generator=gen, device=device) - 1)
    return (level.unsqueeze(1) + offset).clamp(0, 1)


def _blob_mask(n, h, w, gen, device):
    """Union of 1-4 random solid ellipses with a soft 1-px edge: [n, H, W] in [0, 1]."""
    x, y = _screen_coords(h, w, device)
    side = min(h, w)
    count = torch.randint(1, 5, (n, 1, 1), generator=gen, device=device)
    mask = torch.zeros(n, h, w, device=device)
    for k in range(4):
        cx, cy = _uniform(gen, n, -0.35 * w, 0.35 * w, device), _uniform(gen, n, -0.35 * h, 0.35 * h, device)
        ra, rb = _uniform(gen, n, 0.15, 0.4, device) * side, _uniform(gen, n, 0.15, 0.4, device) * side
        u, v = _rotate(x - cx, y - cy, _uniform(gen, n, 0.0, math.pi, device))
        inside = 1.0 - torch.sqrt((u / ra) ** 2 + (v / rb) ** 2)
        blob = torch.sigmoid(inside * torch.minimum(ra, rb))
        mask = torch.where(count > k, torch.maximum(mask, blob), mask)
    return mask


def _color_image(channel, n, h, w, gen, device):
    """Saturated blobs of one primary color on a dull, low-saturation background: [n, 3, H, W]."""
    background = _tinted(_uniform(gen, n, 0.1, 0.9, device), 0.08, gen, device)
    color = 0.3 * torch.rand(n, 3, 1, 1, generator=gen, device=device)
    color[:, channel] = 0.65 + 0.35 * torch.rand(n, 1, 1, generator=gen, device=device)
    mask = _blob_mask(n, h, w, gen, device).unsqueeze(1)
    return background * (1 - mask) + color * mask


def _class_images(name, n, h, w, gen, device):
    if name in COLOR_CHANNELS:
        return _color_image(COLOR_CHANNELS[name], n, h, w, gen, device)
    pattern = _pattern(name, n, h, w, gen, device).unsqueeze(1)
    first, second = _two_contrasting_colors(n, gen, device)
    return first * (1 - pattern) + second * pattern


def make_batch(n, size=64, seed=None, labels=None, generator=None, device="cpu"):
    """Generate ``n`` labelled images.

    Args:
        n: number of images (>= 1).
        size: int side or (H, W); each side >= 8.
        seed: seeds a fresh generator (ignored when ``generator`` is given).
        labels: optional int tensor [n] of class indices; default: balanced round-robin
            over the classes in random order.
        generator: a ``torch.Generator`` on ``device`` to draw from (advances it).
        device: where the images are made.

    Returns:
        (images float32 [n, 3, H, W] in [0, 1], labels int64 [n]).
    """
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if n < 1:
        raise ValueError(f"n must be >= 1; got {n}")
    if min(h, w) < MIN_SIZE:
        raise ValueError(f"size must be >= {MIN_SIZE} px per side; got {(h, w)}")
    if generator is None:
        generator = torch.Generator(device=device)
        generator.manual_seed(0 if seed is None else int(seed))
    num_classes = len(SHAPES_CLASSES)
    if labels is None:
        labels = torch.arange(n, device=device) % num_classes
        labels = labels[torch.randperm(n, generator=generator, device=device)]
    labels = torch.as_tensor(labels, device=device, dtype=torch.long)
    if labels.shape != (n,) or labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must be an int tensor of shape [{n}] with values in 0..{num_classes - 1}")
    images = torch.empty(n, 3, h, w, device=device)
    for index, name in enumerate(SHAPES_CLASSES):
        members = (labels == index).nonzero().flatten()
        if len(members):
            images[members] = _class_images(name, len(members), h, w, generator, device)
    noise_std = NOISE_STD_MAX * torch.rand(n, 1, 1, 1, generator=generator, device=device)
    images += noise_std * torch.randn(n, 3, h, w, generator=generator, device=device)
    return images.clamp_(0, 1), labels
