"""Truncated forward: run a model only as far as the deepest layer a batch needs.

Forward hooks capture the outputs of the needed modules; the hook that captures the last of
them raises ``_Stop``, which unwinds the model's ``forward`` so no later layer is called. The
captured tensors keep their autograd graph, so the objective can be back-propagated as usual.
Works for any ``nn.Module`` whose forward calls its submodules (no tracing, no graph surgery).

>>> with TruncatedForward(model, ["inception3a"]) as run:
...     acts = run(images)          # {"inception3a": tensor [B, 256, H/8, W/8]}
"""
from dataclasses import dataclass

import torch

from pyviz_fast.engine.units import OUTPUT


class LayerError(ValueError):
    """A requested layer cannot be captured (not an error of the model's own forward)."""


class LayerNotCalled(LayerError):
    """A requested layer did not run in the forward (e.g. a head that runs only in training mode)."""


@dataclass(frozen=True)
class TapValue:
    """The key of a tap's value in the activations a forward returns (``TruncatedForward``)."""
    layer: str


def chained(*taps):
    """Several taps of one layer as one tap: each runs on the alias the one before it returned
    (so their gradients add up in the same backward pass), and the value is the tuple of theirs,
    in order."""
    def tap(output):
        values = []
        for each in taps:
            output, value = each(output)
            values.append(value)
        return output, tuple(values)
    return tap


class _Stop(Exception):
    """Raised by the hook of the last needed layer to end the forward early."""


def first_tensor(value):
    """The activation of a module output: the tensor itself or the first tensor of a tuple/list/dict."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (tuple, list)):
        for item in value:
            found = first_tensor(item)
            if found is not None:
                return found
    return None


def count_calls(model, layers, x, modules):
    """{layer: times its module runs in ``model(x)``} for the module names in ``layers`` (``output``
    is left out). Runs the whole forward, past where a truncated one stops: an error raised after
    every layer has run ends the count (a head made for another input size), one raised before
    it propagates."""
    counts = dict.fromkeys((name for name in layers if name != OUTPUT), 0)

    def counter(name):
        def count(module, inputs, output):
            counts[name] += 1
        return count

    handles = [modules[name].register_forward_hook(counter(name)) for name in counts]
    try:
        model(x)
    except Exception:
        if not all(counts.values()):
            raise
    finally:
        for handle in handles:
            handle.remove()
    return counts


class TruncatedForward:
    """Context manager: hooks on ``layers`` while open; calling it returns ``{layer: activation}``.

    layers: module names from ``model.named_modules()``, or ``"output"`` for the model's return
    value (which needs the full forward). Only the first call of a module per forward counts.
    modules: ``dict(model.named_modules())`` if the caller keeps it (walking a large model's
    tree on every step costs as much as a small layer's forward).

    A layer's output can be overwritten later in the same forward: VGG's ``ReLU(inplace=True)``
    rewrites the output of the convolution before it, so a convolution read together with a
    deeper layer would be read after its ReLU. ``copied`` names the layers to capture as a copy
    (the graph still leads back to the layer); after each call, ``overwritten`` lists the layers
    captured without a copy whose output changed after capture (their values are not the
    layer's): the caller must call again with them copied.

    reached_only: an error of the model's forward ends it like the last layer's hook does, and
    the call returns the layers captured before it (a probe at a size that only the model's
    first part runs at: the layers before the failing part still tell their shapes).

    taps: ``{layer: fn}`` with ``fn(output) -> (output', value)``, run on the layer's output
    inside the forward, while it is in cache: output' (the output or an autograd alias of it,
    e.g. a node that computes a loss of the output and adds its gradient into the one coming back
    from the rest of the model) goes on through the model in the output's place and is the
    layer's activation; the call returns value under ``TapValue(layer)``. The tap of a copied
    layer, or of a layer whose output is not a plain tensor, runs beside the model's path.
    """

    def __init__(self, model, layers, modules=None, copied=(), reached_only=False, taps=None):
        self.model, self.modules, self.reached_only = model, modules, reached_only
        self.layers = list(dict.fromkeys(layers))
        self.hooked = [name for name in self.layers if name != OUTPUT]
        self.copied = set(copied)
        self.taps = taps or {}
        self.overwritten = []
        self._handles = []
        self._acts, self._versions, self._tapped = {}, {}, {}

    def __enter__(self):
        modules = self.modules if self.modules is not None else dict(self.model.named_modules())
        for name in self.hooked:
            if isinstance(modules[name], torch.jit.ScriptModule):
                raise LayerError(f"layer {name!r} is inside a TorchScript model, whose submodules cannot be "
                                 f"hooked; use the layer '{OUTPUT}' or load the model as an nn.Module")
            self._handles.append(modules[name].register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook(self, name):
        stop_early = OUTPUT not in self.layers

        def capture(module, inputs, output):
            if name in self._acts:
                return
            tensor = first_tensor(output)
            if tensor is None:
                raise LayerError(f"layer {name!r} ({type(module).__name__}) returned no tensor "
                                f"(got {type(output).__name__}); pick another layer")
            last = stop_early and len(self._acts) + 1 == len(self.hooked)  # nothing runs after it
            copied = name in self.copied or (torch.is_inference(tensor) and not last)  # no version counter to check
            # the tap's output replaces the module's only where the module returned that very tensor
            replaces = name in self.taps and output is tensor and not copied
            if copied:
                tensor = tensor.clone()
            if name in self.taps:
                tensor, self._tapped[name] = self.taps[name](tensor)
            if not (copied or last):
                self._versions[name] = tensor._version  # an in-place op after capture bumps it
            self._acts[name] = tensor
            if last:
                raise _Stop
            return tensor if replaces else None
        return capture

    def __call__(self, x):
        self._acts, self._versions, self._tapped = {}, {}, {}
        try:
            out = self.model(x)
        except _Stop:
            pass
        except Exception:
            if not self.reached_only:
                raise
        else:
            if OUTPUT in self.layers:
                tensor = first_tensor(out)
                if tensor is None:
                    raise TypeError(f"the model's output holds no tensor (got {type(out).__name__})")
                self._acts[OUTPUT] = tensor
        acts, self._acts = self._acts, {}
        self.overwritten = [name for name, version in self._versions.items() if acts[name]._version != version]
        missing = [name for name in self.layers if name not in acts]
        if missing and not self.reached_only:
            raise LayerNotCalled(f"layer(s) {', '.join(map(repr, missing))} were not called by the model's "
                                 "forward; pick another layer")
        unbatched = {name: tuple(act.shape) for name, act in acts.items() if act.dim() == 0 or act.shape[0] != len(x)}
        if unbatched:
            raise LayerError(", ".join(f"layer {name!r} returns shape {list(shape)}" for name, shape in unbatched.items())
                             + f" for a batch of size {len(x)}: its first dimension is not the batch (windows or "
                             "heads folded into it, a sequence-first transformer, a detector's boxes), so its rows "
                             "are not the images'; pick another layer, such as the block around it")
        if x.requires_grad and torch.is_grad_enabled():
            cut = [name for name, act in acts.items() if not act.requires_grad]
            if cut:
                raise LayerError(f"layer(s) {', '.join(map(repr, cut))} do not depend on the input image through "
                                 "autograd (the model computes them under torch.no_grad() or detaches them), so no "
                                 "gradient reaches the image; pick a layer before that point")
        acts.update({TapValue(name): value for name, value in self._tapped.items()})
        self._tapped = {}
        return acts
