"""Laplacian-pyramid gradient normalization (the TensorFlow DeepDream tutorial's "lapnorm").

Splits each image's gradient into frequency bands, scales every band to unit standard
deviation and adds them back, so coarse structure gets as much push as fine detail.

>>> g2 = laplacian_normalize(g, levels=4)      # g [B, C, H, W] -> same shape, float32
"""
import torch.nn.functional as F


def _unit_std(band, eps):
    return band / (band.flatten(1).std(dim=1, correction=0) + eps)[:, None, None, None]


def laplacian_normalize(g, levels, eps=1e-8):
    """Per-image band-normalized gradient; ``levels`` bands (fewer if the image gets to 1 px)."""
    current = g.float()
    bands = []
    for _ in range(levels - 1):
        if min(current.shape[-2:]) < 2:
            break
        low = F.avg_pool2d(current, 2, ceil_mode=True)
        bands.append(current - F.interpolate(low, size=current.shape[-2:], mode="bilinear", align_corners=False))
        current = low
    out = _unit_std(current, eps)
    for band in reversed(bands):
        out = F.interpolate(out, size=band.shape[-2:], mode="bilinear", align_corners=False) + _unit_std(band, eps)
    return out
