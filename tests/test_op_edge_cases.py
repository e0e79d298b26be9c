"""Edge cases that every backend (reference, fused CPU, CUDA emulation, CUDA) treats alike:
sigmas that are huge (the window is capped: a box blur), tiny (the identity, never NaN) or not
finite (ValueError naming the image on the CPU backends), and a scale plus eps without a finite
reciprocal (0, or below ~2.9e-39 with eps = 0): a step keeps and flags the image, normalize_grad
divides by it."""
import math

import pytest
import torch

from pyviz_fast import ops
from test_ops import assert_step_close, fused_case, run


@pytest.mark.parametrize("sigma", [1e30, 3.4e38])
def test_a_huge_sigma_is_a_box_blur(kernel_backend, sigma):
    x = torch.randn(2, 3, 9, 13, generator=torch.Generator().manual_seed(1))
    sigmas = torch.tensor([sigma, sigma])
    got = run("gaussian_blur", kernel_backend, x, sigmas)
    box = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(x, (8, 8, 0, 0), mode="reflect"), (1, 17), stride=1)
    box = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(box, (0, 0, 8, 8), mode="reflect"), (17, 1), stride=1)
    torch.testing.assert_close(got, box, rtol=1e-5, atol=1e-5)  # radius capped at min(H, W) - 1 = 8
    torch.testing.assert_close(got, ops.gaussian_blur(x, sigmas, backend="reference"), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sigma", [1e-30, 1e-45, 1e-3])
def test_a_tiny_sigma_is_the_identity(kernel_backend, sigma):
    x, grad, shifts, next_shifts, _ = fused_case((2, 3, 7, 8), torch.float32, seed=3)
    sigmas = torch.full((2,), sigma)
    assert torch.equal(run("gaussian_blur", kernel_backend, x, sigmas), x)
    got = run("fused_ascent_step", kernel_backend, x, grad, shifts, next_shifts, sigmas, lr=0.1)
    want = ops.fused_ascent_step(x, grad, shifts, next_shifts, 0.0, lr=0.1, backend="reference")
    assert not got[2].any()
    assert_step_close(got, want, torch.float32)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("op", ["gaussian_blur", "fused_ascent_step"])
def test_a_non_finite_sigma_is_a_value_error_naming_the_image(kernel_backend, op, bad):
    if kernel_backend.device.type == "cuda":
        pytest.skip("on CUDA a non-finite sigma flags the image instead (test_cuda_flags_a_non_finite_sigma)")
    x, grad, shifts, next_shifts, _ = fused_case((3, 2, 6, 5), torch.float32, seed=4)
    sigma = torch.tensor([1.0, 2.0, bad])
    args = (x, sigma) if op == "gaussian_blur" else (x, grad, shifts, next_shifts, sigma)
    for backend in (kernel_backend.name, "reference"):
        with pytest.raises(ValueError, match=r"sigma must be finite, got .* for image 2"):
            getattr(ops, op)(*args, backend=backend)


@pytest.mark.needs_cuda
def test_cuda_flags_a_non_finite_sigma():
    x, grad, shifts, next_shifts, _ = (t.cuda() for t in fused_case((3, 2, 6, 5), torch.float32, seed=4))
    sigma = torch.tensor([1.0, math.nan, 2.0], device="cuda")
    image, _, nonfinite = ops.fused_ascent_step(x, grad, shifts, next_shifts, sigma, backend="fused")
    assert nonfinite.tolist() == [False, True, False]
    assert torch.equal(image[1], x[1])


# |g| of 1e-40: every scale is below 2.9e-39, so 1 / scale overflows and g * (1 / scale) would be
# inf, or NaN where g is 0 (the fused CPU step once wrote such NaN pixels without a flag).
TINY_GRADIENTS = [0.0, 1e-40]


@pytest.mark.parametrize("norm", ["rms", "mean_abs", "std", "max_abs"])
@pytest.mark.parametrize("magnitude", TINY_GRADIENTS)
def test_a_gradient_whose_scale_has_no_reciprocal_keeps_the_image_and_flags_it(kernel_backend, norm, magnitude):
    x, grad, shifts, next_shifts, sigma = fused_case((3, 2, 6, 7), torch.float32, seed=5)
    grad[1] *= magnitude
    grad[1, 0, 0, :3] = 0.0
    options = dict(norm=norm, eps=0.0, lr=0.1, decay=0.2)
    got = run("fused_ascent_step", kernel_backend, x, grad, shifts, next_shifts, sigma, **options)
    want = ops.fused_ascent_step(x, grad, shifts, next_shifts, sigma, backend="reference", **options)
    assert got[2].tolist() == want.nonfinite.tolist() == [False, True, False]
    assert torch.equal(got[0][1], x[1])
    assert not got[0].isnan().any()
    assert_step_close(got, tuple(want), torch.float32)


@pytest.mark.parametrize("norm", ["mean_abs", "max_abs"])
@pytest.mark.parametrize("magnitude", TINY_GRADIENTS)
def test_normalize_divides_by_a_scale_without_a_finite_reciprocal(kernel_backend, norm, magnitude):
    grad = fused_case((3, 2, 6, 7), torch.float32, seed=6)[1]
    grad[1] *= magnitude
    grad[1, 0, 0, :3] = 0.0
    got = run("normalize_grad", kernel_backend, grad, norm, 0.0)
    want = ops.normalize_grad(grad, norm, 0.0, backend="reference")
    assert got[1].isfinite().all() == (magnitude > 0)  # g / 0 is inf or NaN; g / 1e-40 is not
    torch.testing.assert_close(got, want, equal_nan=True)
