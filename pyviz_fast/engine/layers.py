"""Layer listing and activation-shape probes (one image through the model, no gradients).

>>> [l.name for l in layers(model, input_size=(3, 128, 128))][:3]
['conv1', 'conv1.conv', 'conv1.bn']
"""
import contextlib
import math
import re
import warnings
from typing import NamedTuple, Optional, Tuple

import torch

from pyviz_fast.engine.layout import (Activation, LayoutGuessWarning, check_rank, features_last_evidence, guess_message,
                                      learn_layouts, parse_overrides)
from pyviz_fast.engine.models import input_channels, not_an_image_model
from pyviz_fast.engine.settings import Settings
from pyviz_fast.engine.truncate import LayerError, first_tensor
from pyviz_fast.engine.units import OUTPUT, check_layer_name


class LayerInfo(NamedTuple):
    name: str                          # as in model.named_modules(); "output" = the model's return value
    type: str                          # module class name
    shape: Optional[Tuple[int, ...]]   # output shape without the batch dim (None: no tensor output; whole if not batched)
    channels: Optional[int]            # C of [C, H, W] / [H, W, C], D of tokens [N, D], K of [K]
    layout: Optional[str] = None       # nchw, nhwc, tokens or vector (see pyviz_fast.engine.layout)
    calls: int = 1                     # times the module runs in one forward (> 1: a shared module; its first call is the layer)
    rewritten: bool = False            # its output is changed in place later in the forward (an in-place ReLU): read as a copy
    batched: bool = True               # its first dimension is the batch; else (sequence-first, windows folded in) no unit
    layout_guessed: bool = False       # nothing told its layout (engine/layout.py): nchw is a guess, override it if wrong

    @property
    def is_map(self) -> bool:
        """A map [C, H, W] or [H, W, C] of more than one position: what has texture and layout (a
        squeeze-and-excitation gate's [C, 1, 1] has neither)."""
        return self.layout in ("nchw", "nhwc") and math.prod(Activation(self.shape, self.layout).positions) > 1


class _Probe(NamedTuple):
    found: dict      # {name: (type name, output shape or None)} in call order, first calls
    calls: dict      # {name: times the module ran}
    rewritten: set   # names whose first output was changed in place later in the forward
    unbatched: set   # names whose first output's first dimension is not the batch of 1
    out: object      # the model's output
    features_last: set  # names whose output has its features last by construction (layout.features_last_evidence)


def _hooked_shapes(model, prepared, input_size, device, names=None) -> _Probe:
    """One gray image of ``input_size`` through the model with the modules ``names`` (default:
    all) hooked. A module called more than once (one ``nn.ReLU`` shared by a block) is listed
    with its first call's output, the one a render hooks (``truncate.py``). An output whose first
    dimension is not the batch of 1 is listed whole, as ``unbatched``."""
    found, calls, versions, unbatched = {}, {}, {}, set()

    def hook(name):
        def record(module, inputs, output):
            calls[name] = calls.get(name, 0) + 1
            tensor = first_tensor(output)
            if name not in found:
                found[name] = (type(module).__name__, _shape(name, tensor, unbatched))
                if tensor is not None and not torch.is_inference(tensor):
                    versions[name] = (tensor, tensor._version)
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules()
               if n and (names is None or n in names) and not isinstance(m, torch.jit.ScriptModule)]
    try:
        with torch.no_grad(), features_last_evidence(model) as features_last:
            out = _checked_forward(lambda x: model(prepared.model_input(x)), input_size, device, model)
    finally:
        for h in handles:
            h.remove()
    rewritten = {name for name, (tensor, version) in versions.items() if tensor._version != version}
    found_output = first_tensor(out)
    if found_output is not None:
        found[OUTPUT] = (type(model).__name__, _shape(OUTPUT, found_output, unbatched))
    return _Probe(found, calls, rewritten, unbatched, out, features_last)


def _shape(name, tensor, unbatched):
    """A probed output's shape without its batch dim of 1; whole (and ``name`` added to
    ``unbatched``) when its first dimension is not that batch."""
    if tensor is None:
        return None
    if tensor.dim() == 0 or tensor.shape[0] != 1:
        unbatched.add(name)
        return tuple(tensor.shape)
    return tuple(tensor.shape[1:])

def layers(model, input_size=None, device="cpu", layout=None):
    """Every named module that runs in ``model``'s forward, in call order, with its output shape,
    layout, channel count, how many times it runs per forward (``calls``: a module used at
    several places, such as the one ``nn.ReLU`` of a torchvision ResNet block, is the layer of
    its first call) and whether a later in-place operation rewrites its output (``rewritten``:
    VGG's convolutions, followed by ``ReLU(inplace=True)``; renders read such a layer as a copy).

    input_size: (C, H, W), or S for (the model's input channels, S, S); default 128. Modules that are
    not called (e.g. training-only heads) are left out; the last entry is ``output``.
    layout: {layer: 'nchw' | 'nhwc' | 'tokens' | 'vector'} overrides (see ``engine/layout.py``;
    the model is run a second time at twice the size to learn the layouts of 4-D outputs).
    """
    from pyviz_fast.engine.execution import PreparedModel

    if input_size is None or isinstance(input_size, int) and not isinstance(input_size, bool):  # a square's side
        input_size = (input_channels(model),) + (128 if input_size is None else input_size,) * 2
    if not isinstance(input_size, (tuple, list)) or len(input_size) != 3 or not all(
            isinstance(v, int) and v >= 1 for v in input_size):
        raise ValueError(f"input_size must be a square image's side (an int) or (C, H, W) of positive ints, "
                         f"got {input_size!r}")
    overrides = parse_overrides(layout)
    for name in overrides or {}:
        check_layer_name(name, model, "given a layout")
    settings = Settings(precision="fp32", memory_format="contiguous")
    with PreparedModel(model, settings, device) as prepared:
        probe = _hooked_shapes(model, prepared, input_size, device)
        found = probe.found
        shapes = {name: shape for name, (_, shape) in found.items()
                  if shape is not None and len(shape) in (1, 2, 3) and name not in probe.unbatched}

        def reprobe(names, hw):  # as a render probes (reprobe_shapes)
            return reprobe_shapes(prepared, names, input_size[0], hw)

        learned = learn_layouts(shapes, input_size[1:], reprobe, overrides, features_last=probe.features_last)
    return [LayerInfo(name, type_name, shape, learned[name].channels if name in learned else None,
                      learned[name].layout if name in learned else None, probe.calls.get(name, 1),
                      name in probe.rewritten, name not in probe.unbatched,
                      name in learned and learned[name].guessed)
            for name, (type_name, shape) in found.items()]


def _checked_forward(forward, input_size, device, model):
    x = torch.full((1,) + tuple(input_size), 0.5, device=device)
    try:
        return forward(x)
    except LayerError:
        raise
    except Exception as error:  # the model's own error, re-raised with what we fed it and why, if known
        why, said = not_an_image_model(model), f"{type(error).__name__}: {error}"
        raise ValueError(f"the model's forward rejected an input of shape {list(x.shape)}: "
                         + (f"{why} ({said})" if why else said)) from error


def probe_shapes(prepared, layer_names, channels, hw, reached_only=False):
    """{layer: activation shape without batch} for one gray image of size hw (truncated, no grad).
    reached_only: the layers the forward reaches before the model fails at that size, if it does."""
    with torch.no_grad():
        acts = _checked_forward(lambda x: prepared(x, layer_names, reached_only), (channels,) + tuple(hw),
                                prepared.device, prepared.model)
    shapes = {}
    for name, act in acts.items():
        shape = tuple(act.shape[1:])
        check_rank(name, shape)
        if 0 in shape:
            raise ValueError(f"layer {name!r} has an empty output {list(shape)} at input size {tuple(hw)}: "
                             "the image size is too small for this layer")
        shapes[name] = shape
    return shapes


def reprobe_shapes(prepared, layer_names, channels, hw):
    """probe_shapes at the other size that layouts are learned from, of the layers the forward
    reaches there: a part of the model that runs at one size only (a flatten into a Linear, a
    position embedding, MaxViT's grids) hides only the layers after it, so a layer's layout does
    not depend on the layers probed with it (a render's batch, ``layers()``'s every layer)."""
    return probe_shapes(prepared, layer_names, channels, hw, reached_only=True)


class SharedLayerWarning(UserWarning):
    """A layer to render is a module that runs more than once per forward: its first call is read."""


def shared_layer_message(name, calls):
    parent = name.rpartition(".")[0]
    hint = f"; the output of the module around it is layer {parent!r}" if parent else ""
    return (f"layer {name!r} is one module that runs {calls} times in each forward (shared by several places "
            f"of the model): pyviz_fast reads its first call only{hint}")


def shared_layers(prepared, layer_names, channels, hw):
    """{layer: calls} of the ``layer_names`` whose module runs more than once in one forward of a
    gray image of size hw, each with a ``SharedLayerWarning`` (a render reads the first call)."""
    image = torch.full((1, channels, *hw), 0.5, device=prepared.device)
    shared = {name: calls for name, calls in prepared.calls(image, layer_names).items() if calls > 1}
    for name, calls in shared.items():
        warnings.warn(shared_layer_message(name, calls), SharedLayerWarning, stacklevel=2)
    return shared


@contextlib.contextmanager
def picked_for_first_call(names):
    """No ``SharedLayerWarning`` for the layers ``names`` inside: layers a method picked for what
    their first call is (the first activation at a resolution), not a user's pick that may mean
    another call. ``RenderResult.info['shared_layers']`` still lists them."""
    with warnings.catch_warnings():
        for name in names:
            warnings.filterwarnings("ignore", message=re.escape(f"layer {name!r} is one module"),
                                    category=SharedLayerWarning)
        yield


def probe_activations(prepared, layer_names, channels, sizes, overrides=None):
    """{hw: {layer: Activation}} for every input size in ``sizes``; layouts are learned once at
    the last size (``engine/layout.py``; from the first size too when there are several) and
    hold at every size. A layer whose layout is a guess warns (``LayoutGuessWarning``)."""
    for name in overrides or {}:
        check_layer_name(name, prepared.model, "given a layout")
    with features_last_evidence(prepared.model) as features_last:  # told by the modules in the same forwards
        shapes = {hw: probe_shapes(prepared, layer_names, channels, hw) for hw in dict.fromkeys(sizes)}
    probed = list(shapes)
    first, final = probed[0], probed[-1]
    learned = learn_layouts(shapes[final], final, lambda names, hw: reprobe_shapes(prepared, names, channels, hw),
                            overrides, known=shapes[first] if first != final else None, features_last=features_last)
    for name, activation in learned.items():
        if activation.guessed:
            warnings.warn(guess_message(name, activation), LayoutGuessWarning, stacklevel=2)
    return {hw: {name: Activation(shape, learned[name].layout, learned[name].guessed) for name, shape in per_layer.items()}
            for hw, per_layer in shapes.items()}
