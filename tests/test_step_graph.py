"""A step captured in a CUDA graph (pyviz_fast.ops.graphs.StepGraph).

Without a GPU these tests check what capture relies on: the Python step path reads no tensor
value on the host (it runs on meta tensors, where any such read fails), the CUDA host code calls
no synchronizing or allocating CUDA API (torch's caching allocator does every allocation), and
the step's allocations do not grow with the batch's chunks (one partials buffer, reused). The
capture and replay themselves need a CUDA device (needs_cuda)."""
import re
from pathlib import Path

import pytest
import torch

from pyviz_fast import _ext, ops
from pyviz_fast.ops.graphs import StepGraph
from test_ops import fused_case

ROOT = Path(__file__).resolve().parents[1]
# CUDA runtime calls that synchronize with the host or allocate outside torch: not allowed
# while a stream is captured (or, for allocations, not replayable).
FORBIDDEN = re.compile(r"\bcuda(DeviceSynchronize|StreamSynchronize|EventSynchronize|StreamQuery|EventQuery"
                       r"|Malloc\w*|Free\w*|Memcpy(?!Async)\w*|Memset(?!Async)\w*)\b")


def test_step_graph_needs_a_cuda_device():
    x = torch.rand(2, 3, 8, 8)
    with pytest.raises(ValueError, match="needs a CUDA device; x is on cpu"):
        StepGraph(x, torch.randn_like(x), torch.zeros(2, 2, dtype=torch.long), torch.zeros(2, 2, dtype=torch.long))


@pytest.mark.needs_ext
def test_the_step_path_reads_no_tensor_value_on_the_host():
    """Meta tensors have no values: a .item(), bool(tensor) or host copy in the path would raise."""
    x = torch.empty(4, 3, 16, 16, device="meta")
    shifts = torch.empty(4, 2, dtype=torch.long, device="meta")
    sigma = torch.empty(4, device="meta")
    image, next_input, nonfinite = ops.fused_ascent_step(x, torch.empty_like(x), shifts, shifts, sigma,
                                                         backend="emulation")
    assert image.shape == next_input.shape == x.shape and nonfinite.shape == (4,)


def test_cuda_host_code_calls_no_synchronizing_or_allocating_api():
    sources = [p for d in ("csrc/cuda", "csrc/kernels") for p in sorted((ROOT / d).glob("*")) if p.is_file()]
    assert sources
    found = [(p.name, m.group(0)) for p in sources for m in FORBIDDEN.finditer(p.read_text())]
    assert not found, f"calls that break CUDA graph capture: {found}"


def _allocations(run):
    """Bytes of every tensor allocated while ``run`` runs (torch's allocator sees them all)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        run()
    return sorted(e.self_cpu_memory_usage for e in prof.events() if e.self_cpu_memory_usage > 0)


@pytest.mark.needs_ext
def test_step_allocations_do_not_grow_with_the_chunks():
    """Chunks of 1 image (5 chunks, 10 launches) allocate no more than one chunk of 5: the same
    outputs, and a partials buffer of one chunk reused by all."""
    case = fused_case((5, 3, 40, 36), torch.float32, seed=3)
    sizes = {}
    try:
        for images in (5, 1):
            _ext._C.configure_emulation(cache_bytes=4 * 3 * 40 * 36 * 4 * images)
            sizes[images] = _allocations(lambda: ops.fused_ascent_step(*case, backend="emulation"))
    finally:
        _ext._C.configure_emulation()
    assert len(sizes[1]) == len(sizes[5]) and sum(sizes[1]) < sum(sizes[5])


@pytest.mark.needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_replays_equal_eager_steps(dtype):
    shape = (4, 3, 64, 64)
    case = [t.cuda() for t in fused_case(shape, dtype, seed=1)]
    settings = dict(norm="rms", lr=0.1, decay=0.01)
    graph = StepGraph(*case, **settings)
    x = case[0]
    for seed in (2, 3):
        _, grad, shifts, next_shifts, sigma = [t.cuda() for t in fused_case(shape, dtype, seed=seed)]
        eager = ops.fused_ascent_step(x, grad, shifts, next_shifts, sigma, backend="fused", **settings)
        replayed = graph.step(x, grad, shifts, next_shifts, sigma)
        for a, b in zip(eager, replayed):
            assert torch.equal(a, b)
        x = eager.image.clone()
