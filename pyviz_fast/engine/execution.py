"""How the model runs: eval mode, frozen weights, input normalization, precision (autocast),
memory format, optional torch.compile (of the submodules between the hooked layers), truncated
forward.

'auto' choices, measured on this project's 2-core Xeon with AMX-BF16 (torchvision googlenet,
weights=None, units inception4a:0-15, batch 16, 128 px, truncated forward + input gradient,
one torch thread because the machine was shared; ``benchmarks/bench_render.py --threads 1``):

    fp32 + contiguous (NCHW)    43.7 image-steps/s   1.00x
    fp32 + channels_last        54.1                 1.24x
    bf16 + contiguous           54.4                 1.24x
    bf16 + channels_last       144.2                 3.30x

So 'auto' precision = bf16 autocast on CPUs with AMX-BF16 and on CUDA devices with bf16 (fp16
on GPUs without it), fp32 elsewhere (bf16 without AMX is emulated and slow); 'auto' memory
format = channels_last on the CPU (1.24x even in fp32) and with reduced precision on CUDA.
The image and its gradient stay float32; only the model runs in reduced precision.

>>> with PreparedModel(model, settings, "cpu") as run:
...     acts = run(images, ["inception4a"])       # images [B, C, H, W] in [0, 1]
"""
import contextlib
import functools

import torch

from pyviz_fast.engine.models import input_normalization
from pyviz_fast.engine.truncate import TruncatedForward

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@functools.lru_cache(maxsize=None)
def cpu_has_amx_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return "amx_bf16" in f.read().split()
    except OSError:
        return False


def resolve_precision(precision, device) -> str:
    """'auto' -> the concrete precision for ``device`` (see the module docstring)."""
    if precision != "auto":
        return precision
    device = torch.device(device)
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu" and cpu_has_amx_bf16():
        return "bf16"
    return "fp32"


def resolve_memory_format(memory_format, precision, device) -> str:
    """'auto' -> channels_last on the CPU (oneDNN's native layout: faster in fp32 and bf16 alike,
    see the table above) and for reduced precision on CUDA (tensor cores); else contiguous."""
    if memory_format != "auto":
        return memory_format
    if torch.device(device).type == "cpu" or precision in ("bf16", "fp16"):
        return "channels_last"
    return "contiguous"


class PreparedModel:
    """Context manager that readies ``model`` for rendering and restores it on exit.

    Inside: eval mode, parameters with requires_grad False, the chosen memory format. Calling it
    runs the truncated forward on normalized images under autocast and returns the activations.
    The model is moved to ``device`` (and stays there).
    """

    def __init__(self, model, settings, device):
        self.model = model
        self.device = torch.device(device)
        self.precision = resolve_precision(settings.precision, self.device)
        self.memory_format = resolve_memory_format(settings.memory_format, self.precision, self.device)
        self.layout_chosen = settings.memory_format == "auto"
        mean, std = (settings.mean, settings.std) if settings.mean is not None else input_normalization(model)
        self.mean = None if mean is None else torch.tensor(mean, dtype=torch.float32, device=self.device)[None, :, None, None]
        self.std = None if std is None else torch.tensor(std, dtype=torch.float32, device=self.device)[None, :, None, None]
        self.compile = settings.compile
        self.heads_mode = False  # see enable_training_heads
        self._saved = None

    def __enter__(self):
        self._saved = ([m.training for m in self.model.modules()],
                       [p.requires_grad for p in self.model.parameters()])
        self.model.to(self.device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        if self.memory_format == "channels_last":
            self.model.to(memory_format=torch.channels_last)
        self._compiled = []
        return self

    def compile_around(self, layers):
        """With settings.compile: torch.compile the largest submodules that contain none of ``layers``.

        The hooks of the truncated forward (and the early stop they raise, which Dynamo cannot
        trace) stay in eager code; everything between them runs compiled. Undone on exit.
        """
        if not self.compile:
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
        training, grads = self._saved
        for m, t in zip(self.model.modules(), training):
            m.training = t
        for p, g in zip(self.model.parameters(), grads):
            p.requires_grad_(g)
        if self.memory_format == "channels_last":
            self.model.to(memory_format=torch.contiguous_format)
        for module in self._compiled:
            module._compiled_call_impl = None  # what nn.Module.compile() set

    def use_contiguous(self):
        """Switch an 'auto' channels_last back to contiguous (for models whose forward calls
        ``.view`` on activations, which channels_last strides reject). Returns True if it switched."""
        if not (self.layout_chosen and self.memory_format == "channels_last"):
            return False
        self.model.to(memory_format=torch.contiguous_format)
        self.memory_format = "contiguous"
        return True

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

    def __call__(self, images, layers):
        """{layer: activation} of ``images`` (float32 [B, C, H, W] in [0, 1]) for ``layers``."""
        self.model.training = self.heads_mode
        with TruncatedForward(self.model, layers) as run, self.autocast():
            return run(self.model_input(images))
