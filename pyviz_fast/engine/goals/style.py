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

from pyviz_fast import ops
from pyviz_fast.engine.goals import Goal
from pyviz_fast.engine.goals.gram import gram, gram_error_tap, squared_norms
from pyviz_fast.engine.redirect import passes_through
from pyviz_fast.engine.truncate import TapValue, chained


@dataclass(frozen=True)
class Pair:
    """Row label: content image ``content`` styled like image ``style`` (indices into the inputs)."""
    content: int
    style: int

    def __str__(self):
        return f"content{self.content}+style{self.style}"


@passes_through
class _SquaredErrorTap(torch.autograd.Function):
    """(x, target, norms [B], backend) -> (x's alias, ||x - target||^2 / norms [B]): a content
    loss's layer as a tap inside the forward (``truncate.TruncatedForward``), whose gradient is
    added into the one that comes back from the rest of the model in the same pass
    (``ops.squared_error_backward``'s add); beside the path, the same node is one of autograd's
    where its own ops take five. The gradient is laid out as x, in x's dtype."""

    @staticmethod
    def forward(ctx, x, target, norms, backend):
        ctx.set_materialize_grads(False)  # nothing after the layer (the deepest one): no zeros to add
        ctx.save_for_backward(x, target, norms)
        ctx.backend = backend
        return x.detach(), ops.squared_error(x, target, norms, backend=backend)

    @staticmethod
    def backward(ctx, grad_out, grad_error):
        if grad_error is None:
            return grad_out, None, None, None
        x, target, norms = ctx.saved_tensors
        return ops.squared_error_backward(x, target, grad_error / norms, add=grad_out, backend=ctx.backend), None, \
            None, None


def squared_error_tap(target, norms, backend=None):
    """A tap of a content layer: output -> (output's alias, float [B] ||output - target||^2 /
    norms). Applied to a captured activation instead, beside the model's path, it gives the
    same value and gradient."""
    return lambda output: _SquaredErrorTap.apply(output, target, norms, backend)


def relative_error(x, target, norms=None, backend=None):
    """float [B]: ||x - target||^2 / ||target||^2 per row (``norms``: ``squared_norms(target)`` if
    already made), one autograd node whose gradient is laid out as x."""
    return squared_error_tap(target, squared_norms(target) if norms is None else norms, backend)(x)[1]


def resized(images, hw):
    return F.interpolate(images, size=tuple(hw), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


class StyleLoss:
    """acts -> float [B]: minus the weighted content and style losses against fixed targets.

    Each layer's errors are taps (``taps``: pass them to the forward, which returns their values
    in acts under ``TapValue(layer)``); a content layer that is also a style layer takes both,
    chained. An error without its value in acts (a forward without the taps) runs on the
    captured activation instead, with the same value and gradient."""

    def __init__(self, content_layer, content, style_grams, activations, content_weight, style_weight, backend=None):
        self.layers = list(dict.fromkeys([content_layer, *style_grams]))
        self.content_layer = content_layer
        self.content_weight, self.style_weight = content_weight, style_weight
        # the targets' norms once, not every step
        self.content_error = squared_error_tap(content, squared_norms(content), backend)
        self.style_errors = {layer: gram_error_tap(activations[layer], g, squared_norms(g), backend)
                             for layer, g in style_grams.items()}
        by_layer = {}
        for layer, tap in [(content_layer, self.content_error), *self.style_errors.items()]:
            by_layer.setdefault(layer, []).append(tap)
        self.taps = {layer: chained(*taps) for layer, taps in by_layer.items()}
        self._slot = {tap: i for taps in by_layer.values() for i, tap in enumerate(taps)}  # in its layer's values

    def __call__(self, acts):
        content = self._error(acts, self.content_layer, self.content_error)
        style = sum(self._error(acts, layer, tap) for layer, tap in self.style_errors.items()) / len(self.style_errors)
        return -(self.content_weight * content + self.style_weight * style)

    def _error(self, acts, layer, tap):
        tapped = acts.get(TapValue(layer))
        return tapped[self._slot[tap]] if tapped is not None else tap(acts[layer])[1]


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
