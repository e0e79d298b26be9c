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
The products are ``ops.gram`` and ``ops.gram_times`` on the render's ops backend: a CPU kernel
for float32 activations whose channels are innermost (channels_last maps, tokens), ``torch.bmm``
otherwise.

>>> gram(torch.ones(2, 4, 8, 8), Activation((4, 8, 8), "nchw")).shape
torch.Size([2, 4, 4])
"""
import torch

from pyviz_fast import ops


def _rows(x):
    """x [B, C, *positions] as [B, C, P], a view when x is dense in any layout (else a copy)."""
    return x.reshape(x.shape[0], x.shape[1], -1)


def _positions(x):
    return x[0, 0].numel()


def _gram_of_rows(x, backend):
    return ops.gram(x, backend=backend) / _positions(x)


def _gram_backward(x, grad, backend):
    """The gradient at x of a Gram matrix's gradient ``grad`` [B, C, C]: (dG + dG^T) F / P."""
    return ops.gram_times((grad + grad.transpose(1, 2)) / _positions(x), x, backend=backend)


class _Gram(torch.autograd.Function):
    """(x [B, C, *positions] (any strides), ops backend) -> F F^T / P [B, C, C], F = x as
    [B, C, P]; the gradient has x's shape and memory layout."""

    @staticmethod
    def forward(ctx, x, backend):
        ctx.save_for_backward(x)
        ctx.backend = backend
        return _gram_of_rows(x, backend)

    @staticmethod
    def backward(ctx, grad):
        x, = ctx.saved_tensors
        return _gram_backward(x, grad, ctx.backend), None


class _GramErrorTap(torch.autograd.Function):
    """(x, activation, target [B, C, C], norms [B], backend) -> (x's alias, ||gram(x) - target||^2
    / norms [B]): one layer of a style loss, taken by a tap inside the forward
    (``truncate.TruncatedForward``) while x is in cache. Its gradient is added into the one that
    comes back from the rest of the model in the same pass (``ops.gram_error_backward``'s add),
    where a loss beside the model's path has autograd add two activation-sized tensors after it.
    The alias shares x's version counter, so an in-place change of the layer's output after the
    tap is found (``TruncatedForward.overwritten``) before a backward could read a changed x."""

    @staticmethod
    def forward(ctx, x, activation, target, norms, backend):
        ctx.set_materialize_grads(False)  # nothing after the layer (the deepest one): no zeros to add
        rows = _products_dtype(activation.channels_first(x))
        error, residual = ops.gram_error(rows, target, norms, backend=backend)
        ctx.save_for_backward(rows, residual, norms)
        ctx.activation, ctx.backend, ctx.dtype = activation, backend, x.dtype
        return x.detach(), error

    @staticmethod
    def backward(ctx, grad_out, grad_error):
        if grad_error is None:
            return grad_out, None, None, None, None
        rows, residual, norms = ctx.saved_tensors
        add = None if grad_out is None else ctx.activation.channels_first(grad_out)
        grad = ops.gram_error_backward(rows, residual, grad_error / norms, add=add, backend=ctx.backend)
        grad = ctx.activation.from_channels_first(grad)
        return (grad if grad.dtype == ctx.dtype else grad.to(ctx.dtype)), None, None, None, None


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
    def dots(x, facets, crops, backend):
        grams = ops.gram(x, backend=backend)
        rows = grams.view(-1, facets, crops, grams.shape[1] ** 2).transpose(1, 2)  # [units, k, n, C*C]
        return rows @ rows.transpose(2, 3), rows                                     # [units, k, n, n]

    @staticmethod
    def grad(x, rows, mix, backend):
        """dF_i = 2 sum_j mix_ij G_j F_i (dG is symmetric: (dG + dG^T) F = 2 dG F)."""
        d_grams = ((2 * mix) @ rows).transpose(1, 2).reshape(x.shape[0], x.shape[1], x.shape[1])
        return ops.gram_times(d_grams, x, backend=backend)


class _ByPositions:
    """The same products from the positions' side, <G_i, G_j> = ||F_i^T F_j||^2: n*n*C*P*P per unit
    and crop, cheaper when a unit's n facets have fewer positions in all than channels (n P < C:
    deep layers of small images, where the C x C Gram matrices outweigh the activations)."""

    @staticmethod
    def dots(x, facets, crops, backend):
        f = _rows(x)
        _, C, P = f.shape
        side = f.view(-1, facets, crops, C, P).permute(0, 2, 3, 1, 4).reshape(-1, C, facets * P)  # [units*k, C, nP]
        cross = torch.bmm(side.transpose(1, 2), side)  # block (i, j): F_i^T F_j
        dots = cross.view(-1, facets, P, facets, P).square().sum((2, 4))
        return dots.view(-1, crops, facets, facets), (side, cross)

    @staticmethod
    def grad(x, saved, mix, backend):
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
    def forward(ctx, x, facets, crops, backend):
        form = _ByPositions if facets * _positions(x) < x.shape[1] else _ByGrams
        dots, saved = form.dots(x, facets, crops, backend)
        norms = dots.diagonal(dim1=2, dim2=3).clamp(min=torch.finfo(dots.dtype).tiny).sqrt()
        cosines = dots / (norms[..., :, None] * norms[..., None, :])
        others = (cosines.sum(3) - cosines.diagonal(dim1=2, dim2=3)) / max(facets - 1, 1)
        ctx.form, ctx.saved, ctx.backend = form, saved, backend
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
        return ctx.form.grad(x, ctx.saved, mix, ctx.backend), None, None, None


def sibling_similarity(act, activation, facets, crops, backend=None):
    """float32 [B]: each row's mean Gram cosine similarity to the same crop of its unit's other
    facets (rows ordered unit, facet, crop), with gradient through the row's own Gram matrix only.
    backend: the ops backend of the Gram products (``ops.gram``)."""
    return _SiblingSimilarity.apply(activation.channels_first(act).float(), facets, crops, backend)


def gram(act, activation, backend=None):
    """float32 [B, C, C] from an activation laid out as ``activation`` (a ``layout.Activation``)."""
    return _Gram.apply(activation.channels_first(act).float(), backend)


def gram_error_tap(activation, target, norms, backend=None):
    """A tap (``truncate.TruncatedForward``) of one style layer: output -> (output's alias, float32
    [B] ||gram(output) - target||^2 / norms), ``relative_error(gram(act, activation), target)``
    when norms are the target's squared norms (a bf16 activation's products in bf16,
    ``ops.gram_error``). Applied to a captured activation instead, beside the model's path, it
    gives the same value and gradient."""
    return lambda output: _GramErrorTap.apply(output, activation, target, norms, backend)


def _products_dtype(x):
    """x as the style loss's Gram products take it: a bf16 execution's activation as it is (the
    products in bf16: AMX, tensor cores; no copy each way), anything else in float32 (float16's
    sums of P products would overflow its range)."""
    return x if x.dtype == torch.bfloat16 else x.float()


def squared_norms(x):
    """float [B]: ||x_b||^2 per row, at least 1e-12 (the denominator of a relative error)."""
    return x.square().sum(tuple(range(1, x.dim()))).clamp(min=1e-12)


def gram_distance(a, b):
    """float [B]: relative Frobenius distance ||a - b|| / ||b|| of Gram matrices [B, C, C]."""
    return (a - b).flatten(1).norm(dim=1) / b.flatten(1).norm(dim=1).clamp(min=1e-12)
