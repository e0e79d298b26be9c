"""Loading the extension under another torch: the built-against tag, the mismatch rule, and
the one-line message with the fallback (the just-in-time rebuild itself runs in .ci/user_envs)."""
import pytest
import torch

from pyviz_fast import _build, _ext


@pytest.mark.parametrize("tag, torch_version, torch_cuda, expected", [
    ("torch=2.14.1+cu130 cuda=13.0", "2.14.1+cu130", "13.0", None),
    ("torch=2.14.1+cu130 cuda=none", "2.14.1+cpu", None, None),  # same release, CPU kernels only
    ("torch=2.14.1+cu130 cuda=13.0", "2.14.1+cu132", "13.2", None),
    ("torch=2.14.1+cu130 cuda=none", "2.13.0+cpu", None,
     "built against torch 2.14.1+cu130, running torch 2.13.0+cpu (no CUDA)"),
    ("torch=2.14.1+cu130 cuda=13.0", "2.15.0+cu132", "13.2",
     "built against torch 2.14.1+cu130 (CUDA 13.0), running torch 2.15.0+cu132 (CUDA 13.2)"),
    ("torch=2.14.1+cu130 cuda=13.0", "2.14.1+cpu", None,
     "built against torch 2.14.1+cu130 (CUDA 13.0) with CUDA kernels, running torch 2.14.1+cpu (no CUDA)"),
    ("torch=2.14.1+cu126 cuda=12.6", "2.14.1+cu130", "13.0",
     "built against torch 2.14.1+cu126 (CUDA 12.6) with CUDA kernels, running torch 2.14.1+cu130 (CUDA 13.0)"),
])
def test_mismatch_needs_the_same_release_and_cuda_major(tag, torch_version, torch_cuda, expected):
    assert _build.mismatch(tag, torch_version, torch_cuda) == expected


def test_tag_is_read_from_the_file_without_loading_it(tmp_path):
    binary = tmp_path / "_C.so"
    binary.write_bytes(b"\x7fELF junk\0" + _build.TAG_PREFIX.encode() + b"torch=2.13.0+cpu cuda=none\0more\0")
    assert _ext._read_tag(binary) == "torch=2.13.0+cpu cuda=none"
    binary.write_bytes(b"\x7fELF built before tags\0")
    assert _ext._read_tag(binary) is None


@pytest.mark.needs_ext
def test_the_built_binary_records_the_running_torch():
    info = _ext.build_info()
    if _ext._read_tag(_ext._C.__file__) is None:
        pytest.skip("this binary was built before binaries recorded their torch; rebuild it")
    assert _ext._read_tag(_ext._C.__file__) == info["built_against"]
    assert info["built_against"].startswith(f"torch={torch.__version__} ")
    assert _build.mismatch(info["built_against"], torch.__version__, torch.version.cuda) is None
    assert info["loaded"] in ("built", "just-in-time")


def test_without_a_rebuild_one_line_names_both_torches_and_the_fallback(monkeypatch, capsys):
    monkeypatch.setenv("PYVIZ_FAST_JIT", "0")
    problem = "was built against torch 2.14.1+cu130, running torch 2.13.0+cpu (no CUDA)"
    module, why, loaded = _ext._serve_running_torch(problem)
    assert (module, loaded) == (None, None) and problem in why
    lines = capsys.readouterr().err.splitlines()
    assert lines == [f"pyviz_fast: the compiled extension {problem}; PYVIZ_FAST_JIT=0, so the slower reference "
                     "backend serves (reinstall with `pip install --no-build-isolation` to build against this torch)"]


def test_a_failed_rebuild_falls_back_with_its_reason(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("PYVIZ_FAST_CACHE", str(tmp_path))
    monkeypatch.setattr(_ext, "_why_no_rebuild", lambda: None)

    def broken_compile(problem):
        raise RuntimeError("Error building extension '_C'\nfull compiler output")

    monkeypatch.setattr(_ext, "_compile_for_running_torch", broken_compile)
    module, why, loaded = _ext._serve_running_torch("was built against torch 1, running torch 2")
    assert module is None and loaded is None and "Error building extension '_C'" in why
    assert capsys.readouterr().err.splitlines() == [
        "pyviz_fast: compiling the CPU kernels failed (Error building extension '_C'); "
        "the slower reference backend serves"]
