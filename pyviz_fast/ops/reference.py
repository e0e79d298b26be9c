"""Pure-PyTorch implementation of every op: the fallback backend, the test oracle and the
benchmark baseline. The semantics here are the contract the C++ and CUDA kernels follow
(see DESIGN.md); every computation runs in float32 and is cast back to the storage dtype.
"""
import math
from typing import Optional

import torch
import torch.nn.functional as F

NORM_MODES = ("rms", "mean_abs", "std", "max_abs", "none")


def jitter(x: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Per-image ``torch.roll``: ``out[b, c, i, j] = x[b, c, (i - dy_b) % H, (j - dx_b) % W]``.

    x: [B, C, H, W]; shifts: int64 [B, 2] holding (dy, dx). Negate the shifts to undo it.
    """
    B, _, H, W = x.shape
    rows = (torch.arange(H, device=x.device)[None, :] - shifts[:, :1]) % H  # [B, H]
    cols = (torch.arange(W, device=x.device)[None, :] - shifts[:, 1:]) % W  # [B, W]
    batch = torch.arange(B, device=x.device)[:, None, None, None]
    channel = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return x[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


def blur_radius(sigma: float, height: int, width: int) -> int:
    """Half-width of the blur window: ceil(3 sigma), capped so reflection stays inside the image."""
    cap = min(height, width) - 1
    if sigma <= 0:
        return 0
    return cap if 3.0 * sigma >= cap else math.ceil(3.0 * sigma)  # compared first: a huge sigma is capped


def gaussian_taps(sigma: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Normalized 1-D Gaussian taps, one row per image: float32 [B, 2R + 1], R the largest radius.

    Rows of images with a smaller radius are zero outside their own window; sigma <= 0 gives
    the identity tap.
    """
    sigma = sigma.detach().float().cpu()
    for b, s in enumerate(sigma.tolist()):
        if not math.isfinite(s):  # the kernels check the same; the Python layer can't without a sync
            raise ValueError(f"sigma must be finite, got {s} for image {b}")
    radii = [blur_radius(s, height, width) for s in sigma.tolist()]
    R = max(radii)
    taps = torch.zeros(len(radii), 2 * R + 1)
    for b, (s, r) in enumerate(zip(sigma.tolist(), radii)):
        if r == 0:
            taps[b, R] = 1.0
            continue
        # In float64, as the kernels do: 2 sigma^2 neither underflows (a tiny sigma gives the
        # identity, not 0/0) nor overflows (a huge one gives a box blur).
        kd = torch.arange(0, r + 1, dtype=torch.float64)
        w = torch.exp(-(kd * kd) / (2.0 * s * s))
        total = 1.0
        for wk in w[1:].tolist():  # summed in the kernels' order: k = 0, 1, ..., r
            total += 2.0 * wk
        half = (w / total).float()
        taps[b, R - r:R + r + 1] = torch.cat([half.flip(0), half[1:]])
    return taps


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur with one sigma per image (float32 [B]) and reflect borders."""
    B, C, H, W = x.shape
    taps = gaussian_taps(sigma, H, W).to(x.device)
    R = (taps.shape[1] - 1) // 2
    if R == 0:
        return x.clone()
    planes = x.float().reshape(1, B * C, H, W)
    weight = taps.repeat_interleave(C, dim=0)  # one filter per (image, channel) plane
    planes = F.conv2d(F.pad(planes, (R, R, 0, 0), mode="reflect"), weight[:, None, None, :], groups=B * C)
    planes = F.conv2d(F.pad(planes, (0, 0, R, R), mode="reflect"), weight[:, None, :, None], groups=B * C)
    return planes.reshape(B, C, H, W).to(x.dtype)


def grad_scale(g: torch.Tensor, mode: str) -> torch.Tensor:
    """Per-image scale s_b over C, H, W of a float32 gradient; float32 [B] (zeros for 'none')."""
    flat = g.reshape(g.shape[0], -1)
    if mode == "rms":
        return flat.square().mean(dim=1).sqrt()
    if mode == "mean_abs":
        return flat.abs().mean(dim=1)
    if mode == "std":  # in float32 from deviations, as the kernels do (torch.std sums in float64 on the CPU)
        return (flat - flat.mean(dim=1, keepdim=True)).square().mean(dim=1).sqrt()
    if mode == "max_abs":
        return flat.abs().amax(dim=1)
    return torch.zeros(g.shape[0], device=g.device)


def _divide_by_scale(g32: torch.Tensor, scale: torch.Tensor, mode: str, eps: float) -> torch.Tensor:
    if mode == "none":
        return g32
    return g32 / (scale + eps)[:, None, None, None]


def normalize_grad(g: torch.Tensor, mode: str, eps: float) -> torch.Tensor:
    """``g_b / (s_b + eps)`` with s_b the per-image rms, mean |g|, std (population) or max |g|."""
    g32 = g.float()
    return _divide_by_scale(g32, grad_scale(g32, mode), mode, eps).to(g.dtype)


def clip_grad(g: torch.Tensor, clip: float) -> torch.Tensor:
    """Clamp to [-clip, clip] (in float32); clip = inf leaves g as it is."""
    return g.float().clamp(-clip, clip).to(g.dtype)


def fused_ascent_step(x, grad, shifts, next_shifts, sigma, norm, eps, clip, lr, decay, center, lo, hi):
    """One regularized ascent step; see ``pyviz_fast.ops.fused_ascent_step`` for the contract.

    Returns (new image, new image jittered by next_shifts, bool [B] non-finite flags).
    """
    g = gaussian_blur(jitter(grad.float(), -shifts), sigma)
    scale = grad_scale(g, norm)
    nonfinite = ~torch.isfinite(g).flatten(1).all(dim=1) | ~torch.isfinite(scale)
    if norm != "none":  # nothing to divide by: scale + eps is 0 or (eps = 0) so small that its reciprocal
        nonfinite |= ~torch.isfinite(1.0 / (scale + eps))  # overflows; kept, like a non-finite image
    g = _divide_by_scale(g, scale, norm, eps).clamp(-clip, clip)
    x32 = x.float()
    new = x32 + lr * g
    new = (new - decay * (new - center)).clamp(lo, hi)
    new = torch.where(nonfinite[:, None, None, None], x32, new).to(x.dtype)
    return new, jitter(new, next_shifts), nonfinite


def crop_taps(centre: torch.Tensor, size: torch.Tensor, n: int):
    """Bilinear taps of crops along an axis of n pixels: sample i of a crop sits at
    ``centre * n - 0.5 + size * (i + 0.5 - n / 2)`` pixels (pixel centres at integers) of the
    periodic image. centre, size: float32 [...]. Returns (near, far) int64 [..., n], wrapped into
    0..n-1, and the far pixel's weight, float32 [..., n]."""
    offset = torch.arange(n, dtype=torch.float32, device=centre.device) + 0.5 - 0.5 * n
    at = (centre[..., None] * n - 0.5) + size[..., None] * offset
    below = at.floor()
    near = below.long() % n
    return near, (near + 1) % n, at - below


def periodic_crops(image: torch.Tensor, boxes: torch.Tensor, noise, noise_scale: float) -> torch.Tensor:
    """Crops of periodic images resized to the image size, plus noise; see
    ``pyviz_fast.ops.periodic_crops`` for the contract. Differentiable in ``image``."""
    B, C, H, W = image.shape
    k = boxes.shape[1]
    size, cy, cx = boxes.float().to(image.device).unbind(-1)  # [B, k] each
    top, bottom, down = crop_taps(cy, size, H)  # [B, k, H]
    left, right, across = crop_taps(cx, size, W)  # [B, k, W]
    x = image.float()
    batch = torch.arange(B, device=image.device)[:, None, None]
    # Rows first (advanced indices before a slice go first: [B, k, H, C, W]), then columns.
    rows = x[batch, :, top] * (1 - down)[..., None, None] + x[batch, :, bottom] * down[..., None, None]
    rows = rows.transpose(2, 3)  # [B, k, C, H, W]
    columns = lambda index: rows.gather(-1, index[:, :, None, None, :].expand_as(rows))  # noqa: E731
    crops = columns(left) * (1 - across)[:, :, None, None, :] + columns(right) * across[:, :, None, None, :]
    crops = crops.reshape(B * k, C, H, W)
    if noise is not None:
        crops = crops + noise_scale * noise.float()
    return crops.to(image.dtype)


def _channel_rows(x):
    """x [B, C, *positions] as [B, C, P], a view when x is dense in any layout (else a copy)."""
    return x.reshape(x.shape[0], x.shape[1], -1)


def gram(x: torch.Tensor) -> torch.Tensor:
    """[B, C, C]: F F^T with F = x [B, C, *positions] as [B, C, P] (no 1/P), in x's dtype as
    ``torch.bmm`` computes it (under autocast, autocast's)."""
    f = _channel_rows(x)
    return torch.bmm(f, f.transpose(1, 2))


def gram_times(m: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """m [B, C, C] times x as [B, C, P], in a new tensor of x's shape laid out as x (a Gram
    matrix's backward: the gradient keeps the activation's layout). Not a view: autograd adds
    another gradient into it in place only when it owns its memory."""
    return _times_rows(m, x, None)


def _times_rows(m, x, add):
    """``gram_times(m, x)`` plus ``add`` (x's shape) if given: in the same product when add is laid
    out as x (torch.baddbmm, its sum rounded once), else added after."""
    f = _channel_rows(x)
    channels_inner = f.stride(1) < f.stride(2)  # channels_last, tokens: compute the [B, P, C] rows F^T m^T
    out = torch.empty_like(x)  # x's strides when x is dense
    rows = _channel_rows(out)
    if rows.data_ptr() != out.data_ptr() or rows.stride() != f.stride():  # not a view laid out as f
        rows = torch.bmm(f.transpose(1, 2), m.transpose(1, 2)).transpose(1, 2) if channels_inner else torch.bmm(m, f)
        return rows.reshape(x.shape) if add is None else rows.reshape(x.shape) + add
    addend = rows if add is None else _channel_rows(add)
    if addend.stride() != f.stride():
        return _times_rows(m, x, None).add_(add)
    beta = 0 if add is None else 1  # beta 0: out's own (uninitialized) values are ignored
    if channels_inner:
        torch.baddbmm(addend.transpose(1, 2), f.transpose(1, 2), m.transpose(1, 2), beta=beta, out=rows.transpose(1, 2))
    else:
        torch.baddbmm(addend, m, f, beta=beta, out=rows)
    return out


def gram_error(x: torch.Tensor, target: torch.Tensor, norms: torch.Tensor):
    """(error [B], residual [B, C, C]): residual = F F^T / P - target (F = x as [B, C, P]) and
    error = ||residual||^2 / norms, per image: one layer of a style loss. The products in x's
    dtype, the residual and error in target's."""
    residual = gram(x).to(target.dtype) / x[0, 0].numel() - target
    return residual.square().sum((1, 2)) / norms, residual


def gram_error_backward(x: torch.Tensor, residual: torch.Tensor, weights: torch.Tensor,
                        add: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The gradient at x of sum_b weights_b ||residual_b||^2 (``gram_error``'s residual, weights
    [B]): (dG + dG^T) F / P with dG = 2 w R, laid out as x (``gram_times``); the C x C factor in
    residual's dtype, the product in x's; plus ``add`` (x's shape) if given."""
    d = weights[:, None, None] * (2 * residual)
    return _times_rows(((d + d.transpose(1, 2)) / x[0, 0].numel()).to(x.dtype), x, add)


def squared_error(x: torch.Tensor, target: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
    """[B]: ||x_b - target_b||^2 / norms_b per image (a content loss's layer), in float32 (or the
    inputs' wider dtype)."""
    return _difference(x, target).square().sum(tuple(range(1, x.dim()))) / norms


def squared_error_backward(x: torch.Tensor, target: torch.Tensor, weights: torch.Tensor,
                           add: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The gradient at x of sum_b weights_b ||x_b - target_b||^2, plus ``add`` (x's shape) if
    given, in x's dtype and laid out as x."""
    grad = (2 * weights).view(-1, *[1] * (x.dim() - 1)) * _difference(x, target)
    out = torch.empty_like(x)  # x's strides when x is dense
    return out.copy_(grad if add is None else grad + add)


def _difference(x, target):
    dtype = torch.promote_types(torch.promote_types(x.dtype, target.dtype), torch.float32)
    return x.to(dtype) - target.to(dtype)
