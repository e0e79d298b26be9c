"""Per-image random scale and rotation, differentiable (the gradient flows back through them).

Each image b of step t gets its own scale s in [lo, hi] and angle in [-rotate, +rotate] degrees
from the unit's pre-drawn uniforms (draws.affine); reflection fills the borders.

>>> y = random_affine(x, draws.affine[t], (0.9, 1.1), 10.0)     # x [B, C, H, W]
"""
import math

import torch
import torch.nn.functional as F


def is_identity(scale_range, rotate):
    return tuple(scale_range) == (1.0, 1.0) and rotate == 0


def random_affine(x, uniforms, scale_range, rotate):
    """x: [B, C, H, W]; uniforms: float [B, 2] in [0, 1) (scale, angle) -> transformed x."""
    u = uniforms.to(device=x.device, dtype=torch.float32)
    lo, hi = scale_range
    scale = lo + (hi - lo) * u[:, 0]
    angle = math.radians(rotate) * (2 * u[:, 1] - 1)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale  # sampling grid = inverse map
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="reflection", align_corners=False)
