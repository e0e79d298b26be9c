"""Fake (meta) implementations of the compiled ops, so that ``torch.compile`` can trace them
and ``torch.library.opcheck`` can check them: outputs with the right shape, dtype, device and
memory format, computed from the inputs' metadata only.

Registered for every op of ``torch.ops.pyviz_fast`` and, when the extension was built with
the CUDA kernels' CPU emulation, for their ``emulated_<op>`` twins.
"""
import torch


def _image_like(x, *_):
    return torch.empty_like(x)


def _fused_ascent_step(x, *_):
    return torch.empty_like(x), torch.empty_like(x), x.new_empty((x.shape[0],), dtype=torch.bool)


FAKES = {
    "jitter": _image_like,
    "gaussian_blur": _image_like,
    "normalize_grad": _image_like,
    "clip_grad": _image_like,
    "fused_ascent_step": _fused_ascent_step,
}


def _register():
    prefixes = [""]
    if hasattr(torch.ops.pyviz_fast, "emulated_jitter"):
        prefixes.append("emulated_")
    for prefix in prefixes:
        for name, fake in FAKES.items():
            torch.library.register_fake(f"pyviz_fast::{prefix}{name}")(fake)


_register()
