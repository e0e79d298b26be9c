"""Activation layouts: where a layer's channels are, learned once from the probe.

A layer's output (batch dim first) is read in one of four layouts:

- ``nchw``   [B, C, H, W]  channel-first conv maps (PyTorch's convention);
- ``nhwc``   [B, H, W, C]  channel-last maps (torchvision Swin stages, the Linear / LayerNorm
                           inside ConvNeXt blocks, timm models that permute to channels-last);
- ``tokens`` [B, N, D]     a channel is a feature dimension D, a position is a token;
- ``vector`` [B, K]        a channel is a logit / feature.

The rule (``learn_layouts``): a 2-D output is ``vector`` and a 3-D one ``tokens``. For a 4-D
output the channel axis is the one whose size does not depend on the input size: the layer is
probed again at twice the input size (a render with octaves first reads its smallest octave's
probe, and probes again only the layers that leaves undecided), and if exactly one of the first
and last axes kept its size, that axis holds the channels. When the second probe cannot tell
(the model rejects the other size, or both or neither axis kept its size, e.g. a global pool
[C, 1, 1]), the spatial axes are the pair whose sizes are the input's H x W divided by one
common stride (each within a pixel). If that does not tell either, the modules tell where they
can (``features_last_evidence``, hooks in the same probe): an ``nn.Linear`` writes its features on
the last axis, so its 4-D output is ``nhwc``, and so is an elementwise module's (GELU, Dropout, a
LayerNorm over the last dim, ...) fed the very output tensor of such a layer (maxvit_t's MLPs on
[B, windows, positions, C]), and a block's that returns that tensor itself. Otherwise ``nchw`` is a guess: the Activation is marked
``guessed`` (``layers()`` notes it, a render or dataset pass of the layer warns with
``LayoutGuessWarning``), since a wrong guess reads a row as a channel without any error. A layer
the rule gets wrong is fixed with ``Settings(layout={"layer": "nhwc"})`` (also
``layers(..., layout=...)``), which always wins.

>>> act = Activation((56, 56, 96), "nhwc")
>>> act.channels, act.positions
(96, (56, 56))
"""
import contextlib
import math
from dataclasses import dataclass, field

import torch
from torch import nn

LAYOUTS = ("nchw", "nhwc", "tokens", "vector")
_RANK = {"nchw": 3, "nhwc": 3, "tokens": 2, "vector": 1}  # dims without the batch
_BY_RANK = {1: ("vector",), 2: ("tokens",), 3: ("nchw", "nhwc")}


@dataclass(frozen=True)
class Activation:
    """A layer's activation: its shape without the batch dim and its layout (``guessed``: nothing
    told it, see ``learn_layouts``; not part of equality)."""
    shape: tuple
    layout: str
    guessed: bool = field(default=False, compare=False)

    @property
    def channels(self) -> int:
        return self.shape[0] if self.layout == "nchw" else self.shape[-1]

    @property
    def positions(self) -> tuple:
        """The grid a channel spans: (H, W) for maps, (N,) for tokens, () for vectors."""
        return tuple(self.shape[1:]) if self.layout == "nchw" else tuple(self.shape[:-1])

    def channels_first(self, act):
        """A view [B, C, *positions] of an activation in this layout (no copy)."""
        return act if self.layout in ("nchw", "vector") else act.movedim(-1, 1)

    def from_channels_first(self, rows):
        """The inverse of ``channels_first``: rows [B, C, *positions] as an activation in this layout (a view)."""
        return rows if self.layout in ("nchw", "vector") else rows.movedim(1, -1)

    def describe(self) -> str:
        return f"[B, {', '.join(map(str, self.shape))}] ({self.layout})"


class LayoutGuessWarning(UserWarning):
    """A layer to read has a layout nothing told (``learn_layouts``): it is read as ``nchw``."""


def guess_message(layer, activation):
    """Why ``layer``'s layout is a guess, and the override that settles it."""
    return (f"layer {layer!r} (output {activation.describe()}): its layout cannot be told (the model does not run "
            "it at twice the input size, and its shape alone does not tell which axes are spatial), so its first axis is read "
            f"as the channels; if they are its last axis, pass layout={{{layer!r}: 'nhwc'}} "
            f"(--layout {layer}=nhwc)")


def parse_overrides(value):
    """{layer: layout} from a dict, or from text 'layer=nhwc,other=tokens' (the CLI's form); None stays None.

    Raises ValueError naming the bad entry and the valid layouts."""
    if value is None:
        return None
    if isinstance(value, str):
        pairs = {}
        for item in filter(None, (part.strip() for part in value.split(","))):
            layer, sep, name = item.partition("=")
            if not sep or not layer.strip():
                raise ValueError(f"layout must be LAYER=LAYOUT entries separated by commas, got {item!r}")
            pairs[layer.strip()] = name.strip()
        value = pairs
    if not isinstance(value, dict):
        raise ValueError(f"layout must be a dict {{layer: layout}}, got {type(value).__name__}: {value!r}")
    for layer, name in value.items():
        if not isinstance(layer, str) or name not in LAYOUTS:
            raise ValueError(f"layout of layer {layer!r} must be one of {', '.join(LAYOUTS)}; got {name!r}")
    return dict(value)


def check_override(layer, shape, layout):
    """Raise ValueError when ``layout`` cannot describe an output of ``shape`` (no batch)."""
    if _RANK[layout] != len(shape):
        valid = ", ".join(_BY_RANK.get(len(shape), ()))
        raise ValueError(f"layout {layout!r} given for layer {layer!r} does not fit its output "
                         f"[B, {', '.join(map(str, shape))}]" + (f"; valid: {valid}" if valid else ""))


def check_rank(layer, shape):
    if len(shape) not in _BY_RANK:
        raise ValueError(f"layer {layer!r}: activation of shape [B, {', '.join(map(str, shape))}] is not "
                         "supported: expected [B, C, H, W], [B, H, W, C], [B, N, D] or [B, K]")


def _is_spatial(h, w, hw):
    """Whether (h, w) is the input's (H, W) divided by one stride s, each within a pixel:
    s lies in [H / (h + 1), H / (h - 1)] and in the same interval for W."""
    def strides(n, size):
        return size / (n + 1), (size / (n - 1) if n > 1 else math.inf)
    (a, b), (c, d) = strides(h, hw[0]), strides(w, hw[1])
    return max(a, c) <= min(b, d)


def _by_spatial_axes(shape, hw):
    first, last = _is_spatial(shape[1], shape[2], hw), _is_spatial(shape[0], shape[1], hw)
    return ("nchw" if first else "nhwc") if first != last else None


def _by_fixed_axis(shape, other):
    if other is None or len(other) != 3:
        return None
    first, last = shape[0] == other[0], shape[2] == other[2]
    return ("nchw" if first else "nhwc") if first != last else None


# modules whose output keeps its input's axes in place, each element (LayerNorm: each position's
# last-dim features) mapped where it was: the output's channels are where the input's were
_ELEMENTWISE = (nn.Identity, nn.Dropout, nn.AlphaDropout, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.CELU,
                nn.SELU, nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Sigmoid,
                nn.Tanh, nn.Softplus)


def _keeps_axes(module):
    return isinstance(module, _ELEMENTWISE) or (isinstance(module, nn.LayerNorm) and len(module.normalized_shape) == 1)


@contextlib.contextmanager
def features_last_evidence(model):
    """Hooks for a probe's forward on the modules of ``model``: yields the set of layers, filled as
    the forward runs, whose (first call's) output has its features on the last axis by
    construction: an ``nn.Linear``'s; an elementwise module's (``_keeps_axes``) whose input is the
    very output tensor (same data pointer, shape and strides: not a permuted view) of a layer in
    the set; and any module's that returns such a tensor itself (a block or Sequential ending in
    one: its hook runs after its children's). Outputs in the set are held until the end, so that
    a freed tensor's memory cannot pass for one of them."""
    found, seen, held = set(), set(), {}

    def view(tensor):
        return tensor.data_ptr(), tuple(tensor.shape), tensor.stride()

    def hook(name, linear):
        def record(module, inputs, output):
            if name in seen or not isinstance(output, torch.Tensor):
                return
            seen.add(name)  # the first call is the layer
            fed = _keeps_axes(module) and inputs and isinstance(inputs[0], torch.Tensor) and view(inputs[0]) in held
            if linear or fed or view(output) in held:
                found.add(name)
                held[view(output)] = output
        return record

    # prepended: runs before a truncated forward's hook ends the forward at that layer
    handles = [module.register_forward_hook(hook(name, isinstance(module, nn.Linear)), prepend=True)
               for name, module in model.named_modules()
               if name and not isinstance(module, torch.jit.ScriptModule)]  # TorchScript takes no hooks
    try:
        yield found
    finally:
        for handle in handles:
            handle.remove()
        held.clear()


def learn_layouts(shapes, hw, reprobe, overrides=None, known=None, features_last=()):
    """{layer: Activation} for ``shapes`` ({layer: shape without batch}) probed at input size ``hw``.

    reprobe(layers, hw) -> {layer: shape} probes the model at another size (called at most
    once, for the 4-D layers without an override that ``known`` does not decide; a ValueError or
    RuntimeError from it is taken as "the model only runs at its own size"). known: {layer:
    shape} already probed at another input size (saves the probe at twice the size, the dearest
    forward of a set-up). overrides: {layer: layout}, always used. features_last: layers whose
    features are last by construction (``features_last_evidence``), read ``nhwc`` when the sizes
    leave them undecided (a Linear mixing positions along W is left to the sizes first).
    """
    overrides, known = overrides or {}, known or {}
    for layer, shape in shapes.items():
        check_rank(layer, shape)
        if layer in overrides:
            check_override(layer, shape, overrides[layer])
    maps = [layer for layer, shape in shapes.items() if len(shape) == 3 and layer not in overrides]
    decided = {layer: _by_fixed_axis(shapes[layer], known.get(layer)) for layer in maps}
    undecided = [layer for layer in maps if decided[layer] is None]
    other = {}
    if undecided:
        try:
            other = reprobe(undecided, (2 * hw[0], 2 * hw[1]))
        except (ValueError, RuntimeError):
            other = {}
    learned = {}
    for layer, shape in shapes.items():
        layout = None
        if layer in overrides:
            layout = overrides[layer]
        elif len(shape) < 3:
            layout = _BY_RANK[len(shape)][0]
        else:
            layout = (decided[layer] or _by_fixed_axis(shape, other.get(layer)) or _by_spatial_axes(shape, hw)
                      or ("nhwc" if layer in features_last else None))
        # nothing told: nchw, marked so that no one reads a row as a channel unwarned
        learned[layer] = Activation(tuple(shape), layout or "nchw", guessed=layout is None)
    return learned
