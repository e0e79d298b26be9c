"""Gram matrices of activations, for the diversity penalty and the style loss.

For any layout (``engine/layout.py``: nchw, nhwc, tokens, vector) the Gram matrix of row b is
``F_b F_b^T / P`` with ``F_b`` its [C, P] channels-by-positions matrix: which channels fire
together, wherever they fire.

Its backward is written out (``_Gram``): autograd's own for ``bmm(F, F^T)`` runs two matrix
products and an add, and returns the gradient channel-first whatever the activation's memory
layout, so on a channels_last model every layer's gradient then mixes two layouts (slow adds and
ReLU backwards). ``dF = (dG + dG^T) F / P`` is one product, written straight into a new tensor
laid out as the activation is. That tensor is no view: the layer's output also feeds the rest of
the network, and autograd adds the two gradients in place only into a tensor that owns its
memory (to a view it adds out of place, into a third tensor the size of the activation).

>>> gram(torch.ones(2, 4, 8, 8), Activation((4, 8, 8), "nchw")).shape
torch.Size([2, 4, 4])
"""
import torch


def _rows(x):
    """x [B, C, *positions] as [B, C, P], a view when x is dense in any layout (else a copy)."""
    return x.reshape(x.shape[0], x.shape[1], -1)


def _times(sym, x):
    """sym [B, C, C] times x as [B, C, P], in a new tensor of x's shape laid out as x."""
    f = _rows(x)
    channels_inner = f.stride(1) < f.stride(2)  # channels_last, tokens: compute [B, P, C] rows
    out = torch.empty_like(x)  # x's strides when x is dense
    rows = _rows(out)
    if rows.data_ptr() != out.data_ptr() or rows.stride() != f.stride():  # not a view laid out as f
        rows = torch.bmm(f.transpose(1, 2), sym).transpose(1, 2) if channels_inner else torch.bmm(sym, f)
        return rows.reshape(x.shape)
    if channels_inner:
        torch.bmm(f.transpose(1, 2), sym, out=rows.transpose(1, 2))
    else:
        torch.bmm(sym, f, out=rows)
    return out


def _gram_of_rows(x):
    f = _rows(x)
    return torch.bmm(f, f.transpose(1, 2)) / f.shape[-1]


def _gram_backward(x, grad):
    """The gradient at x of a Gram matrix's gradient ``grad`` [B, C, C]: (dG + dG^T) F / P."""
    return _times((grad + grad.transpose(1, 2)) / _rows(x).shape[-1], x)


class _Gram(torch.autograd.Function):
    """x [B, C, *positions] (any strides) -> F F^T / P [B, C, C], F = x as [B, C, P]; the
    gradient has x's shape and memory layout."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return _gram_of_rows(x)

    @staticmethod
    def backward(ctx, grad):
        x, = ctx.saved_tensors
        return _gram_backward(x, grad)


class _GramError(torch.autograd.Function):
    """(x, target [B, C, C], norms [B]) -> ||gram(x) - target||^2 / norms [B], one node for the
    Gram matrix and its error (a style loss's layer): the per-op autograd steps of the plain
    formula cost as much as the Gram matrix of a small layer. Same values, same gradient (the
    plain formula's operations in its order), for x only."""

    @staticmethod
    def forward(ctx, x, target, norms):
        diff = _gram_of_rows(x) - target
        ctx.save_for_backward(x, diff, norms)
        return diff.square().sum((1, 2)) / norms

    @staticmethod
    def backward(ctx, grad):
        x, diff, norms = ctx.saved_tensors
        return _gram_backward(x, (grad / norms)[:, None, None] * (2 * diff)), None, None


class _SiblingSimilarity(torch.autograd.Function):
    """(x [B, C, *positions], facets n, crops k) -> float [B]: for row (unit, facet, crop), the mean
    cosine similarity of its Gram matrix with those of the same crop of the unit's other facets,
    differentiated through the row's own Gram matrix only (the others are constants to it).

    One node instead of autograd's dozen: the Gram matrices are C*C floats per row (230,400 at
    C=480), and every elementwise pass over them (the 1/P, a normalization and its backward) costs
    as much as the products. Cosines ignore the 1/P; the norms are the diagonal of the products'
    matrix; the gradient of row i is a combination of its unit's Gram matrices (``mix @ grams``)."""

    @staticmethod
    def forward(ctx, x, facets, crops):
        f = _rows(x)
        grams = torch.bmm(f, f.transpose(1, 2))
        rows = grams.view(-1, facets, crops, grams.shape[1] ** 2).transpose(1, 2)  # [units, k, n, C*C]
        dots = rows @ rows.transpose(2, 3)                                           # [units, k, n, n]
        norms = dots.diagonal(dim1=2, dim2=3).clamp(min=torch.finfo(dots.dtype).tiny).sqrt()
        cosines = dots / (norms[..., :, None] * norms[..., None, :])
        others = (cosines.sum(3) - cosines.diagonal(dim1=2, dim2=3)) / max(facets - 1, 1)
        ctx.save_for_backward(x, rows, cosines, norms)
        return others.transpose(1, 2).reshape(-1)

    @staticmethod
    def backward(ctx, grad):
        x, rows, cosines, norms = ctx.saved_tensors
        n = cosines.shape[-1]
        weight = grad.view(-1, n, rows.shape[1]).transpose(1, 2) / max(n - 1, 1)  # [units, k, n]
        others = 1 - torch.eye(n, dtype=cosines.dtype, device=cosines.device)
        # d cos_ij / d G_i = G_j / (|G_i| |G_j|) - cos_ij G_i / |G_i|^2
        mix = weight[..., :, None] * others / (norms[..., :, None] * norms[..., None, :])
        mix = mix - torch.diag_embed(weight * (cosines * others).sum(3) / norms.square())
        # dF = (dG + dG^T) F = 2 dG F (dG is symmetric): the 2 goes into the small matrix
        d_grams = ((2 * mix) @ rows).transpose(1, 2).reshape(x.shape[0], x.shape[1], x.shape[1])
        return _times(d_grams, x), None, None


def sibling_similarity(act, activation, facets, crops):
    """float32 [B]: each row's mean Gram cosine similarity to the same crop of its unit's other
    facets (rows ordered unit, facet, crop), with gradient through the row's own Gram matrix only."""
    return _SiblingSimilarity.apply(activation.channels_first(act).float(), facets, crops)


def gram(act, activation):
    """float32 [B, C, C] from an activation laid out as ``activation`` (a ``layout.Activation``)."""
    return _Gram.apply(activation.channels_first(act).float())


def gram_error(act, activation, target, norms):
    """float32 [B]: ||gram(act) - target||^2 / norms per row (``norms``: target's squared norms,
    made once per target), as ``relative_error(gram(act, activation), target)`` computes it."""
    return _GramError.apply(activation.channels_first(act).float(), target, norms)


def squared_norms(x):
    """float [B]: ||x_b||^2 per row, at least 1e-12 (the denominator of a relative error)."""
    return x.square().sum(tuple(range(1, x.dim()))).clamp(min=1e-12)


def gram_distance(a, b):
    """float [B]: relative Frobenius distance ||a - b|| / ||b|| of Gram matrices [B, C, C]."""
    return (a - b).flatten(1).norm(dim=1) / b.flatten(1).norm(dim=1).clamp(min=1e-12)
