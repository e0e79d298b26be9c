"""A fused ascent step captured once in a CUDA graph and replayed (CUDA devices only).

For a small batch, a step's kernels finish faster than the host can launch them: the two
launches of ``fused_ascent_step`` plus the small torch ops around it (sigma and shift tensors,
the pixel check) are mostly launch overhead. A captured graph replays them all in one call.
Capture works because the step path never synchronizes with the host and allocates only
through torch's caching allocator (csrc/cuda/op_frontend.h, checked by
tests/test_step_graph.py): during capture its outputs and workspace come from the graph's
private pool, and every replay reuses them.

>>> graph = StepGraph(x, grad, shifts, next_shifts, sigma, norm="mean_abs", lr=0.05)
>>> result = graph.step(x, grad, shifts, next_shifts, sigma)   # == ops.fused_ascent_step(...)

The settings (norm, eps, clip, lr, decay, center, lo, hi) are fixed at capture; the tensors
(x, grad, shifts, next_shifts, sigma) are copied into the graph's inputs on every ``step``.
The result's tensors are the graph's outputs: the next replay overwrites them (clone what you
keep). Passing ``graph.result.image`` back as the next ``x`` is fine.
"""
import torch

from pyviz_fast import ops
from pyviz_fast.ops import _validate

WARMUP_STEPS = 2  # eager steps on a side stream before capture: they fill the per-device caches


class StepGraph:
    """``ops.fused_ascent_step`` with fixed settings, captured in a CUDA graph for x's shape."""

    def __init__(self, x, grad, shifts, next_shifts, sigma=0.0, *, lr=1.0, **settings):
        _validate.image(x)
        if x.device.type != "cuda":
            raise ValueError(f"StepGraph captures a CUDA graph and needs a CUDA device; x is on {x.device}. "
                             "On this device call pyviz_fast.ops.fused_ascent_step directly.")
        self._step, self._lr = ops.AscentStep(**dict(settings, backend="fused")), _validate.number(lr, "lr")
        self.inputs = tuple(t.clone() for t in self._step.tensors(x, grad, shifts, next_shifts, sigma))
        side = torch.cuda.Stream(x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side):
            for _ in range(WARMUP_STEPS):
                self._run()
        torch.cuda.current_stream(x.device).wait_stream(side)
        self._graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._graph):
            self.result = self._run()

    def _run(self):
        return self._step(*self.inputs, lr=self._lr)

    def step(self, x, grad, shifts, next_shifts, sigma=0.0):
        """One step on new data: copies it into the graph's inputs and replays; returns ``self.result``."""
        image = self.inputs[0]
        _validate.like(x, image, "x", "the captured x")
        for static, new in zip(self.inputs, self._step.tensors(x, grad, shifts, next_shifts, sigma)):
            if new is not static:
                static.copy_(new)
        self._graph.replay()
        return self.result
