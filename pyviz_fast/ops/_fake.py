"""Fake (meta) implementations of the compiled ops, so that ``torch.compile`` can trace them
and ``torch.library.opcheck`` can check them: outputs with the right shape, dtype, device and
memory format, computed from the inputs' metadata only.

Registered for every op of ``torch.ops.pyviz_fast`` and for the ``emulated_<op>`` twins of
those with CUDA kernels.
"""
import torch


def _image_like(x, *_):
    return torch.empty_like(x)


def _fused_ascent_step(x, *_):
    return torch.empty_like(x), torch.empty_like(x), x.new_empty((x.shape[0],), dtype=torch.bool)


def _periodic_crops(image, boxes, *_):
    return image.new_empty((boxes.shape[0] * boxes.shape[1], *image.shape[1:]))


def _periodic_crops_backward(grad, boxes):
    return grad.new_empty((boxes.shape[0], *grad.shape[1:]))


def _gram(x):
    return x.new_empty((x.shape[0], x.shape[1], x.shape[1]))


FAKES = {
    "jitter": _image_like,
    "gaussian_blur": _image_like,
    "normalize_grad": _image_like,
    "clip_grad": _image_like,
    "fused_ascent_step": _fused_ascent_step,
    "periodic_crops": _periodic_crops,
    "periodic_crops_backward": _periodic_crops_backward,
    "gram": _gram,
    "gram_times": lambda m, x: torch.empty_like(x),
    "gram_error": lambda x, target, norms: (target.new_empty((x.shape[0],)), target.new_empty(target.shape)),
    "gram_error_backward": lambda x, residual, weights, add=None: torch.empty_like(x),
    "squared_error": lambda x, target, norms: norms.new_empty((x.shape[0],)),
    "squared_error_backward": lambda x, target, weights, add=None: torch.empty_like(x),
}


def _register():
    prefixes = [""]
    if hasattr(torch.ops.pyviz_fast, "emulated_jitter"):
        prefixes.append("emulated_")
    for prefix in prefixes:
        for name, fake in FAKES.items():
            if hasattr(torch.ops.pyviz_fast, prefix + name):  # CPU-only ops have no emulated twin
                torch.library.register_fake(f"pyviz_fast::{prefix}{name}")(fake)


_register()
