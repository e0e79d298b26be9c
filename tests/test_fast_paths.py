"""Faster forms of the engine's hot paths give what the plain formulas give: the Gram matrix's
written-out backward (and its gradient laid out like the activation), the style loss's sums,
and MaCo's crop grids and per-unit noise."""
import types

import pytest
import torch
import torch.nn.functional as F

import pyviz_fast as pvf
from pyviz_fast.engine.draws import Draws
from pyviz_fast.engine.parameterizations.maco import Maco
from pyviz_fast.engine.schedules import stages

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


def _maco(hw, units=3, crops=4):
    s = pvf.Settings(size=hw, steps=6, param="maco", maco_crops=crops, maco_noise=(0.1, 0.1))
    run = types.SimpleNamespace(s=s, stages=stages(s.hw, s.steps, 1, 1.4), channels=3, device=torch.device("cpu"))
    return Maco(run, Draws.for_units([f"fc:{u}" for u in range(units)], 7, s.steps, s.jitter)), s


@pytest.mark.parametrize("hw", [(32, 32), (24, 40)])
def test_maco_crop_grids_are_affine_grids_bit_for_bit(hw):
    maco, s = _maco(hw)
    for t in range(s.steps):
        size, center = maco.sizes[t].reshape(-1), maco.centers[t].reshape(-1, 2) * 2 - 1
        zero = torch.zeros_like(size)
        theta = torch.stack([torch.stack([size, zero, center[:, 1]], 1), torch.stack([zero, size, center[:, 0]], 1)], 1)
        assert torch.equal(maco._grid(t), F.affine_grid(theta, [len(size), 3, *hw], align_corners=False))


def test_maco_noise_is_each_units_own_stream():
    maco, s = _maco((16, 16))
    image = maco.images()
    crops, _ = maco.inputs(0)
    clean = F.grid_sample(image.repeat_interleave(4, 0), maco._grid(0), mode="bilinear", padding_mode="reflection",
                          align_corners=False)
    again, _ = _maco((16, 16))
    want = torch.stack([torch.randn(4, 3, 16, 16, generator=g) for g in again.draws.generators]).view_as(crops)
    torch.testing.assert_close(crops.detach(), clean + 0.1 * want)
