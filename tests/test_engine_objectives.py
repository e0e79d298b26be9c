"""Each objective's value against a hand computation, in every activation layout, mixed in one batch."""
import pytest
import torch

from pyviz_fast.engine.layout import Activation
from pyviz_fast.engine.objectives import ObjectivePlan
from pyviz_fast.engine.units import Unit, parse_units


def _acts():
    g = torch.Generator().manual_seed(0)
    return {"conv": torch.randn(6, 4, 5, 7, generator=g),    # [B, C, H, W]
            "tok": torch.randn(6, 9, 3, generator=g),        # [B, N, D]
            "fc": torch.randn(6, 10, generator=g),           # [B, K]
            "hwc": torch.randn(6, 5, 7, 4, generator=g)}     # [B, H, W, C]

LAYOUT = {"conv": "nchw", "tok": "tokens", "fc": "vector", "hwc": "nhwc"}


def _shapes(acts):
    return {k: Activation(tuple(v.shape[1:]), LAYOUT[k]) for k, v in acts.items()}


def _plan(specs):
    units = parse_units(specs) if isinstance(specs, str) else specs
    return ObjectivePlan(units, _shapes(_acts()))


def test_every_kind_and_layout_in_one_batch():
    a = _acts()
    v = torch.tensor([1.0, -2.0, 0.5, 3.0])
    units = parse_units(["conv:2", "conv:1@neuron", "conv:3@neuron(4,6)", "conv@deepdream", "tok:1", "tok:2@neuron(5)"])
    plan_a = ObjectivePlan(units, _shapes(a))
    got = plan_a(a)
    expected = torch.stack([
        a["conv"][0, 2].mean(),
        a["conv"][1, 1, 2, 3],            # center of 5x7
        a["conv"][2, 3, 4, 6],
        a["conv"][3].pow(2).mean(),
        a["tok"][4, :, 1].mean(),         # a token channel is a feature averaged over tokens
        a["tok"][5, 5, 2],
    ])
    torch.testing.assert_close(got, expected)
    more = [Unit.class_logit("fc", 7), Unit.channel("fc", 3), Unit.direction("conv", v),
            Unit.direction("tok", [1.0, 0.0, -1.0]), Unit.neuron("tok", 0), Unit.deepdream("tok")]
    got = ObjectivePlan(more, _shapes(a))(a)
    expected = torch.stack([
        a["fc"][0, 7], a["fc"][1, 3],
        (a["conv"][2] * v[:, None, None]).sum(0).mean(),
        (a["tok"][3] * torch.tensor([1.0, 0.0, -1.0])).sum(1).mean(),
        a["tok"][4, 4, 0],                # center token of 9
        a["tok"][5].pow(2).mean(),
    ])
    torch.testing.assert_close(got, expected)


def test_negatives_and_weighted_sums():
    a = _acts()
    got = _plan("-conv:1, 0.5*conv:0 + 2*fc:3 - tok@deepdream")(a)
    expected = torch.stack([-a["conv"][0, 1].mean(),
                            0.5 * a["conv"][1, 0].mean() + 2 * a["fc"][1, 3] - a["tok"][1].pow(2).mean()])
    torch.testing.assert_close(got, expected)


def test_gradient_reaches_only_its_own_item():
    a = {k: v.clone().requires_grad_(True) for k, v in _acts().items()}
    objective = _plan("conv:0, conv:1")(a)
    grad, = torch.autograd.grad(objective[1], a["conv"])
    assert grad[0].abs().sum() == 0 and grad[1, 1].abs().sum() > 0


def test_bfloat16_activations_give_float32_objectives():
    a = {k: v.bfloat16() for k, v in _acts().items()}
    got = _plan("conv:2, fc:1")(a)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, torch.stack([a["conv"][0, 2].float().mean(), a["fc"][1, 1].float()]))


@pytest.mark.parametrize("spec, message", [
    ("conv:4", "has 4 channels"),
    ("tok:3", "has 3 channels"),
    ("conv:1@class", "not a \\[B, K\\] output"),
    ("conv:0@neuron(5,0)", r"outside the grid \(5, 7\); it takes @neuron\(0-4, 0-6\)$"),
    ("tok:0@neuron(2,1)", r"outside the grid \(9,\); it takes @neuron\(0-8\) \(a token's index\)"),
    ("conv@direction(1,2)", "direction has 2 values"),
])
def test_bad_terms_are_reported(spec, message):
    with pytest.raises(ValueError, match=message):
        _plan(spec)


def test_channel_last_maps_mean_the_same_channels_as_channel_first():
    a = _acts()
    a["hwc"] = a["conv"].permute(0, 2, 3, 1)  # the same activation, channels last
    for spec in ["{}:2", "{}:1@neuron", "{}:3@neuron(4,6)", "{}@deepdream", "{}@direction(1,-2,0.5,3)"]:
        units = parse_units([spec.format("conv"), spec.format("hwc")])
        got = ObjectivePlan(units, _shapes(a))({"conv": a["conv"][:2], "hwc": a["hwc"][:2]})
        torch.testing.assert_close(got[1], ObjectivePlan(units[:1] * 2, _shapes(a))(
            {"conv": a["conv"][:2]})[1], msg=spec)
