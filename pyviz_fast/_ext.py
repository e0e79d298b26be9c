"""Loads the compiled extension ``pyviz_fast._C`` and says what it was built with.

A binary compiled against one torch release fails to load under another (torch's C++ ABI
changes between releases) or, worse, loads and misbehaves. So before importing it, the torch
it records (a tag inside the file, see _build.py) is compared with the running torch. On a
mismatch one line on stderr says so, and then either its CPU kernels are compiled for the
running torch into a user cache directory (once per torch version; needs a C++ compiler and
ninja; ``PYVIZ_FAST_JIT=0`` turns this off), or the reference backend serves. Never a crash.
"""
import hashlib
import importlib
import importlib.util
import logging
import mmap
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

import torch

from pyviz_fast import _build

PACKAGE_DIR = Path(__file__).resolve().parent


def _say(message):
    print(f"pyviz_fast: {message}", file=sys.stderr, flush=True)


def _read_tag(path):
    """The built-against tag stored in the binary at ``path``, or None (built before tags)."""
    prefix = _build.TAG_PREFIX.encode()
    with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
        start = data.find(prefix)
        if start < 0:
            return None
        return data[start + len(prefix):data.find(b"\0", start)].decode("ascii", "replace")


def _csrc_dir():
    """The C++ sources: shipped inside the wheel as _csrc/, or the checkout's csrc/."""
    for candidate in (PACKAGE_DIR / "_csrc", PACKAGE_DIR.parent / "csrc"):
        if (candidate / "module.cpp").is_file():
            return candidate
    return None


def cache_dir() -> Path:
    """Where just-in-time builds go: $PYVIZ_FAST_CACHE, else $XDG_CACHE_HOME/pyviz_fast, else
    ~/.cache/pyviz_fast."""
    if os.environ.get("PYVIZ_FAST_CACHE"):
        return Path(os.environ["PYVIZ_FAST_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pyviz_fast"


def _cpp_extension():
    """torch.utils.cpp_extension, imported without its warning about a missing CUDA runtime
    (the just-in-time build is CPU only)."""
    logger = logging.getLogger("torch.utils.cpp_extension")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        from torch.utils import cpp_extension
    finally:
        logger.setLevel(level)
    return cpp_extension


def _why_no_rebuild():
    cpp_extension = _cpp_extension()
    if os.environ.get("PYVIZ_FAST_JIT", "1") == "0":
        return "PYVIZ_FAST_JIT=0"
    if shutil.which(os.environ.get("CXX", "c++")) is None:
        return "no C++ compiler found"
    if not cpp_extension.is_ninja_available():
        return "ninja is not installed"
    if _csrc_dir() is None:
        return "the C++ sources are not shipped"
    return None


def _uniquely_named_sources(csrc, build_dir):
    """One file per source that #includes it, named after its path (cpu/register.cpp ->
    cpu__register.cpp): torch's ``load`` names objects by file name alone, and csrc has two
    register.cpp. Includes inside each source still resolve next to the original."""
    units = build_dir / "units"
    units.mkdir(exist_ok=True)
    names = []
    for source in _build.sources(str(csrc), _build.CPU_SOURCE_DIRS):
        unit = units / "__".join(Path(source).relative_to(csrc).parts)
        text = f'#include "{source}"\n'
        if not unit.is_file() or unit.read_text() != text:  # rewritten files would recompile
            unit.write_text(text)
        names.append(str(unit))
    return names


def _sources_digest():
    """Names a build after the sources it compiles (their place and content), so that another
    pyviz_fast version or checkout gets a build of its own."""
    csrc = _csrc_dir()
    digest = hashlib.sha256(str(csrc).encode())
    for path in sorted(csrc.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(csrc)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def _compile_for_running_torch(problem):
    """Builds the CPU part of _C for the running torch (or reuses that build) and loads it."""
    cpp_extension = _cpp_extension()

    build_dir = cache_dir() / "ext" / f"torch-{torch.__version__}-{sys.implementation.cache_tag}-{_sources_digest()}"
    build_dir.mkdir(parents=True, exist_ok=True)
    built_before = (build_dir / "_C.so").is_file()
    if built_before:
        _say(f"the compiled extension {problem}; using its CPU kernels compiled for this torch in {build_dir}")
    else:
        _say(f"the compiled extension {problem}; compiling its CPU kernels for this torch into {build_dir} "
             "(once per torch version and pyviz_fast version, a few minutes)...")
    tag = _build.built_against_tag(torch.__version__, None)
    started = time.perf_counter()
    module = cpp_extension.load(
        name="_C", sources=_uniquely_named_sources(_csrc_dir(), build_dir),
        extra_cflags=_build.cxx_flags() + [shlex.quote(f'-DPVF_BUILT_AGAINST="{tag}"')],
        extra_ldflags=_build.LINK_FLAGS, build_directory=str(build_dir), verbose=False)
    sys.modules["pyviz_fast._C"] = module
    if not built_before:
        _say(f"CPU kernels ready for torch {torch.__version__} ({time.perf_counter() - started:.0f} s)")
    return module


def _serve_running_torch(problem):
    """After ``problem`` with the shipped binary: (module, why not, how) from a just-in-time
    build, or (None, why, None) for the reference backend."""
    why_not = _why_no_rebuild()
    if why_not is not None:
        _say(f"the compiled extension {problem}; {why_not}, so the slower reference backend serves "
             "(reinstall with `pip install --no-build-isolation` to build against this torch)")
        return None, f"{problem}; {why_not}", None
    try:
        return _compile_for_running_torch(problem), None, "just-in-time"
    except Exception as error:  # a failed compile must not break `import pyviz_fast`
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        _say(f"compiling the CPU kernels failed ({first_line}); the slower reference backend serves")
        return None, f"{problem}; the just-in-time build failed: {first_line}", None


def _load():
    """(module or None, why it is None, how it was loaded: 'built' | 'just-in-time' | None)."""
    spec = importlib.util.find_spec("pyviz_fast._C")
    if spec is None or spec.origin is None:  # not built: silent here, the backend warns on use
        return None, "not built", None
    tag = _read_tag(spec.origin)
    problem = tag and _build.mismatch(tag, torch.__version__, torch.version.cuda)
    if not problem:
        try:
            return importlib.import_module("pyviz_fast._C"), None, "built"  # registers torch.ops.pyviz_fast.*
        except ImportError as error:
            problem = f"does not load ({error})"
    else:
        problem = f"was {problem}"
    return _serve_running_torch(problem)


_C, IMPORT_ERROR, LOADED_FROM = _load()


def has_ops() -> bool:
    """True when the compiled kernels are importable."""
    return _C is not None


def _registers_step_for(dispatch_key: str) -> bool:
    return _C is not None and torch._C._dispatch_has_kernel_for_dispatch_key("pyviz_fast::fused_ascent_step",
                                                                              dispatch_key)


# Device types with a registered fused kernel; read once, as registration happens at import
# (and so that backend resolution stays traceable by torch.compile).
FUSED_DEVICE_TYPES = frozenset(device for device, key in (("cpu", "CPU"), ("cuda", "CUDA"))
                               if _registers_step_for(key))


def has_cuda_kernels() -> bool:
    return "cuda" in FUSED_DEVICE_TYPES


def build_info() -> dict:
    """What was built: cpu, cuda, CUDA arches, OpenMP and thread count, torch versions, and how
    the extension was loaded ('built' | 'just-in-time', or None with ``import_error``).

    >>> pyviz_fast.build_info()["cpu"]
    True
    """
    info = {"extension": _C is not None, "cpu": False, "cuda": False, "cuda_arches": None,
            "cuda_emulation": False, "openmp": False, "threads": torch.get_num_threads(),
            "torch_built_with": None, "built_against": None, "loaded": LOADED_FROM}
    if _C is None:
        info["import_error"] = str(IMPORT_ERROR)
    else:
        info.update(_C.build_info())
    info["torch"] = torch.__version__
    info["torch_cuda"] = torch.version.cuda
    info["cuda_device_available"] = torch.cuda.is_available()
    return info
