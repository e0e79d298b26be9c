"""Style transfer (Gatys et al. 2016) as a task: content from one image, texture from another.

Each row is a (content, style) pair and starts from its content image. Its objective is minus
  content_weight * ||a(x) - a(content)||^2 / ||a(content)||^2        at ``content_layer``
  + style_weight * mean_l ||G_l(x) - G_l(style)||^2 / ||G_l(style)||^2  over ``style_layers``,
with G the Gram matrices (``gram.py``), so it runs through the same loop, jitter, gradient blur,
normalization and fused step as a visualization. Targets are the no-grad activations of the
pair's images resized to the render's size.

>>> task = StyleTask(contents, styles, [(0, 0), (0, 1)], "conv3", ["conv1", "conv2"], style_weight=5.0)
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pyviz_fast.engine.goals import Goal
from pyviz_fast.engine.goals.gram import gram, gram_error_tap, squared_norms
from pyviz_fast.engine.truncate import TapValue


@dataclass(frozen=True)
class Pair:
    """Row label: content image ``content`` styled like image ``style`` (indices into the inputs)."""
    content: int
    style: int

    def __str__(self):
        return f"content{self.content}+style{self.style}"


class _RelativeError(torch.autograd.Function):
    """(x, target, norms [B]) -> ||x - target||^2 / norms [B], one autograd node (autograd's own
    takes four, each a pass over the activation); the gradient, for x only, is laid out as x."""

    @staticmethod
    def forward(ctx, x, target, norms):
        diff = x - target
        ctx.save_for_backward(diff, norms)
        return diff.square().sum(tuple(range(1, x.dim()))) / norms

    @staticmethod
    def backward(ctx, grad):
        diff, norms = ctx.saved_tensors
        return diff * (2 * grad / norms).view(-1, *[1] * (diff.dim() - 1)), None, None


def relative_error(x, target, norms=None):
    """float [B]: ||x - target||^2 / ||target||^2 per row (``norms``: ``squared_norms(target)`` if
    already made). Sums over the non-batch dims rather than flattening, which would copy a
    channels_last activation (and its gradient) every step."""
    return _RelativeError.apply(x.float(), target, squared_norms(target) if norms is None else norms)


def resized(images, hw):
    return F.interpolate(images, size=tuple(hw), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


class StyleLoss:
    """acts -> float [B]: minus the weighted content and style losses against fixed targets.

    The style layers' errors are taps (``taps``: pass them to the forward, which returns their
    values in acts under ``TapValue(layer)``); for acts of a forward without them, each tap runs
    on the captured activation instead, with the same value and gradient."""

    def __init__(self, content_layer, content, style_grams, activations, content_weight, style_weight, backend=None):
        self.layers = list(dict.fromkeys([content_layer, *style_grams]))
        self.content_layer, self.content = content_layer, content
        self.content_weight, self.style_weight = content_weight, style_weight
        self.content_norms = squared_norms(content)  # the targets' norms once, not every step
        self.taps = {layer: gram_error_tap(activations[layer], g, squared_norms(g), backend)
                     for layer, g in style_grams.items()}

    def __call__(self, acts):
        content = relative_error(acts[self.content_layer], self.content, self.content_norms)
        style = sum(self._style_error(acts, layer) for layer in self.taps) / len(self.taps)
        return -(self.content_weight * content + self.style_weight * style)

    def _style_error(self, acts, layer):
        tapped = acts.get(TapValue(layer))
        return tapped if tapped is not None else self.taps[layer](acts[layer])[1]


class StyleTask:
    def __init__(self, contents, styles, pairs, content_layer, style_layers, content_weight=1.0, style_weight=10.0):
        self.contents, self.styles = contents, styles
        self.units = [Pair(c, s) for c, s in pairs]
        self.keys = [str(p) for p in self.units]
        self.group = 1
        self.content_layer, self.style_layers = content_layer, list(style_layers)
        self.layers = list(dict.fromkeys([content_layer, *self.style_layers]))
        self.content_weight, self.style_weight = content_weight, style_weight

    def bind(self, shapes):
        pass  # every supported layout has activations and Gram matrices

    def _images(self, source, rows, field, hw):
        return resized(source[[getattr(p, field) for p in self.units[rows]]], hw)

    def start(self, rows, hw, run):
        return self._images(self.contents, rows, "content", hw)

    def objective(self, rows, hw, crops, run):
        if crops != 1:
            raise ValueError("style transfer compares whole images with their content; use a one-input parameterization")
        content = run.reference(self._images(self.contents, rows, "content", hw), [self.content_layer])
        styles = run.reference(self._images(self.styles, rows, "style", hw), self.style_layers)
        grams = {layer: gram(styles[layer], run.shapes[hw][layer], run.backend) for layer in self.style_layers}
        loss = StyleLoss(self.content_layer, content[self.content_layer].float(), grams, run.shapes[hw],
                         self.content_weight, self.style_weight, run.backend)
        return Goal(loss, [], crops)
