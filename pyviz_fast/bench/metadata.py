"""What a benchmark result must carry to be trusted: where, when and with what it was measured.

>>> meta = collect_metadata("cpu")
>>> sorted(meta)[:3]
['command', 'commit', 'cpu_model']
"""
import datetime
import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch

from pyviz_fast.engine import allocator

PEER_PACKAGES = ("torch-lucent", "torch-dreams", "kornia")
_REPO_DIR = Path(__file__).resolve().parents[2]


def _git(*args):
    try:
        out = subprocess.run(["git", "-C", str(_REPO_DIR), *args], capture_output=True, text=True,
                             timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def commit() -> str:
    """The checkout's commit, with ``+dirty`` when tracked files differ from it; 'unknown' outside git."""
    head = _git("rev-parse", "--short=12", "HEAD")
    if not head:
        return "unknown"
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return head + ("+dirty" if dirty else "")


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_features() -> list:
    """The CPU flags that decide which execution settings are fast (AMX, AVX-512 bf16/fp16)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    wanted = ("amx_bf16", "amx_tile", "avx512f", "avx512_bf16", "avx512_fp16", "avx2")
    return [flag for flag in wanted if flag in flags]


def _version(package):
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def device_name(device) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model()


def collect_metadata(device="cpu", load_before=None) -> dict:
    """Commit, versions, device, threads, date and machine of a benchmark run, JSON-ready.

    ``load_before``: ``os.getloadavg()`` taken when the run started; with it, the load averages
    before and now are recorded (on a shared machine they say how far to trust the timings)."""
    import pyviz_fast

    build = {k: v for k, v in pyviz_fast.build_info().items() if isinstance(v, (str, int, float, bool, type(None)))}
    return {
        "commit": commit(),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": str(torch.device(device)),
        "device_name": device_name(device),
        "cpu_model": cpu_model(),
        "cpu_features": cpu_features(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "keep_freed_memory": allocator.applied_limit(),  # bytes, or None: glibc gave freed memory back
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "pyviz_fast": pyviz_fast.__version__,
        "pyviz_fast_build": build,
        "peers": {name: _version(name) for name in PEER_PACKAGES},
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        **({} if load_before is None else {"load_average_1_5_15_before": load_before,
                                            "load_average_1_5_15_after": os.getloadavg()}),
    }
