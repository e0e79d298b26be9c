"""engine/weight_casts.py: autocast's weight casts kept across forwards, bit for bit autocast's."""
import pytest
import torch
import torch.nn.utils.prune
from torch import nn

import pyviz_fast as pvf
from pyviz_fast.engine.execution import PreparedModel
from pyviz_fast.engine.weight_casts import SMALLEST, WeightCasts


class Net(nn.Module):
    """Two served layers (at least SMALLEST weights) around an unserved small one."""

    def __init__(self):
        super().__init__()
        self.big_conv = nn.Conv2d(64, 128, 3, padding=1)
        self.small_conv = nn.Conv2d(128, 8, 1)
        self.big_linear = nn.Linear(8 * 5 * 5, 8192)

    def forward(self, x):
        return self.big_linear(self.small_conv(self.big_conv(x).relu()).flatten(1))


@pytest.fixture
def net():
    torch.manual_seed(0)
    model = Net().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def forward_backward(model, x, dtype=torch.bfloat16):
    x = x.clone().requires_grad_()
    with torch.autocast("cpu", dtype=dtype):
        y = model(x)
    y.float().square().sum().backward()
    return y, x.grad


def test_the_layers_served_are_the_large_convolutions_and_linear_layers(net):
    assert net.big_conv.weight.numel() >= SMALLEST > net.small_conv.weight.numel()
    casts = WeightCasts(net)
    assert casts._layers == [net.big_conv, net.big_linear]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_outputs_and_gradients_are_autocasts_bit_for_bit_and_casts_are_made_once(net, dtype):
    x = torch.randn(2, 64, 5, 5)
    plain = forward_backward(net, x, dtype)
    casts = WeightCasts(net)
    casts.install()
    try:
        kept = forward_backward(net, x, dtype)
        made = {k: v[3] for k, v in casts._casts.items()}
        again = forward_backward(net, x, dtype)
    finally:
        casts.remove()
    for a, b in zip(plain, kept):
        assert a.dtype == b.dtype and torch.equal(a, b)
    assert torch.equal(again[0], plain[0])
    assert len(made) == 4  # weight and bias of the two served layers
    assert all(c.dtype == dtype for c in made.values())
    assert casts._casts == {}  # remove() drops them


def test_outside_their_forward_the_layers_show_their_own_float32_parameters(net):
    params = dict(net.named_parameters())
    casts = WeightCasts(net)
    casts.install()
    seen = {}
    net.small_conv.register_forward_hook(lambda m, a, o: seen.update(big=net.big_conv.weight))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        net(torch.randn(1, 64, 5, 5))
    assert seen["big"] is params["big_conv.weight"]  # the next layer's forward sees the Parameter
    assert dict(net.named_parameters()) == params
    assert all(p.dtype == torch.float32 for p in net.parameters())
    casts.remove()
    assert not any(m._forward_pre_hooks or m._forward_hooks for m in (net.big_conv, net.big_linear))


def test_a_changed_weight_is_cast_again(net):
    x = torch.randn(2, 64, 5, 5)
    casts = WeightCasts(net)
    casts.install()
    forward_backward(net, x)
    with torch.no_grad():
        net.big_conv.weight.mul_(2)  # in place: the version counter moves
    net.big_linear.weight.data = torch.randn_like(net.big_linear.weight)  # replaced data, same Parameter
    kept = forward_backward(net, x)
    casts.remove()
    plain = forward_backward(net, x)
    for a, b in zip(plain, kept):
        assert torch.equal(a, b)


def test_without_autocast_nothing_is_cast(net):
    casts = WeightCasts(net)
    casts.install()
    y = net(torch.randn(1, 64, 5, 5))
    assert y.dtype == torch.float32 and casts._casts == {}
    casts.remove()


def test_a_cast_made_in_inference_mode_serves_a_later_backward(net):
    x = torch.randn(2, 64, 5, 5)
    casts = WeightCasts(net)
    casts.install()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        net(x)
    kept = forward_backward(net, x)
    casts.remove()
    assert all(torch.equal(a, b) for a, b in zip(forward_backward(net, x), kept))


def test_an_error_in_a_served_forward_puts_the_parameters_back(net):
    casts = WeightCasts(net)
    casts.install()
    weight = net.big_conv.weight
    with pytest.raises(RuntimeError), torch.autocast("cpu", dtype=torch.bfloat16):
        net(torch.randn(1, 3, 5, 5))  # 3 channels where big_conv takes 64
    assert net.big_conv.weight is weight and weight.dtype == torch.float32
    casts.remove()


def test_nested_casts_leave_the_model_as_it_was(net):
    x = torch.randn(2, 64, 5, 5)
    plain = forward_backward(net, x)
    params = dict(net.named_parameters())
    outer, inner = WeightCasts(net), WeightCasts(net)
    outer.install()
    inner.install()
    nested = forward_backward(net, x)
    inner.remove()
    outer.remove()
    assert all(torch.equal(a, b) for a, b in zip(plain, nested))
    assert dict(net.named_parameters()) == params and all(p.dtype == torch.float32 for p in params.values())


def test_a_pruned_layer_is_not_served(net):
    torch.nn.utils.prune.l1_unstructured(net.big_conv, "weight", amount=0.5)  # weight: a plain attribute now
    assert WeightCasts(net)._layers == [net.big_linear]


def test_a_subclass_with_its_own_forward_is_not_served():
    class Standardized(nn.Conv2d):
        def forward(self, x):
            w = (self.weight - self.weight.mean()) / self.weight.std()
            return self._conv_forward(x, w, self.bias)
    model = nn.Sequential(Standardized(64, 128, 3))
    assert WeightCasts(model)._layers == []


@pytest.mark.parametrize("precision,kept", [("bf16", True), ("fp32", False)])
def test_a_prepared_model_keeps_casts_in_reduced_precision_and_removes_its_hooks_on_exit(net, precision, kept):
    net = nn.Sequential(net)  # a layer name to hook
    with PreparedModel(net, pvf.Settings(size=5, precision=precision, memory_format="contiguous"), "cpu") as prepared:
        prepared(torch.rand(1, 64, 5, 5), ["0.big_linear"])
        assert bool(prepared._casts._casts) == kept
    assert not any(m._forward_pre_hooks or m._forward_hooks for m in net.modules())
