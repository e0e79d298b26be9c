"""Properties of the CUDA emulation beyond agreement with the reference (test_ops.py runs every op
in natural, reversed and shuffled thread order): results independent of the grid size, and the
block programs of every op run under AddressSanitizer and UndefinedBehaviorSanitizer in a
separate small build (tests/native/emulation_harness.cpp, not the shipped extension)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils import cpp_extension

from pyviz_fast import _ext, ops
from test_ops import fused_case

ROOT = Path(__file__).resolve().parents[1]
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer"]


@pytest.mark.needs_ext
@pytest.mark.parametrize("norm", ["rms", "std"])
def test_results_do_not_depend_on_the_grid_size(norm):
    """Tiles are spread over 1, 3 or 1000 blocks: the same bits."""
    case = fused_case((3, 3, 70, 45), torch.float32, seed=5)
    results = []
    try:
        for blocks in (1, 3, 1000):
            _ext._C.configure_emulation(order="shuffled", max_blocks=blocks, seed=blocks)
            results.append(ops.fused_ascent_step(*case, norm=norm, backend="emulation"))
    finally:
        _ext._C.configure_emulation()
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


def _compiler():
    cxx = shutil.which(os.environ.get("CXX", "g++"))
    if cxx is None:
        pytest.skip("no C++ compiler (g++ or $CXX) for the sanitizer build")
    return cxx


def _sanitizers_work(cxx, tmp_path):
    probe = tmp_path / "probe.cpp"
    probe.write_text("int main() { return 0; }\n")
    done = subprocess.run([cxx, *SANITIZE, str(probe), "-o", str(tmp_path / "probe")], capture_output=True, text=True)
    return done.returncode == 0, done.stderr


@pytest.mark.slow
def test_emulation_runs_clean_under_address_and_undefined_behaviour_sanitizers(tmp_path):
    cxx = _compiler()
    works, why = _sanitizers_work(cxx, tmp_path)
    if not works:
        pytest.skip(f"this toolchain cannot link ASan/UBSan programs: {why.strip()[:300]}")
    torch_lib = Path(torch.__file__).parent / "lib"
    harness = tmp_path / "emulation_harness"
    includes = [f"-I{p}" for p in cpp_extension.include_paths()] + [f"-I{ROOT / 'csrc'}"]
    build = subprocess.run([cxx, "-std=c++20", "-O1", "-g", *SANITIZE, *includes,
                            str(ROOT / "tests" / "native" / "emulation_harness.cpp"), "-o", str(harness),
                            f"-L{torch_lib}", f"-Wl,-rpath,{torch_lib}", "-lc10"],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-4000:]
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0", UBSAN_OPTIONS="print_stacktrace=1")
    done = subprocess.run([str(harness)], capture_output=True, text=True, timeout=600, env=env)
    report = done.stdout[-3000:] + done.stderr[-6000:]
    assert done.returncode == 0, report
    assert "runtime error" not in done.stderr and "AddressSanitizer" not in done.stderr, report
    assert done.stdout.strip().endswith("0 changed with the schedule"), report
