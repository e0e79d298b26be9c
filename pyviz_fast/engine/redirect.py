"""ReLU redirection: during the first steps of a render, let gradient reach switched-off units.

A unit whose ReLU input is negative everywhere on the starting image gets exactly zero
gradient, so ascent never moves it: it renders flat and the atlas flags it dead, although
real images make it fire. Lucid and captum.optim swap in a "redirected" ReLU for the first
steps: its forward is the ordinary relu; its backward also passes the gradient where the unit
is off if that gradient points toward switching it on (toward a larger input). After those
steps (``Settings.redirect_relu_steps``) the true gradient takes over, so the final image is
optimized for the model as it is.

Only images whose unit does not fire get it (``ascent_gradients``): per image and step, an
image whose reported objective is <= 0 (a ReLU unit off everywhere; a GELU unit on its
negative side) takes the redirected gradient, every other image keeps the true one, bit for
bit. Lucid's rule, redirect only where no true gradient gets through, is the same idea at the
image level; applying the redirected backward to every image, as this module first did, pushed
gradient through lower units that are off for units the true gradient already moved, and on
ShapesResNet left 5 such units flat. The choice is per image of the batch (its objective), and
a unit's result still depends on the unit alone. It costs no second pass: the forward of a
redirected step runs under the redirected activations (same values), and their backward
redirects only the rows of the images that are off, when every such activation has one row per
model input; an activation laid out otherwise (a sequence-first transformer) makes a plain
forward follow for the images that fire.

Which activations: only the target's own. The ReLUs (GELUs) whose output the objective reads,
directly or through shape and selection ops (a view, a concatenation, max pooling, a residual
add: ``mark_targets``), take the redirected backward; every activation below keeps its true
gradient. Redirecting them all, as Lucid does, passes gradient through lower units that are off
as if they were on, a direction that need not raise the target's input at all: on the robustly
trained zoo conv nets 9 units that fire on real images (ShapesNet conv4, ShapesResNet layer3-4;
64 steps) stayed dead that way, none with the target's own ReLU alone. A target read from
anything else (a convolution's output) finds no activation to mark, and then every ReLU of the
forward is redirected as before.

GELU (a ViT's MLP) gets the same backward: its gradient vanishes for very negative inputs and
for inputs below about -0.75 even points away from activation, so a neuron starting there is
pushed further off.

How: a ``TorchFunctionMode`` active around the forward of a redirected step replaces the calls
``F.relu`` (which ``nn.ReLU`` calls), ``torch.relu``, ``torch.relu_``, ``Tensor.relu(_)`` and
``F.gelu`` (``nn.GELU``) by autograd functions with the redirected backward. The forward is unchanged bit
for bit and the model object is never modified (no module is swapped, no hook added), so there
is nothing to restore, whatever happens during the render.

Submodules compiled by ``compile=True`` are covered too (Dynamo traces the mode; checked on a
compiled Linear+ReLU). Not covered: activations inside TorchScript models, other activations
(ReLU6, LeakyReLU, SiLU, hardtanh) and rectification written by hand (``x.clamp(min=0)``,
``x * (x > 0)``).

>>> reported, grads = ascent_gradients(lambda: goal(prepared(images, layers)), (images,), redirect=True)
"""
import contextlib

import torch
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode


class _Forward:
    """What the redirected activations of one forward share: whether ``mark_targets`` found any,
    the leading sizes of their outputs, and what the backward redirects (set after the forward by
    ``ascent_gradients``): ``active`` False = nothing; else ``rows`` None = every row, or a bool
    [rows] per model input."""

    def __init__(self):
        self.marked = False
        self.leading = set()
        self.active, self.rows = True, None


def _redirects(ctx):
    """Whether this activation's backward redirects: some image is off, and it is a target or no
    target was found."""
    forward_pass = ctx.forward_pass
    return forward_pass.active and (ctx.target or not forward_pass.marked)


def _begin(ctx, forward_pass, out):
    ctx.forward_pass, ctx.target = forward_pass, False  # ctx is the output's grad_fn: mark_targets sets target
    forward_pass.leading.add(out.shape[0] if out.dim() else None)


def _in_rows(ctx, redirected, true_grad):
    """The redirected gradient in the rows that redirect, the true one in the others."""
    rows = ctx.forward_pass.rows
    if rows is None:
        return redirected
    return torch.where(rows.view(-1, *[1] * (true_grad.dim() - 1)), redirected, true_grad)


class _RedirectedReLU(torch.autograd.Function):
    """relu (in place when asked) whose backward, for a target, also passes gradient > 0 where the unit is off."""

    @staticmethod
    def forward(ctx, x, inplace, forward_pass):
        out = torch.relu_(x) if inplace else torch.relu(x)
        _begin(ctx, forward_pass, out)
        if inplace:
            ctx.mark_dirty(x)
        ctx.save_for_backward(out)  # out > 0 exactly where x > 0, even after an in-place relu
        return out

    @staticmethod
    def backward(ctx, grad):
        out, = ctx.saved_tensors
        true_grad = torch.ops.aten.threshold_backward(grad, out, 0)  # relu's own backward: grad where out > 0
        if not _redirects(ctx):
            return true_grad, None, None
        # where the unit is off, also a gradient > 0: max(grad, 0) there, grad itself where it is on
        return _in_rows(ctx, torch.maximum(grad, true_grad), true_grad), None, None


class _RedirectedGELU(torch.autograd.Function):
    """gelu whose backward, for a target, passes the gradient unchanged where x < 0 and the gradient is > 0."""

    @staticmethod
    def forward(ctx, x, approximate, forward_pass):
        out = F.gelu(x, approximate=approximate)
        _begin(ctx, forward_pass, out)
        ctx.save_for_backward(x)
        ctx.approximate = approximate
        return out

    @staticmethod
    def backward(ctx, grad):
        x, = ctx.saved_tensors
        true_grad = torch.ops.aten.gelu_backward(grad, x, approximate=ctx.approximate)
        if not _redirects(ctx):
            return true_grad, None, None
        return _in_rows(ctx, torch.where((x < 0) & (grad > 0), grad, true_grad), true_grad), None, None


# Autograd nodes an activation reaches the objective through without a weight: the objective
# still reads the activation's own values (reshaped, selected, pooled by max, summed with a skip).
_PASS_THROUGH = {"ViewBackward0", "UnsafeViewBackward0", "ReshapeAliasBackward0", "AliasBackward0", "PermuteBackward0",
                 "SqueezeBackward0", "SqueezeBackward1", "UnsqueezeBackward0",
                 "TransposeBackward0", "CloneBackward0", "ExpandBackward0", "ToCopyBackward0", "CatBackward0",
                 "StackBackward0", "SliceBackward0", "SelectBackward0", "IndexBackward0", "SplitBackward0",
                 "AddBackward0", "MaxPool2DWithIndicesBackward0", "AdaptiveMaxPool2DBackward0"}


def passes_through(function):
    """Class decorator of an autograd Function whose first output is its first input's alias (a
    loss's tap: ``truncate.TruncatedForward``): ``mark_targets`` walks through its nodes as
    through a view's (autograd names a Function's nodes after it: ``<name>Backward``)."""
    _PASS_THROUGH.add(function.__name__ + "Backward")
    return function


def mark_targets(activations):
    """Mark the redirected activations whose outputs ``activations`` (what the objective reads)
    are, or are made of through ``_PASS_THROUGH`` ops: only they redirect (outside a redirected
    forward there is nothing to mark)."""
    seen, stack = set(), [a.grad_fn for a in activations if isinstance(a, torch.Tensor)]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if isinstance(getattr(node, "forward_pass", None), _Forward):
            node.target = node.forward_pass.marked = True
        elif type(node).__name__ in _PASS_THROUGH:
            stack.extend(next_node for next_node, _ in node.next_functions)


def _argument(args, kwargs, position, name, default):
    return args[position] if len(args) > position else kwargs.get(name, default)


_RELU_OUT_OF_PLACE = {F.relu, torch.relu, torch.Tensor.relu}
_RELU_IN_PLACE = {torch.relu_, torch.Tensor.relu_}


class _RedirectMode(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.forward_pass = _Forward()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        x = args[0] if args else None
        if isinstance(x, torch.Tensor) and x.requires_grad and x.is_floating_point():
            if func in _RELU_OUT_OF_PLACE or func in _RELU_IN_PLACE:
                inplace = func in _RELU_IN_PLACE or (func is F.relu and _argument(args, kwargs, 1, "inplace", False))
                return _eager(_RedirectedReLU, x, bool(inplace), self.forward_pass)
            if func is F.gelu:
                return _eager(_RedirectedGELU, x, _argument(args, kwargs, 1, "approximate", "none"), self.forward_pass)
        return func(*args, **kwargs)


@torch.compiler.disable
def _eager(function, *args):
    """``function.apply(*args)`` outside compiled code: a compiled model (compile=True) would trace
    the backward once, with the rows and targets of that moment, which ``ascent_gradients`` and
    ``mark_targets`` set for each step after its forward."""
    return function.apply(*args)


def redirected(active):
    """Context manager: while open (and ``active``), ReLU and GELU calls get the redirected backward
    (the targets' only, once ``mark_targets`` has marked some); ``as mode``: ``mode.forward_pass``."""
    return _RedirectMode() if active else contextlib.nullcontext()


def ascent_gradients(forward, wrt, redirect, inputs=None):
    """(reported objective [B], gradients of the summed optimized objective w.r.t. each of ``wrt``).

    ``forward()`` runs the model and the goal and returns (reported [B], optimized [B]); row b of
    every tensor in ``wrt`` belongs to image b, and the model's ``inputs`` rows (default B) are the
    images' model inputs in order (k per image). With ``redirect``, the images whose unit does not
    fire yet (reported objective <= 0: a ReLU unit off everywhere, a GELU unit on its negative
    side) take the redirected gradient, the others the true one, untouched.

    One forward, under ``redirected`` (its values are the plain forward's bit for bit): when every
    redirected activation has one row per model input (batch first, as the objective reads its
    layers), its backward redirects only the rows of the images that are off. Otherwise (an
    activation laid out another way) a plain forward follows for the images that fire.
    """
    if not redirect:
        reported, optimized = forward()
        return reported.detach(), torch.autograd.grad(optimized.sum(), wrt)
    with redirected(True) as mode:
        reported, optimized = forward()
    off = reported.detach() <= 0
    rows = len(off) if inputs is None else inputs
    forward_pass = mode.forward_pass
    forward_pass.active = bool(off.any())  # none off: every backward is the true one, whatever the layout
    if forward_pass.active and not bool(off.all()):  # both kinds: only the rows of the images that are off
        if forward_pass.leading <= {rows} and rows % len(off) == 0:
            forward_pass.rows = off.repeat_interleave(rows // len(off))
        else:
            _, plain = forward()
            optimized = torch.where(off, optimized, plain)
    return reported.detach(), torch.autograd.grad(optimized.sum(), wrt)
