"""The Gram matrix's written-out backward and the style loss's sums: the same values and
gradients as the plain autograd formulas, and a gradient laid out like the activation."""
import pytest
import torch

from pyviz_fast.engine.goals.gram import gram
from pyviz_fast.engine.goals.style import relative_error
from pyviz_fast.engine.layout import Activation


def _plain_gram(act, activation):
    x = activation.channels_first(act).float()
    x = x.reshape(x.shape[0], x.shape[1], -1)
    return torch.bmm(x, x.transpose(1, 2)) / x.shape[-1]


def _activation(layout):
    gen = torch.Generator().manual_seed(3)
    if layout == "channels_last":
        act = torch.randn(3, 5, 6, 7, generator=gen).contiguous(memory_format=torch.channels_last)
        return act, Activation((5, 6, 7), "nchw")
    if layout == "nhwc":
        return torch.randn(3, 6, 7, 5, generator=gen), Activation((6, 7, 5), "nhwc")
    if layout == "tokens":
        return torch.randn(3, 9, 5, generator=gen), Activation((9, 5), "tokens")
    return torch.randn(3, 5, 6, 7, generator=gen), Activation((5, 6, 7), "nchw")


@pytest.mark.parametrize("layout", ["nchw", "channels_last", "nhwc", "tokens"])
def test_gram_and_its_gradient_match_autograd(layout):
    act, activation = _activation(layout)
    weights = torch.randn(3, 5, 5, generator=torch.Generator().manual_seed(4))  # not symmetric
    mine = act.clone().requires_grad_(True)
    plain = act.clone().requires_grad_(True)
    g_mine, g_plain = gram(mine, activation), _plain_gram(plain, activation)
    torch.testing.assert_close(g_mine, g_plain)
    # autograd.grad, not .backward(): a leaf's .grad is re-laid out like the leaf, hiding the layout
    grad_mine, = torch.autograd.grad((g_mine * weights).sum(), mine)
    grad_plain, = torch.autograd.grad((g_plain * weights).sum(), plain)
    torch.testing.assert_close(grad_mine, grad_plain)
    assert grad_mine.stride() == act.stride(), "the gradient keeps the activation's memory layout"


def test_relative_error_matches_the_flattened_formula():
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(4, 8, 5, 5, generator=gen).contiguous(memory_format=torch.channels_last)
    target = torch.randn(4, 8, 5, 5, generator=gen)
    want = (x - target).flatten(1).pow(2).sum(1) / target.flatten(1).pow(2).sum(1)
    torch.testing.assert_close(relative_error(x, target), want)
