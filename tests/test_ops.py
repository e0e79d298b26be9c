"""Every compiled op against the pure-PyTorch reference (the contract), on every kernel
backend: random and tiny shapes, B=1 and B=256, all storage dtypes, non-contiguous and
channels_last layouts, per-image sigmas and shifts, every norm mode, and non-finite gradients."""
import math

import pytest
import torch

from pyviz_fast import ops

TOLERANCES = {
    torch.float32: dict(rtol=1e-5, atol=1e-5),
    torch.float16: dict(rtol=2e-3, atol=2e-3),  # one half-precision ulp at 1 is 1e-3
    torch.bfloat16: dict(rtol=1.6e-2, atol=1.6e-2),  # one bfloat16 ulp at 1 is 8e-3
}
DTYPES = list(TOLERANCES)
SHAPES = [(2, 3, 17, 23), (1, 1, 1, 1), (1, 2, 1, 5), (3, 2, 3, 2), (2, 3, 4, 40), (256, 2, 5, 6)]
LAYOUTS = ["contiguous", "channels_last", "sliced", "transposed"]
LAYOUT_PAIRS = [("contiguous", "contiguous"), ("contiguous", "channels_last"), ("channels_last", "contiguous"),
                ("sliced", "transposed")]  # (x, grad)
# Every shape in every layout, except B=256 (slow in the reference) in one strided layout only.
SHAPE_LAYOUTS = [(s, lay) for s in SHAPES for lay in LAYOUTS if s[0] < 256 or lay == "sliced"]
SHAPE_LAYOUT_PAIRS = [(s, *pair) for s in SHAPES for pair in LAYOUT_PAIRS if s[0] < 256 or pair[0] == "sliced"]


def make_image(shape, dtype, layout, seed, normal=False):
    """A [B, C, H, W] tensor of uniform [0, 1) (or normal) values stored in ``layout``."""
    gen = torch.Generator().manual_seed(seed)

    def draw(size):
        return (torch.randn if normal else torch.rand)(size, generator=gen).to(dtype)

    B, C, H, W = shape
    if layout == "contiguous":
        t = draw(shape)
    elif layout == "channels_last":
        t = draw(shape).contiguous(memory_format=torch.channels_last)
    elif layout == "sliced":  # a strided view into a larger tensor
        t = draw((B, C + 1, H, 2 * W))[:, 1:, :, ::2]
    elif layout == "transposed":
        t = draw((B, C, W, H)).transpose(2, 3)
    else:
        raise ValueError(layout)
    assert t.shape == shape
    return t


def make_sigma(B, seed):
    """Per-image sigmas in [-1, 3], with zeros and negatives (both mean: no blur)."""
    sigma = torch.rand(B, generator=torch.Generator().manual_seed(seed)) * 4 - 1
    sigma[1::3] = 0.0
    sigma[2::4] = -0.5
    return sigma


def make_shifts(shape, seed):
    """Per-image (dy, dx), negative ones and ones larger than the image included."""
    reach = 3 * max(shape[2], shape[3])
    return torch.randint(-reach, reach + 1, (shape[0], 2), generator=torch.Generator().manual_seed(seed))


def on(device, value):
    return value.to(device) if isinstance(value, torch.Tensor) else value


def run(op, backend, *args, **kwargs):
    """ops.<op> on the backend's device, results back on the CPU."""
    out = getattr(ops, op)(*(on(backend.device, a) for a in args), backend=backend.name, **kwargs)
    return tuple(t.cpu() for t in out) if isinstance(out, tuple) else out.cpu()


def reference(op, *args, **kwargs):
    return getattr(ops, op)(*args, backend="reference", **kwargs)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, layout", SHAPE_LAYOUTS)
def test_jitter_matches_reference(kernel_backend, shape, dtype, layout):
    x = make_image(shape, dtype, layout, seed=1)
    shifts = make_shifts(shape, seed=2)
    torch.testing.assert_close(run("jitter", kernel_backend, x, shifts), reference("jitter", x, shifts), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_every_16_bit_value_is_read_and_stored_exactly(kernel_backend, dtype):
    """All 65536 bit patterns (normals, subnormals, infinities, NaNs) go through a jitter."""
    x = torch.arange(-2**15, 2**15, dtype=torch.int32).to(torch.int16).view(dtype).reshape(1, 1, 256, 256)
    shifts = torch.tensor([[3, -7]])
    torch.testing.assert_close(run("jitter", kernel_backend, x, shifts), reference("jitter", x, shifts),
                               rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_step_rounds_like_the_reference(kernel_backend, dtype):
    """With lr 1 and nothing else, new = x + g in float32 exactly: only the rounding to the
    storage dtype is left to compare, and it must agree bit for bit."""
    x, grad, shifts, next_shifts, _ = fused_case((3, 2, 9, 37), dtype, seed=12)
    options = dict(sigma=0.0, norm="none", lr=1.0, decay=0.0, lo=-1e4, hi=1e4)
    got = run("fused_ascent_step", kernel_backend, x, grad, shifts, next_shifts, **options)
    want = reference("fused_ascent_step", x, grad, shifts, next_shifts, **options)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_extreme_shifts_wrap_without_overflow(kernel_backend):
    x, grad, _, _, sigma = fused_case((2, 3, 7, 5), torch.float32, seed=13)
    extreme = torch.tensor([[2**63 - 1, -2**63], [-2**63 + 3, 2**63 - 5]])
    reduced = extreme % torch.tensor([7, 5])  # what the shifts mean, without int64 overflow
    torch.testing.assert_close(run("jitter", kernel_backend, x, extreme), reference("jitter", x, reduced), rtol=0, atol=0)
    assert_step_close(run("fused_ascent_step", kernel_backend, x, grad, extreme, extreme, sigma),
                      reference("fused_ascent_step", x, grad, reduced, reduced, sigma), torch.float32)


def test_jitter_is_undone_by_negated_shifts(kernel_backend):
    x = make_image((4, 3, 9, 14), torch.float32, "contiguous", seed=3)
    shifts = make_shifts(x.shape, seed=4)
    there = run("jitter", kernel_backend, x, shifts)
    assert not torch.equal(there, x)
    torch.testing.assert_close(run("jitter", kernel_backend, there, -shifts), x, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, layout", SHAPE_LAYOUTS)
def test_gaussian_blur_matches_reference(kernel_backend, shape, dtype, layout):
    x = make_image(shape, dtype, layout, seed=5, normal=True)
    sigma = make_sigma(shape[0], seed=6)
    torch.testing.assert_close(run("gaussian_blur", kernel_backend, x, sigma), reference("gaussian_blur", x, sigma),
                               **TOLERANCES[dtype])


@pytest.mark.parametrize("op", ["gaussian_blur", "fused_ascent_step"])
@pytest.mark.parametrize("width", [61, 64, 70])
def test_blur_windows_of_every_radius_match_reference(kernel_backend, op, width):
    """Radii 1-8 (the CPU's shuffle path, on whole vectors and a tail), 9 and 21 (the general
    path, 21 beyond the padded rows' margin of 16), on rows of 61, 64 and 70 columns."""
    sigma = torch.tensor([0.3, 0.6, 1.0, 1.2, 1.6, 2.0, 2.3, 2.6, 3.0, 7.0])  # radius ceil(3 sigma)
    x, grad, shifts, next_shifts, _ = fused_case((len(sigma), 2, 45, width), torch.float32, seed=90)
    args = (grad, sigma) if op == "gaussian_blur" else (x, grad, shifts, next_shifts, sigma)
    got, want = run(op, kernel_backend, *args), reference(op, *args)
    if op == "gaussian_blur":
        torch.testing.assert_close(got, want, **TOLERANCES[torch.float32])
    else:
        assert_step_close(got, want, torch.float32)


@pytest.mark.parametrize("sigma", [0.6, 2.0, 40.0])  # 40: the window is capped by the image size
def test_gaussian_blur_keeps_a_constant_image_and_smooths_noise(kernel_backend, sigma):
    flat = torch.full((2, 3, 11, 16), 0.25)
    torch.testing.assert_close(run("gaussian_blur", kernel_backend, flat, sigma), flat)
    noise = make_image((2, 3, 11, 16), torch.float32, "contiguous", seed=7, normal=True)
    assert run("gaussian_blur", kernel_backend, noise, sigma).std() < 0.8 * noise.std()


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ops.NORM_MODES)
@pytest.mark.parametrize("shape", [(2, 3, 17, 23), (1, 1, 1, 1), (256, 2, 1, 3)])
def test_normalize_grad_matches_reference(kernel_backend, shape, mode, dtype, layout):
    g = make_image(shape, dtype, layout, seed=8, normal=True)
    torch.testing.assert_close(run("normalize_grad", kernel_backend, g, mode, 1e-6),
                               reference("normalize_grad", g, mode, 1e-6), **TOLERANCES[dtype])


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("clip", [0.0, 0.3, math.inf])
def test_clip_grad_matches_reference(kernel_backend, clip, dtype, layout):
    g = make_image((3, 2, 7, 9), dtype, layout, seed=9, normal=True)
    torch.testing.assert_close(run("clip_grad", kernel_backend, g, clip), reference("clip_grad", g, clip),
                               rtol=0, atol=0)


def fused_case(shape, dtype, x_layout="contiguous", grad_layout="contiguous", seed=10):
    x = make_image(shape, dtype, x_layout, seed=seed)
    grad = make_image(shape, dtype, grad_layout, seed=seed + 1, normal=True)
    return x, grad, make_shifts(shape, seed + 2), make_shifts(shape, seed + 3), make_sigma(shape[0], seed + 4)


def assert_step_close(got, want, dtype):
    image, next_input, nonfinite = got
    torch.testing.assert_close(nonfinite, want[2])
    torch.testing.assert_close(image, want[0], **TOLERANCES[dtype])
    torch.testing.assert_close(next_input, want[1], **TOLERANCES[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, x_layout, grad_layout", SHAPE_LAYOUT_PAIRS)
def test_fused_step_matches_reference(kernel_backend, shape, dtype, x_layout, grad_layout):
    case = fused_case(shape, dtype, x_layout, grad_layout)
    options = dict(norm="mean_abs", clip=2.5, lr=0.05, decay=0.01, center=0.5, lo=0.0, hi=1.0)
    assert_step_close(run("fused_ascent_step", kernel_backend, *case, **options),
                      reference("fused_ascent_step", *case, **options), dtype)


def test_fused_step_reads_a_broadcast_image(kernel_backend):
    """x expanded over the batch (stride 0): every item reads the same pixels."""
    _, grad, shifts, next_shifts, sigma = fused_case((4, 3, 7, 6), torch.float32, seed=15)
    x = make_image((1, 3, 7, 6), torch.float32, "contiguous", seed=16).expand(4, 3, 7, 6)
    assert_step_close(run("fused_ascent_step", kernel_backend, x, grad, shifts, next_shifts, sigma),
                      reference("fused_ascent_step", x, grad, shifts, next_shifts, sigma), torch.float32)


@pytest.mark.parametrize("clip", [0.0, 0.5, math.inf])  # 0: every gradient clamps to a zero (min / max ties)
@pytest.mark.parametrize("norm", ops.NORM_MODES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_step_options_match_reference(kernel_backend, dtype, norm, clip):
    case = fused_case((3, 3, 12, 10), dtype, seed=20)
    lr = 0.01 if norm == "none" else 0.1  # 'none' leaves the raw gradient, of scale 1
    options = dict(norm=norm, eps=1e-4, clip=clip, lr=lr, decay=0.1, center=0.3, lo=-0.2, hi=0.9)
    assert_step_close(run("fused_ascent_step", kernel_backend, *case, **options),
                      reference("fused_ascent_step", *case, **options), dtype)


@pytest.mark.parametrize("width", [9, 37])  # 37: the bad values in whole vectors of a row, not its tail
@pytest.mark.parametrize("norm", ops.NORM_MODES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_step_nonfinite_items_keep_their_pixels(kernel_backend, dtype, norm, width):
    x, grad, shifts, next_shifts, sigma = fused_case((5, 3, 8, width), dtype, seed=30)
    grad[1, 2, 3, 4] = math.nan
    grad[3, 0, 7, 0] = -math.inf
    got = run("fused_ascent_step", kernel_backend, x, grad, shifts, next_shifts, sigma, norm=norm, lr=0.1)
    want = reference("fused_ascent_step", x, grad, shifts, next_shifts, sigma, norm=norm, lr=0.1)
    assert got[2].tolist() == [False, True, False, True, False]
    assert_step_close(got, want, dtype)
    bad = got[2]
    assert torch.equal(got[0][bad], x[bad])
    assert torch.equal(got[1][bad], ops.jitter(x, next_shifts, backend="reference")[bad])
    assert not torch.equal(got[0][~bad], x[~bad])


def test_fused_step_flags_a_scale_that_overflows(kernel_backend):
    x, grad, shifts, next_shifts, sigma = fused_case((3, 2, 6, 7), torch.float32, seed=40)
    grad[2] *= 1e25  # finite, but its squares are not in float32
    got = run("fused_ascent_step", kernel_backend, x, grad, shifts, next_shifts, sigma, norm="rms")
    assert got[2].tolist() == [False, False, True]
    assert_step_close(got, reference("fused_ascent_step", x, grad, shifts, next_shifts, sigma, norm="rms"),
                      torch.float32)


def test_a_step_made_once_steps_like_the_op(kernel_backend):
    """AscentStep (settings checked once, a render's loop) gives the op's bits, call after call."""
    options = dict(norm="rms", eps=1e-6, clip=3.0, decay=0.01, center=0.4, lo=0.1, hi=0.9)
    step = ops.AscentStep(**options, backend=kernel_backend.name)
    for seed, lr in ((50, 0.2), (60, -0.05)):
        x, grad, shifts, next_shifts, sigma = (on(kernel_backend.device, t) for t in
                                               fused_case((3, 2, 9, 7), torch.float32, seed=seed))
        got = step(x, grad, shifts, next_shifts, sigma, lr)
        want = ops.fused_ascent_step(x, grad, shifts, next_shifts, sigma, lr=lr, **options,
                                     backend=kernel_backend.name)
        for g, w in zip(got, want):
            assert torch.equal(g, w)


def test_a_step_checks_pixels_unless_told_not_to():
    x, grad, shifts, next_shifts, sigma = fused_case((3, 2, 6, 5), torch.float32, seed=70)
    x[1, 0, 2, 2] = math.nan
    step = ops.AscentStep(backend="reference")
    assert step(x, grad, shifts, next_shifts, sigma).nonfinite.tolist() == [False, True, False]
    assert step(x, grad, shifts, next_shifts, sigma, check_pixels=False).nonfinite.tolist() == [False] * 3


@pytest.mark.parametrize("settings, message", [(dict(norm="l2"), "norm mode must be one of"),
                                                (dict(clip=-1.0), "clip must be >= 0"),
                                                (dict(lo=0.7, hi=0.2), "lo must not exceed hi")])
def test_a_step_rejects_bad_settings_when_made(settings, message):
    with pytest.raises(ValueError, match=message):
        ops.AscentStep(**settings)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_fused_step_outputs_keep_the_memory_format_of_x(kernel_backend, layout):
    x, grad, shifts, next_shifts, sigma = fused_case((2, 3, 5, 6), torch.float32, layout, "channels_last")
    image, next_input, nonfinite = ops.fused_ascent_step(*(on(kernel_backend.device, t) for t in
                                                           (x, grad, shifts, next_shifts, sigma)),
                                                         backend=kernel_backend.name)
    assert image.stride() == next_input.stride() == x.stride()
    assert nonfinite.dtype == torch.bool and nonfinite.shape == (2,)


@pytest.mark.parametrize("shape", [(6, 3, 233, 250), (1, 3, 701, 700)])
def test_fused_step_matches_reference_on_outputs_past_the_caches(kernel_backend, shape):
    """float32 outputs of 4 MB and more take the CPU's streaming-store path, in both of its
    orders: whole images per thread (B >= threads) and planes spread over threads (B = 1)."""
    case = fused_case(shape, torch.float32, seed=70)
    case[1][shape[0] - 1, 1, 100, 17] = math.nan
    got = run("fused_ascent_step", kernel_backend, *case, lr=0.1)
    assert got[2].tolist() == [False] * (shape[0] - 1) + [True]
    assert_step_close(got, reference("fused_ascent_step", *case, lr=0.1), torch.float32)


@pytest.mark.needs_ext
def test_cpu_outputs_reuse_freed_memory_of_the_same_size():
    x, grad, shifts, next_shifts, sigma = fused_case((4, 3, 160, 160), torch.float32, seed=80)  # 1.2 MB
    ops.release_cached_memory()
    first = ops.fused_ascent_step(x, grad, shifts, next_shifts, sigma, backend="fused")
    kept = first.image.clone()
    addresses = {first.image.data_ptr(), first.next_input.data_ptr()}
    second = ops.fused_ascent_step(x, grad, shifts, next_shifts, sigma, backend="fused")
    assert addresses.isdisjoint({second.image.data_ptr(), second.next_input.data_ptr()})  # first is alive
    assert torch.equal(first.image, kept)
    del first
    third = ops.fused_ascent_step(x, grad, shifts, next_shifts, sigma, backend="fused")
    assert {third.image.data_ptr(), third.next_input.data_ptr()} == addresses
    assert torch.equal(third.image, second.image) and torch.equal(third.next_input, second.next_input)
    del second, third
    assert ops.release_cached_memory() == 4 * x.numel() * x.element_size()
    assert ops.release_cached_memory() == 0


@pytest.mark.needs_ext
@pytest.mark.parametrize("batch", [1, 5])
def test_fused_cpu_step_does_not_depend_on_the_thread_count(batch, same_bits_on_one_and_two_threads):
    """One thread and two threads take different parallel orders (per image, per plane)."""
    case = fused_case((batch, 3, 31, 29), torch.float32, seed=50)
    same_bits_on_one_and_two_threads(lambda: ops.fused_ascent_step(*case, norm="std", backend="fused"))


def op_samples():
    x, grad, shifts, next_shifts, sigma = fused_case((2, 3, 6, 5), torch.float32, seed=60)
    return {
        "jitter": (x, shifts),
        "gaussian_blur": (x, sigma),
        "normalize_grad": (grad, "rms", 1e-8),
        "clip_grad": (grad, 0.5),
        "fused_ascent_step": (x, grad, shifts, next_shifts, sigma, "mean_abs", 1e-8, 1.0, 0.1, 0.0, 0.5, 0.0, 1.0),
    }


@pytest.mark.parametrize("op", list(op_samples()))
def test_opcheck(kernel_backend, op):
    prefix = "emulated_" if kernel_backend.name == "emulation" else ""
    args = tuple(on(kernel_backend.device, a) for a in op_samples()[op])
    torch.library.opcheck(getattr(torch.ops.pyviz_fast, prefix + op).default, args)


@pytest.mark.needs_ext
def test_torch_compile_traces_a_step_in_one_graph():
    """The public op traces into one graph (fake kernels give the output metadata); the
    aot_eager backend keeps the test fast (inductor's C++ code generation takes ~45 s here)."""

    def step(x, grad, shifts, next_shifts, sigma):
        result = ops.fused_ascent_step(x, grad * 2.0, shifts, next_shifts, sigma, norm="rms", clip=1.0, lr=0.1,
                                       backend="fused")
        return result.image, result.next_input * 0.5, result.nonfinite

    case = fused_case((2, 3, 10, 12), torch.float32, seed=70)
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    for got, want in zip(compiled(*case), step(*case)):
        torch.testing.assert_close(got, want)
