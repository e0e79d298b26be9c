"""Layer listing and activation-shape probes (one image through the model, no gradients).

>>> [l.name for l in layers(model, input_size=(3, 128, 128))][:3]
['conv1', 'conv1.conv', 'conv1.bn']
"""
from typing import NamedTuple, Optional, Tuple

import torch

from pyviz_fast.engine.models import input_channels
from pyviz_fast.engine.objectives import channel_count, layout
from pyviz_fast.engine.settings import Settings
from pyviz_fast.engine.truncate import LayerError, first_tensor


class LayerInfo(NamedTuple):
    name: str                          # as in model.named_modules(); "output" = the model's return value
    type: str                          # module class name
    shape: Optional[Tuple[int, ...]]   # output shape without the batch dim (None: no tensor output)
    channels: Optional[int]            # C of [C, H, W], D of tokens [N, D], K of [K]


def _info(name, type_name, tensor):
    shape = tuple(tensor.shape[1:])
    try:
        channels = channel_count(shape)
    except ValueError:
        channels = None
    return LayerInfo(name, type_name, shape, channels)


def layers(model, input_size=None, device="cpu"):
    """Every named module that runs in ``model``'s forward, in call order, with its output shape.

    input_size: (C, H, W); default (the model's input channels, 128, 128). Modules that are
    not called (e.g. training-only heads) are left out; the last entry is ``output``.
    """
    from pyviz_fast.engine.execution import PreparedModel

    if input_size is None:
        input_size = (input_channels(model), 128, 128)
    if len(input_size) != 3 or not all(isinstance(v, int) and v >= 1 for v in input_size):
        raise ValueError(f"input_size must be (C, H, W) of positive ints, got {input_size!r}")
    found = {}

    def hook(name):
        def record(module, inputs, output):
            tensor = first_tensor(output)
            if name not in found:
                found[name] = LayerInfo(name, type(module).__name__, None, None) if tensor is None \
                    else _info(name, type(module).__name__, tensor)
        return record

    settings = Settings(precision="fp32", memory_format="contiguous")
    with PreparedModel(model, settings, device) as prepared:
        handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules()
                   if n and not isinstance(m, torch.jit.ScriptModule)]
        try:
            with torch.no_grad():
                out = _checked_forward(lambda x: model(prepared.model_input(x)), input_size, device)
        finally:
            for h in handles:
                h.remove()
    result = list(found.values())
    tensor = first_tensor(out)
    if tensor is not None:
        result.append(_info("output", type(model).__name__, tensor))
    return result


def _checked_forward(forward, input_size, device):
    x = torch.full((1,) + tuple(input_size), 0.5, device=device)
    try:
        return forward(x)
    except LayerError:
        raise
    except Exception as error:  # the model's own error, re-raised with what we fed it
        raise ValueError(f"the model's forward rejected an input of shape {list(x.shape)}: "
                         f"{type(error).__name__}: {error}") from error


def probe_shapes(prepared, layer_names, channels, hw):
    """{layer: activation shape without batch} for one gray image of size hw (truncated, no grad)."""
    with torch.no_grad():
        acts = _checked_forward(lambda x: prepared(x, layer_names), (channels,) + tuple(hw), prepared.device)
    shapes = {}
    for name, act in acts.items():
        shape = tuple(act.shape[1:])
        layout(shape)  # raises for unsupported ranks
        if 0 in shape:
            raise ValueError(f"layer {name!r} has an empty output {list(shape)} at input size {tuple(hw)}: "
                             "the image size is too small for this layer")
        shapes[name] = shape
    return shapes
