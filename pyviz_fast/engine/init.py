"""Initial images: uniform noise around gray, pink (1/f) noise, or a given image; and the image
each later octave starts from.

All return float32 [B, C, H, W] in [0, 1], drawn per unit from ``draws`` (see draws.py).

>>> x = initial_images(settings, draws, channels=3, hw=(128, 128))
>>> x = octave_start(x, (154, 154), settings, photo_sizes(settings, channels=3))  # the next octave
"""
import math
import os

import torch
import torch.nn.functional as F


def uniform_noise(draws, channels, hw, amplitude, center=0.5):
    """center + U(-amplitude, amplitude) per pixel."""
    return (center + amplitude * (2 * draws.uniform((channels,) + tuple(hw)) - 1)).clamp(0, 1)


def pink_noise(draws, channels, hw, amplitude, center=0.5):
    """Noise whose power falls as 1/f: energy at all scales; pixel std = amplitude / 2."""
    H, W = hw
    white = draws.normal((channels, H, W))
    fy = torch.fft.fftfreq(H)[:, None]
    fx = torch.fft.rfftfreq(W)[None, :]
    falloff = 1.0 / torch.sqrt(fy * fy + fx * fx).clamp(min=1.0 / max(H, W))
    pink = torch.fft.irfft2(torch.fft.rfft2(white) * falloff, s=(H, W))
    pink = pink - pink.mean(dim=(-2, -1), keepdim=True)
    pink = pink / pink.flatten(1).std(dim=1).clamp(min=1e-12)[:, None, None, None]
    return (center + 0.5 * amplitude * pink).clamp(0, 1)


def load_image(image, channels, hw):
    """A path, PIL image or tensor [C, H, W] / [H, W] -> float32 [C, H, W] in [0, 1] resized to hw.

    A float tensor must hold values in [0, 1]; a uint8 tensor holds 0-255 and is divided by 255
    (torchvision's to_tensor rule); other dtypes are rejected. A single-channel image is repeated
    to ``channels``; an RGB(A) file read for a grayscale model is converted to gray.
    """
    if isinstance(image, (str, os.PathLike)):
        from PIL import Image
        path = os.fspath(image)
        try:
            image = Image.open(path)
            image.load()
        except (OSError, ValueError) as error:  # named by its path, not by the half-read PIL object
            raise ValueError(f"init_image {path!r} cannot be read as an image: {error}") from None
    if not isinstance(image, torch.Tensor):
        import numpy as np
        mode = "L" if channels == 1 else "RGBA" if channels == 4 else "RGB"
        array = np.asarray(image.convert(mode), dtype=np.float32) / 255.0
        image = torch.from_numpy(array).reshape(array.shape[0], array.shape[1], -1).permute(2, 0, 1)
    if image.dtype == torch.uint8:
        image = image.float() / 255.0
    elif not image.dtype.is_floating_point:
        raise ValueError(f"init_image must be a float tensor in [0, 1] or a uint8 tensor in 0-255, got dtype {image.dtype}")
    image = image.float()
    # one pass: NaN propagates to both ends, an inf is one of them (a zoom checks its frames twice a frame)
    low, high = (float(v) for v in torch.aminmax(image)) if image.numel() else (0.0, 0.0)
    if not (math.isfinite(low) and math.isfinite(high)):  # before the range check, whose message would read [nan, nan]
        raise ValueError("init_image contains NaN or inf")
    if not (0.0 <= low and high <= 1.0):
        raise ValueError(f"init_image values must be in [0, 1], got values in [{low:g}, {high:g}] "
                         "(a 0-255 image: divide by 255 or pass it as uint8)")
    if image.dim() == 2:
        image = image[None]
    if image.dim() != 3:
        raise ValueError(f"init_image must be [C, H, W] or [H, W], got shape {list(image.shape)}")
    if image.shape[0] == 1 and channels != 1:
        image = image.expand(channels, -1, -1)
    if image.shape[0] != channels:
        raise ValueError(f"init_image has {image.shape[0]} channels, the model takes {channels}")
    if tuple(image.shape[-2:]) == tuple(hw):  # a resample to its own size copies it (a zoom's every frame)
        return image.clamp(0, 1)
    return F.interpolate(image[None], size=tuple(hw), mode="bilinear", antialias=True,
                         align_corners=False)[0].clamp(0, 1)


def photo_sizes(settings, channels):
    """``hw -> settings.init_image`` at that size (``load_image``), each size loaded once: a
    dream's octaves read the photo twice at every size but the last (its start, then its detail)."""
    loaded = {}

    def at(hw):
        hw = tuple(hw)
        if hw not in loaded:
            loaded[hw] = load_image(settings.init_image, channels, hw)
        return loaded[hw]
    return at


def initial_images(settings, draws, channels, hw, photo=None):
    """The batch's starting images for ``settings.init`` at size ``hw`` (photo: a ``photo_sizes``
    to read an image init from)."""
    if settings.init == "uniform":
        return uniform_noise(draws, channels, hw, settings.init_noise, settings.center)
    if settings.init == "pink":
        return pink_noise(draws, channels, hw, settings.init_noise, settings.center)
    image = (photo or photo_sizes(settings, channels))(hw)
    return image[None].repeat(len(draws.seeds), 1, 1, 1)


def octave_start(images, hw, settings, photo):
    """The images a new octave of size ``hw`` starts from: the previous octave's, upscaled.

    With an image init (DeepDream) it is the photo at the new size plus the upscaled detail the
    smaller octaves added to it, as DeepDream's octaves do: upscaling the dreamed small image
    itself would blur away the photo's own fine detail. photo: the render's ``photo_sizes``."""
    if settings.init == "image":
        before, after = photo(images.shape[-2:]).to(images.device), photo(hw).to(images.device)
        up = after + F.interpolate(images - before, size=hw, mode="bilinear", align_corners=False)
    else:
        up = F.interpolate(images, size=hw, mode="bilinear", align_corners=False)
    return up.clamp(settings.lo, settings.hi)
