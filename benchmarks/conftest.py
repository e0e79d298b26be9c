"""Collects the medians of the op benchmarks and prints, at the end of the run, the speedup of
each fused op over the reference and the fused step's effective memory bandwidth against
torch.clone of the same tensor (all measured in the same run)."""
import pytest

MEDIANS = {}  # (group, variant) -> median seconds
BYTES = {}  # group -> bytes an ideal implementation moves per call


@pytest.fixture
def record(benchmark):
    """Times fn with pytest-benchmark and keeps its median under (group, variant)."""

    def run(group, variant, fn, moved_bytes=None):
        benchmark.group = group
        benchmark.extra_info["variant"] = variant
        benchmark(fn)
        MEDIANS[(group, variant)] = benchmark.stats.stats.median
        if moved_bytes is not None:
            BYTES[(group, variant)] = moved_bytes

    return run


def pytest_terminal_summary(terminalreporter):
    if not MEDIANS:
        return
    write = terminalreporter.write_line
    write("")
    write("pyviz_fast op benchmark (medians of this run)")
    for group in sorted({g for g, _ in MEDIANS}):
        fused, ref = MEDIANS.get((group, "fused")), MEDIANS.get((group, "reference"))
        if fused and ref:
            write(f"  {group:40s} fused {fused * 1e3:8.2f} ms   reference {ref * 1e3:8.2f} ms   "
                  f"speedup {ref / fused:5.1f}x")
    for (group, variant), moved in sorted(BYTES.items()):
        suffix = group[group.index(" ["):] if " [" in group else ""
        clone = ("bandwidth" + suffix, "clone")
        if variant == "clone" or clone not in MEDIANS or (group, variant) not in MEDIANS:
            continue
        ours = moved / MEDIANS[(group, variant)]
        base = BYTES[clone] / MEDIANS[clone]
        write(f"  {group}/{variant}: {ours / 1e9:6.2f} GB/s effective, torch.clone{suffix} {base / 1e9:6.2f} GB/s "
              f"-> {100 * ours / base:4.0f}% of clone")
