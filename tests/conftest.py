"""Shared test fixtures: the kernel backends every op is checked on, and skips (with the
reason) for what this machine or build cannot run. The CUDA emulation is part of every build
(CPU-only included), so its cases never skip when the extension is there."""
import contextlib
from typing import Iterator, NamedTuple

import pytest
import torch

from pyviz_fast import _ext
from browser import browser  # noqa: F401  (the headless Chromium fixture, for page tests)


class KernelBackend(NamedTuple):
    name: str  # the backend= value of pyviz_fast.ops: 'fused' or 'emulation'
    device: torch.device


# The emulation runs each phase of a thread block in natural, reversed and shuffled thread
# order: a result that changes with the order is a race on the GPU. It runs the two-pass step,
# and in one case the one-pass step of a device holding ONE_PASS_BLOCKS blocks at once (what
# a GPU runs for images of that many tiles or fewer). The fused CPU kernels run with the CPU's
# best vector instructions, and also with each narrower set it has (users' CPUs differ: an AVX2
# machine runs the avx2 loops, an old one sse2).
ONE_PASS_BLOCKS = 48
KERNEL_BACKENDS = [
    pytest.param(("fused", "cpu", None, ""), id="fused-cpu"),
    pytest.param(("fused", "cpu", None, "avx2"), id="fused-cpu-avx2"),
    pytest.param(("fused", "cpu", None, "sse2"), id="fused-cpu-sse2"),
    pytest.param(("emulation", "cpu", "natural", ""), id="emulation-cpu"),
    pytest.param(("emulation", "cpu", "reversed", ""), id="emulation-reversed-cpu"),
    pytest.param(("emulation", "cpu", "shuffled", ""), id="emulation-shuffled-cpu"),
    pytest.param(("emulation", "cpu", "shuffled one pass", ""), id="emulation-one-pass-cpu"),
    pytest.param(("fused", "cuda", None, ""), id="fused-cuda", marks=pytest.mark.needs_cuda),
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


@pytest.fixture
def one_thread():
    """Tiny renders on a shared 2-core machine run many times faster on one torch thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def same_bits_on_one_and_two_threads():
    """check(fn): fn(), a tuple of tensors, gives the same bits on one and on two torch threads
    (the kernels' parallel orders differ between them)."""
    def check(fn):
        threads, results = torch.get_num_threads(), []
        try:
            for n in (1, 2):
                torch.set_num_threads(n)
                results.append(fn())
        finally:
            torch.set_num_threads(threads)
        for a, b in zip(*results):
            assert torch.equal(a, b)
    return check


@pytest.fixture(params=KERNEL_BACKENDS)
def kernel_backend(request) -> Iterator[KernelBackend]:
    """A compiled backend and the device its tensors live on (the emulation's thread order and the
    CPU kernels' vector instructions set for the test and reset after it)."""
    name, device, order, isa = request.param
    if not _ext.has_ops():
        pytest.skip(f"the extension pyviz_fast._C is not built ({_ext.IMPORT_ERROR})")
    if name == "fused" and device == "cuda" and not _ext.has_cuda_kernels():
        pytest.skip("pyviz_fast._C was built without CUDA kernels")
    with vector_instructions(isa), emulation_order(order):
        yield KernelBackend(name, torch.device(device))


@contextlib.contextmanager
def vector_instructions(isa):
    """The CPU kernels' vector loops on ``isa`` ('' leaves the best this CPU runs) for the test."""
    if not isa:
        yield
        return
    runs = _ext._C.vector_instruction_sets()
    if isa not in runs[1:]:
        pytest.skip(f"this CPU runs the vector loops with {runs}: '{isa}' is " +
                    ("its best, the fused-cpu case" if runs[0] == isa else "not among them"))
    previous = _ext._C.use_vector_instruction_set(isa)
    try:
        yield
    finally:
        _ext._C.use_vector_instruction_set(previous)


@contextlib.contextmanager
def emulation_order(order):
    """The emulation's thread order for the test, '<order> one pass' on a device that runs the
    one-pass step (None: leave it)."""
    if order is None:
        yield
        return
    order, _, one_pass = order.partition(" ")
    _ext._C.configure_emulation(order=order, resident_blocks=ONE_PASS_BLOCKS if one_pass else 0)
    try:
        yield
    finally:
        _ext._C.configure_emulation()


@pytest.fixture(params=["", "avx2", "sse2"], ids=["best-vectors", "avx2", "sse2"])
def vector_isa(request) -> Iterator[str]:
    """The CPU kernels' vector instruction set for a test of the fused CPU kernels alone."""
    if not _ext.has_ops():
        pytest.skip(f"the extension pyviz_fast._C is not built ({_ext.IMPORT_ERROR})")
    with vector_instructions(request.param):
        yield request.param


@pytest.fixture(params=["", "emulated_"], ids=["cpu", "emulation"])
def kernel_prefix(request) -> str:
    """Prefix of the torch.ops.pyviz_fast names of one set of CPU-callable kernels."""
    if not _ext.has_ops():
        pytest.skip(f"the extension pyviz_fast._C is not built ({_ext.IMPORT_ERROR})")
    return request.param
