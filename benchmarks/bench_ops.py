"""Op benchmarks: each fused CPU op against the pure-PyTorch reference on the brief's size
(B=32, 3x224x224, float32, sigma 2, norm mean_abs; the gradient also in channels_last), plus the
effective memory bandwidth of the fused step (x and grad read, two outputs written) against
torch.clone of the same tensor, with all threads and with one thread.

    PYTHONPATH=. python -m pytest benchmarks/bench_ops.py

Speedups and bandwidth are printed at the end (benchmarks/conftest.py); nothing here asserts a
time. Results are checked against the reference before anything is timed.

Reading the figures: on a busy 2-core machine a parallel region waits for the second core, so
two-thread medians come in scheduler-sized steps; the one-thread group shows the kernels' own
cost. Fresh outputs may be page-faulted in on every call (glibc returns freed blocks above its
trim threshold to the OS; torch.clone's single output usually stays mapped, the step's two do
not): MALLOC_TRIM_THRESHOLD_=1000000000 MALLOC_MMAP_THRESHOLD_=33554432 removes that effect.
"""
import pytest
import torch

from pyviz_fast import _ext, ops

pytestmark = pytest.mark.skipif(not _ext.has_ops(), reason="the extension pyviz_fast._C is not built")

B, C, H, W = 32, 3, 224, 224
SIGMA = 2.0
NORM = "mean_abs"
VARIANTS = ["fused", "reference"]
ONE_THREAD = " [1 thread]"  # group-name suffix of the single-thread timings


@pytest.fixture(scope="module")
def batch():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(B, C, H, W, generator=gen)
    grad = torch.randn(B, C, H, W, generator=gen)
    shifts = torch.randint(-16, 17, (B, 2), generator=gen)
    next_shifts = torch.randint(-16, 17, (B, 2), generator=gen)
    return x, grad, shifts, next_shifts, torch.full((B,), SIGMA)


def calls(x, grad, shifts, next_shifts, sigma):
    """op name -> function(backend) running it on the batch."""
    grad_cl = grad.contiguous(memory_format=torch.channels_last)  # what a channels_last model returns
    return {
        "fused_ascent_step": lambda backend: ops.fused_ascent_step(x, grad, shifts, next_shifts, sigma, norm=NORM,
                                                                   lr=0.05, backend=backend),
        "fused_ascent_step, grad channels_last": lambda backend: ops.fused_ascent_step(
            x, grad_cl, shifts, next_shifts, sigma, norm=NORM, lr=0.05, backend=backend),
        "jitter": lambda backend: ops.jitter(x, shifts, backend=backend),
        "gaussian_blur": lambda backend: ops.gaussian_blur(grad, sigma, backend=backend),
        "normalize_grad": lambda backend: ops.normalize_grad(grad, NORM, backend=backend),
        "clip_grad": lambda backend: ops.clip_grad(grad, 0.5, backend=backend),
    }


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("op", ["fused_ascent_step", "fused_ascent_step, grad channels_last", "jitter", "gaussian_blur",
                                "normalize_grad", "clip_grad"])
def test_op(record, batch, op, variant):
    fn = calls(*batch)[op]
    got, want = fn(variant), fn("reference")
    for a, b in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    x = batch[0]
    moved = 4 * x.numel() * x.element_size() if op.startswith("fused_ascent_step") else None  # x, grad in; 2 out
    record(op, variant, lambda: fn(variant), moved)


def test_clone_bandwidth(record, batch):
    x = batch[0]
    record("bandwidth", "clone", x.clone, 2 * x.numel() * x.element_size())  # read + write


@pytest.fixture
def one_thread():
    """Timings on a shared 2-core machine are dominated by waiting for the second thread;
    one thread shows the kernels' own cost."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("variant", VARIANTS + ["clone"])
def test_fused_step_one_thread(record, batch, one_thread, variant):
    x = batch[0]
    moved = 2 * x.numel() * x.element_size()
    if variant == "clone":
        record("bandwidth" + ONE_THREAD, "clone", x.clone, moved)
    else:
        fn = calls(*batch)["fused_ascent_step"]
        record("fused_ascent_step" + ONE_THREAD, variant, lambda: fn(variant), 2 * moved)
