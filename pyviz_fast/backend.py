"""The backend switch used by all code above the ops: ``fused | reference | auto``.

``auto`` (the default) uses the compiled kernels when they are built for the tensors' device
and otherwise falls back to the pure-PyTorch reference, warning once. ``emulation`` runs the
CUDA kernels' per-thread code on the CPU; it exists for tests.
"""
import os
import warnings

import torch

from pyviz_fast import _ext

BACKENDS = ("auto", "fused", "reference", "emulation")
_default = os.environ.get("PYVIZ_FAST_BACKEND", "auto")
_warned = set()


def check_backend_name(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {name!r}")
    return name


def set_default_backend(name: str) -> None:
    """Backend used when an op or render call does not name one."""
    global _default
    _default = check_backend_name(name)


def get_default_backend() -> str:
    return check_backend_name(_default)


def available_device(device) -> torch.device:
    """``device`` as a torch.device, or ValueError naming it when it is malformed or not on this
    machine (torch's own error comes later, from deep inside a model's first forward)."""
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device {device!r} is not a torch device ({error})") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device {str(device)!r}: CUDA is not available on this machine (no NVIDIA GPU or "
                             "driver, or a CPU-only torch); use 'cpu'")
        if device.index is not None and device.index >= count:
            raise ValueError(f"device {str(device)!r}: this machine has {count} CUDA device(s), cuda:0-{count - 1}")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {str(device)!r}: MPS is not available on this machine; use 'cpu'")
    return device


def _fused_unavailable_reason(device: torch.device):
    if not _ext.has_ops():
        return f"the extension pyviz_fast._C is not built ({_ext.IMPORT_ERROR})"
    if device.type == "cuda" and not _ext.has_cuda_kernels():
        return "pyviz_fast._C was built without CUDA kernels"
    if device.type not in _ext.FUSED_DEVICE_TYPES:
        return f"pyviz_fast._C has no fused kernels for device type {device.type!r}"
    return None


def resolve_backend(name, device) -> str:
    """The concrete backend ('fused', 'reference' or 'emulation') for tensors on ``device``."""
    name = check_backend_name(name or get_default_backend())
    device = torch.device(device)
    if name in ("reference", "emulation"):
        if name == "emulation" and not _ext.has_ops():
            raise RuntimeError(f"backend 'emulation' needs the compiled extension: {_ext.IMPORT_ERROR}")
        return name
    reason = _fused_unavailable_reason(device)
    if reason is None:
        return "fused"
    if name == "fused":
        raise RuntimeError(f"backend 'fused' is not available on {device}: {reason}. "
                           "Use backend='reference' or build the extension (pip install --no-build-isolation -e .)")
    if (device.type, reason) not in _warned:
        _warned.add((device.type, reason))
        warnings.warn(f"pyviz_fast: falling back to the reference backend on {device}: {reason}",
                      RuntimeWarning, stacklevel=3)
    return "reference"
