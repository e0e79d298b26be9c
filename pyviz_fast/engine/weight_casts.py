"""Autocast's weight casts, made once per weight instead of at every forward.

Autocast caches its casts only for leaf tensors that require grad; a prepared model's weights are
frozen, so every forward casts every convolution's and linear layer's float32 weight again (a
bf16 step at batch 8, 64 px, on an Intel Xeon: 5-9 % of VGG-19's step with a style loss, 13 % of
ResNet-50's to layer4). ``WeightCasts`` hands each such layer, during its own forward only and
only under autocast, its weight and bias already cast to autocast's dtype: the tensors autocast
would have made (``Tensor.to`` keeps the layout), so outputs and gradients are bit for bit the
same. A cast is made again when its weight changes (in place, or its data replaced). Outside
those forwards the model shows its own float32 parameters.

Only layers of exactly ``nn.Conv1d/2d/3d`` and ``nn.Linear`` are served (a subclass may use its
weight otherwise) with at least ``SMALLEST`` weights, and only float32 parameters that do not
require grad.

>>> casts = WeightCasts(model); casts.install()   # ... forwards under autocast ...; casts.remove()
"""
import torch
from torch import nn

_SERVED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)  # their forward casts weight and bias as autocast does
# Weights smaller than this are left to autocast: the hooks cost more than their cast (a bf16 step of
# googlenet to inception4a, 64 px, batch 8, all 57 convolutions served: 3 % slower, on an Intel Xeon).
SMALLEST = 1 << 16
_NAMES = ("weight", "bias")


class WeightCasts:
    def __init__(self, model):
        self._layers = [m for m in model.modules() if type(m) in _SERVED and _weight_parameter(m) is not None
                        and m.weight.numel() >= SMALLEST]
        self._casts = {}      # id(parameter) -> (source alias, its version, dtype, cast)
        self._swapped = {}    # layer -> {name: parameter} while its forward runs
        self._handles = []

    def install(self):
        if self._handles:
            return
        for layer in self._layers:
            self._handles.append(layer.register_forward_pre_hook(self._before))
            self._handles.append(layer.register_forward_hook(self._after, always_call=True))

    def remove(self):
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._casts.clear()

    def _before(self, layer, args):
        device = layer._parameters["weight"].device.type
        if not torch.is_autocast_enabled(device):
            return
        dtype = torch.get_autocast_dtype(device)
        # a float32 Parameter only: a layer already served (contexts nest) shows a cast
        own = {name: p for name in _NAMES if isinstance(p := layer._parameters.get(name), nn.Parameter)
               and p.dtype == torch.float32 and not p.requires_grad}
        if own:
            self._swapped[layer] = own
            for name, p in own.items():
                layer._parameters[name] = self._cast(p, dtype)  # the dict, not setattr: a plain tensor

    def _after(self, layer, args, output):
        own = self._swapped.pop(layer, None)
        if own:
            layer._parameters.update(own)

    def _cast(self, p, dtype):
        # the alias keeps the source's storage alive, so an equal data pointer is the same memory,
        # and in-place changes bump the version
        source, version, made_as, cast = self._casts.get(id(p), (None, None, None, None))
        if source is None or made_as != dtype or source.data_ptr() != p.data_ptr() or version != p._version:
            with torch.inference_mode(False):  # made under inference mode, it could not serve a backward later
                source, version, made_as, cast = p.detach(), p._version, dtype, p.detach().to(dtype)
            self._casts[id(p)] = (source, version, made_as, cast)
        return cast


def _weight_parameter(layer):
    """The layer's weight Parameter, None when it has none (pruning makes weight a plain attribute)."""
    weight = layer._parameters.get("weight")
    return weight if isinstance(weight, nn.Parameter) else None
