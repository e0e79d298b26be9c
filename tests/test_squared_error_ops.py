"""ops.squared_error and its backward (a content loss's layer, and accentuation's): the CPU kernel
against the reference on random activations in every dense layout (NCHW, channels_last, tokens),
odd and tiny sizes, images longer than the kernel's runs, B=1 and large batches, float32 and
bfloat16, NaN items; on every vector instruction set of the CPU and any number of threads; every
input the kernel does not take runs the reference bit for bit; and the errors for bad input."""
import pytest
import torch

from pyviz_fast import ops
from pyviz_fast.ops import reference

# [B, C, H, W]: tiny, odd, one image, a large batch, and images of 2,048+ elements (the kernel
# widens bfloat16 in runs of 2,048)
SHAPES = [(1, 1, 1, 1), (3, 5, 7, 3), (1, 64, 9, 11), (257, 3, 2, 5), (2, 16, 40, 41)]
LAYOUTS = ["nchw", "channels_last", "tokens"]


def activation(shape, layout, seed, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    if layout == "tokens":  # [B, N, C] with N = H * W
        return torch.randn(shape[0], shape[2] * shape[3], shape[1], generator=gen).to(dtype)
    x = torch.randn(shape, generator=gen).to(dtype)
    return x.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else x


def target_like(x, seed):
    """A float32 target laid out as x."""
    t = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    return torch.empty_like(x, dtype=torch.float32).copy_(t)


def per_image(B, seed):
    return torch.rand(B, generator=torch.Generator().manual_seed(seed)) + 0.5


def assert_close_to(got, want):
    """Sums over up to 30,000 squares in double (kernel) or float32 (torch); a bfloat16 gradient
    within its rounding."""
    tolerance = 1e-2 if got.dtype == torch.bfloat16 else 1e-5
    torch.testing.assert_close(got.float(), want.float(), rtol=tolerance, atol=tolerance * want.abs().max().item())


@pytest.mark.needs_ext
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_the_kernels_match_the_reference(shape, layout, dtype, vector_isa):
    x = activation(shape, layout, seed=1, dtype=dtype)
    target, norms, weights = target_like(x, seed=2), per_image(x.shape[0], 3), torch.randn(x.shape[0])
    assert_close_to(torch.ops.pyviz_fast.squared_error(x, target, norms), reference.squared_error(x, target, norms))
    grad = torch.ops.pyviz_fast.squared_error_backward(x, target, weights)
    assert_close_to(grad, reference.squared_error_backward(x, target, weights))
    assert grad.dtype == x.dtype and grad.stride() == x.stride(), "in x's dtype, laid out as x"
    add = torch.empty_like(x).copy_(torch.randn(x.shape, generator=torch.Generator().manual_seed(4)))
    with_add = torch.ops.pyviz_fast.squared_error_backward(x, target, weights, add)
    assert_close_to(with_add, reference.squared_error_backward(x, target, weights, add))
    assert with_add.stride() == x.stride()


@pytest.mark.needs_ext
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_a_nan_stays_in_its_own_image(dtype):
    x = activation((3, 4, 5, 6), "channels_last", seed=5, dtype=dtype)
    x[1, 2, 3, 4] = float("nan")
    target, norms, weights = target_like(x, seed=6), per_image(3, 7), torch.ones(3)
    error = torch.ops.pyviz_fast.squared_error(x, target, norms)
    assert error.isnan().tolist() == [False, True, False]
    grad = torch.ops.pyviz_fast.squared_error_backward(x, target, weights)
    assert grad.isnan().flatten(1).any(1).tolist() == [False, True, False]
    assert grad[1].isnan().sum() == 1


@pytest.mark.needs_ext
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_the_kernels_give_the_same_bits_on_any_number_of_threads(dtype, same_bits_on_one_and_two_threads):
    x = activation((9, 32, 17, 19), "channels_last", seed=8, dtype=dtype)
    target, norms, weights = target_like(x, seed=9), per_image(9, 10), torch.randn(9)
    add = torch.randn_like(x)
    same_bits_on_one_and_two_threads(lambda: (torch.ops.pyviz_fast.squared_error(x, target, norms),
                                              torch.ops.pyviz_fast.squared_error_backward(x, target, weights, add)))


@pytest.mark.needs_ext
def test_the_fused_backend_runs_the_kernels_on_the_inputs_they_take(monkeypatch):
    def refuse(*_):
        raise AssertionError("ran the reference")
    monkeypatch.setattr(reference, "squared_error", refuse)
    monkeypatch.setattr(reference, "squared_error_backward", refuse)
    for layout in LAYOUTS:
        x = activation((2, 8, 5, 4), layout, seed=11)
        target, norms = target_like(x, seed=12), per_image(2, 13)
        assert torch.equal(ops.squared_error(x, target, norms, backend="fused"),
                           torch.ops.pyviz_fast.squared_error(x, target, norms))
        assert torch.equal(ops.squared_error_backward(x, target, norms, add=x, backend="fused"),
                           torch.ops.pyviz_fast.squared_error_backward(x, target, norms, x))


@pytest.mark.parametrize("backend", ["reference", pytest.param("fused", marks=pytest.mark.needs_ext)])
@pytest.mark.parametrize("case", ["target laid out otherwise", "bfloat16 target", "float16", "float64", "sliced"])
def test_inputs_the_kernel_does_not_take_run_the_reference_bit_for_bit(backend, case):
    x = activation((2, 8, 5, 4), "channels_last", seed=14)
    target = target_like(x, seed=15)
    if case == "target laid out otherwise":
        target = target.contiguous()
    elif case == "bfloat16 target":
        target = target.bfloat16()
    elif case in ("float16", "float64"):
        x = x.to(torch.float16 if case == "float16" else torch.float64)
    elif case == "sliced":
        x, target = activation((2, 8, 5, 8), "nchw", seed=14)[..., ::2], target.contiguous()
    norms, weights = per_image(2, 16), torch.randn(2)
    assert torch.equal(ops.squared_error(x, target, norms, backend=backend), reference.squared_error(x, target, norms))
    assert torch.equal(ops.squared_error_backward(x, target, weights, backend=backend),
                       reference.squared_error_backward(x, target, weights))


@pytest.mark.parametrize("backend", ["reference", pytest.param("fused", marks=pytest.mark.needs_ext)])
def test_a_gradient_to_add_laid_out_otherwise_is_added_after(backend):
    x = activation((2, 8, 5, 4), "channels_last", seed=17)
    target, weights = target_like(x, seed=18), torch.randn(2)
    add = torch.randn(x.shape, generator=torch.Generator().manual_seed(19))  # contiguous: not x's layout
    got = ops.squared_error_backward(x, target, weights, add=add, backend=backend)
    assert_close_to(got, reference.squared_error_backward(x, target, weights) + add)
    assert got.stride() == x.stride()


@pytest.mark.parametrize("backend", ["reference", pytest.param("fused", marks=pytest.mark.needs_ext)])
def test_bad_shapes_are_named(backend):
    x = activation((2, 8, 3, 3), "channels_last", seed=20)
    target = target_like(x, seed=21)
    with pytest.raises(ValueError, match=r"target must have x's shape \[2, 8, 3, 3\], got \[2, 8, 3\]"):
        ops.squared_error(x, target[..., 0], torch.ones(2), backend=backend)
    with pytest.raises(ValueError, match=r"norms must have shape \[B\] = \[2\] .* got \[3\]"):
        ops.squared_error(x, target, torch.ones(3), backend=backend)
    with pytest.raises(ValueError, match=r"weights must have shape \[B\] = \[2\] .* got \[2, 1\]"):
        ops.squared_error_backward(x, target, torch.ones(2, 1), backend=backend)
    with pytest.raises(ValueError, match=r"add must have x's shape \[2, 8, 3, 3\], got \[1, 8, 3, 3\]"):
        ops.squared_error_backward(x, target, torch.ones(2), add=x[:1], backend=backend)
    with pytest.raises(ValueError, match=r"non-empty \[B, \.\.\.\] activation, got shape \[0, 8, 3, 3\]"):
        ops.squared_error(x[:0], target[:0], torch.ones(0), backend=backend)


@pytest.mark.needs_ext
def test_the_kernels_check_their_arguments_when_called_directly():
    x = activation((2, 8, 3, 3), "channels_last", seed=22)
    target = target_like(x, seed=23)
    with pytest.raises(RuntimeError, match="x must be float32 or bfloat16, got Half"):
        torch.ops.pyviz_fast.squared_error(x.half(), target, torch.ones(2))
    with pytest.raises(RuntimeError, match="batch dimension outermost"):
        torch.ops.pyviz_fast.squared_error(x.transpose(0, 1), target.transpose(0, 1), torch.ones(8))
    with pytest.raises(RuntimeError, match=r"target must be Float with x's shape and strides"):
        torch.ops.pyviz_fast.squared_error(x, target.contiguous(), torch.ones(2))
    with pytest.raises(RuntimeError, match=r"norms must be float32 \[B\] = \[2\]"):
        torch.ops.pyviz_fast.squared_error(x, target, torch.ones(3))
    with pytest.raises(RuntimeError, match=r"add must be Float with x's shape and strides"):
        torch.ops.pyviz_fast.squared_error_backward(x, target, torch.ones(2), x.contiguous())


@pytest.mark.needs_ext
def test_opcheck():
    for x in (activation((2, 8, 3, 5), "channels_last", seed=24), activation((2, 8, 3, 5), "tokens", seed=24)):
        target, norms = target_like(x, seed=25), per_image(2, 26)
        torch.library.opcheck(torch.ops.pyviz_fast.squared_error.default, (x, target, norms))
        torch.library.opcheck(torch.ops.pyviz_fast.squared_error_backward.default, (x, target, norms))
        torch.library.opcheck(torch.ops.pyviz_fast.squared_error_backward.default, (x, target, norms, x.clone()))
