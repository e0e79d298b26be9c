"""ops.gram and ops.gram_times (the Gram products of the style loss and the facets' diversity)
and ops.gram_error with its backward (a style loss's layer): the CPU kernel against the
reference on random activations whose channels are innermost (channels_last maps and tokens),
odd and tiny position counts, B=1 and large batches, every tile shape of the kernel (16 to 256
channels) on every vector instruction set of the CPU, and in bfloat16 on each instruction set
the CPU has of the two that take it (AMX tiles, AVX512_BF16); independent of the thread count;
every input the kernel does not take runs the reference bit for bit; and the style loss through
either backend."""
import pytest
import torch

from pyviz_fast import _ext, ops
from pyviz_fast.engine.goals.gram import gram, gram_error_tap, squared_norms
from pyviz_fast.engine.layout import Activation
from pyviz_fast.ops import reference

# [B, C, H, W]: C = 16 (one tile), 48 (three 16-channel tiles), 64 and 256 (AVX-512's tiles of
# two vectors); P = 1, 35 (rows past the kernels' blocks of 2, 6 and 8), 64, 9, and 2209 (more rows
# than one task of the products takes: 1,024 at 16 channels)
SHAPES = [(1, 16, 1, 1), (3, 16, 5, 7), (2, 48, 3, 3), (33, 32, 2, 3), (4, 64, 8, 8), (2, 256, 3, 3), (2, 16, 47, 47)]


def channels_last(shape, seed, dtype=torch.float32):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(dtype).contiguous(
        memory_format=torch.channels_last)


def bf16_kernels():
    return _ext.has_ops() and _ext._C.bf16_gram_available()


needs_bf16_kernels = pytest.mark.skipif(not bf16_kernels(), reason="bfloat16 Gram kernels run on AMX tiles or "
                                        "AVX512_BF16; this CPU (or build) has neither")


@pytest.fixture(params=["amx", "avx512_bf16"])
def bf16_instruction_set(request):
    """The bfloat16 Gram kernels on one instruction set for the test (skipped where the CPU lacks it)."""
    runs = _ext._C.bf16_gram_instruction_sets() if _ext.has_ops() else []
    if request.param not in runs:
        pytest.skip(f"this CPU runs the bfloat16 Gram kernels with {runs}, not '{request.param}'")
    previous = _ext._C.use_bf16_gram_instruction_set(request.param)
    try:
        yield request.param
    finally:
        _ext._C.use_bf16_gram_instruction_set(previous)


def tokens(B, N, C, seed):
    """[B, C, N]: a token layer's [B, N, C] activation seen channels first."""
    return torch.randn(B, N, C, generator=torch.Generator().manual_seed(seed)).movedim(-1, 1)


def matrices(B, C, seed):
    return torch.randn(B, C, C, generator=torch.Generator().manual_seed(seed))  # not symmetric


def targets_and_norms(B, C, seed):
    """Style targets (Gram matrices of another activation, over P) and their squared norms."""
    target = reference.gram(channels_last((B, C, 3, 5), seed)) / 15
    return target, squared_norms(target)


def assert_error_kernels_match_the_reference(x, seed):
    target, norms = targets_and_norms(x.shape[0], x.shape[1], seed)
    weights = torch.randn(x.shape[0], generator=torch.Generator().manual_seed(seed))
    error, residual = torch.ops.pyviz_fast.gram_error(x, target, norms)
    want_error, want_residual = reference.gram_error(x, target, norms)
    assert_close_to(residual, want_residual)
    assert_close_to(error, want_error)
    grad = torch.ops.pyviz_fast.gram_error_backward(x, residual, weights)
    assert_close_to(grad, reference.gram_error_backward(x, want_residual, weights))
    assert grad.stride() == x.stride() and grad._base is None, "laid out as x, and owning its memory"
    skewed = residual + torch.randn(residual.shape, generator=torch.Generator().manual_seed(seed + 2))
    assert_close_to(torch.ops.pyviz_fast.gram_error_backward(x, skewed, weights),
                    reference.gram_error_backward(x, skewed, weights))  # (R + R^T) of a residual not symmetric
    add = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed + 1)).to(x.dtype).as_strided(
        x.shape, x.stride())
    with_add = torch.ops.pyviz_fast.gram_error_backward(x, residual, weights, add)
    assert_close_to(with_add, reference.gram_error_backward(x, want_residual, weights, add))
    assert_close_to(with_add, grad.float() + add.float())
    assert with_add.stride() == x.stride()


def assert_close_to(got, want):
    """Products summed in float32 over up to a few hundred terms, in another order than torch's
    GEMM; a bfloat16 result within its rounding (one unit in the last place)."""
    tolerance = 1e-2 if got.dtype == torch.bfloat16 else 1e-5
    torch.testing.assert_close(got.float(), want.float(), rtol=tolerance, atol=tolerance * want.abs().max().item())


@pytest.mark.needs_ext
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_kernels_match_the_reference_on_channels_last_maps(shape, vector_isa):
    x, m = channels_last(shape, seed=1), matrices(shape[0], shape[1], seed=2)
    g = torch.ops.pyviz_fast.gram(x)
    assert_close_to(g, reference.gram(x))
    assert torch.equal(g, g.transpose(1, 2)), "the lower triangle is the upper one mirrored"
    out = torch.ops.pyviz_fast.gram_times(m, x)
    assert_close_to(out, reference.gram_times(m, x))
    assert out.stride() == x.stride() and out._base is None, "laid out as x, and owning its memory"
    assert_error_kernels_match_the_reference(x, seed=3)


@pytest.mark.parametrize("shape", SHAPES + [(2, 96, 1, 35), (3, 32, 64, 2), (2, 48, 50, 45), (1, 32, 70, 31),
                                   (1, 288, 5, 3), (1, 64, 63, 33)], ids=str)
def test_bf16_kernels_match_the_reference(shape, bf16_instruction_set):
    """bfloat16 rows: every channel count in blocks of 16 (a tile's product sums 16 or 32
    channels), position counts that leave part of a group's 32 (Gram) or 16 (product) rows empty,
    more positions than one staged block (2048 on tiles; 1,024 and fewer as channels grow for dot
    products: the sums of the blocks before the last wait in the output; on tiles 16 and 32
    channels keep their sums in tiles throughout)."""
    x, m = channels_last(shape, seed=31, dtype=torch.bfloat16), matrices(shape[0], shape[1], seed=32).bfloat16()
    g = torch.ops.pyviz_fast.gram(x)
    assert g.dtype == torch.bfloat16 and torch.equal(g, g.transpose(1, 2))
    assert_close_to(g, reference.gram(x))
    out = torch.ops.pyviz_fast.gram_times(m, x)
    assert out.dtype == torch.bfloat16 and out.stride() == x.stride()
    assert_close_to(out, reference.gram_times(m, x))
    assert_error_kernels_match_the_reference(x, seed=33)


@needs_bf16_kernels
def test_a_bf16_execution_s_forward_under_autocast_runs_the_kernel(monkeypatch):
    """A bf16 execution's forward runs under bf16 autocast: torch.bmm would take bf16 products
    there as the kernel does, so the kernel runs (a float32 activation there still goes to torch.bmm)."""
    x = channels_last((2, 32, 5, 4), seed=37, dtype=torch.bfloat16)
    target, norms = targets_and_norms(2, 32, seed=38)
    want = reference.gram_error(x, target, norms)
    monkeypatch.setattr(reference, "gram_error", lambda *_: pytest.fail("ran the reference"))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = ops.gram_error(x, target, norms, backend="fused")
    for a, b in zip(got, want):
        assert_close_to(a, b)


def test_bf16_kernels_keep_nan_and_round_to_nearest_even(bf16_instruction_set):
    x = channels_last((2, 16, 3, 3), seed=34, dtype=torch.bfloat16)
    x[1, 3, 2, 2] = float("nan")
    g = torch.ops.pyviz_fast.gram(x)
    assert not g[0].isnan().any() and g[1, 3].isnan().all()
    assert torch.equal(torch.ops.pyviz_fast.gram_times(torch.eye(16).expand(2, 16, 16).bfloat16(), x)[0], x[0])
    # a residual whose backward factor is the identity: the gradient is x + add, rounded as torch rounds
    weights = torch.tensor([0.5, 2.0])
    residual = torch.eye(16) * (9 / (4 * weights))[:, None, None]
    add = torch.rand(x.shape, generator=torch.Generator().manual_seed(36)).bfloat16() * 2 ** -6
    got = torch.ops.pyviz_fast.gram_error_backward(x, residual, weights, add.contiguous(memory_format=torch.channels_last))
    assert torch.equal(got[0], (x[0].float() + add[0].float()).bfloat16())


@pytest.mark.needs_ext
@pytest.mark.parametrize("B, N, C", [(1, 1, 16), (5, 17, 32), (2, 65, 192)])
def test_kernels_match_the_reference_on_tokens(B, N, C, vector_isa):
    x, m = tokens(B, N, C, seed=3), matrices(B, C, seed=4)
    assert_close_to(torch.ops.pyviz_fast.gram(x), reference.gram(x))
    assert_close_to(torch.ops.pyviz_fast.gram_times(m, x), reference.gram_times(m, x))
    assert_error_kernels_match_the_reference(x, seed=5)


@pytest.mark.needs_ext
@pytest.mark.parametrize("dtype", [torch.float32, pytest.param(torch.bfloat16, marks=needs_bf16_kernels)], ids=str)
def test_kernels_give_the_same_bits_on_any_number_of_threads(dtype, same_bits_on_one_and_two_threads):
    x, m = channels_last((9, 64, 11, 13), seed=5, dtype=dtype), matrices(9, 64, seed=6).to(dtype)
    target, norms = targets_and_norms(9, 64, seed=7)
    same_bits_on_one_and_two_threads(lambda: (
        torch.ops.pyviz_fast.gram(x), torch.ops.pyviz_fast.gram_times(m, x),
        *torch.ops.pyviz_fast.gram_error(x, target, norms), torch.ops.pyviz_fast.gram_error_backward(x, m.float(), norms)))


@pytest.mark.needs_ext
def test_the_fused_backend_runs_the_kernels_on_the_inputs_they_take(monkeypatch):
    target, norms = targets_and_norms(2, 32, seed=18)
    def refuse(*_):
        raise AssertionError("ran the reference")
    monkeypatch.setattr(reference, "gram", refuse)
    monkeypatch.setattr(reference, "gram_times", refuse)
    monkeypatch.setattr(reference, "gram_error", refuse)
    monkeypatch.setattr(reference, "gram_error_backward", refuse)
    x, m = channels_last((2, 32, 5, 4), seed=16), matrices(2, 32, seed=17)
    assert torch.equal(ops.gram(x, backend="fused"), torch.ops.pyviz_fast.gram(x))
    assert torch.equal(ops.gram_times(m, x, backend="fused"), torch.ops.pyviz_fast.gram_times(m, x))
    for got, want in zip(ops.gram_error(x, target, norms, backend="fused"),
                         torch.ops.pyviz_fast.gram_error(x, target, norms)):
        assert torch.equal(got, want)
    assert torch.equal(ops.gram_error_backward(x, m, norms, backend="fused"),
                       torch.ops.pyviz_fast.gram_error_backward(x, m, norms))


@needs_bf16_kernels
def test_a_bf16_style_layer_of_many_channels_runs_the_kernels(monkeypatch):
    """In bfloat16 a style loss's layer takes any channel count (torch's C x C passes cost more
    there than the products), and matches the reference; float32 keeps its limit (without AVX-512)."""
    x = channels_last((2, 512, 3, 2), seed=26, dtype=torch.bfloat16)
    target, norms = targets_and_norms(2, 512, seed=27)
    want_error, want_residual = reference.gram_error(x, target, norms)
    want_grad = reference.gram_error_backward(x, want_residual, norms)
    def refuse(*_):
        raise AssertionError("ran the reference")
    monkeypatch.setattr(reference, "gram_error", refuse)
    monkeypatch.setattr(reference, "gram_error_backward", refuse)
    error, residual = ops.gram_error(x, target, norms, backend="fused")
    assert_close_to(residual, want_residual)
    assert_close_to(error, want_error)
    grad = ops.gram_error_backward(x, residual, norms, backend="fused")
    assert grad.dtype == torch.bfloat16 and grad.stride() == x.stride()
    assert_close_to(grad, want_grad)
    monkeypatch.setattr(ops, "_runs_avx512", lambda: False)
    with pytest.raises(AssertionError, match="ran the reference"):
        ops.gram_error(x.float(), target, norms, backend="fused")


@pytest.mark.needs_ext
def test_a_float32_style_layer_of_many_channels_runs_the_kernels_where_the_cpu_has_avx512(monkeypatch):
    """Where the vector loops run AVX-512 a float32 style layer takes the kernels at any width too
    (AVX2's limits were measured on an EPYC); the plain products keep their limits."""
    x = channels_last((2, 512, 3, 2), seed=28)
    target, norms = targets_and_norms(2, 512, seed=29)
    want_error, want_residual = reference.gram_error(x, target, norms)
    want_grad = reference.gram_error_backward(x, want_residual, norms)
    want_gram = reference.gram(x)
    def refuse(*_):
        raise AssertionError("ran the reference")
    monkeypatch.setattr(ops, "_runs_avx512", lambda: True)
    monkeypatch.setattr(reference, "gram_error", refuse)
    monkeypatch.setattr(reference, "gram_error_backward", refuse)
    error, residual = ops.gram_error(x, target, norms, backend="fused")
    assert_close_to(residual, want_residual)
    assert_close_to(error, want_error)
    assert_close_to(ops.gram_error_backward(x, residual, norms, backend="fused"), want_grad)
    monkeypatch.setattr(reference, "gram", refuse)
    with pytest.raises(AssertionError, match="ran the reference"):
        ops.gram(x, backend="fused")


@pytest.mark.parametrize("backend", ["reference", pytest.param("fused", marks=pytest.mark.needs_ext)])
@pytest.mark.parametrize("case", ["nchw", "24 channels", "512 channels without AVX-512", "bfloat16 without its instruction sets",
                                  "float16", "autocast", "sliced"])
def test_inputs_the_kernel_does_not_take_run_the_reference_bit_for_bit(backend, case, monkeypatch):
    shape = {"24 channels": (2, 24, 4, 4), "512 channels without AVX-512": (2, 512, 2, 2)}.get(case, (2, 32, 5, 4))
    x = channels_last(shape, seed=7)
    monkeypatch.setattr(ops, "_runs_avx512", lambda: False)  # the float32 limits of AVX2 (an AVX-512 CPU has none)
    if case == "nchw":
        x = x.contiguous()
    elif case == "bfloat16 without its instruction sets":
        x = x.bfloat16()
        if _ext.has_ops():
            monkeypatch.setattr(_ext._C, "bf16_gram_available", lambda: False)
    elif case == "float16":
        x = x.half()
    elif case == "sliced":
        x = channels_last((2, 32, 5, 8), seed=7)[..., ::2]
    m = matrices(x.shape[0], x.shape[1], seed=8).to(x.dtype)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=case == "autocast"):
        assert torch.equal(ops.gram(x, backend=backend), reference.gram(x))
        assert torch.equal(ops.gram_times(m, x, backend=backend), reference.gram_times(m, x))
        norms = (torch.rand(x.shape[0]) + 0.5).to(x.dtype)
        loss = torch.float32  # the residual and error of a bf16 activation's loss (its products stay bf16)
        for got, want in zip(ops.gram_error(x, m, norms, backend=backend),
                             reference.gram_error(x, m.to(loss), norms.to(loss))):
            assert torch.equal(got, want)
        assert torch.equal(ops.gram_error_backward(x, m, norms, backend=backend),
                           reference.gram_error_backward(x, m.to(loss), norms.to(loss)))


@pytest.mark.parametrize("layout", ["channels_last", "nchw"])
def test_a_bf16_activations_style_layer_keeps_its_loss_in_float32(layout):
    """A bf16 execution's style layer: the Gram products in bf16 (no float32 copy of the
    activation either way), the residual and error in float32, close to the float32 loss of the
    same values; the gradient in bf16, laid out as the activation."""
    x = channels_last((3, 32, 6, 5), seed=21).bfloat16()
    x = x if layout == "channels_last" else x.contiguous()
    target, norms = targets_and_norms(3, 32, seed=22)
    error, residual = ops.gram_error(x, target, norms)
    want_error, want_residual = reference.gram_error(x.float(), target, norms)
    assert error.dtype == residual.dtype == torch.float32
    torch.testing.assert_close(residual, want_residual, rtol=0, atol=0.02 * want_residual.abs().max().item())
    torch.testing.assert_close(error, want_error, rtol=0.02, atol=0)
    weights = torch.rand(3) + 0.5
    grad = ops.gram_error_backward(x, residual, weights)
    want = reference.gram_error_backward(x.float(), want_residual, weights)
    assert grad.dtype == torch.bfloat16 and grad.stride() == x.stride()
    torch.testing.assert_close(grad.float(), want, rtol=0, atol=0.03 * want.abs().max().item())


@pytest.mark.parametrize("backend", ["reference", pytest.param("fused", marks=pytest.mark.needs_ext)])
def test_bad_shapes_are_named(backend):
    x = channels_last((2, 16, 3, 3), seed=9)
    with pytest.raises(ValueError, match=r"m must have shape \[B, C, C\] = \[2, 16, 16\] .* got \[2, 16, 15\]"):
        ops.gram_times(torch.zeros(2, 16, 15), x, backend=backend)
    with pytest.raises(ValueError, match=r"non-empty \[B, C, \*positions\] activation, got shape \[0, 16, 3, 3\]"):
        ops.gram(x[:0], backend=backend)
    target, norms = targets_and_norms(2, 16, seed=10)
    with pytest.raises(ValueError, match=r"target must have shape \[B, C, C\] = \[2, 16, 16\] .* got \[1, 16, 16\]"):
        ops.gram_error(x, target[:1], norms, backend=backend)
    with pytest.raises(ValueError, match=r"norms must have shape \[B\] = \[2\] .* got \[2, 1\]"):
        ops.gram_error(x, target, norms[:, None], backend=backend)
    with pytest.raises(ValueError, match=r"weights must have shape \[B\] = \[2\] .* got \[3\]"):
        ops.gram_error_backward(x, target, torch.ones(3), backend=backend)
    with pytest.raises(ValueError, match=r"add must have x's shape \[2, 16, 3, 3\], got \[2, 16, 3\]"):
        ops.gram_error_backward(x, target, norms, add=x[..., 0], backend=backend)


@pytest.mark.parametrize("backend", ["reference", pytest.param("fused", marks=pytest.mark.needs_ext)])
def test_a_gradient_to_add_laid_out_otherwise_is_added_after_the_product(backend):
    x = channels_last((2, 32, 5, 4), seed=23)
    target, norms = targets_and_norms(2, 32, seed=24)
    _, residual = reference.gram_error(x, target, norms)
    add = torch.randn(x.shape, generator=torch.Generator().manual_seed(25))  # contiguous: not x's layout
    got = ops.gram_error_backward(x, residual, norms, add=add, backend=backend)
    assert_close_to(got, reference.gram_error_backward(x, residual, norms) + add)
    assert got.stride() == x.stride()


@pytest.mark.needs_ext
def test_kernels_check_their_arguments_when_called_directly():
    with pytest.raises(RuntimeError, match="channels innermost and dense"):
        torch.ops.pyviz_fast.gram(torch.rand(2, 16, 3, 3))
    with pytest.raises(RuntimeError, match="multiple of 16 channels, got 24"):
        torch.ops.pyviz_fast.gram(channels_last((2, 24, 3, 3), seed=10))
    with pytest.raises(RuntimeError, match=r"m must have x's dtype Float, got Double"):
        torch.ops.pyviz_fast.gram_times(torch.zeros(2, 16, 16, dtype=torch.float64), channels_last((2, 16, 3, 3), 11))
    with pytest.raises(RuntimeError, match=r"m must be float32 \[B, C, C\] = \[2, 16, 16\]"):
        torch.ops.pyviz_fast.gram_times(torch.zeros(2, 16, 8), channels_last((2, 16, 3, 3), 11))
    with pytest.raises(RuntimeError, match=r"x must be float32 \(or bfloat16 on a CPU with AMX or AVX512_BF16\), "
                                           "got Half"):
        torch.ops.pyviz_fast.gram(channels_last((2, 16, 3, 3), 11).half())
    with pytest.raises(ValueError, match=r"instruction set 'avx9' is not one this CPU runs the bfloat16 Gram products "
                                         r"with; it runs \["):
        _ext._C.use_bf16_gram_instruction_set("avx9")
    with pytest.raises(RuntimeError, match=r"norms must be float32 \[B\] = \[2\]"):
        torch.ops.pyviz_fast.gram_error(channels_last((2, 16, 3, 3), 11), torch.zeros(2, 16, 16), torch.ones(3))
    with pytest.raises(RuntimeError, match=r"residual must be float32 \[B, C, C\]"):
        torch.ops.pyviz_fast.gram_error_backward(channels_last((2, 16, 3, 3), 11), torch.zeros(2, 8, 8), torch.ones(2))
    with pytest.raises(RuntimeError, match=r"add must have x's dtype, shape and strides"):
        torch.ops.pyviz_fast.gram_error_backward(channels_last((2, 16, 3, 3), 11), torch.zeros(2, 16, 16),
                                                 torch.ones(2), torch.zeros(2, 16, 3, 3))


@pytest.mark.needs_ext
def test_opcheck():
    x, m = channels_last((2, 32, 3, 5), seed=12), matrices(2, 32, seed=13)
    torch.library.opcheck(torch.ops.pyviz_fast.gram.default, (x,))
    torch.library.opcheck(torch.ops.pyviz_fast.gram_times.default, (m, x))
    target, norms = targets_and_norms(2, 32, seed=14)
    torch.library.opcheck(torch.ops.pyviz_fast.gram_error.default, (x, target, norms))
    torch.library.opcheck(torch.ops.pyviz_fast.gram_error_backward.default, (x, m, norms))
    torch.library.opcheck(torch.ops.pyviz_fast.gram_error_backward.default, (x, m, norms, torch.randn_like(x)))


@pytest.mark.needs_ext
def test_the_style_loss_and_its_gradient_agree_across_backends():
    """A style layer's Gram error through the kernels equals the reference's within rounding."""
    act = channels_last((4, 32, 9, 7), seed=14)
    activation = Activation((32, 9, 7), "nchw")
    target = gram(channels_last((4, 32, 9, 7), seed=15), activation, "reference")
    results = []
    for backend in ("fused", "reference"):
        leaf = act.clone().requires_grad_(True)
        _, loss = gram_error_tap(activation, target, squared_norms(target), backend)(leaf)
        grad, = torch.autograd.grad((loss * torch.tensor([1.0, -2.0, 0.5, 3.0])).sum(), leaf)
        results.append((loss, grad))
    (loss, grad), (want_loss, want_grad) = results
    assert_close_to(loss, want_loss)
    assert_close_to(grad, want_grad)
    assert grad.stride() == act.stride()
