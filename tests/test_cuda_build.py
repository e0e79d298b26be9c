"""The CUDA part of the extension is really built: its ops are registered for CUDA tensors and
the shared object carries machine code of every kernel for each requested architecture.

These tests need no GPU: they read the build (dispatcher tables, the .so's .nv_fatbin section
and kernel registration strings). They skip when the extension was built without CUDA
(FORCE_ONLY_CPU=1 or no toolkit).
"""
import re
import struct

import pytest
import torch

from pyviz_fast import _ext

OPS = ("jitter", "gaussian_blur", "normalize_grad", "clip_grad", "fused_ascent_step")
# Every per-thread body of csrc/kernels/ that the CUDA sequences launch.
BODIES = ("JitterBody", "TapTableBody", "HorizontalBlurBody", "BlurStoreBody", "StatsPartialBody", "StatsFoldBody",
          "StatsCombineBody", "NormalizeBody", "ClipBody", "AscentUpdateBody")
FATBIN_MAGIC = 0xBA55ED50
FATBIN_ELF = 2  # entry kind: 1 = PTX, 2 = ELF (SASS)


def _build_info():
    if not _ext.has_ops():
        pytest.skip(f"pyviz_fast._C is not built: {_ext.IMPORT_ERROR}")
    return _ext._C.build_info()


@pytest.fixture(scope="module")
def cuda_build():
    info = _build_info()
    if not info["cuda"]:
        pytest.skip("extension built without CUDA kernels (FORCE_ONLY_CPU=1 or no CUDA toolkit)")
    with open(_ext._C.__file__, "rb") as f:
        return info, f.read()


def _elf_section(blob, name):
    """Bytes of section ``name`` of a 64-bit little-endian ELF file."""
    assert blob[:4] == b"\x7fELF" and blob[4] == 2, "not a 64-bit ELF file"
    shoff, = struct.unpack_from("<Q", blob, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", blob, 0x3A)
    headers = [struct.unpack_from("<IIQQQQ", blob, shoff + k * shentsize) for k in range(shnum)]
    names_at = headers[shstrndx][4]
    for name_off, _type, _flags, _addr, offset, size in headers:
        end = blob.index(b"\0", names_at + name_off)
        if blob[names_at + name_off:end].decode() == name:
            return blob[offset:offset + size]
    return None


def _fatbin_elf_arches(fatbin):
    """SM numbers of the ELF (SASS) entries of every fat binary container in ``fatbin``."""
    arches, pos = [], 0
    while pos + 16 <= len(fatbin):
        magic, _version, header_size, body_size = struct.unpack_from("<IHHQ", fatbin, pos)
        if magic != FATBIN_MAGIC:  # containers are 8-byte aligned; skip padding
            pos += 8
            continue
        entry, end = pos + header_size, pos + header_size + body_size
        while entry < end:
            kind, _, entry_header, payload = struct.unpack_from("<HHIQ", fatbin, entry)
            arch, = struct.unpack_from("<I", fatbin, entry + 28)
            if kind == FATBIN_ELF:
                arches.append(arch)
            entry += entry_header + payload
        pos = end
    return arches


def _requested_arches(info):
    """'8.0;9.0+PTX' -> {80, 90}"""
    return {int(a.split("+")[0].replace(".", "")) for a in re.split(r"[;\s]+", info["cuda_arches"]) if a}


@pytest.mark.parametrize("op", OPS)
def test_op_has_a_cuda_kernel(cuda_build, op):
    assert torch._C._dispatch_has_kernel_for_dispatch_key(f"pyviz_fast::{op}", "CUDA"), \
        f"pyviz_fast::{op} has no kernel registered for CUDA tensors"


def test_fatbin_has_sass_for_every_requested_arch(cuda_build):
    info, blob = cuda_build
    fatbin = _elf_section(blob, ".nv_fatbin")
    assert fatbin, "the extension has no .nv_fatbin section: no device code was linked"
    found = set(_fatbin_elf_arches(fatbin))
    missing = _requested_arches(info) - found
    assert not missing, f"no SASS for sm_{sorted(missing)} (found sm_{sorted(found)}, requested {info['cuda_arches']})"


@pytest.mark.parametrize("body", BODIES)
def test_every_kernel_is_registered_with_the_cuda_runtime(cuda_build, body):
    # The host code registers each kernel instantiation by its mangled name: the grid-stride
    # template for_each_index<Body<...>> must appear for every body the sequences launch.
    _, blob = cuda_build
    names = set(re.findall(rb"_ZN3pvf4cuda[0-9A-Za-z_]*14for_each_index[0-9A-Za-z_]*", blob))
    assert any(body.encode() in n for n in names), f"no CUDA kernel for_each_index<{body}> in the extension"
