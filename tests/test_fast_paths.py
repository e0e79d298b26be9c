"""Faster forms of the engine's hot paths give what the plain formulas give: the Gram matrix's
written-out backward (and its gradient laid out like the activation), the style loss's sums,
MaCo's crops and per-unit noise, and the per-step draws read through a memo."""
import types

import pytest
import torch
import torch.nn.functional as F

import pyviz_fast as pvf
from pyviz_fast.engine.draws import CHUNK, Draws
from pyviz_fast.engine.parameterizations.maco import Maco
from pyviz_fast.engine.schedules import stages

from pyviz_fast.engine.goals.gram import gram, gram_error_tap, sibling_similarity, squared_norms
from pyviz_fast.engine.goals.style import StyleLoss, relative_error
from pyviz_fast.engine.layout import Activation
from pyviz_fast.engine.truncate import TapValue
from test_periodic_crops import tiled_oracle


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


def _tapped(act, activation, target):
    """(the tap's output, the style layer's error) of act, as a forward's tap takes them."""
    return gram_error_tap(activation, target, squared_norms(target))(act)


@pytest.mark.parametrize("layout", ["nchw", "channels_last", "nhwc", "tokens"])
@pytest.mark.parametrize("on_path", [True, False], ids=["on the model's path", "alone"])
def test_a_style_layers_tap_is_the_plain_formula_and_gradient(layout, on_path):
    """A style layer's tap: the plain relative error of its Gram matrix, and a gradient that is
    the plain one plus, on the model's path, the gradient coming back through its output (added
    in the same pass); laid out as the activation. The tap's output is the activation itself."""
    act, activation = _activation(layout)
    target = gram(torch.randn(act.shape, generator=torch.Generator().manual_seed(6)), activation)
    downstream = torch.randn(act.shape, generator=torch.Generator().manual_seed(7))
    mine, plain = act.clone().requires_grad_(True), act.clone().requires_grad_(True)
    x, y = mine * 2, plain * 2
    out, error = _tapped(x, activation, target)
    want = relative_error(gram(y, activation), target)
    assert torch.equal(out, x)
    torch.testing.assert_close(error, want, rtol=1e-6, atol=0)  # sums in double (kernels) or float32 (torch)
    weights = torch.tensor([1.0, -2.0, 0.5])
    after = (out * downstream).sum() if on_path else 0
    grad_mine, = torch.autograd.grad((error * weights).sum() + after, mine)
    grad_plain, = torch.autograd.grad((want * weights).sum() + ((y * downstream).sum() if on_path else 0), plain)
    torch.testing.assert_close(grad_mine, grad_plain, rtol=1e-6, atol=1e-6 * grad_plain.abs().max().item())
    assert grad_mine.stride() == act.stride()


@pytest.mark.parametrize("layout", ["nchw", "channels_last", "nhwc", "tokens"])
def test_a_bf16_style_loss_reads_its_activations_without_copies(layout):
    """A bf16 execution's activations go to the Gram products as they are: no conversion node
    between the loss and the activation, a bf16 gradient laid out as the activation, and values
    close to the loss of the same values in float32."""
    act, activation = _activation(layout)
    act = act.bfloat16()
    target = gram(torch.randn(act.shape, generator=torch.Generator().manual_seed(6)), activation)
    mine = act.clone().requires_grad_(True)
    plain = act.float().requires_grad_(True)
    _, fused = _tapped(mine, activation, target)
    _, want = _tapped(plain, activation, target)
    between, fn = [], fused.grad_fn
    while type(fn).__name__ != "AccumulateGrad":  # from the loss down to the leaf
        fn, = [f for f, _ in fn.next_functions if f is not None]
        between.append(type(fn).__name__)
    assert "ToCopyBackward0" not in between, between  # a view of the activation at most (nhwc, tokens)
    torch.testing.assert_close(fused, want, rtol=0.02, atol=0)
    grad_mine, = torch.autograd.grad(fused.sum(), mine)
    grad_plain, = torch.autograd.grad(want.sum(), plain)
    assert grad_mine.dtype == torch.bfloat16 and grad_mine.stride() == act.stride()
    torch.testing.assert_close(grad_mine.float(), grad_plain, rtol=0, atol=0.03 * grad_plain.abs().max().item())


def _few_positions(layout, dtype):
    """An activation of 64 channels over 6 positions (P <= C / 8) laid out as ``layout``."""
    gen = torch.Generator().manual_seed(11)
    if layout == "tokens":
        return torch.randn(3, 6, 64, generator=gen).to(dtype), Activation((6, 64), "tokens")
    act = torch.randn(3, 64, 2, 3, generator=gen).to(dtype)
    return (act.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else act), \
        Activation((64, 2, 3), "nchw")


@pytest.mark.parametrize("layout", ["nchw", "channels_last", "tokens"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("on_path", [True, False], ids=["on the model's path", "alone"])
def test_a_style_layer_of_few_positions_takes_its_loss_from_the_positions_side(layout, dtype, on_path, monkeypatch):
    """P <= C / 8: no C x C residual is made (the residual's ops never run), and the error and the
    gradient (on the path, with one coming back through the tap's output) are the plain formula's in float64
    against a target that is not symmetric: to float32 rounding, the gradient to its dtype's;
    the gradient in the activation's dtype and layout."""
    from pyviz_fast import ops
    act, activation = _few_positions(layout, dtype)
    C = activation.channels
    gen = torch.Generator().manual_seed(12)
    target = gram(torch.randn(act.shape, generator=gen), activation) + 0.5 * torch.randn(3, C, C, generator=gen)
    norms = squared_norms(target)
    def refuse(*_, **__):
        raise AssertionError("made the C x C residual")
    monkeypatch.setattr(ops, "gram_error", refuse)
    monkeypatch.setattr(ops, "gram_error_backward", refuse)
    downstream = torch.randn(act.shape, generator=gen).to(dtype) * on_path
    weights = torch.tensor([1.0, -2.0, 0.5])
    mine = act.clone().requires_grad_(True)
    out, error = gram_error_tap(activation, target, norms)(mine)
    grad, = torch.autograd.grad((error * weights).sum() + (out * downstream).sum(), mine)
    plain = act.double().requires_grad_(True)
    f = activation.channels_first(plain).reshape(3, C, -1)
    want = ((f @ f.mT / f.shape[-1] - target.double()).square().sum((1, 2)) / norms.double())
    want_grad, = torch.autograd.grad((want * weights.double()).sum() + (plain * downstream.double()).sum(), plain)
    assert error.dtype == torch.float32
    torch.testing.assert_close(error.double(), want, rtol=1e-6, atol=0)
    assert grad.dtype == dtype and grad.stride() == act.stride()
    tolerance = 1e-6 if dtype == torch.float32 else 8e-3
    torch.testing.assert_close(grad.double(), want_grad, rtol=0, atol=tolerance * want_grad.abs().max().item())


def test_the_positions_side_error_of_a_layer_at_its_target_is_zero_not_negative():
    """Its three terms cancel where the Gram matrix is the target: the error is rounding's size,
    and never below zero (unclamped, about half of such images come out below)."""
    gen = torch.Generator().manual_seed(13)
    act = torch.randn(32, 64, 2, 3, generator=gen) * torch.rand(32, 1, 1, 1, generator=gen) * 10
    activation = Activation((64, 2, 3), "nchw")
    target = gram(act, activation)
    _, error = gram_error_tap(activation, target, squared_norms(target))(act)
    assert (error >= 0).all() and error.max() < 1e-6, error


@pytest.mark.parametrize("view", ["sliced", "permuted"])
def test_gram_of_an_activation_no_reshape_can_view_matches_autograd(view):
    """Strides a [B, C, P] view cannot express: the rows are copied, and the gradient made anew."""
    gen = torch.Generator().manual_seed(7)
    base = torch.randn(3, 5, 6, 14, generator=gen) if view == "sliced" else torch.randn(3, 7, 5, 6, generator=gen)
    activation = Activation((5, 6, 7), "nchw")
    weights = torch.randn(3, 5, 5, generator=torch.Generator().manual_seed(4))
    grads = []
    for fn in (gram, _plain_gram):
        leaf = base.clone().requires_grad_(True)
        act = leaf[..., ::2] if view == "sliced" else leaf.permute(0, 2, 3, 1)  # [3, 5, 6, 7] either way
        grads.append(torch.autograd.grad((fn(act, activation) * weights).sum(), leaf)[0])
    torch.testing.assert_close(grads[0], grads[1])
    assert grads[0].abs().sum() > 0


@pytest.mark.parametrize("content_layer", ["a", "b"], ids=["content layer also a style layer", "a layer of its own"])
def test_the_style_loss_through_its_taps_equals_the_loss_of_captured_activations(content_layer):
    """Each layer's errors are taps inside the forward (a content layer that is also a style layer
    takes both, chained): the same loss and gradient as every error taken beside the path from
    captured activations."""
    act, activation = _activation("channels_last")
    gen = torch.Generator().manual_seed(8)
    content = torch.randn(act.shape, generator=gen).contiguous(memory_format=torch.channels_last)
    style_layers = ["a", "b"] if content_layer == "a" else ["a"]
    grams = {layer: gram(torch.randn(act.shape, generator=gen), activation) for layer in style_layers}
    loss = StyleLoss(content_layer, content, grams, {"a": activation, "b": activation}, 1.0, 10.0)
    assert set(loss.taps) == {"a", "b"}
    results = []
    for through_taps in (True, False):
        leaf = act.clone().requires_grad_(True)
        a = leaf * 2
        acts = {"a": a}
        if through_taps:
            a, acts[TapValue("a")] = loss.taps["a"](a)
        b = a.relu() + 1  # the rest of the model's path
        acts["b"] = b
        if through_taps:
            b, acts[TapValue("b")] = loss.taps["b"](b)
        if through_taps:  # every error in a tap: the content layer's and "a"'s style error share one
            assert [len(acts[TapValue(layer)]) for layer in "ab"] == ([2, 1] if content_layer == "a" else [1, 1])
        value = loss(acts)
        grad, = torch.autograd.grad((value * torch.tensor([1.0, -2.0, 0.5])).sum() + b.sum(), leaf)
        results.append((value, grad))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-6, atol=0)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-5, atol=1e-6)


def test_relative_error_matches_the_flattened_formula():
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(4, 8, 5, 5, generator=gen).contiguous(memory_format=torch.channels_last)
    target = torch.randn(4, 8, 5, 5, generator=gen)
    want = (x - target).flatten(1).pow(2).sum(1) / target.flatten(1).pow(2).sum(1)
    mine, plain = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    got = relative_error(mine, target)
    torch.testing.assert_close(got, want)
    weights = torch.tensor([1.0, -2.0, 0.5, 3.0])
    grad_mine, = torch.autograd.grad((got * weights).sum(), mine)
    grad_plain, = torch.autograd.grad((((plain - target).flatten(1).pow(2).sum(1) / target.flatten(1).pow(2).sum(1))
                                       * weights).sum(), plain)
    torch.testing.assert_close(grad_mine, grad_plain)
    assert grad_mine.stride() == x.stride(), "the gradient keeps the activation's layout"


def _maco(hw, units=3, crops=4, **settings):
    s = pvf.Settings(size=hw, steps=6, param="maco", maco_crops=crops, maco_noise=(0.1, 0.1)).replace(**settings)
    run = types.SimpleNamespace(s=s, stages=stages(s.hw, s.steps, 1, 1.4), channels=3, device=torch.device("cpu"),
                                backend="auto")
    return Maco(run, Draws.for_units([f"fc:{u}" for u in range(units)], 7, s.steps, s.jitter)), s


def _periodic_crops(maco, t):
    """The crops of step t, by grid_sample over the image tiled 3 x 3 (its periodic continuation)."""
    return tiled_oracle(maco.images(), maco.boxes[t])


def test_maco_noise_is_each_units_own_stream():
    maco, s = _maco((16, 16))
    crops, _ = maco.inputs(0)
    clean = _periodic_crops(maco, 0)
    again, _ = _maco((16, 16))
    want = torch.stack([torch.randn(4, 3, 16, 16, generator=g) for g in again.draws.generators]).view_as(crops)
    torch.testing.assert_close(crops.detach(), clean + 0.1 * want)


@pytest.mark.parametrize("share, wrapping", [(0.0, 0), (0.5, 4), (1.0, 8)])
@pytest.mark.parametrize("hw", [(16, 16), (15, 21)])
def test_maco_crops_that_wrap_see_the_periodic_image(hw, share, wrapping):
    maco, s = _maco(hw, crops=8, maco_wrap=share, maco_noise=(0.0, 0.0))
    for t in range(s.steps):
        crops, _ = maco.inputs(t)
        torch.testing.assert_close(crops.detach(), _periodic_crops(maco, t), atol=1e-5, rtol=0)
    half, centers = maco.boxes[..., :1] / 2, maco.boxes[..., 1:]
    outside = ((centers < half) | (centers > 1 - half)).any(-1)  # [steps, units, crops]
    assert int(outside.any(0).any(0).sum()) <= wrapping  # only wrapping crops leave the image
    if wrapping:
        assert outside.float().mean() > 0.05 * wrapping / 8  # and they do, often


@pytest.mark.parametrize("biases", [(-100.0, -100.0), (0.0, -100.0), (0.0, 0.0)], ids=["all off", "mixed", "all fire"])
@pytest.mark.parametrize("act", [F.relu, F.gelu])
def test_one_redirected_pass_gives_the_two_pass_results_bit_for_bit(biases, act):
    """Rows of the images that are off redirect in one backward; an activation whose rows are not
    the model inputs (here: two inputs per row) makes the plain forward follow."""
    from pyviz_fast.engine.redirect import ascent_gradients, mark_targets
    gen = torch.Generator().manual_seed(0)
    weight, bias = torch.randn(2, 3, 3, 3, generator=gen), torch.tensor(biases)
    images = torch.rand(2, 3, 8, 8, generator=gen, requires_grad=True)

    def forward(batch_first):  # image b maximizes channel b of its own two model inputs (crops)
        pre = F.conv2d(images.repeat_interleave(2, 0), weight, bias)
        acts = act(pre) if batch_first else act(pre.view(2, -1, *pre.shape[2:])).view_as(pre)
        mark_targets([acts])
        objective = torch.stack([acts[0:2, 0].mean(), acts[2:4, 1].mean()])
        return objective, objective - 0.1 * images.square().mean((1, 2, 3))
    one_reported, (one,) = ascent_gradients(lambda: forward(True), (images,), redirect=True, inputs=4)
    two_reported, (two,) = ascent_gradients(lambda: forward(False), (images,), redirect=True, inputs=4)
    assert torch.equal(one_reported, two_reported) and torch.equal(one, two)
    _, (true,) = ascent_gradients(lambda: forward(True), (images,), redirect=False)
    fires = one_reported > 0
    assert torch.equal(one[fires], true[fires]) and one.abs().sum() > 0
    if biases == (0.0, -100.0):
        assert not torch.equal(one[1], true[1])  # the off image takes the redirected gradient


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_objective_of_rows_in_order_skips_the_index_with_the_same_values_and_gradient(memory_format):
    """A batch whose rows are its images in order reads the activation itself (no gather of rows,
    no scatter of the gradient); a batch in another order gathers: the same numbers either way."""
    from pyviz_fast.engine.objectives import ObjectivePlan
    from pyviz_fast.engine.units import Unit
    act = torch.randn(3, 4, 5, 5, generator=torch.Generator().manual_seed(8)).contiguous(memory_format=memory_format)
    shapes = {"conv": Activation((4, 5, 5), "nchw")}
    mixed = [Unit.deepdream("conv"), Unit.channel("conv", 1), Unit.deepdream("conv")]  # deepdream rows 0, 2
    in_order = ObjectivePlan([Unit.deepdream("conv")] * 3, shapes)
    assert in_order.groups[0].in_order and not ObjectivePlan(mixed, shapes).groups[0].in_order
    a, b = act.clone().requires_grad_(True), act.clone().requires_grad_(True)
    fast = in_order({"conv": a})
    plain = ObjectivePlan(mixed, shapes)({"conv": b})
    want = act.pow(2).flatten(1).mean(1)
    torch.testing.assert_close(fast, want)
    torch.testing.assert_close(plain[[0, 2]], want[[0, 2]])
    grad_fast, = torch.autograd.grad(fast.sum(), a)
    grad_plain, = torch.autograd.grad(plain[[0, 2]].sum(), b)
    torch.testing.assert_close(grad_fast[[0, 2]], grad_plain[[0, 2]])
    torch.testing.assert_close(grad_fast, 2 * act / act[0].numel())


@pytest.mark.parametrize("facets,crops", [(3, 1), (2, 2), (4, 3)])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("chw", [(5, 6, 7), (40, 2, 3)], ids=["by grams", "by positions"])  # n P < C: the latter
def test_sibling_similarity_equals_the_plain_cosines_of_gram_matrices(facets, crops, channels_last, chw):
    gen = torch.Generator().manual_seed(facets * 10 + crops)
    act = torch.randn(2 * facets * crops, *chw, generator=gen).relu()
    act = act.contiguous(memory_format=torch.channels_last) if channels_last else act
    upstream = torch.randn(act.shape[0], generator=gen)
    activation = Activation(chw, "nchw")

    def plain(x):  # every row against the same crop of its unit's other facets, held constant
        grams = F.normalize(gram(x, activation).flatten(1), dim=1).view(-1, facets, crops, chw[0] ** 2)
        similarity = (grams.unsqueeze(2) * grams.detach().unsqueeze(1)).sum(-1)  # [units, n, n, k]
        return ((similarity.sum(2) - similarity.diagonal(dim1=1, dim2=2).transpose(1, 2)) / (facets - 1)).reshape(-1)
    results = []
    for fn in (lambda x: sibling_similarity(x, activation, facets, crops), plain):
        x = act.clone().requires_grad_(True)
        value = fn(x)
        results.append((value, torch.autograd.grad((value * upstream).sum(), x)[0]))
    (fast, grad_fast), (want, grad_want) = results
    torch.testing.assert_close(fast, want)
    torch.testing.assert_close(grad_fast, grad_want, rtol=1e-4, atol=1e-6)
    assert grad_fast.stride() == act.stride() and grad_want.abs().max() > 0


def test_diversity_over_every_input_reads_the_activation_as_it_is():
    from pyviz_fast.engine.goals.diversity import Diversity
    gen = torch.Generator().manual_seed(9)
    act = torch.randn(6, 4, 5, 5, generator=gen).contiguous(memory_format=torch.channels_last)
    main = torch.randn(6, generator=gen)
    activation = Activation((4, 5, 5), "nchw")
    results = []
    for inputs in (None, torch.arange(6)):
        x = act.clone().requires_grad_(True)
        penalty = Diversity("conv", activation, facets=3, crops=1, weight=0.5, floor=0.0, inputs=inputs)({"conv": x}, main)
        results.append((penalty, torch.autograd.grad((penalty * torch.arange(1.0, 7.0)).sum(), x)[0]))
    (fast, grad_fast), (plain, grad_plain) = results
    torch.testing.assert_close(fast, plain)
    torch.testing.assert_close(grad_fast, grad_plain)
    assert fast.abs().sum() > 0 and grad_fast.stride() == act.stride()


def test_step_draws_do_not_depend_on_the_order_they_are_read_in():
    """The per-step draws come a chunk at a time with the current chunk memoized: any order of
    reads, across chunk boundaries, gives each step its own draw, and a unit's draws are its own."""
    steps = 2 * CHUNK + 50
    in_order = Draws.for_units(["a", "b"], 3, steps, 8)
    want = [in_order.shifts[t] for t in range(steps + 1)]
    jumping = Draws.for_units(["a", "b"], 3, steps, 8)
    for t in (steps, 0, CHUNK, CHUNK - 1, 2 * CHUNK, 1, CHUNK + 7, steps - 1):
        assert torch.equal(jumping.shifts[t], want[t]), t
    alone = Draws.for_units(["b"], 3, steps, 8)
    for t in (0, CHUNK - 1, CHUNK, steps):
        assert torch.equal(alone.shifts[t][0], want[t][1]), t
    assert len({tuple(want[t][0].tolist()) for t in range(steps + 1)}) > 50  # draws, not one value repeated
