"""Loads the compiled extension ``pyviz_fast._C`` and says what it was built with."""
import importlib

import torch

try:
    _C = importlib.import_module("pyviz_fast._C")  # importing registers torch.ops.pyviz_fast.*
except ImportError as error:  # not built: the reference backend serves
    _C = None
    IMPORT_ERROR = error
else:
    IMPORT_ERROR = None


def has_ops() -> bool:
    """True when the compiled kernels are importable."""
    return _C is not None


def _registers_step_for(dispatch_key: str) -> bool:
    return _C is not None and torch._C._dispatch_has_kernel_for_dispatch_key("pyviz_fast::fused_ascent_step",
                                                                              dispatch_key)


# Device types with a registered fused kernel; read once, as registration happens at import
# (and so that backend resolution stays traceable by torch.compile).
FUSED_DEVICE_TYPES = frozenset(device for device, key in (("cpu", "CPU"), ("cuda", "CUDA"))
                               if _registers_step_for(key))


def has_cuda_kernels() -> bool:
    return "cuda" in FUSED_DEVICE_TYPES


def build_info() -> dict:
    """What was built: cpu, cuda, CUDA arches, OpenMP and thread count, torch versions.

    >>> pyviz_fast.build_info()["cpu"]
    True
    """
    info = {"extension": _C is not None, "cpu": False, "cuda": False, "cuda_arches": None,
            "cuda_emulation": False, "openmp": False, "threads": torch.get_num_threads(),
            "torch_built_with": None}
    if _C is None:
        info["import_error"] = str(IMPORT_ERROR)
    else:
        info.update(_C.build_info())
    info["torch"] = torch.__version__
    info["torch_cuda"] = torch.version.cuda
    info["cuda_device_available"] = torch.cuda.is_available()
    return info
