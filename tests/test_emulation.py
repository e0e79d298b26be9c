"""Properties of the CUDA emulation beyond agreement with the reference (test_ops.py runs every op
in natural, reversed and shuffled thread order): results independent of the grid size and of
the batch chunking, the global accesses of the kernels (16-byte vectors, channels_last rows
read whole), and the block programs of every op run under AddressSanitizer and
UndefinedBehaviorSanitizer in a separate small build (tests/native/emulation_harness.cpp, not
the shipped extension)."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from torch.utils import cpp_extension

from pyviz_fast import _ext, ops
from pyviz_fast.ops import NORM_MODES
from test_ops import TOLERANCES, assert_step_close, fused_case, make_image, make_shifts, reference

ROOT = Path(__file__).resolve().parents[1]
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer"]


@pytest.mark.needs_ext
@pytest.mark.parametrize("norm", ["rms", "std"])
def test_results_do_not_depend_on_the_grid_size(norm):
    """Tiles are spread over 1, 3 or 1000 blocks: the same bits."""
    case = fused_case((3, 3, 70, 45), torch.float32, seed=5)
    results = []
    try:
        for blocks in (1, 3, 1000):
            _ext._C.configure_emulation(order="shuffled", max_blocks=blocks, seed=blocks)
            results.append(ops.fused_ascent_step(*case, norm=norm, backend="emulation"))
    finally:
        _ext._C.configure_emulation()
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


@pytest.fixture
def emulation():
    """configure_emulation(**settings), reset after the test."""
    yield _ext._C.configure_emulation
    _ext._C.configure_emulation()


# Shapes whose rows are 16-byte aligned in every dtype, several tiles wide and high, so that
# the tiles' row runs take vectors, split at the roll and reflect at the image's edges.
VECTOR_SHAPES = [(2, 3, 40, 96), (3, 4, 33, 64)]


@pytest.mark.needs_ext
@pytest.mark.parametrize("order", ["natural", "reversed", "shuffled"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", list(TOLERANCES))
@pytest.mark.parametrize("shape", VECTOR_SHAPES)
def test_vector_accesses_match_the_reference(emulation, shape, dtype, layout, order):
    emulation(order=order, max_blocks=7)
    case = fused_case(shape, dtype, layout, layout, seed=sum(shape))
    sigma = case[-1].abs() * 3  # radii up to 9: the halo passes the roll's split and the edges
    step = ops.fused_ascent_step(*case[:-1], sigma, norm="rms", backend="emulation")
    assert_step_close(step, reference("fused_ascent_step", *case[:-1], sigma, norm="rms"), dtype)
    x, shifts = case[0], case[2]
    assert torch.equal(ops.jitter(x, shifts, backend="emulation"), reference("jitter", x, shifts))
    torch.testing.assert_close(ops.gaussian_blur(case[1], sigma, backend="emulation"),
                               reference("gaussian_blur", case[1], sigma), **TOLERANCES[dtype])


def _traced_step(emulation, shape, dtype, layout):
    x = make_image(shape, dtype, layout, seed=3)
    grad = make_image(shape, dtype, layout, seed=4, normal=True)
    emulation(trace=True)
    ops.fused_ascent_step(x, grad, make_shifts(shape, 5), make_shifts(shape, 6), 2.0, backend="emulation")
    return _ext._C.emulated_traffic(), _ext._C.emulated_access_widths(), x


@pytest.mark.needs_ext
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", list(TOLERANCES))
def test_a_step_moves_most_bytes_in_16_byte_accesses(emulation, dtype, layout):
    """Both kernels read g, and kernel 2 reads x and writes two outputs, in 16-byte vectors where
    the row runs allow: only the run ends (tile edges, the roll's split, the reflected halo) and
    the fast path's rolled next input (coalesced 4-byte stores) move element by element; the fast
    path's edge tiles load their whole halo in vectors (83-84 % at 64x64 NCHW). channels_last rows
    are read whole (a tile spans every channel of its pixels), so they take vectors as well (88-91
    %); element-wise they would be C elements apart."""
    _, widths, x = _traced_step(emulation, (2, 3, 64, 64), dtype, layout)
    moved = sum(sum(w.values()) for w in widths)
    in_vectors = sum(w.get(16, 0) for w in widths)
    assert set().union(*widths) <= {16, x.element_size()}
    assert in_vectors / moved >= 0.8, f"{in_vectors} of {moved} bytes in 16-byte accesses"


def _fast_tiles(shape, radii=None):
    """Tiles of a planar step that the fast path takes (csrc/kernels/tile.h blur_tile_fast),
    counted from the geometry: those whose columns e0 ... e0 + 31 lie inside the row, their halo
    loaded as vectors (interior tiles, and edge tiles: the roll's split or one of the row's ends),
    but for a row's first tile whose halo of radius r (``radii``: per image) crosses both ends
    (W < 32 + r), which takes the general path."""
    B, C, H, W = shape
    both_ends = sum(W < 32 + r for r in radii) if radii is not None else 0
    return (B * C * (W // 32) - C * both_ends) * -(-H // 64)


@pytest.mark.needs_ext
@pytest.mark.parametrize("norm", ["mean_abs", "std"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_interior_tiles_take_the_fast_path_and_give_the_same_bits(emulation, dtype, norm):
    """At sigma 2 (a compile-time radius) the tiles whose columns lie inside the row take the fast
    path in both kernels: as many as the geometry says, for un-jitter shifts of every
    misalignment, whose rolls split some halos. The step's bits equal those of the general path
    alone (a gradient whose rows are not 16-byte aligned takes no fast path) and match the
    reference; the std's too, whose fast paths fold a warp's partials without a division."""
    shape = (8, 2, 70, 200)
    x = make_image(shape, dtype, "contiguous", seed=3)
    grad = make_image(shape, dtype, "contiguous", seed=4, normal=True)
    shifts = torch.tensor([[5 * b - 7, 3 * b - 6 + 200 * (b % 3)] for b in range(shape[0])])
    next_shifts = make_shifts(shape, 6)
    sigma = torch.full((shape[0],), 2.0)
    emulation(order="shuffled", trace=True)
    fast = ops.fused_ascent_step(x, grad, shifts, next_shifts, sigma, norm=norm, backend="emulation")
    paths = _ext._C.emulated_tile_paths()
    expected = _fast_tiles(shape)
    total = shape[0] * shape[1] * 2 * 7
    assert expected > total // 3
    assert paths == [(expected, total - expected)] * 2
    unaligned = torch.empty(grad.numel() + 1, dtype=dtype)[1:].view(shape).copy_(grad)
    emulation(order="reversed", trace=True)
    general = ops.fused_ascent_step(x, unaligned, shifts, next_shifts, sigma, norm=norm, backend="emulation")
    assert _ext._C.emulated_tile_paths() == [(0, total)] * 2
    for a, b in zip(fast, general):
        assert torch.equal(a, b)
    assert_step_close(fast, reference("fused_ascent_step", x, grad, shifts, next_shifts, sigma, norm=norm), dtype)


# Edge tiles (csrc/kernels/tile.h load_halo_edge) in rows from one tile wide up (rows narrower
# than 32 + r, whose one halo crosses both ends, take the general path), the roll's split at every
# misalignment: (dtype, width).
EDGE_ROWS = [(torch.float32, 32), (torch.float32, 36), (torch.float32, 44), (torch.float32, 104),
             (torch.float16, 40), (torch.bfloat16, 64)]


@pytest.mark.needs_ext
@pytest.mark.parametrize("norm", ["mean_abs", "std"])
@pytest.mark.parametrize("one_pass", [False, True])
@pytest.mark.parametrize("dtype, width", EDGE_ROWS)
def test_edge_tiles_give_the_bits_of_the_general_path(emulation, dtype, width, one_pass, norm):
    """Every tile whose columns lie inside the row takes the fast path (the edge tiles' halo:
    vectors across the roll's split, the reflected columns of one end copied in shared memory)
    but a first tile whose halo crosses both ends of the row (_fast_tiles), at un-jitter
    shifts of every misalignment, the split at either end of a halo and inside it, and radii 1 to
    6; the step's bits equal those of the general path alone and match the reference."""
    shape = (8, 2, 70, width)
    x = make_image(shape, dtype, "contiguous", seed=5)
    grad = make_image(shape, dtype, "contiguous", seed=6, normal=True)
    shifts = torch.tensor([[3 * b - 5, b + (width // 2 - 3 if b % 2 else 0) + 32 * (b % 3)] for b in range(shape[0])])
    next_shifts = make_shifts(shape, 7)
    sigma = torch.tensor([2.0, 1.0, 1.3, 2.0, 1.4, 0.3, 0.4, 1.7])
    radii = [6, 3, 4, 6, 5, 1, 2, 6]
    emulation(order="shuffled", trace=True, resident_blocks=64 if one_pass else 0)
    fast = ops.fused_ascent_step(x, grad, shifts, next_shifts, sigma, norm=norm, backend="emulation")
    total = shape[0] * shape[1] * 2 * -(-width // 32)
    expected = _fast_tiles(shape, radii)
    assert _ext._C.emulated_tile_paths()[-1] == (expected, total - expected)
    unaligned = torch.empty(grad.numel() + 1, dtype=dtype)[1:].view(shape).copy_(grad)
    emulation(order="reversed", trace=True, resident_blocks=64 if one_pass else 0)
    general = ops.fused_ascent_step(x, unaligned, shifts, next_shifts, sigma, norm=norm, backend="emulation")
    assert _ext._C.emulated_tile_paths()[-1] == (0, total)
    for a, b in zip(fast, general):
        assert torch.equal(a, b)
    assert_step_close(fast, reference("fused_ascent_step", x, grad, shifts, next_shifts, sigma, norm=norm), dtype)


@pytest.mark.needs_ext
def test_unaligned_rows_fall_back_to_element_accesses(emulation):
    """Rows of 70 float32 (280 bytes) are not 16-byte aligned: every access is one element, and
    the results still match (test_ops.py)."""
    _, widths, _ = _traced_step(emulation, (2, 3, 40, 70), torch.float32, "contiguous")
    assert set().union(*widths) == {4}


@pytest.mark.needs_ext
@pytest.mark.parametrize("shape, element_bytes, cache_bytes, chunk", [
    ((4096, 3, 224, 224), 4, 50 << 20, 21),  # H100: 50 MB of L2, 602 KB of g per image
    ((4096, 3, 224, 224), 2, 40 << 20, 34),  # A100, half precision
    ((8, 3, 1024, 1024), 4, 50 << 20, 1),  # an image outgrows a quarter of L2: one per chunk
    ((8, 3, 64, 64), 4, 50 << 20, 8),  # the whole batch fits
    ((8, 3, 64, 64), 4, 0, 8),  # unknown L2: no chunking
])
def test_chunk_size_from_the_l2_size(shape, element_bytes, cache_bytes, chunk):
    """g of a chunk takes at most a quarter of L2, so kernel 2's second read of it hits L2."""
    assert _ext._C.chunk_images(list(shape), element_bytes, cache_bytes) == chunk


@pytest.mark.needs_ext
@pytest.mark.parametrize("norm", ["rms", "std", "max_abs"])
def test_results_do_not_depend_on_the_chunking(emulation, norm):
    """An emulated L2 of a few images' bytes splits the batch into chunks of 1, 2 or 3 images,
    each with its own two launches and the one reused partials buffer: the same bits."""
    shape = (5, 3, 40, 36)
    case = fused_case(shape, torch.float32, "channels_last", "channels_last", seed=9)
    image_bytes = 3 * 40 * 36 * 4
    results = []
    for images in (5, 1, 2, 3):
        emulation(order="shuffled", max_blocks=3, cache_bytes=4 * image_bytes * images)
        results.append((ops.fused_ascent_step(*case, norm=norm, backend="emulation"),
                        ops.normalize_grad(case[1], norm, backend="emulation")))
        assert _ext._C.emulated_launches() == 2 * 2 * -(-shape[0] // images)
    for step, normalized in results[1:]:
        for a, b in zip(results[0][0], step):
            assert torch.equal(a, b)
        assert torch.equal(results[0][1], normalized)


@pytest.mark.needs_ext
@pytest.mark.parametrize("shape, interleaved, capacity, blocks", [
    ((64, 3, 224, 224), False, 528, 528),  # H100 at 4 blocks per SM: 84 tiles an image, a grid of 528
    ((2, 3, 224, 224), False, 528, 168),  # fewer tiles than the device holds: one block each
    ((2, 3, 224, 224), True, 528, 168),  # channels_last: rows of 672 elements, 21 x 4 tiles an image
    ((8, 3, 512, 512), False, 528, 528),  # 384 tiles an image
    ((8, 3, 1024, 1024), False, 528, 0),  # 1,536 tiles an image: the two-pass step
    ((8, 3, 64, 64), False, 6, 6),  # exactly an image's tiles (3 planes x 1 x 2)
    ((8, 3, 64, 64), True, 6, 6),  # channels_last: one plane of rows of 192 elements, 6 tiles
    ((8, 3, 64, 65), False, 6, 0),  # 3 tiles a plane: 9 an image
    ((8, 3, 64, 64), False, 0, 0),  # no cooperative launch on the device
])
def test_one_pass_step_blocks(shape, interleaved, capacity, blocks):
    """The step takes one pass over g when an image's tiles fit what the device holds at once: no
    block then holds two tiles of one image, which is what keeps its waits finite."""
    assert _ext._C.resident_step_blocks(list(shape), interleaved, capacity) == blocks


# (shape, sigmas per image): radii 0, 6 (the fast path's) and 27 (run-time loops) in one batch,
# 16-byte aligned rows, odd sizes, and tiny images.
ONE_PASS_CASES = [((5, 3, 70, 96), [2.0]), ((4, 2, 65, 33), [0.0, 2.0, 9.0, 2.0]), ((6, 1, 1, 1), [2.0]),
                    ((3, 4, 8, 40), [0.4, 0.4, 7.0])]


@pytest.mark.needs_ext
@pytest.mark.parametrize("norm", NORM_MODES)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("shape, sigmas", ONE_PASS_CASES)
def test_one_pass_step_gives_the_bits_of_the_two_pass_step(emulation, shape, sigmas, layout, norm):
    """The one-pass step (blocks run as threads that wait for their image's scale) against the
    two-pass step, on devices holding exactly an image's tiles, one more, and far more, in every
    thread order: the same bits, flags included (a NaN in image 0's gradient)."""
    x = make_image(shape, torch.float32, layout, seed=1)
    grad = make_image(shape, torch.float32, layout, seed=2, normal=True)
    grad[0, 0, 0, 0] = float("nan")
    sigma = torch.tensor([sigmas[b % len(sigmas)] for b in range(shape[0])])
    args = (x, grad, make_shifts(shape, 3), make_shifts(shape, 4), sigma)
    emulation()
    two = ops.fused_ascent_step(*args, norm=norm, backend="emulation")
    assert _ext._C.emulated_launches() == 2
    # an image's tiles: the one-pass grid of a batch of one on a device that holds any number
    per_image = _ext._C.resident_step_blocks([1, *shape[1:]], layout == "channels_last" and shape[1] > 1, 1 << 20)
    for order, capacity in [("natural", per_image), ("reversed", per_image + 1), ("shuffled", 10 * per_image + 3)]:
        emulation(order=order, resident_blocks=capacity, seed=capacity)
        one = ops.fused_ascent_step(*args, norm=norm, backend="emulation")
        assert _ext._C.emulated_launches() == 2  # the tickets, then the step
        for a, b in zip(two, one):
            assert torch.equal(a, b), (order, capacity)
    assert bool(one.nonfinite[0]) and not one.nonfinite[1:].any()


# Heights whose last tile row starts at H - 64 (csrc/kernels/tile.h shifts_last_row: a multiple
# of 8 above 64, not of 64), overlapping the row above by the rows of 1 (120), 4 (96, 224) and
# 7 (72, 200) warps.
SHIFTED_HEIGHTS = [72, 96, 120, 200, 224]


@pytest.mark.needs_ext
@pytest.mark.parametrize("norm", NORM_MODES)
@pytest.mark.parametrize("height", SHIFTED_HEIGHTS)
def test_a_shifted_last_tile_row_folds_its_overlap_once(emulation, height, norm):
    """Rows that two tiles compute are written twice with the same values and folded once: the
    one-pass and two-pass steps give the same bits and, with normalize_grad, the reference's
    values (the gradient grows down the image, so rows of the overlap counted twice would move
    the image's scale in every mode that sums)."""
    shape = (3, 2, height, 64)
    x, grad, shifts, next_shifts, _ = fused_case(shape, torch.float32, seed=height)
    grad = grad * torch.linspace(1.0, 4.0, height).view(height, 1)
    sigma = torch.tensor([2.0, 1.0, 2.0])  # the fast paths' radii 6 and 3
    case = (x, grad, shifts, next_shifts, sigma)
    emulation(order="shuffled", resident_blocks=0)
    two = ops.fused_ascent_step(*case, norm=norm, backend="emulation")
    emulation(order="reversed", resident_blocks=1 << 10)
    one = ops.fused_ascent_step(*case, norm=norm, backend="emulation")
    for a, b in zip(one, two):
        assert torch.equal(a, b)
    assert_step_close(one, reference("fused_ascent_step", *case, norm=norm), torch.float32)
    torch.testing.assert_close(ops.normalize_grad(grad, norm, backend="emulation"),
                               reference("normalize_grad", grad, norm), **TOLERANCES[torch.float32])


@pytest.mark.needs_ext
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_step_of_two_byte_images_takes_two_passes(emulation, dtype):
    case = fused_case((2, 3, 40, 36), dtype, seed=12)
    emulation(resident_blocks=64)
    ops.fused_ascent_step(*case, backend="emulation")
    assert _ext._C.emulated_launches() == 2


@pytest.mark.needs_ext
def test_a_refused_one_pass_launch_falls_back_to_two_passes(emulation):
    """A device that refuses the cooperative launch at run time (a GPU shared under MPS): the step
    runs its two passes per chunk instead, with the same bits."""
    case = fused_case((5, 3, 40, 36), torch.float32, seed=11)
    emulation(resident_blocks=64)
    one = ops.fused_ascent_step(*case, backend="emulation")
    assert _ext._C.emulated_launches() == 2
    emulation(resident_blocks=64, refuse_cooperative=True, cache_bytes=4 * 3 * 40 * 36 * 4 * 2)
    fallen_back = ops.fused_ascent_step(*case, backend="emulation")
    assert _ext._C.emulated_launches() == 1 + 2 * 3  # the tickets, then chunks of 2, 2 and 1 images
    for a, b in zip(one, fallen_back):
        assert torch.equal(a, b)


def _compiler():
    cxx = shutil.which(os.environ.get("CXX", "g++"))
    if cxx is None:
        pytest.skip("no C++ compiler (g++ or $CXX) for the sanitizer build")
    return cxx


def _sanitizers_work(cxx, tmp_path):
    probe = tmp_path / "probe.cpp"
    probe.write_text("int main() { return 0; }\n")
    done = subprocess.run([cxx, *SANITIZE, str(probe), "-o", str(tmp_path / "probe")], capture_output=True, text=True)
    return done.returncode == 0, done.stderr


@pytest.mark.slow
def test_emulation_runs_clean_under_address_and_undefined_behaviour_sanitizers(tmp_path):
    cxx = _compiler()
    works, why = _sanitizers_work(cxx, tmp_path)
    if not works:
        pytest.skip(f"this toolchain cannot link ASan/UBSan programs: {why.strip()[:300]}")
    torch_lib = Path(torch.__file__).parent / "lib"
    harness = tmp_path / "emulation_harness"
    includes = [f"-I{p}" for p in cpp_extension.include_paths()] + [f"-I{ROOT / 'csrc'}"]
    # -g1: line tables only, what the sanitizers' reports need; full -g more than doubles the build
    build = subprocess.run([cxx, "-std=c++20", "-O1", "-g1", *SANITIZE, *includes,
                            str(ROOT / "tests" / "native" / "emulation_harness.cpp"), "-o", str(harness),
                            f"-L{torch_lib}", f"-Wl,-rpath,{torch_lib}", "-lc10"],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-4000:]
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0", UBSAN_OPTIONS="print_stacktrace=1")
    shards = max(1, min(4, os.cpu_count() or 1))  # the cases split between the cores
    runs = [subprocess.Popen([str(harness), str(k), str(shards)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env) for k in range(shards)]
    ran = 0
    for run in runs:
        stdout, stderr = run.communicate(timeout=600)
        report = stdout[-3000:] + stderr[-6000:]
        assert run.returncode == 0, report
        assert "runtime error" not in stderr and "AddressSanitizer" not in stderr, report
        last = stdout.strip().splitlines()[-1].split()  # "<k> of <n> cases, 0 changed with the schedule"
        assert last[4:] == ["0", "changed", "with", "the", "schedule"], report
        ran, total = ran + int(last[0]), int(last[2])
    assert ran == total > 0  # every case ran, in one shard or another
