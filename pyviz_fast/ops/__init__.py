"""The ops between two forward/backward passes, each on three backends (fused C++/CUDA kernels,
the CUDA kernels' CPU emulation, and the pure-PyTorch reference) with one contract.

All take images as [B, C, H, W] float32/float16/bfloat16 tensors in any memory layout,
accumulate in float32 and return the storage dtype.

>>> x = torch.rand(4, 3, 64, 64)
>>> ops.gaussian_blur(x, sigma=1.5).shape
torch.Size([4, 3, 64, 64])
"""
import functools
import math
from typing import NamedTuple

import torch

from pyviz_fast import _ext
from pyviz_fast.backend import resolve_backend
from pyviz_fast.ops import _validate, reference
from pyviz_fast.ops.reference import NORM_MODES  # noqa: F401  (re-exported: the valid norm modes)

if _ext.has_ops():
    from pyviz_fast.ops import _autograd, _fake  # noqa: F401  (backward formulas; meta kernels for compile, opcheck)


class StepResult(NamedTuple):
    image: torch.Tensor  # the updated image, [B, C, H, W], dtype of x
    next_input: torch.Tensor  # the updated image jittered by next_shifts: the next forward's input
    nonfinite: torch.Tensor  # bool [B]: the item's pixels or gradient were not finite (see fused_ascent_step)


def _kernel(name, backend, device, cpu_only=False):
    """The implementation of op ``name`` for the resolved backend. An op with CPU kernels only
    (``cpu_only``) runs the reference elsewhere, also under the CUDA emulation: it emulates what
    the GPU would run."""
    resolved = resolve_backend(backend, device)
    if cpu_only and not (resolved == "fused" and torch.device(device).type == "cpu"):
        resolved = "reference"
    if resolved == "reference":
        return getattr(reference, name)
    prefix = "emulated_" if resolved == "emulation" else ""
    return getattr(torch.ops.pyviz_fast, prefix + name)


def jitter(x, shifts, *, backend=None):
    """Roll each image by its own (dy, dx): ``out[b,c,i,j] = x[b,c,(i-dy_b)%H,(j-dx_b)%W]``.

    shifts: int [B, 2] (tensor or nested list). Negated shifts undo it.
    """
    _validate.image(x)
    return _kernel("jitter", backend, x.device)(x, _validate.shifts(shifts, x))


def gaussian_blur(x, sigma, *, backend=None):
    """Separable Gaussian blur, reflect borders, radius ceil(3 sigma) capped at min(H, W) - 1.

    sigma: a number or a float tensor [B] (one per image); sigma <= 0 is the identity.
    """
    _validate.image(x)
    return _kernel("gaussian_blur", backend, x.device)(x, _validate.sigma(sigma, x))


def normalize_grad(g, mode="rms", eps=1e-8, *, backend=None):
    """Divide each image's gradient by its own scale: rms, mean_abs, std (population), max_abs or none."""
    _validate.image(g, "g")
    mode = _validate.norm_mode(mode)
    eps = _validate.number(eps, "eps", low=0.0)
    return _kernel("normalize_grad", backend, g.device)(g, mode, eps)


def clip_grad(g, clip, *, backend=None):
    """Clamp every element to [-clip, clip]; clip = inf disables it."""
    _validate.image(g, "g")
    clip = _validate.number(clip, "clip", low=0.0, allow_inf=True)
    return _kernel("clip_grad", backend, g.device)(g, clip)


def fused_ascent_step(x, grad, shifts, next_shifts, sigma=0.0, *, norm="mean_abs", eps=1e-8,
                      clip=math.inf, lr=1.0, decay=0.0, center=0.5, lo=0.0, hi=1.0, backend=None):
    """One regularized gradient-ascent step for a batch of images, in as few passes as possible.

    ``grad`` is the gradient of the objective with respect to the *jittered* input (x rolled by
    ``shifts``). Per image: un-jitter the gradient, blur it (sigma), normalize it (norm, eps),
    clip it, then ``x + lr*g``, decay toward ``center`` by ``decay``, clamp to [lo, hi]; finally
    roll the new image by ``next_shifts`` to give the next forward pass its input.

    Flags (``nonfinite``): an image whose blurred gradient or scale is not finite, or whose scale
    plus eps has no finite reciprocal (0, or below about 2.9e-39 with eps = 0), keeps its pixels
    and is flagged; an image that comes in with non-finite pixels (NaN, inf) is flagged too (the
    step runs as usual: NaN stays NaN, inf is clamped), so a broken input is never silent. The
    pixel check sums each image in float32, so finite pixels whose sum overflows float32
    (|pixels| near 1e38 / pixel count) count as non-finite as well.

    Returns StepResult(image, next_input, nonfinite). A loop of steps with the same settings:
    ``AscentStep``.
    """
    step = AscentStep(norm=norm, eps=eps, clip=clip, decay=decay, center=center, lo=lo, hi=hi, backend=backend)
    return step(x, grad, shifts, next_shifts, sigma, lr)


class AscentStep:
    """``fused_ascent_step`` with its settings checked once, for a loop that steps many times:
    ``step(x, grad, shifts, next_shifts, sigma, lr)`` then checks the tensors and lr only. On a
    small model a step's Python is a tenth of its time, and after a forward and backward that
    Python runs with cold caches.

    ``check_pixels=False`` skips the pixel check (a pass over x): for a caller that knows x is
    finite, e.g. a render's steps after its first, whose x is the previous step's clamped output.

    >>> step = AscentStep(norm="mean_abs", clip=2.0)
    >>> image, next_input, nonfinite = step(x, grad, shifts, next_shifts, sigma=1.0, lr=0.05)
    """

    def __init__(self, *, norm="mean_abs", eps=1e-8, clip=math.inf, decay=0.0, center=0.5, lo=0.0, hi=1.0,
                 backend=None):
        self.settings = (_validate.norm_mode(norm), _validate.number(eps, "eps", low=0.0),
                         _validate.number(clip, "clip", low=0.0, allow_inf=True))
        self.after_lr = (_validate.number(decay, "decay", low=0.0, high=1.0), _validate.number(center, "center"),
                         _validate.number(lo, "lo"), _validate.number(hi, "hi"))
        if self.after_lr[-2] > self.after_lr[-1]:
            raise ValueError(f"lo must not exceed hi, got lo={lo!r}, hi={hi!r}")
        self.backend, self._kernels = backend, {}  # device -> kernel, resolved at its first step

    def __call__(self, x, grad, shifts, next_shifts, sigma=0.0, lr=1.0, *, check_pixels=True):
        x, grad, shifts, next_shifts, sigma = self.tensors(x, grad, shifts, next_shifts, sigma)
        kernel = self._kernels.get(x.device)
        if kernel is None:
            kernel = self._kernels[x.device] = _kernel("fused_ascent_step", self.backend, x.device)
        image, next_input, bad_step = kernel(x, grad, shifts, next_shifts, sigma, *self.settings,
                                             _validate.number(lr, "lr"), *self.after_lr)
        if check_pixels:
            bad_step = bad_step | nonfinite(x.sum(dim=(1, 2, 3), dtype=torch.float32))  # one read of x, no sync
        return StepResult(image, next_input, bad_step)

    @staticmethod
    def tensors(x, grad, shifts, next_shifts, sigma=0.0):
        """(x, grad, shifts, next_shifts, sigma) checked, shifts and sigma as the kernel takes them."""
        _validate.image(x)
        _validate.like(grad, x, "grad")
        return (x, grad, _validate.shifts(shifts, x), _validate.shifts(next_shifts, x, "next_shifts"),
                _validate.sigma(sigma, x))


def periodic_crops(image, boxes, noise=None, noise_scale=1.0, *, backend=None):
    """``k`` crops of each image, resized to the image's size, plus noise: MaCo's views of a
    periodic image (one made by an inverse FFT), so a crop may run over an edge into the
    opposite one. Differentiable in ``image``.

    image: [B, C, H, W]; boxes: float [B, k, 3] on the CPU, each (size, centre y, centre x) as
    fractions of the image's side. Crop ``q = b * k + j`` samples image b bilinearly at rows
    ``cy * H - 0.5 + size * (i + 0.5 - H / 2)`` (pixel centres at integers, wrapped into the
    image) and at columns alike, then adds ``noise_scale * noise[q]``.
    noise: None or [B * k, C, H, W] on the image's device. Returns [B * k, C, H, W], image's dtype.
    CPU kernels only: other devices run the reference.
    """
    _validate.image(image, "image")
    boxes = _validate.crop_boxes(boxes, image)
    if noise is not None:
        B, C, H, W = image.shape
        _validate.image(noise, "noise")
        if noise.shape != (B * boxes.shape[1], C, H, W):
            raise ValueError(f"noise must have shape [B * k, C, H, W] = {[B * boxes.shape[1], C, H, W]}, "
                             f"got {list(noise.shape)}")
        if noise.device != image.device:
            raise ValueError(f"noise must be on the device of image ({image.device}), got {noise.device}")
        noise = noise.to(image.dtype)
    noise_scale = _validate.number(noise_scale, "noise_scale")
    return _kernel("periodic_crops", backend, image.device, cpu_only=True)(image, boxes, noise, noise_scale)


def gram(x, *, backend=None):
    """The Gram products of an activation's channels: [B, C, C] = F F^T with F = x [B, C,
    *positions] as [B, C, P] (no 1/P; the style loss and the facets' diversity scale them),
    in x's dtype as ``torch.bmm`` computes them.

    The CPU kernel takes activations whose channels are innermost and dense (channels_last
    maps, tokens) with 16, 32, ... 256 channels: float32 ones outside autocast, and bfloat16 ones
    on a CPU with AMX tiles (a bf16 execution's, whose convolutions run on them too); torch's
    GEMM packs these long, thin matrices at a cost that outweighs the products when they are not
    in cache (a style loss's backward). Every other input, and every other device, runs the
    reference (torch.bmm).
    """
    return _gram_kernel("gram", x, backend)(x)


def gram_times(m, x, *, backend=None):
    """m [B, C, C] times x as [B, C, P] (the backward of ``gram`` for a gradient dG is
    ``gram_times(dG + dG^T, x)``), in a new tensor of x's shape and memory layout. The kernel
    runs where ``gram``'s does, up to 128 channels."""
    _check_matrices(m, "m", x)
    return _gram_kernel("gram_times", x, backend)(m, x)


def gram_error(x, target, norms, *, backend=None):
    """One layer of a style loss, per image: (error [B], residual [B, C, C]) with residual =
    F F^T / P - target and error = ||residual||^2 / norms (norms [B], e.g. the target's squared
    norms). One kernel where ``gram``'s runs: the Gram matrix, residual and sum in one pass over
    the C x C values instead of four. A bfloat16 x (a bf16 execution's activation) keeps its
    products in bfloat16 (torch.bmm, accumulating in float32: AMX, tensor cores); the residual
    and error are float32 (x's dtype if wider), as target and norms are taken."""
    _check_matrices(target, "target", x)
    _check_per_image(norms, "norms", x)
    dtype = _loss_dtype(x)
    return _gram_kernel("gram_error", x, backend)(x, _as_dtype(target, dtype), _as_dtype(norms, dtype))


def gram_error_backward(x, residual, weights, *, add=None, backend=None):
    """The gradient at x of sum_b weights_b * ||residual_b||^2 for ``gram_error``'s residual
    (weights [B]: the loss's gradient over the norms), laid out as x, in x's dtype; plus ``add``
    (another gradient of x, x's shape) if given, in the same pass when it is laid out as x. The
    kernel runs where ``gram_times``' does."""
    _check_matrices(residual, "residual", x)
    _check_per_image(weights, "weights", x)
    if add is not None:
        _check_like_x(add, "add", x)
    dtype = _loss_dtype(x)
    return _plus_add(_gram_kernel("gram_error_backward", x, backend), x, add, _as_dtype(residual, dtype),
                     _as_dtype(weights, dtype))


def squared_error(x, target, norms, *, backend=None):
    """A content loss's layer, per image: ||x_b - target_b||^2 / norms_b, float32 [B] (norms [B],
    e.g. the target's squared norms; target of x's shape). One pass over x where torch's ops take
    four; the kernel takes float32 and bfloat16 x (dense, each image a block) with a float32
    target laid out as x."""
    _check_like_x(target, "target", x)
    _check_per_image(norms, "norms", x)
    return _squared_error_kernel("squared_error", x, target, backend)(x, target, _as_dtype(norms, torch.float32))


def squared_error_backward(x, target, weights, *, add=None, backend=None):
    """The gradient at x of sum_b weights_b ||x_b - target_b||^2 (weights [B]: the loss's gradient
    over the norms), laid out as x, in x's dtype; plus ``add`` (another gradient of x, x's shape)
    if given, in the same pass when it is laid out as x in x's dtype."""
    _check_like_x(target, "target", x)
    _check_per_image(weights, "weights", x)
    if add is not None:
        _check_like_x(add, "add", x)
    return _plus_add(_squared_error_kernel("squared_error_backward", x, target, backend), x, add, target,
                     _as_dtype(weights, torch.float32))


def _squared_error_kernel(name, x, target, backend):
    if x.dim() < 2 or x.numel() == 0:
        raise ValueError(f"x must be a non-empty [B, ...] activation, got shape {list(x.shape)}")
    kernel = _kernel(name, backend, x.device, cpu_only=True)
    dense = x.is_contiguous() or (x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last))
    takes = (x.dtype in (torch.float32, torch.bfloat16) and target.dtype == torch.float32 and dense
             and target.stride() == x.stride())
    return kernel if takes else getattr(reference, name)


def _plus_add(kernel, x, add, *args):
    """kernel(x, *args, add): add (another gradient of x) summed in the kernel's pass when laid out
    as x in x's dtype, else added after."""
    fused = add is None or (add.dtype == x.dtype and add.stride() == x.stride())
    grad = kernel(x, *args, add if fused else None)
    return grad if fused else grad.add_(add)


def _check_like_x(t, name, x):
    if t.shape != x.shape:
        raise ValueError(f"{name} must have x's shape {list(x.shape)}, got {list(t.shape)}")


def _as_dtype(t, dtype):
    """t in dtype; t itself when it is (a style loss calls these every step: Tensor.to's own
    parsing then costs more than the check)."""
    return t if t.dtype == dtype else t.to(dtype)


def _loss_dtype(x):
    """A style loss's residual and error dtype for activation x: float32, or x's if wider."""
    return torch.promote_types(x.dtype, torch.float32)


def _check_matrices(m, name, x):
    if m.shape != (x.shape[0], x.shape[1], x.shape[1]):
        raise ValueError(f"{name} must have shape [B, C, C] = {[x.shape[0], x.shape[1], x.shape[1]]} for x of shape "
                         f"{list(x.shape)}, got {list(m.shape)}")


def _check_per_image(v, name, x):
    if v.shape != (x.shape[0],):
        raise ValueError(f"{name} must have shape [B] = [{x.shape[0]}] for x of shape {list(x.shape)}, "
                         f"got {list(v.shape)}")


# The most channels each product's kernel takes: beyond, torch's GEMM is as fast or faster (its
# packing pays off; benchmarks/bench_gram.py, float32 on an AMD EPYC with AVX2, 2026-12-03).
# bfloat16 rows on AMX tiles (Intel Xeon, 2026-12-05): a style loss's layer beats torch's ops at
# every count measured, 16 to 1,024 (their C x C passes in several torch ops cost more than
# torch.bmm's products: 2.6-4x at 256-1,024 channels); the plain products lose past the float32
# limits. float32 rows where the vector loops run AVX-512 (``_STYLE_LAYER_ANY_WIDTH``) likewise.
_GRAM_KERNEL_CHANNELS = {torch.float32: {"gram": 256, "gram_times": 128, "gram_error": 256, "gram_error_backward": 128},
                         torch.bfloat16: {"gram": 256, "gram_times": 128, "gram_error": math.inf,
                                          "gram_error_backward": math.inf}}
# float32 on the Xeon's AVX-512 (tiles twice AVX2's width), kernel against torch's ops, forward /
# backward with add (ms, 8 images): C=512 over 16 positions 2.09 / 2.57 against 3.79 / 8.06; C=1,024
# over 16 (2 images) 2.63 / 3.12 against 3.43 / 25.45.
_STYLE_LAYER_ANY_WIDTH = ("gram_error", "gram_error_backward")


def _most_channels(name, dtype):
    if dtype == torch.float32 and name in _STYLE_LAYER_ANY_WIDTH and _runs_avx512():
        return math.inf
    return _GRAM_KERNEL_CHANNELS[dtype][name]


@functools.cache
def _runs_avx512():
    return _ext.has_ops() and "avx512" in _ext._C.vector_instruction_sets()


def _gram_kernel(name, x, backend):
    if x.dim() < 2 or x.numel() == 0:
        raise ValueError(f"x must be a non-empty [B, C, *positions] activation, got shape {list(x.shape)}")
    kernel = _kernel(name, backend, x.device, cpu_only=True)
    rows_kernel = (_gram_kernel_takes(x) and x.shape[1] % 16 == 0  # takes: float32 or bfloat16
                   and x.shape[1] <= _most_channels(name, x.dtype) and x.movedim(1, -1).is_contiguous())
    return kernel if rows_kernel else getattr(reference, name)


def _gram_kernel_takes(x):
    """float32 rows outside autocast (which would take torch.bmm's products in its own dtype), and
    bfloat16 rows on AMX tiles or AVX512_BF16 outside autocast or in a bfloat16 one (a bf16
    execution's forward)."""
    device = x.device.type
    if torch.is_autocast_enabled(device) and torch.get_autocast_dtype(device) != x.dtype:
        return False
    return x.dtype == torch.float32 or (x.dtype == torch.bfloat16 and _ext.has_ops() and _ext._C.bf16_gram_available())


def nonfinite(values):
    """Bool, True where ``values`` is NaN or +-inf: ``v - v`` is NaN exactly there. Two kernels
    where ``~torch.isfinite`` runs five; a render asks twice after every step."""
    return (values - values).isnan()


def release_cached_memory() -> int:
    """Free the memory the fused CPU kernels keep for reuse; returns the bytes freed.

    Their outputs of 1 MB and more take blocks freed by earlier outputs of the same size (at
    most 4 blocks are kept): a loop of steps then reuses its memory instead of having the OS map
    and zero it again on every call. ``pyviz_fast.render`` calls this when it is done; call it
    after loops of your own.
    """
    return _ext._C.release_cached_outputs() if _ext.has_ops() else 0
