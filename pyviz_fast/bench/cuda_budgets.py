"""Static budgets of the CUDA kernels, read from the built extension without a GPU.

From the ``.so``'s fat binary (``cuobjdump`` / ``nvdisasm``, shipped in the triton wheel that
torch installs, or in ``$CUDA_HOME/bin``): per kernel and architecture, registers, stack and
local memory (spills) and static shared memory, and the static SASS instruction count. By
design (csrc/kernels/sequences.h): launches and global bytes per element of a step.

    python -m pyviz_fast.bench.cuda_budgets   # prints the table of BENCHMARKS.md
"""
import functools
import itertools
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

# A step runs in one of two designs (csrc/kernels/sequences.h): "one pass" over g
# (ResidentStepProgram, for images whose tiles fit what the GPU holds at once) or "two passes"
# (StatsProgram, then ApplyProgram<StepEpilogue>, per chunk of images; one chunk unless the
# batch's g outgrows a quarter of L2). Kernels (launches) per step by design, checked in the
# emulation; the one-pass step's first kernel only writes its tickets (64 bytes per image):
STEP_KERNELS = {"one pass": 2, "two passes": 2}
# Global memory traffic per element by design (DRAM, not L2 hits): read g and x, write the image
# and the next input; the two-pass design reads g a second time. The per-tile partials (16 bytes
# per 256 elements, written once, read once per image), the tickets and the halos (re-read from
# L2) are left out.
STEP_ELEMENT_ACCESSES = {"one pass": 4, "two passes": 5}
DESIGNS = tuple(STEP_KERNELS)
TILE_HEIGHT = 64  # csrc/kernels/tile.h kTileH (a tile is 32 columns wide)
ELEMENTS_PER_THREAD = 16  # kRowsPerThread: a tile's 2,048 pixels over 128 threads
# A radius's tile loops hold at most this many FFMAs fewer than its loop with the most: one radius
# less has 2 x (16 vertical + 20 horizontal outputs per thread) = 72 tap FFMAs fewer in every loop,
# while one radius's loops may differ by a few: none do today (the std's loops hold the same FFMAs
# on every path since its share 1 / count comes from a table), but while its general loops divided
# by the count they held 2 more than its fast loops, and 25-27 more with 8-warp blocks.
RADIUS_FFMA_SPREAD = 30
NORM_MODES = ("rms", "mean_abs", "std", "max_abs", "none")  # csrc/kernels/common.h NormMode order
DEFAULT_NORM = "mean_abs"  # the engine's default

_BRANCH = re.compile(r"\bBRA\b(?:.*,)?\s*0x([0-9a-f]+)")
_CALL = re.compile(r"\bCALL\.REL\S*\s+0x([0-9a-f]+)")
_FFMA = re.compile(r"\bFFMA\b")
_VECTOR_LOAD = re.compile(r"\bLDG\.E\.128\b")  # 16 bytes
_ELEMENT_LOAD = re.compile(r"\bLDG\.E(?:\.U16)? ")  # one float, half or bfloat16
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
    """'run_blocks<pvf::ResidentStepProgram<float, (pvf::NormMode)1>>' -> 'ResidentStepProgram<fp32,mean_abs>'."""
    inner = demangled.split("run_blocks<", 1)[-1].split(">(", 1)[0]
    inner = inner.replace("pvf::", "").replace("__nv_bfloat16", "bf16").replace("__half", "fp16")
    inner = re.sub(r"\(NormMode\)(\d)", lambda m: NORM_MODES[int(m.group(1))], inner)
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
    """{kernel: [(address, instruction text)]} of one arch (e.g. 'sm_90'), read-only: disassembled
    once per build of the file, since one disassembly of the fat binary takes tens of seconds and
    the budget checks ask for it once per norm mode and path."""
    stat = os.stat(so_path)
    return _sass_listings(str(so_path), arch, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _sass_listings(so_path, arch, mtime_ns, size):
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


def loops(listing):
    """[(first, last) address] of every loop: a backward branch and its target."""
    found = []
    for address, text in listing:
        if m := _BRANCH.search(text):
            target = int(m.group(1), 16)
            if target <= address:
                found.append((target, address))
    return found


def _count(listing, first, last, pattern):
    return sum(1 for address, text in listing if first <= address <= last and pattern.search(text))


def _ffma_count(listing, first, last):
    return _count(listing, first, last, _FFMA)


def tile_loop_candidates(listing):
    """Loops that hold no loop with an FFMA in it: tile loops (the blur's taps are unrolled), which
    may hold loops of other work (the one-launch step's wait for its image's scale)."""
    every = loops(listing)
    return [a for a in every
            if not any(b != a and a[0] <= b[0] and b[1] <= a[1] and _ffma_count(listing, *b) for b in every)]


def longest_path(listing, first, last):
    """SASS instructions on the longest path through one iteration of the loop [first, last]
    (a body with no inner loop): every conditional branch may go either way, a forward branch
    out of the body or the back branch ends the iteration, a CALL counts as one instruction (a
    call of a function out of the loop), except a call forward into the body itself, which goes
    on there (ptxas on sm_80 enters the body of a loop that it leaves by a return that way)."""
    body = [(address, text) for address, text in listing if first <= address <= last]
    position = {address: k for k, (address, _) in enumerate(body)}
    rest = [0] * (len(body) + 1)  # rest[k]: longest count from instruction k to the iteration's end
    for k in reversed(range(len(body))):
        address, text = body[k]
        conditional = text.startswith("@")
        call = _CALL.search(text)
        if call and not address < int(call.group(1), 16) <= last:
            call = None
        if m := _BRANCH.search(text) or call:
            target = int(m.group(1), 16)
            taken = rest[position[target]] if address < target <= last else 0
            rest[k] = 1 + (max(taken, rest[k + 1]) if conditional else taken)
        elif re.search(r"\bEXIT\b", text) and not conditional:
            rest[k] = 1
        else:
            rest[k] = 1 + rest[k + 1]
    return rest[0]


def step_taps_per_element(sigma=2.0):
    """Tap FFMAs a step evaluates per element: both kernels blur, the horizontal pass also on
    the halo rows of each TILE_HEIGHT-row tile."""
    r = math.ceil(3 * sigma)
    return 2 * ((2 * r + 1) * (TILE_HEIGHT + 2 * r) / TILE_HEIGHT + (2 * r + 1))


# The step's tile loops per radius, shortest first (tile_loops).
TILE_PATHS = ("interior", "edge", "cut", "general")


def tile_loops(listing, sigma=2.0):
    """{"interior": (first, last), "edge": ..., "cut": ..., "general": ...} (TILE_PATHS) of the tile loops of
    ``sigma``'s compile-time radius: the candidate loops with the most FFMAs (FixedRadii ends at
    radius 6 = sigma 2; they must hold at least the 2 x (2r + 1) tap FFMAs of each of the thread's
    pixels), within RADIUS_FFMA_SPREAD of the most.
    Three of them are the fast paths (csrc/kernels/tile.h blur_tile_fast), told by their global
    loads, more 16-byte vectors than single elements (the halo and x as vectors): the interior
    one over tiles of TILE_HEIGHT rows inside the image (no reflection, no per-item choice), the
    shortest; the edge one over tiles of TILE_HEIGHT rows inside the image whose halo crosses the
    row's ends or the roll's split (load_halo_edge), the next; the cut one over the tiles whose
    columns lie inside the row but that the image's last row cuts, the longest. The others are the
    general path (a row's last tile cut by its end; rows not 16-byte aligned), which moves the
    halo and x element by element (load_halo_elements, apply_elements): "general" is the longest."""
    r = math.ceil(3 * sigma)
    counted = [(_ffma_count(listing, *loop), loop) for loop in tile_loop_candidates(listing)]
    most = max((ffma for ffma, _ in counted), default=0)
    if most < 2 * (2 * r + 1) * ELEMENTS_PER_THREAD:
        raise ValueError(f"no tile loop with the {2 * (2 * r + 1) * ELEMENTS_PER_THREAD} tap FFMAs of sigma {sigma} "
                         f"(most: {most})")
    fast, general = [], []
    for loop in sorted((loop for ffma, loop in counted if ffma > most - RADIUS_FFMA_SPREAD),
                       key=lambda loop: longest_path(listing, *loop)):
        (fast if _count(listing, *loop, _VECTOR_LOAD) > _count(listing, *loop, _ELEMENT_LOAD) else general).append(loop)
    if len(fast) != len(TILE_PATHS) - 1 or not general:
        raise ValueError(f"expected the interior, edge and cut tile loops of sigma {sigma} and at least one general "
                         f"loop, found {len(fast)} fast and {len(general)} general")
    return dict(zip(TILE_PATHS, fast + general[-1:]))


def step_kernels(dtype="fp32", norm=DEFAULT_NORM, design="one pass"):
    """The kernels of a step: the one of one pass over g, or (statistic, update) of two."""
    if design == "one pass":
        return (f"ResidentStepProgram<{dtype},{norm}>",)
    # the statistic's kernels: the std's (true), or the one of the other modes (false)
    return f"StatsProgram<{dtype},{str(norm == 'std').lower()}>", f"ApplyProgram<{dtype},StepEpilogue<{dtype}>>"


def step_instructions_per_element(so_path, arch, dtype="fp32", norm=DEFAULT_NORM, sigma=2.0, path="interior",
                                  design="one pass"):
    """{kernel: SASS instructions per element} of a step at ``sigma``: the longest path through
    one iteration of each kernel's tile loop (one tile: ELEMENTS_PER_THREAD pixels per thread),
    divided by ELEMENTS_PER_THREAD; ``path`` "interior" (the fast path of interior tiles), "edge"
    (the fast path of tiles at the row's ends or the roll's split), "cut" (the fast path of the
    tiles that the image's last row cuts) or "general" (the general path: see tile_loops). Work once per
    image and block (taps, the fold of the image's partials) is outside the loop and left out;
    in the one-pass step, where a block holds one tile of an image, the fold is one call in the
    loop that one block per image runs (csrc/kernels/resident_step.h publish_image)."""
    listings = sass_listings(so_path, arch)
    counts = {}
    for kernel in step_kernels(dtype, norm, design):
        first, last = tile_loops(listings[kernel], sigma)[path]
        counts[kernel] = longest_path(listings[kernel], first, last) / ELEMENTS_PER_THREAD
    return counts


def bytes_per_element(element_size, design="one pass"):
    """Global bytes per element of a step by design (see STEP_ELEMENT_ACCESSES)."""
    return STEP_ELEMENT_ACCESSES[design] * element_size


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
    for design in DESIGNS:
        print(f"{design}: kernels (launches) per step {STEP_KERNELS[design]}; bytes per element "
              f"{bytes_per_element(4, design)} fp32, {bytes_per_element(2, design)} fp16/bf16")
    print()
    print(table(so))
    arches = sorted({r["arch"] for r in resource_usage(so)})
    print("\nSASS instructions per element of a step at sigma 2 (longest path through each kernel's "
          f"tile loop / {ELEMENTS_PER_THREAD} elements per thread):")
    for dtype, design, arch, path, norm in itertools.product(("fp32", "fp16", "bf16"), DESIGNS, arches, TILE_PATHS,
                                                            NORM_MODES):
        counts = step_instructions_per_element(so, arch, dtype=dtype, norm=norm, path=path, design=design)
        print(f"  {dtype} {design}, {arch} {path} norm={norm}: "
              + " + ".join(f"{v:.1f}" for v in counts.values()) + f" = {sum(counts.values()):.1f}")


if __name__ == "__main__":
    main()
