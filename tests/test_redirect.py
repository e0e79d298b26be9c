"""ReLU redirection (engine/redirect.py): the forward is unchanged, the backward also pushes
switched-off units on, only for the first steps, and the user's model is left as it was."""
import copy
import importlib

import pytest
import torch
from torch.nn import functional as F

import pyviz_fast as pvf
from engine_nets import starting_images
from pyviz_fast import zoo
from pyviz_fast.audit.atlas import trajectory_stats
from pyviz_fast.engine.goals.gram import gram_error_tap
from pyviz_fast.engine.goals.style import squared_error_tap
from pyviz_fast.engine.layout import Activation
from pyviz_fast.engine.redirect import ascent_gradients, mark_targets, redirected
from pyviz_fast.zoo.shapes_data import make_batch

ACTIVATIONS = {
    "F.relu": F.relu, "nn.ReLU": torch.nn.ReLU(), "nn.ReLU(inplace)": lambda x: torch.nn.ReLU(inplace=True)(x * 1),
    "torch.relu": torch.relu, "Tensor.relu_": lambda x: (x * 1).relu_(), "nn.GELU": torch.nn.GELU(),
    "F.gelu tanh": lambda x: F.gelu(x, approximate="tanh"),
}


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_forward_is_identical_and_backward_passes_only_activating_gradient(name):
    fn = ACTIVATIONS[name]
    x = torch.tensor([-3.0, -3.0, -0.1, 0.5, 2.0], requires_grad=True)
    upstream = torch.tensor([1.0, -1.0, 1.0, 1.0, -1.0])  # d objective / d output
    with redirected(True):
        y = fn(x)
    grad, = torch.autograd.grad(y, x, upstream)
    plain = fn(x)
    true_grad, = torch.autograd.grad(plain, x, upstream)
    assert torch.equal(y, plain)
    assert grad[0] == 1.0 and true_grad[0] <= 0.0  # off and pushed on: passes (the true one does not)
    assert grad[1] == true_grad[1]                  # off and pushed further off: the true gradient
    assert torch.equal(grad[3:], true_grad[3:])     # on: the true gradient


@pytest.mark.parametrize("layouts", ["contiguous", "channels_last", "mixed"])
def test_redirected_backward_is_the_rule_on_random_maps(layouts):
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(3, 5, 7, 9, generator=gen)
    upstream = torch.randn(3, 5, 7, 9, generator=gen)
    if layouts != "contiguous":
        x = x.contiguous(memory_format=torch.channels_last)
        upstream = upstream if layouts == "mixed" else upstream.contiguous(memory_format=torch.channels_last)
    for act, true_fn in ((F.relu, F.relu), (F.gelu, F.gelu)):
        leaf = x.clone().requires_grad_(True)
        with redirected(True):
            grad, = torch.autograd.grad(act(leaf), leaf, upstream)
        true_grad, = torch.autograd.grad(true_fn(leaf), leaf, upstream)
        off, pushed_on = (x <= 0) if act is F.relu else (x < 0), upstream > 0
        assert torch.equal(grad, torch.where(off & pushed_on, upstream, true_grad)), act
        # an activation left unmarked, in a forward that marked another (the target), keeps its true gradient
        with redirected(True):
            target, below = act(leaf.clone()), act(leaf)
            mark_targets([target])
        grad_below, = torch.autograd.grad(below, leaf, upstream)
        assert torch.equal(grad_below, true_grad), act


def test_inactive_context_changes_nothing():
    x = torch.tensor([-1.0], requires_grad=True)
    with redirected(False):
        grad, = torch.autograd.grad(F.relu(x), x, torch.ones(1))
    assert grad.item() == 0.0


def _style_tap(a):
    """a through a style layer's tap (the forward's alias of it, beside its Gram error)."""
    target = torch.ones(1, 1, 1)
    return gram_error_tap(Activation(tuple(a.shape[1:]), "nchw"), target, target.flatten(1).sum(1))(a)[0]


def _content_tap(a):
    """a through a content layer's tap (its alias, beside its squared error)."""
    return squared_error_tap(torch.zeros_like(a), torch.ones(a.shape[0]))(a)[0]


@pytest.mark.parametrize("read", [lambda a: a, lambda a: torch.cat([a, a], 1).flatten(2)[:, :2],
                                  lambda a: F.max_pool2d(a, 2) + a[..., ::2, ::2], _style_tap, _content_tap,
                                  lambda a: _style_tap(_content_tap(a))],
                         ids=["directly", "viewed", "pooled and added", "style tap", "content tap",
                              "content and style taps"])
@pytest.mark.parametrize("act", [F.relu, F.gelu])
def test_only_the_targets_own_activation_is_redirected(act, read):
    x = torch.tensor([[[[1.0, -2.0], [0.5, -4.0]]]], requires_grad=True)  # the lower units half on, the target off

    def gradient(lower_redirected, mark):
        lower = act(x)                    # a lower activation
        with redirected(True):
            lower = act(x) if lower_redirected else lower
            target = act(2 * lower - 5)   # the unit the objective reads (through shape ops, pooling, a skip)
            mark_targets([read(target) if mark else target * 1.5])  # * 1.5: read from a weight: nothing marked
        return torch.autograd.grad(target.sum(), x)[0]

    only_target = gradient(lower_redirected=False, mark=False)  # the target is the only redirected activation
    true_grad = torch.autograd.grad(act(2 * act(x) - 5).sum(), x)[0]
    assert not torch.allclose(only_target, true_grad)             # redirection changes something here
    assert torch.equal(gradient(lower_redirected=True, mark=True), only_target)  # the lower one keeps its own
    assert not torch.allclose(gradient(lower_redirected=True, mark=False), only_target)  # nothing marked: all redirect


def test_shapes_resnet_units_are_revived_by_redirecting_only_their_own_relu(monkeypatch):
    """These robust ShapesResNet channels fire on real images but are off on the gray start;
    redirecting every ReLU of the forward (Lucid's rule) left them off, their own ReLU revives them."""
    units = ["layer3:20", "layer3:54", "layer3:63", "layer3:89", "layer3:90", "layer4:25", "layer4:78", "layer4:87"]
    settings = pvf.Settings(size=64, steps=64, precision="fp32", memory_format="contiguous")
    revived = pvf.render(zoo.shapes_resnet(), units, settings, seed=0)
    assert (revived.objective > 0).all() and "dead" not in revived.status, (revived.objective, revived.status)
    monkeypatch.setattr(importlib.import_module("pyviz_fast.engine.render"), "mark_targets", lambda acts: None)
    every_relu = pvf.render(zoo.shapes_resnet(), units, settings, seed=0)  # nothing marked: every ReLU redirects
    assert int((every_relu.objective <= 0).sum()) >= 5, every_relu.objective


@pytest.mark.parametrize("act", [F.relu, F.gelu])
def test_only_images_whose_unit_is_off_get_the_redirected_gradient(act):
    torch.manual_seed(0)
    weight, bias = torch.randn(2, 3, 3, 3), torch.tensor([0.0, -100.0])  # channel 1 is off on any image
    images = torch.rand(2, 3, 8, 8, requires_grad=True)

    def forward():  # image 0 maximizes channel 0 (fires), image 1 channel 1 (off)
        acts = act(F.conv2d(images, weight, bias))
        objective = torch.stack([acts[0, 0].mean(), acts[1, 1].mean()])
        return objective, objective

    reported, (grad,) = ascent_gradients(forward, (images,), redirect=True)
    true_reported, (true_grad,) = ascent_gradients(forward, (images,), redirect=False)
    assert torch.equal(reported, true_reported) and reported[0] > 0 >= reported[1]
    assert torch.equal(grad[0], true_grad[0])  # fires: the true gradient, bit for bit
    assert true_grad[1].abs().sum() == 0 and grad[1].abs().sum() > 0  # off: only redirection moves it


def test_a_compiled_model_redirects_as_the_eager_one(shapesnet):
    """compile=True traces the model, but the redirected activations stay eager: their backward
    reads the rows and targets each step sets after its forward (traced, it kept those of the
    first trace: up to 1.0 apart in pixels)."""
    settings = dict(size=40, steps=8, precision="fp32", memory_format="contiguous", progress=False, seed=0,
                    redirect_relu_steps=1)
    eager = pvf.render(shapesnet, "conv3:0-15", compile=False, **settings)
    compiled = pvf.render(shapesnet, "conv3:0-15", compile=True, **settings)
    assert (eager.objective <= 0).any() and (eager.objective > 0).any()  # a batch of both kinds
    torch.testing.assert_close(compiled.images, eager.images, atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def shapesnet():
    return zoo.shapesnet()


def _dead_on_noise(model, layer, settings):
    """Channels of ``layer`` that are exactly zero on the first starting image, and that fire on real images."""
    start = starting_images(f"{layer}:0", settings, seed=0)
    acts = {}
    handle = dict(model.named_modules())[layer].register_forward_hook(lambda m, i, out: acts.__setitem__("a", out))
    with torch.no_grad():
        model(start)
        off = acts["a"][0].flatten(1).amax(1) <= 0
        model(make_batch(40, size=64, seed=7)[0])
        fires = acts["a"].transpose(0, 1).flatten(1).amax(1) > 0
    handle.remove()
    return (off & fires).nonzero().flatten().tolist()


def test_dead_relu_units_are_revived(shapesnet):
    settings = pvf.Settings(size=48, steps=16, batch_size=64)
    dead_candidates = _dead_on_noise(shapesnet, "conv3", settings)
    assert len(dead_candidates) >= 5, dead_candidates  # ShapesNet's conv3 has 14 such channels
    units = [f"conv3:{k}" for k in dead_candidates]
    without = pvf.render(shapesnet, units, settings, seed=0, redirect_relu_steps=0)
    with_redirect = pvf.render(shapesnet, units, settings, seed=0, redirect_relu_steps=6)
    dead_without = sum(trajectory_stats(t)["dead"] for t in without.trajectory)
    dead_with = sum(trajectory_stats(t)["dead"] for t in with_redirect.trajectory)
    # Jitter alone wakes a few of them (4 of 14); the rest stay dead without redirection.
    assert dead_without >= 5 and dead_with == 0, (dead_without, dead_with)
    assert (with_redirect.objective > 0).all()  # still firing once the true gradient took over


def test_units_that_fire_are_rendered_as_without_redirection(shapesnet):
    """The units whose objective stays > 0 through the redirected steps get exactly the render
    they get with redirection off (on ShapesResNet, redirecting every image flattened 5 units)."""
    settings = pvf.Settings(size=48, steps=16, batch_size=64)
    units = [f"conv3:{k}" for k in range(24)]
    without = pvf.render(shapesnet, units, settings, seed=0, redirect_relu_steps=0)
    with_redirect = pvf.render(shapesnet, units, settings, seed=0, redirect_relu_steps=6)
    firing = (without.trajectory[:, :6] > 0).all(1)
    assert 10 <= int(firing.sum()) < len(units), firing  # both kinds in one batch
    assert torch.equal(with_redirect.images[firing], without.images[firing])
    assert not torch.equal(with_redirect.images[~firing], without.images[~firing])


def _snapshot(model):
    return {"state": copy.deepcopy(model.state_dict()), "types": [type(m) for m in model.modules()],
            "hooks": [(len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
                      for m in model.modules()],
            "training": [m.training for m in model.modules()], "grad": [p.requires_grad for p in model.parameters()]}


def _relu_gradient_is_ordinary():
    x = torch.tensor([-1.0], requires_grad=True)
    return torch.autograd.grad(F.relu(x), x, torch.ones(1))[0].item() == 0.0


def test_model_is_unchanged_after_render_even_on_error(shapesnet):
    before = _snapshot(shapesnet)
    pvf.render(shapesnet, ["conv3:0", "conv2:1"], size=40, steps=3, redirect_relu_steps=2)

    def broken(info):
        raise RuntimeError("callback bug")

    with pytest.raises(RuntimeError, match="callback bug"):  # raised during a redirected step
        pvf.render(shapesnet, ["conv3:0"], size=40, steps=3, redirect_relu_steps=3, callback=broken)
    after = _snapshot(shapesnet)
    assert all(torch.equal(before["state"][k], after["state"][k]) for k in before["state"])
    assert {k: v for k, v in before.items() if k != "state"} == {k: v for k, v in after.items() if k != "state"}
    assert _relu_gradient_is_ordinary()


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_bad_redirect_steps_are_rejected(bad):
    with pytest.raises(ValueError, match="redirect_relu_steps"):
        pvf.Settings(redirect_relu_steps=bad).validate()


def test_vit_units_that_end_off_fire_on_the_views_they_were_optimized_for():
    """The ViT MLP neurons that end 'off' (final objective <= 0) are not dead, so redirection has
    nothing to revive: their images fire them at most sub-patch shifts, as jittered during the
    render, but not at the patch-aligned one the final objective is read at; without jitter they
    fire strongly. Hence the atlas does not call GELU units that end <= 0 dead."""
    model = zoo.shapes_vit()
    layer, units = "blocks.0.mlp.act", [118, 122, 235]  # off at the end of a 32-step render (BENCHMARKS.md)
    settings = pvf.Settings(size=64, steps=32, precision="fp32", memory_format="contiguous")
    res = pvf.render(model, [f"{layer}:{k}" for k in units], settings, seed=0)
    assert (res.objective <= 0).all() and res.status == ["ok"] * len(units), (res.objective, res.status)
    assert not any(trajectory_stats(t.tolist() + [v])["dead"] for t, v in zip(res.trajectory, res.objective.tolist()))
    acts = {}
    handle = dict(model.named_modules())[layer].register_forward_hook(lambda m, i, out: acts.__setitem__("a", out))
    with torch.no_grad():
        for image, k in zip(res.images, units):
            model(torch.stack([image.roll((dy, dx), (1, 2)) for dy in range(8) for dx in range(8)]))
            assert acts["a"][..., k].mean(1).mean() > 0.1, k  # fires on average over the 64 sub-patch phases
    handle.remove()
    unjittered = pvf.render(model, [f"{layer}:{k}" for k in units], settings.replace(jitter=0), seed=0)
    assert (unjittered.objective > 1.0).all(), unjittered.objective


def test_shapes_resnet_units_that_redirecting_every_image_flattened_still_fire():
    """Redirecting the gradient of every image (main before this rule) drove these two layer4
    channels to 0 for good (final objective 0.0); untouched, they end at about 6 and 14."""
    res = pvf.render(zoo.shapes_resnet(), ["layer4:42", "layer4:51"],
                     pvf.Settings(size=64, steps=64, precision="fp32", memory_format="contiguous"), seed=0)
    assert (res.objective > 1.0).all(), res.objective
