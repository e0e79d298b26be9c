"""Build of the pyviz_fast._C extension.

C++ CPU kernels are always built. CUDA kernels are built when a CUDA toolkit and a CUDA build
of torch are present, or when FORCE_CUDA=1; FORCE_ONLY_CPU=1 skips them. DEBUG=1 compiles with
-O0 -g. TORCH_CUDA_ARCH_LIST (default "8.0;9.0;10.0;12.0+PTX": SASS for Ampere, Hopper and
Blackwell, PTX for later GPUs) and NVCC_FLAGS are respected.
"""
import glob
import os
import sys

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))
# torch guesses CUDA_HOME from nvcc's path (/usr/local) and then fails to link -lcudart.
if os.path.isdir("/usr/local/cuda") and "CUDA_HOME" not in os.environ:
    os.environ["CUDA_HOME"] = "/usr/local/cuda"
os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0;10.0;12.0+PTX")

import torch  # noqa: E402  (after CUDA_HOME is settled)
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension  # noqa: E402


def _flag(name):
    return os.environ.get(name, "0") == "1"


def _want_cuda():
    if _flag("FORCE_ONLY_CPU"):
        return False
    if _flag("FORCE_CUDA"):
        return True
    return CUDA_HOME is not None and torch.version.cuda is not None


def _sources(pattern):
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))


def _extension():
    debug = _flag("DEBUG")
    opt = ["-O0", "-g"] if debug else ["-O3"]
    cxx = opt + ["-std=c++20", "-fopenmp"]
    sources = _sources("csrc/*.cpp") + _sources("csrc/cpu/*.cpp") + _sources("csrc/emulation/*.cpp")
    define_macros = []
    if _want_cuda():
        sources += _sources("csrc/cuda/*.cpp") + _sources("csrc/cuda/*.cu")
        define_macros.append(("PVF_WITH_CUDA", "1"))
        # -fmad=false: no implicit contraction, so the kernels round as their CPU emulation does
        # (the kernels write every intended FMA as fmaf).
        nvcc = opt + ["-std=c++20", "--expt-relaxed-constexpr", "-fmad=false"] + os.environ.get("NVCC_FLAGS", "").split()
        arches = os.environ["TORCH_CUDA_ARCH_LIST"]
        define_macros.append(("PVF_CUDA_ARCHES", '"%s"' % arches))
        print(f"pyviz_fast: building CPU + CUDA kernels for arches {arches}", file=sys.stderr)
        return CUDAExtension("pyviz_fast._C", sources, define_macros=define_macros,
                             extra_compile_args={"cxx": cxx, "nvcc": nvcc}, extra_link_args=["-fopenmp"])
    print("pyviz_fast: building CPU kernels only (no CUDA toolkit/torch, or FORCE_ONLY_CPU=1)", file=sys.stderr)
    return CppExtension("pyviz_fast._C", sources, define_macros=define_macros,
                        extra_compile_args={"cxx": cxx}, extra_link_args=["-fopenmp"])


setup(
    ext_modules=[_extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
