"""Shared test fixtures: the kernel backends every op is checked on, and skips (with the
reason) for what this machine or build cannot run. The CUDA emulation is part of every build
(CPU-only included), so its cases never skip when the extension is there."""
from typing import Iterator, NamedTuple

import pytest
import torch

from pyviz_fast import _ext
from browser import browser  # noqa: F401  (the headless Chromium fixture, for page tests)


class KernelBackend(NamedTuple):
    name: str  # the backend= value of pyviz_fast.ops: 'fused' or 'emulation'
    device: torch.device


# The emulation runs each phase of a thread block in natural, reversed and shuffled thread
# order: a result that changes with the order is a race on the GPU.
KERNEL_BACKENDS = [
    pytest.param(("fused", "cpu", None), id="fused-cpu"),
    pytest.param(("emulation", "cpu", "natural"), id="emulation-cpu"),
    pytest.param(("emulation", "cpu", "reversed"), id="emulation-reversed-cpu"),
    pytest.param(("emulation", "cpu", "shuffled"), id="emulation-shuffled-cpu"),
    pytest.param(("fused", "cuda", None), id="fused-cuda", marks=pytest.mark.needs_cuda),
]


def pytest_collection_modifyitems(config, items):
    reasons = {}
    if not torch.cuda.is_available():
        reasons["needs_cuda"] = "needs a CUDA device; torch.cuda.is_available() is False on this machine"
    if not _ext.has_ops():
        reasons["needs_ext"] = f"the extension pyviz_fast._C is not built ({_ext.IMPORT_ERROR})"
    for item in items:
        for mark, reason in reasons.items():
            if mark in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(params=KERNEL_BACKENDS)
def kernel_backend(request) -> Iterator[KernelBackend]:
    """A compiled backend and the device its tensors live on (for the emulation, with its thread
    order set for the test and reset after it)."""
    name, device, order = request.param
    if not _ext.has_ops():
        pytest.skip(f"the extension pyviz_fast._C is not built ({_ext.IMPORT_ERROR})")
    if name == "fused" and device == "cuda" and not _ext.has_cuda_kernels():
        pytest.skip("pyviz_fast._C was built without CUDA kernels")
    if order is None:
        yield KernelBackend(name, torch.device(device))
        return
    _ext._C.configure_emulation(order=order)
    try:
        yield KernelBackend(name, torch.device(device))
    finally:
        _ext._C.configure_emulation()


@pytest.fixture(params=["", "emulated_"], ids=["cpu", "emulation"])
def kernel_prefix(request) -> str:
    """Prefix of the torch.ops.pyviz_fast names of one set of CPU-callable kernels."""
    if not _ext.has_ops():
        pytest.skip(f"the extension pyviz_fast._C is not built ({_ext.IMPORT_ERROR})")
    return request.param
