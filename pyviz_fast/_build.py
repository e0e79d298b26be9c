"""How the compiled extension is built, shared by setup.py (the normal build) and _ext.py (the
just-in-time rebuild for another torch): its sources, compiler flags, and the tag recording
which torch a binary was built against.

Standard library only: setup.py loads this file by path, before the package can be imported.
"""
import glob
import os

# Directories of csrc/ whose .cpp files make the CPU part (ops, CPU kernels, the CUDA kernels'
# CPU emulation) and the CUDA part (built only with a toolkit).
CPU_SOURCE_DIRS = (".", "cpu", "emulation")
CUDA_SOURCE_DIRS = ("cuda",)
LINK_FLAGS = ["-fopenmp"]
# csrc/module.cpp stores TAG_PREFIX + the tag as a string in the binary, so that _ext.py can
# read it from the file before loading it.
TAG_PREFIX = "pyviz_fast built against "


def sources(csrc_dir, dirs, patterns=("*.cpp",)):
    """Sorted source files of csrc_dir/<dir>/<pattern> for each dir."""
    return sorted(path for folder in dirs for pattern in patterns
                  for path in glob.glob(os.path.join(csrc_dir, folder, pattern)))


def cxx_flags(debug=False):
    return (["-O0", "-g"] if debug else ["-O3"]) + ["-std=c++20", "-fopenmp"]


def built_against_tag(torch_version, cuda_version):
    """'torch=2.14.1+cu130 cuda=13.0': the torch release and, when the binary holds CUDA
    kernels, the CUDA version of that torch ('none' without CUDA kernels)."""
    return f"torch={torch_version} cuda={cuda_version or 'none'}"


def _release(version):
    return version.split("+")[0]


def mismatch(tag, torch_version, torch_cuda):
    """Why a binary with ``tag`` cannot serve the running torch, or None when it can.

    The C++ ABI of torch changes between releases, so the release (without its local
    '+cpu'/'+cu130' part) must be equal; CUDA kernels also need a CUDA torch of the same major
    CUDA version (they link its CUDA runtime)."""
    fields = dict(field.split("=", 1) for field in tag.split())
    built, built_cuda = fields.get("torch", "?"), fields.get("cuda", "none")
    described = f"built against torch {built}" + ("" if built_cuda == "none" else f" (CUDA {built_cuda})")
    running = f"running torch {torch_version}" + (f" (CUDA {torch_cuda})" if torch_cuda else " (no CUDA)")
    if _release(built) != _release(torch_version):
        return f"{described}, {running}"
    if built_cuda != "none" and (torch_cuda or "").split(".")[0] != built_cuda.split(".")[0]:
        return f"{described} with CUDA kernels, {running}"
    return None
