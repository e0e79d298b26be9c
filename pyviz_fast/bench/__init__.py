"""Benchmark helpers shared by ``benchmarks/`` and ``pyviz-fast bench``: the timing core
(medians; CUDA events on GPUs), run metadata, result rows with their JSON file and ratio
table, op and end-to-end cases, and adapters for peer tools (torch-lucent, torch-dreams).

>>> from pyviz_fast.bench import run_quick_bench, format_ratio_table
>>> print(format_ratio_table(run_quick_bench(device="cpu")))
"""
from pyviz_fast.bench.quick import run_quick_bench
from pyviz_fast.bench.results import Row, format_ratio_table, read_results, write_results

__all__ = ["run_quick_bench", "format_ratio_table", "Row", "write_results", "read_results"]
