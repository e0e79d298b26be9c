"""Spectrum magnitudes for MaCo: a 1/f prior, or the mean amplitude spectrum of real images.

MaCo fixes an image's Fourier magnitude to that of natural images and optimizes only the
phase, so every visualization has natural-image energy at every frequency. The magnitude comes
from a dataset — the shipped procedural shapes, or a folder of images — or from the 1/f fall-off
natural images share (its DC term as large as the lowest frequency's). The phase of the DC term
sets the sign of each channel's mean: with a decorrelated color basis, brightness and tint.

>>> magnitude("1/f", channels=3, hw=(64, 64)).shape        # float32 [C, H, W//2+1]
torch.Size([3, 64, 33])
"""
import functools
from pathlib import Path

import torch

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")
MAX_IMAGES = 512


def _frequency(hw):
    H, W = hw
    fy = torch.fft.fftfreq(H)[:, None]
    fx = torch.fft.rfftfreq(W)[None, :]
    return torch.sqrt(fy * fy + fx * fx)


def _shapes_images(channels, hw):
    from pyviz_fast.zoo.shapes_data import make_batch
    images, _ = make_batch(256, size=max(hw), seed=0)
    return images[..., :hw[0], :hw[1]]


def _folder_images(folder, channels, hw):
    from pyviz_fast.engine.init import load_image
    path = Path(folder)
    if not path.is_dir():
        raise ValueError(f"maco_magnitude must be '1/f', 'shapes' or a folder of images; got {folder!r}, "
                         "which is not a folder")
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:MAX_IMAGES]
    if not files:
        raise ValueError(f"maco_magnitude folder {folder!r} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return torch.stack([load_image(str(f), channels, hw) for f in files])


@functools.lru_cache(maxsize=16)
def magnitude(source, channels, hw, color=None):
    """float32 [C, H, W//2+1]: the fixed magnitude for ``source`` ('1/f', 'shapes' or a folder).

    color: None, or a [C, C] tuple of rows mixing decorrelated channels into RGB; dataset images
    are then unmixed first, so the magnitude is that of the decorrelated channels.
    """
    hw = tuple(hw)
    if source == "1/f":
        mag = (1.0 / _frequency(hw).clamp(min=1.0 / max(hw))).expand(channels, -1, -1).clone()
    else:
        images = _shapes_images(channels, hw) if source == "shapes" else _folder_images(source, channels, hw)
        if images.shape[1] != channels:  # the RGB shapes for a model of other channels: their gray level
            images = images.mean(1, keepdim=True).expand(-1, channels, -1, -1)
        if color is not None:
            images = torch.einsum("oc,bchw->bohw", torch.linalg.inv(torch.tensor(color)), images)
        mag = torch.fft.rfft2(images).abs().mean(0)
    return mag / mag.flatten(1).norm(dim=1).mean()
