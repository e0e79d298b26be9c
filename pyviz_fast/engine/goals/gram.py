"""Gram matrices of activations, for the diversity penalty and the style loss.

For any layout (``engine/layout.py``: nchw, nhwc, tokens, vector) the Gram matrix of row b is
``F_b F_b^T / P`` with ``F_b`` its [C, P] channels-by-positions matrix: which channels fire
together, wherever they fire.

>>> gram(torch.ones(2, 4, 8, 8), Activation((4, 8, 8), "nchw")).shape
torch.Size([2, 4, 4])
"""
import torch


def gram(act, activation):
    """float32 [B, C, C] from an activation laid out as ``activation`` (a ``layout.Activation``)."""
    x = activation.channels_first(act).float()
    x = x.reshape(x.shape[0], x.shape[1], -1)
    return torch.bmm(x, x.transpose(1, 2)) / x.shape[-1]


def gram_distance(a, b):
    """float [B]: relative Frobenius distance ||a - b|| / ||b|| of Gram matrices [B, C, C]."""
    return (a - b).flatten(1).norm(dim=1) / b.flatten(1).norm(dim=1).clamp(min=1e-12)
