"""Build of the pyviz_fast._C extension.

C++ CPU kernels are always built. CUDA kernels are built when a CUDA toolkit and a CUDA build
of torch are present, or when FORCE_CUDA=1; FORCE_ONLY_CPU=1 skips them. DEBUG=1 compiles with
-O0 -g. TORCH_CUDA_ARCH_LIST (default "8.0;9.0;10.0;12.0+PTX": SASS for Ampere, Hopper and
Blackwell, PTX for later GPUs; all compiled from one PTX, _build.gencode_flags) and NVCC_FLAGS
are respected.

It builds against the torch of the build environment: `pip install --no-build-isolation .`
uses the torch already installed. The binary records that torch (see pyviz_fast/_build.py),
and the wheel carries the C++ sources (as pyviz_fast/_csrc) so that pyviz_fast/_ext.py can
rebuild the CPU kernels for another torch.
"""
import importlib.util
import os
import shutil
import sys

from setuptools import setup
from setuptools.command.build_py import build_py

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


def _load_build_config():
    spec = importlib.util.spec_from_file_location("pyviz_fast_build", os.path.join(ROOT, "pyviz_fast", "_build.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_build = _load_build_config()


def _sources(dirs, patterns=("*.cpp",)):
    return [os.path.relpath(p, ROOT) for p in _build.sources(os.path.join(ROOT, "csrc"), dirs, patterns)]


def _extension():
    debug = _flag("DEBUG")
    opt = ["-O0", "-g"] if debug else ["-O3"]
    cxx = _build.cxx_flags(debug)
    sources = _sources(_build.CPU_SOURCE_DIRS)
    with_cuda = _want_cuda()
    tag = _build.built_against_tag(torch.__version__, torch.version.cuda if with_cuda else None)
    define_macros = [("PVF_BUILT_AGAINST", '"%s"' % tag)]
    if with_cuda:
        sources += _sources(_build.CUDA_SOURCE_DIRS, ("*.cpp", "*.cu"))
        define_macros.append(("PVF_WITH_CUDA", "1"))
        # -fmad=false: no implicit contraction, so the kernels round as their CPU emulation does
        # (the kernels write every intended FMA as fmaf).
        # --threads 0: nvcc compiles the arches of a file in parallel.
        arches = os.environ["TORCH_CUDA_ARCH_LIST"]
        nvcc = opt + ["-std=c++20", "--expt-relaxed-constexpr", "-fmad=false", "--threads", "0"] + \
            (_build.gencode_flags(arches) or []) + os.environ.get("NVCC_FLAGS", "").split()
        define_macros.append(("PVF_CUDA_ARCHES", '"%s"' % arches))
        print(f"pyviz_fast: building CPU + CUDA kernels for arches {arches} ({tag})", file=sys.stderr)
        return CUDAExtension("pyviz_fast._C", sources, define_macros=define_macros,
                             extra_compile_args={"cxx": cxx, "nvcc": nvcc}, extra_link_args=_build.LINK_FLAGS)
    print(f"pyviz_fast: building CPU kernels only (no CUDA toolkit/torch, or FORCE_ONLY_CPU=1; {tag})", file=sys.stderr)
    return CppExtension("pyviz_fast._C", sources, define_macros=define_macros,
                        extra_compile_args={"cxx": cxx}, extra_link_args=_build.LINK_FLAGS)


class BuildPyWithSources(build_py):
    """Also copies csrc/ into the built package as pyviz_fast/_csrc, for just-in-time rebuilds."""

    def run(self):
        super().run()
        if not self.editable_mode:  # an editable install reads the checkout's csrc/ directly
            target = os.path.join(self.build_lib, "pyviz_fast", "_csrc")
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(os.path.join(ROOT, "csrc"), target)


class BuildExtOrPack(BuildExtension.with_options(use_ninja=True)):
    """PVF_PREBUILT_EXT=PATH packs that binary instead of compiling the sources again: CI builds
    the extension once (`make setup`, the same sources and torch) and packs that file in its wheel."""

    def build_extension(self, ext):
        prebuilt = os.environ.get("PVF_PREBUILT_EXT")
        if not prebuilt:
            return super().build_extension(ext)
        target = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(prebuilt, target)


setup(
    ext_modules=[_extension()],
    cmdclass={"build_ext": BuildExtOrPack, "build_py": BuildPyWithSources},
)
