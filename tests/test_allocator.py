"""Freed memory kept by glibc between a render's steps (engine/allocator.py), in fresh processes:
the setting is process-wide, so the test process itself is never changed."""
import os
import platform
import subprocess
import sys

import pytest

from pyviz_fast.engine.allocator import keep_freed_memory

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="a glibc malloc setting")

STEPS = """
import resource, torch
def page_faults():  # steps that allocate and free the same 40 MiB tensors, as a render's steps do
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        x = torch.ones(10 * 2**20)
        y = x * 2
        del x, y
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
"""


def python(code, **env):
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_kept_memory_is_not_faulted_in_again_at_every_step():
    given_back, = python(STEPS + "page_faults(); print(page_faults())")
    kept = python(STEPS + "import pyviz_fast as pvf; print(pvf.keep_freed_memory()); page_faults(); print(page_faults())")
    # measured: 204,820 faults (every page of both tensors at every step) against 0, or 20,480 (both
    # tensors' pages once: under memory load the kernel may reclaim the kept pages between calls)
    assert kept[0] == "True" and int(kept[1]) * 5 < int(given_back), (given_back, kept)


def test_the_command_line_keeps_freed_memory_in_its_own_process_unless_opted_out():
    code = ("import sys; from pyviz_fast.cli import main; from pyviz_fast.engine import allocator\n"
            "sys.argv = ['pyviz-fast', 'layers', '--help']; main(); print('limit', allocator.applied_limit())")
    assert python(code)[-2:] == ["limit", str(1 << 30)]
    assert python(code, PYVIZ_FAST_KEEP_FREED_MEMORY="0")[-2:] == ["limit", "None"]
    called = ("from pyviz_fast.cli import main; from pyviz_fast.engine import allocator\n"
              "main(['layers', '--help']); print('limit', allocator.applied_limit())")  # a caller's process
    assert python(called)[-2:] == ["limit", "None"]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "1G"])
def test_a_bad_limit_is_named(bad):
    with pytest.raises(ValueError, match="limit must be a positive number of bytes"):
        keep_freed_memory(bad)
