"""``style_transfer``: images with one photo's content and another's texture (Gatys et al. 2016).

The content/style pairs are rows of a batch like units (``goals/style.py``), so many pairs run
per forward/backward pass through the same loop, jitter, gradient blur and fused step.

>>> res = style_transfer(model, "content.png", ["wave.png", "dots.png"], steps=200)
>>> res.images.shape          # one styled image per pair
torch.Size([2, 3, 64, 64])
"""
import itertools
import math
import time

from pyviz_fast.engine.blocks import ACTIVATIONS, default_atlas_layers
from pyviz_fast.engine.goals.style import StyleTask
from pyviz_fast.engine.layers import layers as list_layers, picked_for_first_call
from pyviz_fast.engine.layout import Activation
from pyviz_fast.engine.models import input_channels
from pyviz_fast.engine.photos import first_image, photo_size, read_photos
from pyviz_fast.engine.render import render_task, resolve_model, resolve_settings
from pyviz_fast.engine.settings import Settings
from pyviz_fast.engine.units import check_layer_name

DEFAULTS = dict(steps=128, lr=0.01, jitter=2, blur_start=1.0, blur_end=0.3)
MAX_STYLE_LAYERS = 5


def default_layers(model, hw, channels):
    """(content layer, style layers) as Gatys chose them: the first activation (ReLU, GELU, ...)
    at each resolution of the conv maps for style, the last activation at the second-deepest of
    those resolutions for content. Maps of one position are left out (``LayerInfo.is_map``): a
    squeeze-and-excitation gate's activation (MobileNetV3, EfficientNet, RegNetY) has neither
    texture nor layout. A model that applies its activations as functions (googlenet's
    ``F.relu``: no activation module to hook) gets its blocks instead (``default_atlas_layers``:
    conv1, conv2, the inception blocks, whose outputs are past their activations) if they span
    several resolutions (a ViT's one map is its patch projection, before any activation)."""
    infos = [i for i in list_layers(model, (channels, *hw)) if i.is_map]
    groups = _by_resolution([i for i in infos if i.type in ACTIVATIONS])
    if not groups:
        blocks = set(default_atlas_layers(model, infos))
        groups = _by_resolution([i for i in infos if i.name in blocks])
        groups = groups if len(groups) > 1 else []
    if not groups:
        raise ValueError("the model has no activation (ReLU, GELU, ...) with a [C, H, W] output, nor conv blocks "
                         "at several resolutions, to default to; pass content_layer= and style_layers= "
                         "(pyviz-fast style: --content-layer, --style-layers)")
    groups = groups[:MAX_STYLE_LAYERS]
    return groups[max(0, len(groups) - 2)][-1], [group[0] for group in groups]


def _by_resolution(infos):
    """The layers' names grouped by their maps' positions, in order of first appearance."""
    by_size = {}
    for info in infos:
        by_size.setdefault(Activation(info.shape, info.layout).positions, []).append(info.name)
    return list(by_size.values())


def _pairs(n_content, n_style, pairs):
    if pairs is not None:
        pairs = [tuple(p) for p in pairs]
        bad = [p for p in pairs if len(p) != 2 or not (0 <= p[0] < n_content and 0 <= p[1] < n_style)]
        if bad or not pairs:
            raise ValueError(f"pairs must be (content index, style index) with 0 <= content < {n_content} and "
                             f"0 <= style < {n_style}; got {bad[0] if bad else 'none'}")
        return pairs
    if n_content == n_style:
        return [(i, i) for i in range(n_content)]
    return list(itertools.product(range(n_content), range(n_style)))


def style_transfer(model, content, style, *, content_layer=None, style_layers=None, style_weight=10.0,
                   content_weight=1.0, pairs=None, settings=None, backend=None, device="cpu", seed=0,
                   batch_size=None, progress=False, callback=None, **overrides):
    """Style each content image like each style image; returns a ``RenderResult`` (one image per pair).

    content, style: an image or a list of images (paths, PIL images, tensors [C, H, W] in [0, 1])
    or a tensor [N, C, H, W]; all are resized to the render size (default: the first content
    image's size). pairs: (content index, style index) per output; default: matched by position
    when the two lists are as long, else every combination. content_layer / style_layers: layer
    names (default ``default_layers``). style_weight / content_weight: weights of the relative
    losses. Starts from the content image; settings default to ``DEFAULTS``.
    ``res.units`` holds each row's ``Pair``; ``res.objective`` is minus its final loss.
    """
    started = time.perf_counter()
    model = resolve_model(model, device, seed)
    base = settings or Settings(**DEFAULTS)
    if settings is None and "size" not in overrides:
        base = base.replace(size=photo_size(first_image(content), model))
    settings = resolve_settings(base, overrides, batch_size, starts_from_images=True)
    channels = settings.channels or input_channels(model)
    contents, styles = read_photos(content, channels, settings.hw), read_photos(style, channels, settings.hw)
    picked = []  # layers chosen here, as the first activation at their resolution
    if content_layer is None or style_layers is None:
        default_content, default_styles = default_layers(model, settings.hw, channels)
        picked = ([] if content_layer else [default_content]) + ([] if style_layers else default_styles)
        content_layer, style_layers = content_layer or default_content, style_layers or default_styles
    style_layers = [style_layers] if isinstance(style_layers, str) else list(style_layers)
    # named by the argument (and flag) that gave them, not by the internal unit they become
    check_layer_name(content_layer, model, "given as content_layer (pyviz-fast style: --content-layer)")
    for layer in style_layers:
        check_layer_name(layer, model, "in style_layers (pyviz-fast style: --style-layers)")
    for name, value in (("style_weight", style_weight), ("content_weight", content_weight)):
        if not (math.isfinite(value) and value >= 0):  # inf ran and made the loss inf
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    task = StyleTask(contents, styles, _pairs(len(contents), len(styles), pairs), content_layer, style_layers,
                     content_weight, style_weight)
    with picked_for_first_call(picked):
        res = render_task(model, task, settings, backend=backend, device=device, seed=seed, progress=progress,
                          callback=callback, started=started)
    res.info.update(content_layer=content_layer, style_layers=style_layers)
    return res
