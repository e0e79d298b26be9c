"""DeepDream: amplify in a photo what one unit sees (a layer's mean squared activation, or a
channel), by the render loop started from the photo instead of noise.

>>> res = dream(model, photo, "conv3@deepdream", steps=32)     # photo: float [C, H, W] in [0, 1]
>>> res.images[0].shape == photo.shape
True
"""
import torch

from pyviz_fast.engine.render import render
from pyviz_fast.engine.settings import Settings
from pyviz_fast.engine.units import parse_units

# Gentler than a render from noise, so the photo stays recognizable.
DREAM_DEFAULTS = {"steps": 32, "lr": 0.01}


def dream_unit(model, unit):
    """The one Unit that ``unit`` (a spec or Unit) names, or ValueError: a dream amplifies one thing."""
    units = parse_units(unit, model)
    if len(units) == 1 and not (units[0].terms[0].index is None and units[0].kind in ("channel", "neuron")):
        return units[0]
    what = "a whole layer (give a channel, layer:K, or the layer objective, layer@deepdream)" if len(units) == 1 \
        else f"{len(units)} units"
    raise ValueError(f"a dream amplifies one unit; {unit!r} names {what}")


def as_image(image):
    """``image`` as a float32 tensor [C, H, W], or ValueError."""
    image = torch.as_tensor(image).float()
    if image.dim() != 3:
        raise ValueError(f"image must be [C, H, W], got shape {list(image.shape)}")
    return image


def dream_settings(image, settings=None, defaults=DREAM_DEFAULTS):
    """``settings`` (default ``defaults`` over ``Settings()`` at the image's size) started from ``image``."""
    settings = settings or Settings(**defaults, size=tuple(image.shape[-2:]))
    return settings.replace(init="image", init_image=image)


def dream(model, image, unit, settings=None, **kwargs):
    """DeepDream ``image`` (float [C, H, W] in [0, 1]) for one ``unit``; returns a ``RenderResult``
    of one image. settings: default ``DREAM_DEFAULTS`` over ``Settings()`` at the image's size;
    its init is always the image. kwargs go to ``render`` (backend, device, seed, progress,
    callback, or setting overrides such as steps=64)."""
    image = as_image(image)
    return render(model, [dream_unit(model, unit)], dream_settings(image, settings), batch_size=1, **kwargs)
