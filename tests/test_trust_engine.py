"""Issue 10, engine half: a model a user brings is read the way it is built (layouts), the same
command makes the same model (seeded construction, fingerprints), every setting is checked where
it is made, memory does not grow with the step count, and no-ops or dead units are not 'ok'."""
import argparse
import contextlib
import io
import math
import warnings
from unittest import mock

import pytest
import torch
import torchvision
from torch import nn

import pyviz_fast as pvf
from pyviz_fast.engine.models import IMAGENET_MEAN, IMAGENET_STD

EXACT = dict(precision="fp32", memory_format="contiguous", backend="reference")


# 1. Activation layouts --------------------------------------------------------------------------

def _layer_output(model, layer, images):
    """The activation of ``layer`` for images in [0, 1] (ImageNet normalization, as render feeds it)."""
    seen = {}
    handle = dict(model.named_modules())[layer].register_forward_hook(lambda m, i, out: seen.setdefault("a", out))
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    try:
        with torch.no_grad():
            model((images - mean) / std)
    finally:
        handle.remove()
    return seen["a"]


@pytest.mark.parametrize("name, layer, channels, k", [
    ("swin_t", "features.1", 96, 3),                     # a Swin stage: [B, H, W, C]
    ("convnext_tiny", "features.1.0.block.3", 384, 383),  # the Linear inside a ConvNeXt block: [B, H, W, 4C]
])
def test_channel_k_of_a_channel_last_layer_is_channel_k(name, layer, channels, k):
    model = torchvision.models.get_model(name, weights=None).eval()
    info = {i.name: i for i in pvf.layers(model, input_size=(3, 32, 32))}[layer]
    assert (info.layout, info.channels) == ("nhwc", channels)
    res = pvf.render(model, [f"{layer}:{k}", f"{layer}:0"], size=32, steps=2, **EXACT)
    act = _layer_output(model, layer, res.images)
    assert act.shape[-1] == channels
    expected = torch.stack([act[0, ..., k].mean(), act[1, ..., 0].mean()])
    torch.testing.assert_close(res.objective, expected, rtol=1e-4, atol=1e-5)


def test_convnext_stage_outputs_stay_channel_first():
    model = torchvision.models.get_model("convnext_tiny", weights=None).eval()
    infos = {i.name: i for i in pvf.layers(model, input_size=(3, 32, 32))}
    assert [(infos[n].layout, infos[n].channels) for n in ("features.1", "features.1.0.block.6")] == \
           [("nchw", 96), ("nchw", 96)]


def test_an_ambiguous_map_is_decided_by_the_axis_that_keeps_its_size():
    from pyviz_fast.engine.layout import learn_layouts
    # [96, 96, 96] at 384 px (Swin's first stage): the shape alone cannot tell
    probed = {"nhwc_map": (96, 96, 96), "nchw_map": (96, 96, 96)}
    again = {"nhwc_map": (192, 192, 96), "nchw_map": (96, 192, 192)}
    calls = []

    def reprobe(names, hw):
        calls.append((sorted(names), hw))
        return {n: again[n] for n in names}

    learned = learn_layouts(probed, (384, 384), reprobe)
    assert {n: a.layout for n, a in learned.items()} == {"nhwc_map": "nhwc", "nchw_map": "nchw"}
    assert calls == [(["nchw_map", "nhwc_map"], (768, 768))]


def test_a_model_of_one_size_falls_back_to_the_spatial_axes():
    from pyviz_fast.engine.layout import learn_layouts

    def refuses(names, hw):
        raise ValueError("this model only runs at 64 x 48")

    shapes = {"a": (16, 12, 40), "b": (40, 16, 12), "pooled": (40, 1, 1), "flat": (40,), "tok": (12, 40)}
    learned = learn_layouts(shapes, (64, 48), refuses)
    assert {n: a.layout for n, a in learned.items()} == \
           {"a": "nhwc", "b": "nchw", "pooled": "nchw", "flat": "vector", "tok": "tokens"}
    assert learned["a"].channels == 40 and learned["a"].positions == (16, 12)


class _ChannelsLastNet(nn.Module):
    """Outputs [B, H, W, C] with C == H == W at 8 px: only an override can tell (it refuses 16 px)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 1)
        self.last = nn.Identity()

    def forward(self, x):
        if x.shape[-1] != 8:
            raise RuntimeError("8 px only")
        return self.last(self.conv(x).permute(0, 2, 3, 1) * torch.arange(1.0, 9.0))


def test_the_layout_override_wins_and_is_checked():
    model = _ChannelsLastNet()
    assert {i.name: i.layout for i in pvf.layers(model, input_size=(3, 8, 8))}["last"] == "nchw"  # undecidable
    fixed = {i.name: i.layout for i in pvf.layers(model, input_size=(3, 8, 8), layout={"last": "nhwc"})}
    assert fixed["last"] == "nhwc"
    res = pvf.render(model, "last:7", size=8, steps=1, layout={"last": "nhwc"}, **EXACT)
    act = model(res.images).detach()
    torch.testing.assert_close(res.objective[0], act[0, ..., 7].mean())
    assert pvf.Settings(layout="last=nhwc, conv=nchw").layout == {"last": "nhwc", "conv": "nchw"}
    with pytest.raises(ValueError, match=r"layout of layer 'last' must be one of nchw, nhwc, tokens, vector; got 'hwc'"):
        pvf.Settings(layout={"last": "hwc"})
    with pytest.raises(ValueError, match=r"layout 'tokens' given for layer 'last' does not fit its output "
                                         r"\[B, 8, 8, 8\]; valid: nchw, nhwc"):
        pvf.render(model, "last:7", size=8, steps=1, layout={"last": "tokens"}, **EXACT)
    with pytest.raises(ValueError, match=r"unknown layer 'lats' given a layout; closest: last"):
        pvf.render(model, "last:7", size=8, steps=1, layout={"lats": "nhwc"}, **EXACT)


class _FixedHeadNet(nn.Module):
    """[B, 8, 8, 8] channels-last at 16 px (C == H == W), then a flatten head that takes 16 px only:
    the layers before the head run at twice the size, and that probe tells their layout."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.mix = nn.Linear(8, 8)
        self.act = nn.GELU()
        self.head = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x):
        return self.head(self.act(self.mix(self.conv(x).permute(0, 2, 3, 1))).flatten(1))


def test_layers_reads_a_layout_as_the_render_does_when_only_the_head_is_of_one_size():
    torch.manual_seed(0)
    model = _FixedHeadNet().eval()
    infos = {i.name: i for i in pvf.layers(model, input_size=(3, 16, 16))}
    assert [(infos[n].layout, infos[n].channels) for n in ("conv", "act")] == [("nchw", 8), ("nhwc", 8)]
    res = pvf.render(model, "act:3", size=16, steps=1, jitter=0, lr=1e-7, **EXACT)  # the scored image, unmoved
    seen = []
    model.act.register_forward_hook(lambda m, i, out: seen.append(out))
    model(res.images)  # a custom model: no input normalization
    torch.testing.assert_close(res.objective[0], seen[0][0, ..., 3].mean())  # the render reads it nhwc too


class _LateFixedSizeNet(nn.Module):
    """act: [B, 8, 8, 8] channels-last at 16 px, which runs at any size; then a position embedding
    of 16 px only (as a ViT's, or MaxViT's fixed grids) before the layer ``late``."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.mix = nn.Linear(8, 8)
        self.act = nn.GELU()
        self.pos = nn.Parameter(torch.randn(8, 8, 8))
        self.late = nn.Identity()

    def forward(self, x):
        return self.late(self.act(self.mix(self.conv(x).permute(0, 2, 3, 1))) + self.pos).mean((1, 2))


def test_a_layers_layout_does_not_depend_on_the_deeper_layers_probed_with_it():
    torch.manual_seed(0)
    model = _LateFixedSizeNet().eval()
    assert {i.name: i.layout for i in pvf.layers(model, input_size=(3, 16, 16))}["act"] == "nhwc"
    alone = pvf.render(model, "act:3", size=16, steps=1, jitter=0, lr=1e-7, **EXACT)
    from pyviz_fast.engine.layout import LayoutGuessWarning
    with pytest.warns(LayoutGuessWarning, match=r"^layer 'late'"):  # late alone cannot be told (16 px only)
        beside = pvf.render(model, ["act:3", "late:0"], size=16, steps=1, jitter=0, lr=1e-7, **EXACT)
    seen = []
    model.act.register_forward_hook(lambda m, i, out: seen.append(out))
    model(alone.images)
    torch.testing.assert_close(alone.objective[0], seen[0][0, ..., 3].mean())
    torch.testing.assert_close(beside.objective[0], alone.objective[0])  # read nhwc beside `late` too


def test_a_layout_nothing_tells_is_said_to_be_a_guess():
    from pyviz_fast.engine.layout import LayoutGuessWarning
    model = _ChannelsLastNet()  # [B, 8, 8, 8] at 8 px only: read as nchw, and said so
    info = {i.name: i for i in pvf.layers(model, input_size=(3, 8, 8))}["last"]
    assert (info.layout, info.layout_guessed) == ("nchw", True)
    assert not {i.name: i for i in pvf.layers(model, input_size=(3, 8, 8), layout={"last": "nhwc"})}["last"].layout_guessed
    with pytest.warns(LayoutGuessWarning, match=r"layer 'last' \(output \[B, 8, 8, 8\] \(nchw\)\): its layout cannot "
                                                r"be told.*--layout last=nhwc"):
        pvf.render(model, "last:7", size=8, steps=1, **EXACT)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LayoutGuessWarning)
        pvf.render(model, "last:7", size=8, steps=1, layout={"last": "nhwc"}, **EXACT)
    rows = {line.split()[0]: line.split() for line in _cli_listing(model)}
    assert rows["last"][5:7] == ["nchw?", "8"] and "--layout last=nhwc" in " ".join(rows["last"])
    # ([8, 8, 8] is split in three words; conv is [8, 8, 8] at 8 px only too: a guess as well)


class _OneSizeMLPNet(nn.Module):
    """Runs at 16 px only (a position embedding after the conv, as MaxViT's grids): a channels-last
    MLP (Linear -> GELU -> Linear -> Dropout) on [B, 8, 8, 8], whose sizes cannot tell its layout;
    ``entry`` and ``back`` are elementwise too, but fed a permuted tensor (``back``: a channels-first
    view of ``drop``'s output, same storage and shape), so the modules tell nothing about them."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.pos = nn.Parameter(torch.randn(8, 8, 8))
        self.entry = nn.Identity()
        self.fc1, self.act, self.fc2, self.drop = nn.Linear(8, 8), nn.GELU(), nn.Linear(8, 8), nn.Dropout(0.0)
        self.back = nn.ReLU()
        self.head = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x):
        x = self.entry((self.conv(x) + self.pos).permute(0, 2, 3, 1))
        x = self.drop(self.fc2(self.act(self.fc1(x))))
        return self.head(self.back(x.permute(0, 3, 1, 2)).flatten(1))


def test_a_linear_and_the_elementwise_modules_it_feeds_tell_channels_last():
    from pyviz_fast.engine.layout import LayoutGuessWarning
    torch.manual_seed(0)
    model = _OneSizeMLPNet().eval()
    infos = {i.name: i for i in pvf.layers(model, input_size=(3, 16, 16))}
    assert {n: (infos[n].layout, infos[n].layout_guessed) for n in ("fc1", "act", "fc2", "drop")} == dict.fromkeys(
        ("fc1", "act", "fc2", "drop"), ("nhwc", False))
    with warnings.catch_warnings():
        warnings.simplefilter("error", LayoutGuessWarning)  # the render's probe tells it too
        start = pvf.render(model, "act:5", size=16, steps=1, jitter=0, lr=1e-7, **EXACT)  # the first image, unmoved
        res = pvf.render(model, "act:5", size=16, steps=8, jitter=0, **EXACT)
    seen = []
    model.act.register_forward_hook(lambda m, i, out: seen.append(out.detach()))
    model(torch.cat([start.images, res.images]))  # a custom model: no input normalization
    before, after = seen[0][..., 5].mean((1, 2))
    torch.testing.assert_close(res.objective[0], after)  # read on the last axis
    assert after > before + 0.1


def test_an_elementwise_module_fed_by_no_hooked_layer_is_still_a_guess():
    model = _OneSizeMLPNet().eval()
    infos = {i.name: i for i in pvf.layers(model, input_size=(3, 16, 16))}
    # entry: a permuted sum; back: a channels-first view of drop's output (same storage and shape)
    assert [(infos[n].layout, infos[n].layout_guessed) for n in ("entry", "back")] == [("nchw", True)] * 2
    assert (infos["conv"].layout, infos["conv"].layout_guessed) == ("nchw", False)  # reached at 32 px too
    fixed = {i.name: i for i in pvf.layers(model, input_size=(3, 16, 16), layout={"act": "nchw"})}["act"]
    assert (fixed.layout, fixed.layout_guessed) == ("nchw", False)  # an override still wins


class _OneSizeBlockNet(nn.Module):
    """The channels-last MLP of ``_OneSizeMLPNet`` as one block (a Sequential, as maxvit_t's
    ``mlp_layer``), whose output is its last Linear's own tensor."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.pos = nn.Parameter(torch.randn(8, 8, 8))
        self.mlp = nn.Sequential(nn.Linear(8, 8), nn.GELU(), nn.Linear(8, 8))
        self.head = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x):
        return self.head(self.mlp((self.conv(x) + self.pos).permute(0, 2, 3, 1)).flatten(1))


def test_a_block_that_returns_a_features_last_tensor_is_channels_last():
    infos = {i.name: i for i in pvf.layers(_OneSizeBlockNet().eval(), input_size=(3, 16, 16))}
    assert {n: (infos[n].layout, infos[n].layout_guessed) for n in ("mlp.0", "mlp.1", "mlp.2", "mlp")} == dict.fromkeys(
        ("mlp.0", "mlp.1", "mlp.2", "mlp"), ("nhwc", False))


def _cli_listing(model):
    """The rows `pyviz-fast layers` prints for ``model`` at 8 px."""
    from pyviz_fast.cli import layers as cli_layers
    out = io.StringIO()
    with contextlib.redirect_stdout(out), mock.patch.object(cli_layers, "load_model", return_value=(model, None)):
        assert cli_layers.run(argparse.Namespace(size=8, layout=None, atlas=False)) == 0
    return out.getvalue().splitlines()[1:]


def test_activation_views_channels_first():
    from pyviz_fast.engine.layout import Activation
    x = torch.randn(2, 5, 7, 4)
    act = Activation((5, 7, 4), "nhwc")
    assert act.channels_first(x).shape == (2, 4, 5, 7) and act.channels == 4
    assert Activation((9, 3), "tokens").positions == (9,) and Activation((10,), "vector").positions == ()


# 2. Random-init weights seeded; fingerprints recorded and checked on resume ---------------------

def test_random_init_is_seeded_by_the_run_seed_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a, info = pvf.load_model("torchvision:resnet18", seed=0)
    b, _ = pvf.load_model("torchvision:resnet18", seed=0)
    c, _ = pvf.load_model("torchvision:resnet18", seed=1)
    assert torch.equal(torch.rand(3), expected_next)  # construction did not consume the caller's stream
    assert info["seed"] == 0
    assert pvf.model_fingerprint(a) == pvf.model_fingerprint(b) != pvf.model_fingerprint(c)
    assert torch.equal(a.conv1.weight, b.conv1.weight)
    first = pvf.render("torchvision:resnet18", "layer1:0", size=32, steps=2, seed=5, **EXACT)
    again = pvf.render("torchvision:resnet18", "layer1:0", size=32, steps=2, seed=5, **EXACT)
    assert torch.equal(first.images, again.images)


def test_the_fingerprint_sees_every_parameter_and_buffer_but_not_the_memory_format():
    model, _ = pvf.load_model("torchvision:resnet18")
    before = pvf.model_fingerprint(model)
    assert pvf.model_fingerprint(model.to(memory_format=torch.channels_last)) == before
    model.bn1.running_mean[0] += 1e-3  # a buffer
    assert pvf.model_fingerprint(model) != before


def test_a_resumed_run_refuses_a_model_of_other_weights(tmp_path):
    from pyviz_fast.audit import ModelMismatchError, RunDir
    import json

    run = RunDir(tmp_path / "run")
    run.prepare("torchvision:resnet18", 0, {"steps": 4}, fingerprint="aaaa")
    assert json.loads((tmp_path / "run" / "run.json").read_text())["model_fingerprint"] == "aaaa"
    run.check("torchvision:resnet18", 0, {"steps": 4}, "aaaa")  # the same model resumes
    with pytest.raises(ModelMismatchError, match=r"fingerprint aaaa, but the model loaded now has fingerprint "
                                                 r"bbbb.*would mix two models"):
        run.prepare("torchvision:resnet18", 0, {"steps": 4}, fingerprint="bbbb")
    info = run.prepare("torchvision:resnet18", 0, {"steps": 4}, fingerprint="bbbb", force=True)
    assert info["model_fingerprint"] == "bbbb"


# 7. torchvision's own convention for random init ------------------------------------------------

def test_load_model_takes_weights_none():
    model, info = pvf.load_model("torchvision:resnet18", weights=None)
    assert info["weights"] == "none" and isinstance(model, torchvision.models.ResNet)
    with pytest.raises(ValueError, match=r"weights must be None, 'none', 'DEFAULT' or a state-dict path, got 3"):
        pvf.load_model("torchvision:resnet18", weights=3)


# 4 and 11. Every setting checked where it is made; no silent no-ops --------------------------------

@pytest.mark.parametrize("field, value, message", [
    ("rotate", math.nan, r"rotate must be a finite number, got nan"),
    ("rotate", math.inf, r"rotate must be a finite number, got inf"),
    ("size", -1, r"size must be a positive int or \(H, W\) of positive ints, got -1"),
    ("lr", math.nan, r"lr must be a finite number > 0, got nan"),
    ("lr", math.inf, r"lr must be a finite number > 0, got inf"),
    ("lr", 0, r"lr must be a finite number > 0, got 0 \(lr=0 would never change the image\)"),
    ("lr", -0.05, r"lr must be a finite number > 0, got -0.05"),
    ("lr_end", -0.01, r"lr_end must be a finite number >= 0, got -0.01"),
    ("steps", "many", r"steps must be an integer >= 1, got 'many'"),
    ("clip", 0.0, r"clip must be a number > 0 \(inf allowed\), got 0.0 \(clip=0 would zero every step"),
    ("scale_range", (0.9, math.inf), r"scale_range must be \(low, high\) finite numbers"),
    ("blur_start", math.inf, r"blur_start must be a finite number >= 0, got inf"),
    ("center", math.nan, r"center must be a finite number, got nan"),
    ("std", (0.2, 0.0, 0.2), r"std must be a tuple of finite numbers > 0"),
    ("init_image", torch.zeros(3, 4, 4, dtype=torch.int64), r"init_image must be a float tensor in \[0, 1\] or a "
                                                             r"uint8 tensor in 0-255, got dtype torch.int64"),
])
def test_settings_reject_bad_values_when_made(field, value, message):
    extra = {"mean": (0.5, 0.5, 0.5)} if field == "std" else {}
    with pytest.raises(ValueError, match=message):
        pvf.Settings(**{field: value}, **extra)
    with pytest.raises(ValueError, match=message):  # and when changed
        pvf.Settings().replace(**{field: value}, **extra)


def test_nan_rotation_is_an_error_not_a_crash():
    from engine_nets import tiny_cnn
    with pytest.raises(ValueError, match="rotate must be a finite number, got nan"):
        pvf.render(tiny_cnn(), "2:0", size=16, steps=2, rotate=math.nan, **EXACT)


def test_a_zero_weight_is_an_error():
    with pytest.raises(ValueError, match=r"weight of term 'conv3:2' must be a finite non-zero number, got 0.0 "
                                         r"\(a weight of 0 would make the term a no-op\)"):
        pvf.parse_units("0.5*conv3:1 + 0*conv3:2")
    with pytest.raises(ValueError, match="non-zero"):
        pvf.Unit.channel("conv3", 1, weight=0)


def test_a_unit_that_never_responds_is_dead_not_ok():
    from engine_nets import tiny_cnn
    model = tiny_cnn()
    with torch.no_grad():  # channel 0 of layer 1 (after the ReLU) is 0 for every image
        model[0].weight[0].zero_()
        model[0].bias[0] = -1.0
    res = pvf.render(model, ["1:0", "0:1"], size=16, steps=3, **EXACT)  # after and before the ReLU
    assert res.status == ["dead", "ok"], res.reasons
    assert "stayed at 0 for all 3 steps" in res.reasons[0] and res.reasons[1] == ""


def test_an_integer_init_image_is_read_as_0_to_255():
    from pyviz_fast.engine.init import load_image
    gray = torch.full((3, 8, 8), 128, dtype=torch.uint8)
    torch.testing.assert_close(load_image(gray, 3, (8, 8)), torch.full((3, 8, 8), 128 / 255))
    with pytest.raises(ValueError, match=r"init_image values must be in \[0, 1\], got values in \[0, 255\]"):
        load_image(torch.linspace(0, 255, 192).reshape(3, 8, 8), 3, (8, 8))


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_nonfinite_init_image_is_named_as_such(bad):
    image = torch.full((3, 32, 32), 0.5)
    image[0, 3, 4] = bad
    with pytest.raises(ValueError, match=r"^init_image contains NaN or inf$"):
        pvf.render(pvf.zoo.shapesnet(), "conv3:0", size=32, steps=1, init="image", init_image=image)


@pytest.mark.parametrize("backend", ["reference", "fused", "emulation"])
def test_nan_pixels_are_flagged_by_every_backend(backend):
    if backend != "reference" and not pvf.has_ops():
        pytest.skip("the compiled extension is not built")
    from pyviz_fast import ops
    g = torch.Generator().manual_seed(0)
    x, grad = torch.rand(3, 3, 8, 8, generator=g), torch.randn(3, 3, 8, 8, generator=g)
    x[1, 0, 2, 2], x[2, 1, 0, 0] = math.nan, math.inf
    shifts = torch.zeros(3, 2, dtype=torch.long)
    step = ops.fused_ascent_step(x, grad, shifts, shifts, 1.0, lr=0.1, backend=backend)
    assert step.nonfinite.tolist() == [False, True, True]
    reference = ops.fused_ascent_step(x, grad, shifts, shifts, 1.0, lr=0.1, backend="reference")
    torch.testing.assert_close(step.image, reference.image, equal_nan=True)


def test_op_messages_name_what_is_valid():
    from pyviz_fast import ops
    x = torch.rand(1, 3, 8, 8)
    shifts = torch.zeros(1, 2, dtype=torch.long)
    with pytest.raises(ValueError, match=r"^lr must be finite, got inf$"):
        ops.fused_ascent_step(x, x, shifts, shifts, lr=math.inf, backend="reference")


# 5. Memory bounded by the batch, not the step count ---------------------------------------------

_HUGE_RUN = """
import resource, sys, time
sys.path.insert(0, {tests!r})
import pyviz_fast as pvf
from engine_nets import tiny_cnn
model = tiny_cnn()
pvf.render(model, "2:0", size=16, steps=2, backend="reference", precision="fp32")  # warm up
vm = int([l for l in open("/proc/self/status") if l.startswith("VmSize")][0].split()[1]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + (1 << 30), resource.RLIM_INFINITY))  # 1 GB more, at most
steps = []
def stop(info):
    steps.append(info.step)
    if len(steps) == 3:
        raise KeyboardInterrupt
started = time.perf_counter()
try:
    pvf.render(model, ["2:0", "2:1"], size=16, steps=10**10, backend={backend!r}, precision="fp32", callback=stop)
except KeyboardInterrupt:
    print("stopped", steps, time.perf_counter() - started)
"""


@pytest.mark.parametrize("backend", ["reference", "fused"])
def test_a_huge_step_count_starts_at_once_in_bounded_memory(backend, tmp_path):
    import subprocess
    import sys
    from pathlib import Path
    if backend == "fused" and not pvf.has_ops():
        pytest.skip("the compiled extension is not built")
    script = _HUGE_RUN.format(tests=str(Path(__file__).parent), backend=backend)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.startswith("stopped [0, 1, 2]"), done.stderr[-2000:]
    assert float(done.stdout.split()[-1]) < 60


def test_the_trajectory_of_a_long_run_is_decimated_by_a_fixed_rule():
    from pyviz_fast.engine.trajectory import MAX_POINTS, Trajectory, recorded_steps
    steps = 10 * MAX_POINTS + 7
    kept = recorded_steps(steps)
    assert len(kept) == MAX_POINTS and kept[0] == 0 and kept[-1] == steps - 1 and list(kept) == sorted(set(kept))
    trajectory = Trajectory(steps, 2, "cpu")
    faults = {3: (True, False), 5: (False, False)}  # step 3's update skipped image 0; step 5's objective 1 is NaN
    for t in range(steps):
        flagged = torch.tensor(faults.get(t, (False, False)))
        trajectory.record(t, torch.tensor([float(t), math.nan if t == 5 else 1.0]), flagged)
    assert trajectory.values.shape == (MAX_POINTS, 2)
    assert trajectory.values[:, 0].tolist() == [float(t) for t in kept]
    assert trajectory.spread(torch.tensor([0.0, 1.0])).tolist() == [steps - 1, 0.0]
    assert trajectory.bad_steps().tolist() == [1, 1]  # steps 3 and 5 were not recorded: counted as they came
    assert list(recorded_steps(5)) == [0, 1, 2, 3, 4]


def test_a_short_runs_faults_are_counted_once_a_step():
    from pyviz_fast.engine.trajectory import Trajectory
    trajectory = Trajectory(4, 3, "cpu")
    rows = [((1.0, 2.0, math.inf), (False, True, False)), ((1.0, math.nan, 3.0), (False, True, False)),
            ((1.0, 2.0, 3.0), (False, False, False)), ((math.nan, 2.0, 3.0), (True, False, False))]
    for t, (objective, flagged) in enumerate(rows):
        trajectory.record(t, torch.tensor(objective), torch.tensor(flagged))
    assert trajectory.bad_steps().tolist() == [1, 2, 1]  # a step with both faults counts once


def test_a_size_probed_already_decides_the_layouts_it_can_without_another_probe():
    from pyviz_fast.engine.layout import learn_layouts
    # a render's octaves: shapes at 96 px, and at 69 px already probed
    shapes = {"conv": (64, 24, 24), "swin": (24, 24, 96), "pooled": (64, 1, 1)}
    known = {"conv": (64, 17, 17), "swin": (17, 17, 96), "pooled": (64, 1, 1)}
    calls = []

    def reprobe(names, hw):
        calls.append((sorted(names), hw))
        return {"pooled": (64, 1, 1)}

    learned = learn_layouts(shapes, (96, 96), reprobe, known=known)
    assert {n: a.layout for n, a in learned.items()} == {"conv": "nchw", "swin": "nhwc", "pooled": "nchw"}
    assert calls == [(["pooled"], (192, 192))]  # only the layer the smaller size left undecided
