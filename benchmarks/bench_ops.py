"""Op benchmarks: each fused CPU op against the pure-PyTorch reference on the brief's size
(B=32, 3x224x224, float32, sigma 2, norm mean_abs; the gradient also in channels_last), on the
cases of ``pyviz_fast.bench.op_cases``, plus the
effective memory bandwidth of the fused step (x and grad read, two outputs written) against
torch.clone of the same tensor, with all threads and with one thread.

    PYTHONPATH=. python -m pytest benchmarks/bench_ops.py

Speedups and bandwidth are printed at the end (benchmarks/conftest.py); nothing here asserts a
time. Results are checked against the reference before anything is timed.

Reading the figures: on a busy 2-core machine a parallel region waits for the second core, so
two-thread medians come in scheduler-sized steps; the one-thread group shows the kernels' own
cost. The CPU ops' outputs reuse blocks freed by earlier outputs (``ops.release_cached_memory``),
so after the first call no output is page-faulted in again; torch.clone's output comes from
glibc, which usually keeps a single 19 MB block mapped.
"""
import pytest
import torch

from pyviz_fast import _ext
from pyviz_fast.bench.op_cases import OPS, op_call, op_inputs

pytestmark = pytest.mark.skipif(not _ext.has_ops(), reason="the extension pyviz_fast._C is not built")

B, SIZE = 32, 224
VARIANTS = ["fused", "reference"]
ONE_THREAD = " [1 thread]"  # group-name suffix of the single-thread timings
GRAD_CL = ", grad channels_last"  # the fused step with the gradient a channels_last model returns


@pytest.fixture(scope="module")
def cases():
    """Inputs (the same cases as ``pyviz-fast bench`` and the suite): plain and channels_last gradient."""
    return {False: op_inputs(B, SIZE), True: op_inputs(B, SIZE, grad_channels_last=True)}


def case_call(cases, op, variant):
    channels_last = op.endswith(GRAD_CL)
    return op_call(op.removesuffix(GRAD_CL), variant, *cases[channels_last])


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("op", list(OPS) + ["fused_ascent_step" + GRAD_CL])
def test_op(record, cases, op, variant):
    run, reference = case_call(cases, op, variant), case_call(cases, op, "reference")
    got, want = run(), reference()
    for a, b in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    x = cases[False][0]
    moved = 4 * x.numel() * x.element_size() if op.startswith("fused_ascent_step") else None  # x, grad in; 2 out
    record(op, variant, run, moved)


def test_clone_bandwidth(record, cases):
    x = cases[False][0]
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
def test_fused_step_one_thread(record, cases, one_thread, variant):
    x = cases[False][0]
    moved = 2 * x.numel() * x.element_size()
    if variant == "clone":
        record("bandwidth" + ONE_THREAD, "clone", x.clone, moved)
    else:
        record("fused_ascent_step" + ONE_THREAD, variant, case_call(cases, "fused_ascent_step", variant), 2 * moved)
