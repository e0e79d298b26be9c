"""Issue 10, engine half: a model a user brings is read the way it is built (layouts), the same
command makes the same model (seeded construction, fingerprints), every setting is checked where
it is made, memory does not grow with the step count, and no-ops or dead units are not 'ok'."""
import math

import pytest
import torch
import torchvision
from torch import nn

import pyviz_fast as pvf
from pyviz_fast.engine.layout import Activation, learn_layouts
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


def test_activation_views_channels_first():
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
