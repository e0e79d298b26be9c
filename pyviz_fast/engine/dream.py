"""DeepDream: amplify in a photo what one unit sees (a layer's mean squared activation, or a
channel), by the render loop started from the photo instead of noise.

>>> res = dream(model, photo, "conv3@deepdream", steps=32)     # photo: float [C, H, W] in [0, 1]
>>> res.images[0].shape == photo.shape
True
>>> res = dream(model, "photo.png", "conv3:7")                  # or a path, PIL image, uint8 tensor
"""
from pyviz_fast.engine.init import load_image
from pyviz_fast.engine.models import input_channels
from pyviz_fast.engine.photos import photo_size
from pyviz_fast.engine.render import render, resolve_model
from pyviz_fast.engine.settings import Settings, check_settings
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


def dream_image(model, image, settings=None, overrides=None):
    """``image`` read as the photo tasks read it (``init.load_image``: a path, PIL image, float tensor
    in [0, 1] or uint8 tensor in 0-255, [C, H, W] or [H, W]), at ``photo_size``: float32 [C, H, W]
    with the channels the overrides, the settings or else the model give."""
    settings = check_settings(settings)  # read before the render would check it
    channels = (overrides or {}).get("channels") or (settings.channels if settings is not None else None)
    return load_image(image, channels or input_channels(model), photo_size(image, model))


def dream_settings(image, settings=None, defaults=DREAM_DEFAULTS):
    """``settings`` (default ``defaults`` over ``Settings()`` at the image's size) started from ``image``."""
    settings = settings or Settings(**defaults, size=tuple(image.shape[-2:]))
    return settings.replace(init="image", init_image=image)


def dream(model, image, unit, settings=None, **kwargs):
    """DeepDream ``image`` (a path, PIL image or tensor [C, H, W], as ``accentuate`` takes it) for one
    ``unit``; returns a ``RenderResult`` of one image. settings: default ``DREAM_DEFAULTS`` over
    ``Settings()`` at the image's size; its init is always the image. kwargs go to ``render``
    (backend, device, seed, progress, callback, or setting overrides such as steps=64)."""
    model = resolve_model(model, kwargs.get("device", "cpu"), kwargs.get("seed", 0))
    image = dream_image(model, image, settings, kwargs)
    return render(model, [dream_unit(model, unit)], dream_settings(image, settings), batch_size=1, **kwargs)
