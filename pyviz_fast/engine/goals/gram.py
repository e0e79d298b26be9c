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


def _laid_out_as(x, rows):
    """rows [B, C, P] as a new tensor of x's shape and memory layout."""
    out = torch.empty_like(x)  # x's strides when x is dense
    view = _rows(out)
    if view.data_ptr() != out.data_ptr():  # reshape copied: out is not dense
        return rows.reshape(x.shape)
    view.copy_(rows)
    return out


class _ByGrams:
    """The facets' Gram inner products from the Gram matrices: C*C*P per row, the plain way."""

    @staticmethod
    def dots(f, facets, crops):
        grams = torch.bmm(f, f.transpose(1, 2))
        rows = grams.view(-1, facets, crops, grams.shape[1] ** 2).transpose(1, 2)  # [units, k, n, C*C]
        return rows @ rows.transpose(2, 3), rows                                     # [units, k, n, n]

    @staticmethod
    def grad(x, rows, mix):
        """dF_i = 2 sum_j mix_ij G_j F_i (dG is symmetric: (dG + dG^T) F = 2 dG F)."""
        d_grams = ((2 * mix) @ rows).transpose(1, 2).reshape(x.shape[0], x.shape[1], x.shape[1])
        return _times(d_grams, x)


class _ByPositions:
    """The same products from the positions' side, <G_i, G_j> = ||F_i^T F_j||^2: n*n*C*P*P per unit
    and crop, cheaper when a unit's n facets have fewer positions in all than channels (n P < C:
    deep layers of small images, where the C x C Gram matrices outweigh the activations)."""

    @staticmethod
    def dots(f, facets, crops):
        _, C, P = f.shape
        side = f.view(-1, facets, crops, C, P).permute(0, 2, 3, 1, 4).reshape(-1, C, facets * P)  # [units*k, C, nP]
        cross = torch.bmm(side.transpose(1, 2), side)  # block (i, j): F_i^T F_j
        dots = cross.view(-1, facets, P, facets, P).square().sum((2, 4))
        return dots.view(-1, crops, facets, facets), (side, cross)

    @staticmethod
    def grad(x, saved, mix):
        """dF_i = 2 sum_j mix_ij F_j (F_j^T F_i): one product of the unit's facets with the cross
        products, block (j, i) weighted by 2 mix_ij."""
        side, cross = saved
        n = mix.shape[-1]
        P = cross.shape[-1] // n
        weights = (2 * mix).transpose(2, 3).reshape(-1, n, 1, n, 1)
        d_side = torch.bmm(side, (cross.view(-1, n, P, n, P) * weights).view_as(cross))  # [units*k, C, nP]
        k = mix.shape[1]
        rows = d_side.view(-1, k, x.shape[1], n, P).permute(0, 3, 1, 2, 4).reshape(x.shape[0], x.shape[1], P)
        return _laid_out_as(x, rows)


class _SiblingSimilarity(torch.autograd.Function):
    """(x [B, C, *positions], facets n, crops k) -> float [B]: for row (unit, facet, crop), the mean
    cosine similarity of its Gram matrix with those of the same crop of the unit's other facets,
    differentiated through the row's own Gram matrix only (the others are constants to it).

    One node instead of autograd's dozen: the Gram matrices are C*C floats per row (230,400 at
    C=480), and every elementwise pass over them (the 1/P, a normalization and its backward) costs
    as much as the products. Cosines ignore the 1/P; the norms are the diagonal of the inner
    products' matrix, taken from the Gram matrices or from the positions' side, whichever is
    cheaper (``_ByGrams``, ``_ByPositions``)."""

    @staticmethod
    def forward(ctx, x, facets, crops):
        f = _rows(x)
        form = _ByPositions if facets * f.shape[2] < f.shape[1] else _ByGrams
        dots, saved = form.dots(f, facets, crops)
        norms = dots.diagonal(dim1=2, dim2=3).clamp(min=torch.finfo(dots.dtype).tiny).sqrt()
        cosines = dots / (norms[..., :, None] * norms[..., None, :])
        others = (cosines.sum(3) - cosines.diagonal(dim1=2, dim2=3)) / max(facets - 1, 1)
        ctx.form, ctx.saved = form, saved
        ctx.save_for_backward(x, cosines, norms)
        return others.transpose(1, 2).reshape(-1)

    @staticmethod
    def backward(ctx, grad):
        x, cosines, norms = ctx.saved_tensors
        n, k = cosines.shape[-1], cosines.shape[1]
        weight = grad.view(-1, n, k).transpose(1, 2) / max(n - 1, 1)  # [units, k, n]
        others = 1 - torch.eye(n, dtype=cosines.dtype, device=cosines.device)
        # d cos_ij / d G_i = G_j / (|G_i| |G_j|) - cos_ij G_i / |G_i|^2
        mix = weight[..., :, None] * others / (norms[..., :, None] * norms[..., None, :])
        mix = mix - torch.diag_embed(weight * (cosines * others).sum(3) / norms.square())
        return ctx.form.grad(x, ctx.saved, mix), None, None


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
