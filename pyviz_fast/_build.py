"""How the compiled extension is built, shared by setup.py (the normal build) and _ext.py (the
just-in-time rebuild for another torch): its sources, compiler flags, and the tag recording
which torch a binary was built against.

Standard library only: setup.py loads this file by path, before the package can be imported.
"""
import glob
import os
import re

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


def gencode_flags(arch_list):
    """nvcc flags for TORCH_CUDA_ARCH_LIST ``arch_list`` ('8.0;9.0;10.0;12.0+PTX'): the device code
    goes through nvcc's front end once, to PTX of the lowest arch, from which ptxas makes the SASS
    of every arch, and which is also the PTX embedded for '+PTX' (the driver compiles it for any
    newer GPU). torch's own flags run the front end once per arch: with this file's templates
    that is 4-5 minutes of CPU each, the same code (no arch-specific features are used). None for
    a list this does not read (an 'a'/'f' arch, a name such as 'Hopper'): torch's flags then."""
    entries = [a for a in arch_list.replace(" ", ";").split(";") if a]
    numbers = [a.removesuffix("+PTX") for a in entries]
    if not entries or not all(re.fullmatch(r"\d+\.\d", n) for n in numbers):
        return None
    sms = sorted({int(n.replace(".", "")) for n in numbers})
    codes = [f"sm_{sm}" for sm in sms] + ([f"compute_{sms[0]}"] if any(a.endswith("+PTX") for a in entries) else [])
    return [f"-gencode=arch=compute_{sms[0]},code=[{','.join(codes)}]"]


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
