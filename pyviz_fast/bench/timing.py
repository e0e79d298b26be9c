"""The timing core of every pyviz_fast benchmark: run a callable repeatedly, report the median.

On the CPU a call is timed with ``time.perf_counter``; on CUDA with a pair of CUDA events
recorded on the current stream and read after ``torch.cuda.synchronize()``, so the time is the
GPU's, not the launch's. Medians and the interquartile range are reported because the machines
this is run on are shared and noisy: the mean would follow the worst outlier.

>>> m = time_callable(lambda: torch.rand(256, 256) @ torch.rand(256, 256), device="cpu")
>>> m.median_s > 0 and m.runs >= 3
True
"""
import statistics
import time
from dataclasses import dataclass, field

import torch

from pyviz_fast.engine.allocator import keep_freed_memory_unless_opted_out


def steady_process(threads=None):
    """Set up a benchmark's process: ``threads`` torch threads when given, and freed memory kept
    (``engine/allocator.py``; opt out with PYVIZ_FAST_KEEP_FREED_MEMORY=0), so that a step's
    time is its work, not the page faults of memory given back between steps; both sides of a
    ratio run in the same process, so it applies to both."""
    if threads:
        torch.set_num_threads(threads)
    keep_freed_memory_unless_opted_out()


def paired_ratio(baseline, samples, clock=0):
    """The median over repeats of baseline / sample, where repeat i timed ``baseline[i]`` and
    ``samples[i]`` one after the other (each a tuple of clocks, e.g. (wall, CPU)): the load's drift
    between repeats cancels out of it, as it does not out of a ratio of medians."""
    return statistics.median(b[clock] / m[clock] for b, m in zip(baseline, samples))


@dataclass
class Measurement:
    """Seconds per call of one timed callable: median, interquartile range, fastest, all runs."""

    median_s: float
    iqr_s: float
    min_s: float
    runs: int
    samples_s: list = field(repr=False, default_factory=list)

    def rate(self, items_per_call: float) -> float:
        """Items per second at the median time, e.g. image-steps/s for ``items_per_call = B * steps``."""
        return items_per_call / self.median_s


def quartile_spread(samples):
    """Interquartile range (the full range below 4 samples)."""
    if len(samples) < 4:
        return max(samples) - min(samples)
    q1, _, q3 = statistics.quantiles(samples, n=4)
    return q3 - q1


def _time_once(fn, device: torch.device) -> float:
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(device)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(end) / 1000.0  # elapsed_time is in milliseconds
    begin = time.perf_counter()
    fn()
    return time.perf_counter() - begin


def time_callable(fn, *, device="cpu", warmup: int = 1, min_runs: int = 3, max_runs: int = 50,
                  min_time_s: float = 1.0, max_time_s: float = 30.0) -> Measurement:
    """Time ``fn()`` after ``warmup`` untimed calls.

    Runs at least ``min_runs`` times and until ``min_time_s`` seconds of timed calls have
    accumulated, stopping at ``max_runs`` calls or ``max_time_s`` seconds (whichever first,
    but never before ``min_runs``). A slow callable (10 s a call) is thus run exactly
    ``min_runs`` times, a fast one (1 ms a call) ``max_runs`` times.
    """
    device = torch.device(device)
    for _ in range(warmup):
        fn()
    samples = []
    while len(samples) < min_runs or (sum(samples) < min_time_s and len(samples) < max_runs):
        samples.append(_time_once(fn, device))
        if len(samples) >= min_runs and sum(samples) >= max_time_s:
            break
    return Measurement(median_s=statistics.median(samples), iqr_s=quartile_spread(samples),
                       min_s=min(samples), runs=len(samples), samples_s=samples)


def time_once(fn, *, device="cpu"):
    """(result of ``fn()``, seconds) for a callable too slow to repeat (a whole peer run)."""
    device = torch.device(device)
    holder = []
    seconds = _time_once(lambda: holder.append(fn()), device)
    return holder[0], seconds
