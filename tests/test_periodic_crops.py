"""ops.periodic_crops (MaCo's views): the CPU kernel and its backward against the reference on
random boxes, odd and tiny sizes, B=1 and large batches, every storage dtype and layout; the
reference against grid_sample of the image tiled 3 x 3 (an independent oracle of the contract);
the backward as the forward's adjoint; and the errors."""
import pytest
import torch
import torch.nn.functional as F

from pyviz_fast import ops
from test_ops import DTYPES, LAYOUTS, TOLERANCES, make_image

SHAPES = [(2, 3, 17, 23), (1, 1, 1, 1), (1, 2, 1, 5), (3, 2, 3, 2), (64, 3, 8, 7)]  # [B, C, H, W]


def make_boxes(B, k, seed, reach=3.0):
    """Sizes in [0.05, 1.05] (a crop may be wider than the image) and centres in [-reach/3, 2 reach/3]."""
    gen = torch.Generator().manual_seed(seed)
    size = torch.rand(B, k, generator=gen) + 0.05
    return torch.cat([size[..., None], torch.rand(B, k, 2, generator=gen) * reach - reach / 3], -1)


def crops_and_grad(image, boxes, noise, grad, backend):
    leaf = image.detach().clone().requires_grad_(True)
    crops = ops.periodic_crops(leaf, boxes, noise, 0.3, backend=backend)
    crops.backward(grad)
    return crops.detach(), leaf.grad


@pytest.mark.needs_ext
@pytest.mark.parametrize("with_noise", [False, True], ids=["clean", "noise"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_kernel_and_backward_match_reference(shape, dtype, layout, with_noise):
    B, C, H, W = shape
    k = 3
    image = make_image(shape, dtype, layout, seed=1)
    boxes = make_boxes(B, k, seed=2)
    noise = make_image((B * k, C, H, W), dtype, layout, seed=3, normal=True) if with_noise else None
    grad = make_image((B * k, C, H, W), dtype, layout, seed=4, normal=True)
    got = crops_and_grad(image, boxes, noise, grad, "fused")
    want = crops_and_grad(image, boxes, noise, grad, "reference")
    torch.testing.assert_close(got[0], want[0], **TOLERANCES[dtype])
    # The backward sums up to k * 4 weighted terms per pixel, in another order than autograd's.
    tolerance = {name: 4 * value for name, value in TOLERANCES[dtype].items()}
    torch.testing.assert_close(got[1], want[1], **tolerance)
    assert got[1].dtype == dtype and got[1].shape == image.shape


def tiled_oracle(image, boxes):
    """The crops from grid_sample over the image tiled 3 x 3 (its periodic continuation), on the
    grid that affine_grid makes of each box: exact for centres in [0, 1] and sizes <= 1."""
    B, C, H, W = image.shape
    k = boxes.shape[1]
    size, cy, cx = boxes.reshape(-1, 3).unbind(-1)
    zero = torch.zeros_like(size)
    theta = torch.stack([torch.stack([size, zero, 2 * cx - 1], 1), torch.stack([zero, size, 2 * cy - 1], 1)], 1)
    grid = F.affine_grid(theta, [B * k, C, H, W], align_corners=False) / 3
    tiled = image.float().tile(1, 1, 3, 3).repeat_interleave(k, 0)
    return F.grid_sample(tiled, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


@pytest.mark.parametrize("backend", ["reference", pytest.param("fused", marks=pytest.mark.needs_ext)])
@pytest.mark.parametrize("shape", [(2, 3, 16, 16), (3, 1, 15, 21), (1, 2, 1, 4)])
def test_crops_are_bilinear_samples_of_the_periodic_image(backend, shape):
    image = make_image(shape, torch.float32, "contiguous", seed=5)
    boxes = make_boxes(shape[0], 5, seed=6, reach=1.0)
    boxes[..., 0].clamp_(max=1.0)
    boxes[0, 0] = torch.tensor([1.0, 0.0, 1.0])  # the whole image, centred on a corner: it wraps both ways
    got = ops.periodic_crops(image, boxes, backend=backend)
    torch.testing.assert_close(got, tiled_oracle(image, boxes), atol=2e-5, rtol=0)


@pytest.mark.parametrize("backend", ["reference", pytest.param("fused", marks=pytest.mark.needs_ext)])
def test_backward_is_the_adjoint_of_the_crops(backend):
    """<crops(x), g> = <x, backward(g)> for every x and g: the backward of a linear map is its transpose."""
    shape, k = (3, 2, 13, 11), 4
    image = make_image(shape, torch.float32, "contiguous", seed=7, normal=True)
    boxes = make_boxes(3, k, seed=8)
    grad = make_image((3 * k, 2, 13, 11), torch.float32, "contiguous", seed=9, normal=True)
    crops, image_grad = crops_and_grad(image, boxes, None, grad, backend)
    torch.testing.assert_close((crops.double() * grad).sum(), (image.double() * image_grad).sum(), rtol=1e-5, atol=0)


@pytest.mark.needs_ext
def test_noise_is_added_scaled():
    image = make_image((2, 3, 9, 9), torch.float32, "contiguous", seed=10)
    boxes = make_boxes(2, 2, seed=11)
    noise = torch.randn(4, 3, 9, 9, generator=torch.Generator().manual_seed(12))
    clean = ops.periodic_crops(image, boxes, backend="fused")
    torch.testing.assert_close(ops.periodic_crops(image, boxes, noise, 0.25, backend="fused"), clean + 0.25 * noise)


@pytest.mark.needs_ext
def test_kernel_does_not_depend_on_the_thread_count(same_bits_on_one_and_two_threads):
    image = make_image((5, 3, 31, 29), torch.float32, "contiguous", seed=13)
    boxes = make_boxes(5, 4, seed=14)
    grad = make_image((20, 3, 31, 29), torch.float32, "channels_last", seed=15, normal=True)
    same_bits_on_one_and_two_threads(lambda: crops_and_grad(image, boxes, None, grad, "fused"))


@pytest.mark.needs_ext
def test_opcheck():
    image = make_image((2, 3, 6, 5), torch.float32, "contiguous", seed=16)
    noise = make_image((6, 3, 6, 5), torch.float32, "contiguous", seed=17)
    torch.library.opcheck(torch.ops.pyviz_fast.periodic_crops.default, (image, make_boxes(2, 3, seed=18), noise, 0.5))


@pytest.mark.parametrize("backend", ["reference", pytest.param("fused", marks=pytest.mark.needs_ext)])
@pytest.mark.parametrize("boxes, message", [
    (torch.ones(2, 3), r"boxes must have shape \[B, k, 3\] = \[2, k >= 1, 3\]"),
    (torch.ones(3, 1, 3), r"boxes must have shape \[B, k, 3\] = \[2, k >= 1, 3\]"),
    (torch.tensor([[[0.0, 0.5, 0.5]], [[1.0, 0.5, 0.5]]]), r"sizes in \(0, 1e\+06\]; box \[0, 0\] is \[0.0, 0.5, 0.5\]"),
    (torch.tensor([[[1.0, 0.5, 0.5]], [[1.0, float("nan"), 0.5]]]), r"centres finite .* box \[1, 0\] is \[1.0, nan"),
    (torch.tensor([[[1.0, 0.5, 2e6]], [[1.0, 0.5, 0.5]]]), r"within \+-1e\+06; box \[0, 0\]"),
])
def test_bad_boxes_are_named(backend, boxes, message):
    with pytest.raises(ValueError, match=message):
        ops.periodic_crops(torch.rand(2, 3, 8, 8), boxes, backend=backend)


@pytest.mark.parametrize("backend", ["reference", pytest.param("fused", marks=pytest.mark.needs_ext)])
def test_bad_noise_and_boxes_off_the_cpu_are_named(backend):
    image, boxes = torch.rand(2, 3, 8, 8), make_boxes(2, 2, seed=19)
    with pytest.raises(ValueError, match=r"noise must have shape \[B \* k, C, H, W\] = \[4, 3, 8, 8\], got \[2, 3, 8, 8\]"):
        ops.periodic_crops(image, boxes, torch.rand(2, 3, 8, 8), backend=backend)
    with pytest.raises(ValueError, match="boxes must be on the CPU"):
        ops.periodic_crops(image, boxes.to("meta"), backend=backend)
    with pytest.raises(TypeError, match="boxes must be floating point"):
        ops.periodic_crops(image, boxes.long(), backend=backend)


@pytest.mark.needs_ext
def test_kernel_checks_its_arguments_when_called_directly():
    image = torch.rand(2, 3, 8, 8)
    with pytest.raises(ValueError, match="crop sizes must be in"):
        torch.ops.pyviz_fast.periodic_crops(image, torch.zeros(2, 1, 3), None, 0.0)
    with pytest.raises(RuntimeError, match="grad must hold one row per box"):
        torch.ops.pyviz_fast.periodic_crops_backward(torch.rand(3, 3, 8, 8), make_boxes(2, 2, seed=20))
