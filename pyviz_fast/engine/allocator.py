"""Keep the memory a CPU render frees for its next step instead of giving it back to the system.

A render allocates the same activations and gradients at every step. glibc's malloc serves large
blocks from fresh ``mmap`` pages and gives the free top of its heap back to the kernel, so each
step's tensors fault their pages in again, and the kernel zeroes every page first. On the build
machine (AMD EPYC, 1 thread) a ShapesNet render of 16 units, 64 steps at 64 px took 320,000 page
faults and 2.0 s of CPU; with freed memory kept, about 0 faults and 1.3 s (googlenet at 128 px:
107,000 faults, 2.15 s -> 1.87 s). BENCHMARKS.md, "Page faults".

This is a process-wide malloc setting, so the library never changes it on its own: the command
line applies it to its own process (``PYVIZ_FAST_KEEP_FREED_MEMORY=0`` opts out), the benchmarks
to theirs, and a program embedding the engine calls ``keep_freed_memory()`` once. The price is
that up to ``limit`` bytes freed stay with the process rather than going back to the system
(what torch's CUDA caching allocator does with GPU memory).

>>> keep_freed_memory()            # True on glibc; False (nothing changed) elsewhere
True
"""
import ctypes
import os
import platform

# mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
DEFAULT_LIMIT = 1 << 30
ENV_OPT_OUT = "PYVIZ_FAST_KEEP_FREED_MEMORY"
_applied = None  # the limit in force, once set (for benchmarks' metadata)


def keep_freed_memory(limit=DEFAULT_LIMIT):
    """Have glibc serve blocks up to ``limit`` bytes from its heap and keep up to ``limit`` freed
    bytes at its top. Returns True if set; False off glibc or if glibc refused (then nothing is
    changed). Raises ValueError for a limit that is not a positive int."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
        raise ValueError(f"limit must be a positive number of bytes, got {limit!r}")
    if platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    # mallopt takes a C int; glibc caps the mmap threshold (32 MiB on some versions): the largest it accepts
    limit = min(limit, 2**31 - 1)
    mmap_threshold = limit
    while mmap_threshold >= 1 << 20 and not libc.mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(mmap_threshold)):
        mmap_threshold //= 2
    if mmap_threshold < 1 << 20 or not libc.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(limit)):
        return False
    global _applied
    _applied = limit
    return True


def applied_limit():
    """The ``limit`` of the last successful ``keep_freed_memory`` in this process, or None."""
    return _applied


def keep_freed_memory_unless_opted_out():
    """``keep_freed_memory()`` for a process pyviz_fast owns (the command line, a benchmark),
    unless the environment variable ``PYVIZ_FAST_KEEP_FREED_MEMORY`` is 0. Returns whether set."""
    return os.environ.get(ENV_OPT_OUT, "1").strip() != "0" and keep_freed_memory()
