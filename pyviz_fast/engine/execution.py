"""How the model runs: eval mode, frozen weights, input normalization, precision (autocast),
memory format, optional torch.compile (of the submodules between the hooked layers), truncated
forward.

The precision, memory format and compile flag form an ``Execution`` (autotune.py): the model is
prepared with the settings' explicit choices (fp32 contiguous where they say 'auto'), and
``use`` switches it to the execution a render decided on. The image and its gradient stay
float32; only the model runs in reduced precision.

>>> with PreparedModel(model, settings, "cpu") as run:
...     acts = run(images, ["inception4a"])       # images [B, C, H, W] in [0, 1]
"""
import contextlib
import itertools
import threading
import weakref

import torch

from pyviz_fast.backend import available_device
from pyviz_fast.engine.autotune import provisional
from pyviz_fast.engine.models import input_normalization
from pyviz_fast.engine.truncate import TruncatedForward, count_calls
from pyviz_fast.engine.weight_casts import WeightCasts

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
_TORCH_FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
_FORMATS = (torch.contiguous_format, torch.channels_last, torch.channels_last_3d)
# The models inside a PreparedModel now, each with its thread and depth: preparing changes the
# model in place, so a render of the same object from another thread at once would undo the
# first's set-up under it. On one thread contexts nest (pvf.layers inside a render's callback):
# each restores on exit what the one outside it had set up.
_IN_USE, _IN_USE_LOCK = weakref.WeakKeyDictionary(), threading.Lock()


def _claim(model):
    """Mark ``model`` in use by this thread; RuntimeError when another thread is rendering it."""
    me = threading.get_ident()
    with _IN_USE_LOCK:
        owner, depth = _IN_USE.get(model, (me, 0))
        if owner != me:
            raise RuntimeError(f"this {type(model).__name__} is already being rendered by another thread; a render "
                               "prepares the model in place, so give each thread its own copy: copy.deepcopy(model)")
        _IN_USE[model] = (me, depth + 1)


def _release(model):
    with _IN_USE_LOCK:
        owner, depth = _IN_USE[model]
        if depth == 1:
            del _IN_USE[model]
        else:
            _IN_USE[model] = (owner, depth - 1)


def _tensors(model):
    return itertools.chain(model.named_parameters(), model.named_buffers())


def _memory_formats(model):
    """{name: memory format} of the model's parameters and buffers that are laid out in one."""
    formats = {}
    for name, t in _tensors(model):
        fmt = next((f for f in _FORMATS if t.is_contiguous(memory_format=f)), None)
        if fmt is not None:
            formats[name] = fmt
    return formats


@contextlib.contextmanager
def batch_invariant_kernels():
    """torch's own CPU convolutions, which compute each image alike in any batch: oneDNN blocks by
    batch size, and NNPACK takes over from batches of 16, so both round an image by its batch."""
    onednn = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        with torch.backends.nnpack.flags(enabled=False):
            yield
    finally:
        torch.backends.mkldnn.enabled = onednn


class PreparedModel:
    """Context manager that readies ``model`` for rendering and restores it on exit.

    Inside: eval mode, parameters with requires_grad False, the chosen memory format. Calling it
    runs the truncated forward on normalized images under autocast and returns the activations.
    The model is moved to ``device`` (and stays there).
    """

    def __init__(self, model, settings, device):
        if any(p.is_inference() for p in model.parameters()):
            raise ValueError(f"the {type(model).__name__}'s parameters are inference tensors (it was made under "
                             "torch.inference_mode()), which autograd cannot differentiate through; make the model "
                             "outside inference_mode, or render copy.deepcopy(model) (made outside it)")
        dtypes = sorted({str(p.dtype) for p in model.parameters() if p.is_floating_point()} - {"torch.float32"})
        if dtypes:  # the image goes in as float32; reduced precision is autocast's, on float32 weights
            raise ValueError(f"the {type(model).__name__}'s parameters are {', '.join(dtypes)}; pyviz_fast runs a "
                             "float32 model: pass model.float(), with precision='fp16' or 'bf16' to run it in half "
                             "precision (under autocast)")
        self.model = model
        self.device = available_device(device)
        self.execution = provisional(settings)
        self.batch_invariant = settings.batch_invariant
        if self.batch_invariant and self.device.type != "cpu":
            raise ValueError(f"batch_invariant=True runs on the CPU only, got device {str(self.device)!r}: "
                             "elsewhere the convolution libraries choose algorithms by batch size too, "
                             "and no GPU has checked a way around it")
        mean, std = (settings.mean, settings.std) if settings.mean is not None else input_normalization(model)
        self.mean = None if mean is None else torch.tensor(mean, dtype=torch.float32, device=self.device)[None, :, None, None]
        self.std = None if std is None else torch.tensor(std, dtype=torch.float32, device=self.device)[None, :, None, None]
        self.heads_mode = False  # see enable_training_heads
        self._saved = None  # the model's state before _prepare changed it; None: nothing to restore
        self._kernels = None  # the kernels context once entered
        self._compiled = []
        self._modules = None  # name -> module, walked once per set-up, not per forward
        self._copied = set()  # layers overwritten in place later in the forward: captured as copies
        self._casts = WeightCasts(model)  # autocast's weight casts kept (weights frozen: it would not)

    def __enter__(self):
        _claim(self.model)
        try:
            self._prepare()
        except BaseException:  # even a KeyboardInterrupt: the caller's model is put back as it came
            self._restore()
            raise
        return self

    def _prepare(self):
        self._saved = ([m.training for m in self.model.modules()],
                       [p.requires_grad for p in self.model.parameters()], _memory_formats(self.model))
        self.model.to(self.device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.model.to(memory_format=_TORCH_FORMATS[self.memory_format])  # as asked, whatever it came in
        self._modules = dict(self.model.named_modules())
        kernels = batch_invariant_kernels() if self.batch_invariant else contextlib.nullcontext()
        kernels.__enter__()
        self._kernels = kernels  # only once entered: one that failed to enter has nothing to exit
        self._keep_casts()

    @property
    def precision(self) -> str:
        return self.execution.precision

    @property
    def memory_format(self) -> str:
        return self.execution.memory_format

    def use(self, execution, layers):
        """Run from now on with ``execution`` (an ``autotune.Execution``); ``layers`` are the hooked
        layers, which stay out of compiled code."""
        if execution.memory_format != self.memory_format:
            self.model.to(memory_format=_TORCH_FORMATS[execution.memory_format])
        if not execution.compile:
            self._uncompile()
        self.execution = execution
        if execution.compile:
            self.compile_around(layers)
        self._keep_casts()

    def _keep_casts(self):
        """Weight casts kept in reduced precision, except in compiled code (which would trace the
        swaps; it fuses its own casts)."""
        if self.precision != "fp32" and not self.execution.compile:
            self._casts.install()
        else:
            self._casts.remove()

    def compile_around(self, layers):
        """torch.compile the largest submodules that contain none of ``layers`` (once).

        The hooks of the truncated forward (and the early stop they raise, which Dynamo cannot
        trace) stay in eager code; everything between them runs compiled. Undone on exit.
        """
        if self._compiled:
            return

        def on_path(name):
            return any(layer == name or layer.startswith(name + ".") for layer in layers)

        def visit(prefix, module):
            for name, child in module.named_children():
                full = f"{prefix}.{name}" if prefix else name
                if on_path(full):
                    visit(full, child)
                elif not isinstance(child, torch.jit.ScriptModule):
                    child.compile()
                    self._compiled.append(child)
        visit("", self.model)

    def __exit__(self, *exc):
        self._restore()

    def _restore(self):
        """Undo what _prepare did, also when it stopped part way (the steps not taken undo nothing)."""
        self._casts.remove()
        if self._saved is not None:
            training, grads, formats = self._saved
            for m, t in zip(self.model.modules(), training):
                m.training = t
            for p, g in zip(self.model.parameters(), grads):
                p.requires_grad_(g)
            for name, t in _tensors(self.model):  # each back in its own layout (a channels_last model stays so)
                if name in formats and not t.is_contiguous(memory_format=formats[name]):
                    t.data = t.data.contiguous(memory_format=formats[name])
            self._saved = None
        if self._kernels is not None:
            self._kernels.__exit__(None, None, None)
            self._kernels = None
        self._uncompile()
        _release(self.model)

    def _uncompile(self):
        for module in self._compiled:
            module._compiled_call_impl = None  # what nn.Module.compile() set
        self._compiled = []

    def enable_training_heads(self):
        """Set ``training`` on the root module only (every submodule stays in eval mode).

        torchvision's GoogLeNet and Inception3 run their auxiliary classifiers only when the
        root module is training; this lets their aux logits be rendered while batch norm and
        dropout keep their eval behaviour. Undone on exit.
        """
        self.heads_mode = True

    def check_channels(self, channels):
        for name, t in (("mean", self.mean), ("std", self.std)):
            if t is not None and t.shape[1] != channels:
                raise ValueError(f"input normalization {name} has {t.shape[1]} values but images have "
                                 f"{channels} channels; pass mean=/std= with {channels} values")

    def autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=_DTYPES[self.precision])

    def model_input(self, images):
        x = images
        if self.mean is not None:
            x = (x - self.mean) / self.std
        if self.memory_format == "channels_last":
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def __call__(self, images, layers, reached_only=False, taps=None):
        """{layer: activation} of ``images`` (float32 [B, C, H, W] in [0, 1]) for ``layers``.
        A layer whose output the model overwrites later in the forward (an in-place ReLU after a
        convolution) is found on its first such call, which runs again; from then on it is
        captured as a copy (``truncate.TruncatedForward``). reached_only: only the layers the
        forward reaches before an error of the model's, if any; taps: functions run on layers'
        outputs inside the forward, their values returned too (both ``TruncatedForward``)."""
        self.model.training = self.heads_mode
        x = self.model_input(images)
        while True:
            with TruncatedForward(self.model, layers, self._modules, self._copied, reached_only, taps) as run, \
                    self.autocast():
                acts = run(x)
            if not run.overwritten:
                return acts
            self._copied.update(run.overwritten)

    def calls(self, images, layers):
        """{layer: times its module runs in one forward of ``images``} for the hooked ``layers``
        (``truncate.count_calls``: the whole forward, no gradients)."""
        self.model.training = self.heads_mode
        with torch.no_grad(), self.autocast():
            return count_calls(self.model, layers, self.model_input(images), self._modules)
