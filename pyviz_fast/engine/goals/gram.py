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
import math

import torch

from pyviz_fast import ops
from pyviz_fast.engine.redirect import passes_through


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


class _ByResidual:
    """A style layer's error through its C x C residual R = G / P - T (``ops.gram_error``: the
    kernels make it in one pass with the products), kept for the backward (``ops.gram_error_backward``).
    A bf16 activation's products are bf16, as torch.bmm's (G rounded once)."""

    def __init__(self, target):
        self.target = target

    def error(self, rows, norms, backend):
        return ops.gram_error(rows, self.target, norms, backend=backend)

    def grad(self, rows, residual, weights, add, backend):
        return ops.gram_error_backward(rows, residual, weights, add=add, backend=backend)


class _FromPositions:
    """The same error and gradient with no C x C matrix made, from F^T F [P, P] and T F [C, P]:
    ||R||^2 = ||F^T F||^2 / P^2 - 2 <F, T F> / P + ||T||^2 and R F = F (F^T F) / P - T F. Where a
    layer has few positions (P << C: deep layers of small images) the residual's passes over C x C
    values, each as long as the products, are what its loss costs; here the target is read once,
    by one product. The products are float32 (of a bf16 activation's exact values, G never
    rounded); the three terms are summed in double, and the error is clamped at 0 where they
    cancel to rounding."""

    def __init__(self, target):
        # <G, T> and its gradient see T's symmetric part only (a Gram target is symmetric already)
        self.symmetric = target if torch.equal(target, target.mT) else (target + target.mT) / 2
        self.target_squares = target.double().square().sum((1, 2))

    def error(self, rows, norms, backend):
        f_t = _rows(rows).transpose(1, 2).float()  # F^T [B, P, C]
        P = f_t.shape[1]
        t_f = torch.bmm(f_t, self.symmetric)       # (T F)^T
        h = torch.bmm(f_t, f_t.transpose(1, 2))    # F^T F
        squares = (h.double().square().sum((1, 2)) / P**2 - (f_t * t_f).sum((1, 2), dtype=torch.float64) * (2 / P)
                   + self.target_squares)
        direction = torch.baddbmm(t_f, h, f_t, beta=-1, alpha=1 / P)  # (R F)^T
        return (squares.clamp(min=0) / norms).float(), direction

    def grad(self, rows, direction, weights, add, backend):
        scale = (4 * weights / direction.shape[1]).view(-1, 1, 1)  # of sum_b w_b ||R_b||^2: 4 w_b R_b F_b / P
        grad = direction * scale if add is None else torch.addcmul(_rows(add).transpose(1, 2), direction, scale)
        return _laid_out_as(rows, grad.transpose(1, 2))


# The positions' form when P * factor <= C. Against the kernels' residual (8 images, forward and
# backward with an add, ms; Intel Xeon, 1 thread, 2026-12-05): bf16 on AMX C=512 over 4 positions
# 2.82 -> 0.63, over 16 3.17 -> 0.95, over 64 3.88 -> 3.40, C=128 over 16 0.21 -> 0.23; float32
# (AVX-512) C=512 over 64 7.47 -> 3.17, C=256 over 64 1.74 -> 1.18, C=128 over 64 0.48 -> 0.55.
_POSITIONS_FACTOR = {torch.bfloat16: 8, torch.float32: 4}


class _LayerError:
    """One style layer's ||G / P - T||^2 / norms, in the cheaper form for the activation at hand
    (the positions' form prepared with the tap when the layer has few enough positions for it in
    some dtype: no data-dependent work inside a traced forward)."""

    def __init__(self, activation, target, norms):
        self.norms = norms
        self.by_residual = _ByResidual(target)
        few = math.prod(activation.positions) * min(_POSITIONS_FACTOR.values()) <= activation.channels
        self.from_positions = _FromPositions(target) if few else None

    def form(self, rows):
        few = _positions(rows) * _POSITIONS_FACTOR[rows.dtype] <= rows.shape[1]
        return self.from_positions if few and self.from_positions is not None else self.by_residual


@passes_through
class _GramErrorTap(torch.autograd.Function):
    """(x, activation, layer error (``_LayerError``), backend) -> (x's alias, ||gram(x) -
    target||^2 / norms [B]): one layer of a style loss, taken by a tap inside the forward
    (``truncate.TruncatedForward``) while x is in cache. Its gradient is added into the one that
    comes back from the rest of the model in the same pass (the forms' add), where a loss beside
    the model's path has autograd add two activation-sized tensors after it.
    The alias shares x's version counter, so an in-place change of the layer's output after the
    tap is found (``TruncatedForward.overwritten``) before a backward could read a changed x."""

    @staticmethod
    def forward(ctx, x, activation, layer_error, backend):
        ctx.set_materialize_grads(False)  # nothing after the layer (the deepest one): no zeros to add
        rows = _products_dtype(activation.channels_first(x))
        form = layer_error.form(rows)
        error, saved = form.error(rows, layer_error.norms, backend)
        ctx.save_for_backward(rows, saved)
        ctx.form, ctx.norms, ctx.activation, ctx.backend, ctx.dtype = form, layer_error.norms, activation, backend, x.dtype
        return x.detach(), error

    @staticmethod
    def backward(ctx, grad_out, grad_error):
        if grad_error is None:
            return grad_out, None, None, None
        rows, saved = ctx.saved_tensors
        add = None if grad_out is None else ctx.activation.channels_first(grad_out)
        grad = ctx.form.grad(rows, saved, grad_error / ctx.norms, add, ctx.backend)
        grad = ctx.activation.from_channels_first(grad)
        return (grad if grad.dtype == ctx.dtype else grad.to(ctx.dtype)), None, None, None


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
    when norms are the target's squared norms, through the residual or from the positions' side
    (``_LayerError``). Applied to a captured activation instead, beside the model's path, it
    gives the same value and gradient."""
    layer_error = _LayerError(activation, target, norms)
    return lambda output: _GramErrorTap.apply(output, activation, layer_error, backend)


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
