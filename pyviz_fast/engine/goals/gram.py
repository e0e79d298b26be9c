"""Gram matrices of activations, for the diversity penalty and the style loss.

For any layout (``engine/layout.py``: nchw, nhwc, tokens, vector) the Gram matrix of row b is
``F_b F_b^T / P`` with ``F_b`` its [C, P] channels-by-positions matrix: which channels fire
together, wherever they fire.

Its backward is written out (``_Gram``): autograd's own for ``bmm(F, F^T)`` runs two matrix
products and an add, and returns the gradient channel-first whatever the activation's memory
layout, so on a channels_last model every layer's gradient then mixes two layouts (slow adds and
ReLU backwards). ``dF = (dG + dG^T) F / P`` is one product, laid out as the activation is.

>>> gram(torch.ones(2, 4, 8, 8), Activation((4, 8, 8), "nchw")).shape
torch.Size([2, 4, 4])
"""
import torch


class _Gram(torch.autograd.Function):
    """f [B, C, P] (any strides) -> f f^T / P [B, C, C]; the gradient has f's memory layout."""

    @staticmethod
    def forward(ctx, f):
        ctx.save_for_backward(f)
        return torch.bmm(f, f.transpose(1, 2)) / f.shape[-1]

    @staticmethod
    def backward(ctx, grad):
        f, = ctx.saved_tensors
        sym = (grad + grad.transpose(1, 2)) / f.shape[-1]
        if f.stride(1) < f.stride(2):  # channels innermost (channels_last, tokens): compute [B, P, C] rows
            return torch.bmm(f.transpose(1, 2), sym).transpose(1, 2)
        return torch.bmm(sym, f)


def gram(act, activation):
    """float32 [B, C, C] from an activation laid out as ``activation`` (a ``layout.Activation``)."""
    x = activation.channels_first(act).float()
    return _Gram.apply(x.reshape(x.shape[0], x.shape[1], -1))


def gram_distance(a, b):
    """float [B]: relative Frobenius distance ||a - b|| / ||b|| of Gram matrices [B, C, C]."""
    return (a - b).flatten(1).norm(dim=1) / b.flatten(1).norm(dim=1).clamp(min=1e-12)
