"""``accentuate`` and ``caricature``: what in a photo drives a unit, or a layer, exaggerated.

Both start from the photo and run the same loop and fused step as ``render``:
- ``accentuate`` maximizes each unit while a closeness regularizer keeps a lower layer's
  activations near the photo's (Hamblin et al. 2024, "feature accentuation");
- ``caricature`` maximizes dot x cosine^p with the photo's own activations at a layer (Lucid).

>>> res = accentuate(model, "photo.png", "conv4:3", layer="conv2")
>>> panel = accentuation_panel(res.info["photo"], res.images[0])    # photo | accentuation | difference
"""
import math
import time

import torch

from pyviz_fast.engine.blocks import default_atlas_layers
from pyviz_fast.engine.goals.accentuation import AccentuationTask, CaricatureTask
from pyviz_fast.engine.layers import layers as list_layers, picked_for_first_call
from pyviz_fast.engine.models import input_channels, input_patch
from pyviz_fast.engine.photos import photo_size, read_photos
from pyviz_fast.engine.render import render_task, resolve_model, resolve_settings
from pyviz_fast.engine.settings import Settings
from pyviz_fast.engine.units import check_layer_name, parse_units

# Gentle steps from a photo (like ``dream``): the photo must stay recognizable.
DEFAULTS = dict(steps=64, lr=0.01, jitter=4, blur_start=1.0, blur_end=0.5)
DIFFERENCE_GAIN = 2.0
# Raise a unit to about 3.5x its value on the photo: clearly accentuated (it ends at x4.6-7.0 on
# ShapesNet conv4, x3.7-5.8 on shapes_vit), the layout kept on every sampled photo that has one
# (4: one of ten at correlation 0.498; BENCHMARKS.md, "Facets and accentuation").
DEFAULT_GAIN = 3.5


# On a model that cuts its input into patches (a ViT): no jitter, and a wider gradient blur instead.
PATCH_MODEL_DEFAULTS = dict(jitter=0, blur_start=1.5, blur_end=0.75)


def photo_defaults(model) -> dict:
    """``DEFAULTS``, or on a model that cuts its input into patches (a ViT) ``PATCH_MODEL_DEFAULTS``
    over them. A shift that is not a whole patch changes every token, and the ascent then raises
    the unit on shifted copies of the photo, not on the photo as it is (shapes_vit, 12 photos: the
    unit x3 and the layout kept on 1 with jitter 4, on 12 with none). Without jitter nothing
    averages out pixel-level color noise, so the gradient blur is wider: blur 1.5 -> 0.75 kept all
    12 and cut the change's high-frequency energy by a quarter (2.0 -> 1.0 by 40 %, but 10 of 12;
    BENCHMARKS.md, "Facets and accentuation")."""
    return dict(DEFAULTS, **PATCH_MODEL_DEFAULTS) if input_patch(model) > 1 else DEFAULTS


def _settings(settings, overrides, photo, model):
    base = settings or Settings(**photo_defaults(model))
    if settings is None and "size" not in overrides:
        base = base.replace(size=photo_size(photo, model))
    return resolve_settings(base, overrides, starts_from_images=True)


def lower_layer(model, unit_layer, hw, channels):
    """A default closeness layer: halfway from the input to ``unit_layer`` among the model's
    blocks (``default_atlas_layers``: ShapesNet conv4 -> conv2, resnet layer4 -> layer2) that are
    maps (``LayerInfo.is_map``: not a squeeze-and-excitation gate's 1 x 1, which holds no layout)
    and finish before it, outside it (a stage's own blocks run before the stage's output); among
    all such maps when no block lies below (a model whose blocks are not recognised, or a ViT
    below its first block: the patch projection)."""
    infos = list_layers(model, (channels, *hw))
    names = [info.name for info in infos]
    if unit_layer not in names:
        raise ValueError(f"layer {unit_layer!r} does not run in the model's forward")
    below = [i.name for i in infos[:names.index(unit_layer)] if i.is_map and not i.name.startswith(unit_layer + ".")]
    if not below:
        raise ValueError(f"no conv layer below {unit_layer!r} to keep close to the photo; pass layer=")
    blocks = set(default_atlas_layers(model, infos))
    among = [name for name in below if name in blocks] or below
    return among[len(among) // 2]


def accentuate(model, image, units, *, layer=None, weight=1.0, gain=DEFAULT_GAIN, settings=None, backend=None,
               device="cpu", seed=0, batch_size=None, progress=False, callback=None, **overrides):
    """Accentuate ``units`` in ``image``; returns a ``RenderResult`` (one image per unit).

    image: a path, PIL image or tensor [C, H, W] in [0, 1]; the render runs at its size unless
    ``size`` is given. units: unit specs as for ``render``. layer: where the activations are
    kept close to the photo's (default: the block halfway below the first unit's layer, ``lower_layer``).
    weight: strength of that closeness, relative to the unit's objective (0 = plain ascent from
    the photo). gain: how far to raise each unit, as a factor of its value on the photo: the
    closeness weight of each image is ``weight`` when the unit is at that factor, much weaker
    below it and much stronger above (goals/accentuation.py), so the unit ends a little above
    it; None keeps ``weight`` fixed (and with weight 0 there is no closeness to steer).
    Settings default to gentle steps (``photo_defaults``: no jitter and a wider blur on a ViT).
    ``res.info['photo']`` is the photo as rendered [C, H, W]; ``accentuation_panel`` puts photo,
    result and difference side by side.
    """
    started = time.perf_counter()
    model = resolve_model(model, device, seed)
    settings = _settings(settings, overrides, image, model)
    if batch_size is not None:
        settings = settings.replace(batch_size=batch_size)
    units = parse_units(units, model)
    channels = settings.channels or input_channels(model)
    photo = read_photos(image, channels, settings.hw)[0]
    picked = [] if layer else [lower_layer(model, units[0].layer, settings.hw, channels)]
    layer = layer or picked[0]
    check_layer_name(layer, model, "given as accentuate's closeness layer (pyviz-fast accentuate: --layer)")
    if not weight >= 0:
        raise ValueError(f"weight must be >= 0, got {weight!r}")
    if gain is not None and not (isinstance(gain, (int, float)) and math.isfinite(gain) and gain > 1):
        raise ValueError(f"gain must be a number > 1 (how many times the photo's value to raise the unit) "
                         f"or None for a fixed weight, got {gain!r}")
    task = AccentuationTask(units, settings, photo, layer, weight, gain)
    with picked_for_first_call(picked):
        res = render_task(model, task, settings, backend=backend, device=device, seed=seed, progress=progress,
                          callback=callback, started=started)
    res.info.update(photo=photo, closeness_layer=layer, closeness_weight=weight, gain=gain)
    return res


def caricature(model, image, layer, *, power=1.0, settings=None, backend=None, device="cpu", seed=0,
               progress=False, callback=None, **overrides):
    """Lucid's caricature of ``image`` at ``layer``: maximize dot(a, a_photo) * max(cos, 0.1)^power.
    Returns a ``RenderResult`` with one image; ``res.info['photo']`` as for ``accentuate``."""
    started = time.perf_counter()
    model = resolve_model(model, device, seed)
    settings = _settings(settings, overrides, image, model)
    check_layer_name(layer, model, "given as caricature's layer (pyviz-fast accentuate: --caricature; a layer name, not a unit)")
    photo = read_photos(image, settings.channels or input_channels(model), settings.hw)[0]
    res = render_task(model, CaricatureTask(photo, layer, power), settings, backend=backend, device=device,
                      seed=seed, progress=progress, callback=callback, started=started)
    res.info.update(photo=photo)
    return res


def difference_image(photo, image, gain=DIFFERENCE_GAIN):
    """float [C, H, W] in [0, 1]: 0.5 + gain * (image - photo): gray where nothing changed."""
    return (0.5 + gain * (image - photo)).clamp(0, 1)


def accentuation_panel(photo, image):
    """float [C, H, 3W]: the photo, the accentuation and their difference side by side."""
    return torch.cat([photo, image, difference_image(photo, image)], dim=-1)
