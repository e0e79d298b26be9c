"""Static budgets of the CUDA kernels, read from the built extension without a GPU.

From the ``.so``'s fat binary (``cuobjdump`` / ``nvdisasm``, shipped in the triton wheel that
torch installs, or in ``$CUDA_HOME/bin``): per kernel and architecture, registers, stack and
local memory (spills) and static shared memory, and the static SASS instruction count. By
design (csrc/kernels/sequences.h): launches and global bytes per element of a step.

    python -m pyviz_fast.bench.cuda_budgets   # prints the table of BENCHMARKS.md
"""
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

# Global memory traffic of one fused step per element, by design (DRAM, not L2 hits):
# kernel 1 reads g; kernel 2 reads g again and x, writes the image and the next input. The
# per-tile partials (16 bytes per 1,024 elements, written once, read once per block and image)
# and the halos (re-read from L2) are left out.
STEP_ELEMENT_ACCESSES = 5
# StatsProgram, ApplyProgram<StepEpilogue> per chunk of images; one chunk unless the batch's g
# outgrows a quarter of L2 (checked in the emulation too)
LAUNCHES_PER_STEP = 2

_FUNCTION = re.compile(r"^\s*Function (\S+):\s*$")
_USAGE = re.compile(r"(\w+(?:\[\d+\])?):(\d+)")
_ARCH = re.compile(r"^\s*arch = (sm_\d+)")


def tool(name):
    """Path of cuobjdump / nvdisasm: triton's copy, then $CUDA_HOME/bin, then PATH; None if absent."""
    candidates = []
    try:
        import triton  # noqa: F401 (only its location is used)
        candidates.append(Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / name)
    except ImportError:
        pass
    candidates.append(Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "bin" / name)
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    return shutil.which(name)


def _demangle(names):
    done = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True, check=True)
    return dict(zip(names, done.stdout.splitlines()))


def kernel_label(demangled):
    """'run_blocks<pvf::StatsProgram<float>>' -> 'StatsProgram<float>' (short, stable)."""
    inner = demangled.split("run_blocks<", 1)[-1].split(">(", 1)[0]
    inner = inner.replace("pvf::", "").replace("__nv_bfloat16", "bf16").replace("__half", "fp16")
    return inner.replace("float", "fp32").replace(" ", "")


def resource_usage(so_path):
    """[{arch, kernel, REG, STACK, SHARED, LOCAL, ...}] for every kernel of every SASS arch."""
    out = subprocess.run([tool("cuobjdump"), "--dump-resource-usage", str(so_path)], capture_output=True,
                         text=True, check=True).stdout
    rows, arch, name = [], None, None
    for line in out.splitlines():
        if m := _ARCH.match(line):
            arch = m.group(1)
        elif m := _FUNCTION.match(line):
            name = m.group(1)
        elif name and "REG:" in line:
            rows.append({"arch": arch, "mangled": name, **{k: int(v) for k, v in _USAGE.findall(line)}})
            name = None
    names = _demangle(sorted({r["mangled"] for r in rows}))
    for r in rows:
        r["kernel"] = kernel_label(names[r["mangled"]])
    return rows


def sass_listings(so_path, arch):
    """{kernel: [(address, instruction text)]} of one arch (e.g. 'sm_90')."""
    out = subprocess.run([tool("cuobjdump"), "-sass", "-arch", arch, str(so_path)], capture_output=True, text=True,
                         check=True).stdout
    listings, name = {}, None
    for line in out.splitlines():
        if m := re.match(r"\s*Function : (\S+)", line):
            name = m.group(1)
            listings[name] = []
        elif name and (m := re.match(r"\s*/\*([0-9a-f]{4,})\*/\s+([^;]+);", line)):
            listings[name].append((int(m.group(1), 16), m.group(2).strip()))
    labels = _demangle(sorted(listings))
    return {kernel_label(labels[k]): v for k, v in listings.items()}


def sass_instruction_counts(so_path, arch):
    """{kernel: static SASS instructions} of one arch."""
    return {k: len(v) for k, v in sass_listings(so_path, arch).items()}


def innermost_loops(listing):
    """[(first, last) address] of loops (a backward branch and its target) that hold no other loop."""
    loops = []
    for address, text in listing:
        if m := re.search(r"\bBRA\b(?:.*,)?\s*0x([0-9a-f]+)", text):
            target = int(m.group(1), 16)
            if target <= address:
                loops.append((target, address))
    return [a for a in loops if not any(b != a and a[0] <= b[0] and b[1] <= a[1] for b in loops)]


def instructions_per_tap(listing):
    """Fewest SASS instructions per FFMA over the innermost loops that hold FFMAs (the blur's tap
    loops): a lower bound on what one tap costs, whatever the loop."""
    costs = []
    for first, last in innermost_loops(listing):
        body = [text for address, text in listing if first <= address <= last]
        ffma = sum(1 for text in body if re.search(r"\bFFMA\b", text))
        if ffma:
            costs.append(len(body) / ffma)
    return min(costs) if costs else None


def step_taps_per_element(sigma=2.0, tile=32):
    """Taps a step evaluates per element: both kernels blur, the horizontal pass also on the halo rows."""
    r = math.ceil(3 * sigma)
    return 2 * ((2 * r + 1) * (tile + 2 * r) / tile + (2 * r + 1))


def step_instructions_per_element_lower_bound(so_path, arch, dtype="fp32", sigma=2.0):
    """SASS instructions per element of a step at ``sigma``, counting only the tap loops at their
    cheapest (no loads of x, no stores, no reductions): the real figure is higher."""
    listings = sass_listings(so_path, arch)
    kernels = [k for k in listings if k in (f"StatsProgram<{dtype}>", f"ApplyProgram<{dtype},StepEpilogue<{dtype}>>")]
    per_tap = min(instructions_per_tap(listings[k]) for k in kernels)
    return per_tap * step_taps_per_element(sigma)


def bytes_per_element(element_size):
    """Global bytes per element of a step by design (see STEP_ELEMENT_ACCESSES)."""
    return STEP_ELEMENT_ACCESSES * element_size


def table(so_path, arch="sm_90"):
    """Markdown table: per kernel of ``arch``, registers, stack, local, shared, SASS instructions."""
    usage = [r for r in resource_usage(so_path) if r["arch"] == arch]
    sass = sass_instruction_counts(so_path, arch)
    lines = [f"| kernel ({arch}) | registers | stack + local (spills) | shared bytes | SASS instructions |",
             "|---|---|---|---|---|"]
    for r in sorted(usage, key=lambda r: r["kernel"]):
        lines.append(f"| {r['kernel']} | {r['REG']} | {r['STACK'] + r['LOCAL']} | {r['SHARED']} | "
                     f"{sass.get(r['kernel'], '?')} |")
    return "\n".join(lines)


def main():
    from pyviz_fast import _ext

    so = _ext._C.__file__
    print(f"extension: {so}\nlaunches per step: {LAUNCHES_PER_STEP}; bytes per element by design: "
          f"fp32 {bytes_per_element(4)}, fp16/bf16 {bytes_per_element(2)}\n")
    print(table(so))
    bound = step_instructions_per_element_lower_bound(so, "sm_90")
    print(f"\nSASS instructions per element of a fp32 step at sigma 2 (sm_90), tap loops only: >= {bound:.0f}")


if __name__ == "__main__":
    main()
