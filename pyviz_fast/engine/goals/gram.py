"""Gram matrices of activations, for the diversity penalty and the style loss.

For any supported layout (``[B, C, H, W]``, tokens ``[B, N, D]``, vectors ``[B, K]``) the
Gram matrix of row b is ``F_b F_b^T / P`` with ``F_b`` its [C, P] channels-by-positions
matrix: which channels fire together, wherever they fire.

>>> gram(torch.ones(2, 4, 8, 8)).shape
torch.Size([2, 4, 4])
"""
import torch


def gram(act):
    """float32 [B, C, C] from an activation of any supported layout."""
    x = act.float()
    if x.dim() == 3:  # tokens [B, N, D]: channels are the last dim
        x = x.transpose(1, 2)
    x = x.reshape(x.shape[0], x.shape[1], -1)
    return torch.bmm(x, x.transpose(1, 2)) / x.shape[-1]


def gram_distance(a, b):
    """float [B]: relative Frobenius distance ||a - b|| / ||b|| of Gram matrices [B, C, C]."""
    return (a - b).flatten(1).norm(dim=1) / b.flatten(1).norm(dim=1).clamp(min=1e-12)
