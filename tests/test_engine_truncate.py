"""Truncated forward: nothing after the deepest needed layer runs; the model is left as it was."""
import contextlib
import types

import pytest
import torch
from torch import nn

import pyviz_fast as pvf
from engine_nets import Explodes, tiny_cnn
from pyviz_fast.engine import execution
from pyviz_fast.engine.truncate import TapValue, TruncatedForward, chained


def test_layer_after_the_target_is_never_called():
    model = tiny_cnn(tail=Explodes())
    with TruncatedForward(model, ["0", "2"]) as run:
        acts = run(torch.rand(2, 3, 16, 16))
    assert acts["0"].shape == (2, 8, 16, 16) and acts["2"].shape == (2, 16, 16, 16)
    with pytest.raises(AssertionError, match="never be called|was called"):
        model(torch.rand(1, 3, 16, 16))  # the guard is real


def test_render_never_calls_layers_past_the_deepest_unit():
    model = tiny_cnn(tail=Explodes())
    res = pvf.render(model, ["0:1", "2:3", "2@deepdream"], size=16, steps=3, backend="reference")
    assert res.status == ["ok"] * 3


def test_hooks_removed_and_model_state_restored():
    model = tiny_cnn().train()
    grads = [p.requires_grad for p in model.parameters()]
    pvf.render(model, "2:0", size=16, steps=2, backend="reference", precision="fp32", memory_format="channels_last")
    assert model.training and [p.requires_grad for p in model.parameters()] == grads
    assert all(not m._forward_hooks for m in model.modules())
    assert model[0].weight.is_contiguous()


@pytest.mark.parametrize("memory_format", ["auto", "contiguous", "channels_last"])
def test_channels_last_model_comes_back_channels_last(memory_format):
    model = tiny_cnn().to(memory_format=torch.channels_last)
    pvf.render(model, "2:0", size=16, steps=2, backend="reference", precision="fp32", memory_format=memory_format)
    assert all(model[i].weight.is_contiguous(memory_format=torch.channels_last) for i in (0, 2))


def _state(model):
    """What a render must leave as it found: training flags, requires_grad, each tensor's layout."""
    return ([m.training for m in model.modules()], [p.requires_grad for p in model.parameters()],
            [t.is_contiguous() for t in model.state_dict().values()])


@pytest.mark.parametrize("fails", ["kernels", "interrupt"])
def test_a_set_up_that_fails_part_way_leaves_the_model_as_it_was(monkeypatch, fails):
    """A failure after the set-up had changed the model (the kernels' context, the memory format, a
    Ctrl-C) left it in eval mode with frozen weights and perhaps another layout."""
    model = tiny_cnn().train()
    model[1].eval()
    model[0].weight.requires_grad_(False)
    model[2].weight.data = model[2].weight.data.contiguous(memory_format=torch.channels_last)
    before = _state(model)
    if fails == "kernels":  # after everything else: the model is already channels_last
        @contextlib.contextmanager
        def broken_kernels():
            raise RuntimeError("no kernels")
            yield
        monkeypatch.setattr(execution, "batch_invariant_kernels", broken_kernels)
    else:
        to = model.to

        def interrupted_to(*args, **kwargs):
            if "memory_format" in kwargs:
                raise KeyboardInterrupt
            return to(*args, **kwargs)
        monkeypatch.setattr(model, "to", interrupted_to)
    render = dict(size=16, steps=2, backend="reference", precision="fp32", memory_format="channels_last",
                  batch_invariant=True)
    with pytest.raises(RuntimeError if fails == "kernels" else KeyboardInterrupt):
        pvf.render(model, "2:0", **render)
    assert _state(model) == before
    monkeypatch.undo()
    assert pvf.render(model, "2:0", **render).status == ["ok"]
    assert _state(model) == before


def test_activation_keeps_its_graph():
    model = tiny_cnn()
    x = torch.rand(1, 3, 8, 8, requires_grad=True)
    with TruncatedForward(model, ["2"]) as run:
        act = run(x)["2"]
    grad, = torch.autograd.grad(act.sum(), x)
    assert grad.abs().sum() > 0


def _doubling_tap(output):
    return output * 2, output.sum((1, 2, 3))


@pytest.mark.parametrize("copied", [False, True])
def test_a_tap_runs_inside_the_forward_and_returns_its_value(copied):
    """A tap's output goes on through the model in the layer's place (a copied layer's beside the
    model's path, which then goes on as it was); its value comes back under TapValue(layer)."""
    model = tiny_cnn()
    x = torch.rand(2, 3, 8, 8)
    with TruncatedForward(model, ["1", "2"], copied={"1"} if copied else (), taps={"1": _doubling_tap}) as run:
        acts = run(x)
    relu = model[1](model[0](x))
    torch.testing.assert_close(acts["1"], relu * 2)
    torch.testing.assert_close(acts[TapValue("1")], relu.sum((1, 2, 3)))
    torch.testing.assert_close(acts["2"], model[2](relu if copied else relu * 2))
    assert TapValue("2") not in acts


def test_chained_taps_run_in_turn_on_each_others_output():
    model = tiny_cnn()
    x = torch.rand(2, 3, 8, 8)
    with TruncatedForward(model, ["1", "2"], taps={"1": chained(_doubling_tap, _doubling_tap)}) as run:
        acts = run(x)
    relu = model[1](model[0](x))
    torch.testing.assert_close(acts["1"], relu * 4)
    first, second = acts[TapValue("1")]
    torch.testing.assert_close(first, relu.sum((1, 2, 3)))
    torch.testing.assert_close(second, 2 * relu.sum((1, 2, 3)))


def test_a_goal_whose_parts_tap_the_same_layer_is_refused():
    """A forward keeps one tap value per layer, so a second part's tap of a layer would replace the
    first's and that part would read another's value: refused, naming the layer."""
    from pyviz_fast.engine.goals import Goal
    part = lambda taps: types.SimpleNamespace(layers=list(taps), taps=taps)  # noqa: E731
    tap = lambda output: (output, output.sum())  # noqa: E731
    assert set(Goal(part({"conv1": tap}), [part({"conv2": tap})]).taps) == {"conv1", "conv2"}
    with pytest.raises(ValueError, match="two parts of a goal tap layer 'conv1'"):
        Goal(part({"conv1": tap}), [part({"conv1": tap})])


def test_layer_not_called_by_forward_is_reported():
    class Skips(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.unused = nn.Conv2d(3, 2, 1), nn.Conv2d(2, 2, 1)

        def forward(self, x):
            return self.conv(x)

    with TruncatedForward(Skips(), ["unused"]) as run, pytest.raises(ValueError, match="not called"):
        run(torch.rand(1, 3, 4, 4))
    with pytest.raises(ValueError, match="'unused'.* not called"):
        pvf.render(Skips(), "unused:0", size=8, steps=1, backend="reference")


def test_auxiliary_head_of_googlenet_is_a_class_unit():
    import torchvision
    model = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False).eval()
    res = pvf.render(model, ["aux1.fc2:3", "fc:3"], size=64, steps=2, backend="reference", precision="fp32")
    assert res.status == ["ok", "ok"] and not model.training
    assert all(not m.training for m in model.modules())


def test_output_pseudo_layer_runs_everything():
    model = tiny_cnn()
    x = torch.rand(2, 3, 8, 8)
    with TruncatedForward(model, ["0", "output"]) as run:
        acts = run(x)
    torch.testing.assert_close(acts["output"], model(x))
