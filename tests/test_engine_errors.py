"""Bad input fails before any work with a message naming the problem; model specs load."""
import pytest
import torch
from torch import nn

import pyviz_fast as pvf
from engine_nets import TokenNet, tiny_cnn

FAST = dict(size=16, steps=2, backend="reference", precision="fp32")


class SizeGuard(nn.Module):
    """Rejects any input that is not 32 x 32, like a model with a fixed-size head."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        if x.shape[-2:] != (32, 32):
            raise RuntimeError(f"expected 32x32 input, got {tuple(x.shape[-2:])}")
        return self.conv(x)


def _fails(match, model, units, **kwargs):
    with pytest.raises(ValueError, match=match):
        pvf.render(model, units, **{**FAST, **kwargs})


def test_unknown_layer_lists_the_closest_names():
    _fails(r"unknown layer 'blok'.*closest: block", TokenNet(), "blok:1")
    _fails(r"unknown layer 'conv'.*the model has 0, 1, 2, 3, 4, 4.0", tiny_cnn(), "conv:1")


def test_channel_out_of_range_says_how_many():
    _fails(r"has 16 channels \(0-15\); got channel 16", tiny_cnn(), "2:16")
    _fails(r"has 5 channels", tiny_cnn(), "4.2:9")


def test_malformed_unit():
    _fails("malformed unit", tiny_cnn(), "2:x")


def test_forward_rejecting_the_size():
    _fails(r"rejected an input of shape \[1, 3, 16, 16\].*expected 32x32", SizeGuard(), "conv:0")
    assert pvf.render(SizeGuard(), "conv:0", **{**FAST, "size": 32}).status == ["ok"]


def test_size_too_small_for_the_model():
    shrinking = nn.Sequential(nn.Conv2d(3, 4, 5), nn.Conv2d(4, 4, 5))
    _fails(r"rejected an input of shape \[1, 3, 6, 6\]", shrinking, "1:0", size=6)


def test_a_video_or_sequence_model_is_named_as_such():
    """torchvision's r3d_18 failed with torch's 'expected input[1, 1, 3, 128, 128] to have 3
    channels, but got 1': the message now says what the model takes instead of an image."""
    video = nn.Sequential(nn.Conv3d(3, 4, 3, padding=1), nn.ReLU())
    _fails(r"first convolution is a Conv3d, which takes video clips \[B, C, T, H, W\].*\(RuntimeError: ", video, "1:0")
    _fails(r"first convolution is a Conv1d, which takes sequences", nn.Sequential(nn.Conv1d(3, 4, 3)), "0:0")
    _fails(r"rejected an input of shape \[1, 3, 16, 16\]: RuntimeError: expected 32x32", SizeGuard(), "conv:0")


def test_octave_start_size_is_checked_too():
    _fails(r"rejected an input of shape \[1, 3, 22, 22\]", SizeGuard(), "conv:0", size=32, octaves=3, steps=3)


@pytest.mark.parametrize("field, value, message", [
    ("precision", "fp64", "precision must be one of"),
    ("steps", 0, "steps must be an integer >= 1"),
    ("size", (16,), "size must be a positive int"),
    ("lo", 2.0, "lo must be below hi"),
    ("init", "image", "needs init_image"),
    ("canvas", 8, "canvas must be >= size"),
    ("norm", "l3", "norm must be one of rms, mean_abs, std, max_abs, none; got .l3."),
])
def test_bad_settings(field, value, message):
    with pytest.raises((ValueError, TypeError), match=message):
        pvf.render(tiny_cnn(), "2:0", **{**FAST, field: value})


@pytest.mark.parametrize("param", ["fourier", "maco"])
def test_an_image_init_needs_the_pixel_parameterization(param):
    """Fourier and MaCo make their own start: init='image' was silently ignored there (and the
    result's photo_objective scored a photo the render never started from)."""
    _fails(rf"param='{param}' cannot start from given images; use param='pixel'", tiny_cnn(), "2:0",
           param=param, init="image", init_image=torch.rand(3, 16, 16))


def test_unknown_setting_is_named():
    with pytest.raises(TypeError, match="unknown setting.*stpes"):
        pvf.render(tiny_cnn(), "2:0", stpes=3)


def test_mean_std_must_match_channels():
    _fails("normalization mean has 3 values but images have 1 channels", tiny_cnn(in_channels=1), "2:0",
           mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2))


def test_layers_listing():
    listing = pvf.layers(tiny_cnn(), input_size=(3, 20, 20))
    by_name = {info.name: info for info in listing}
    assert by_name["2"] == pvf.LayerInfo("2", "Conv2d", (16, 20, 20), 16, "nchw")
    assert by_name["4.2"].shape == (5,) and listing[-1].name == "output"
    assert pvf.layers(tiny_cnn(), input_size=20) == listing  # an int: a square of the model's channels
    for bad in ((20, 20), 0, "20"):
        with pytest.raises(ValueError, match=r"input_size must be a square image's side \(an int\) or \(C, H, W\)"):
            pvf.layers(tiny_cnn(), input_size=bad)


def test_load_model_specs(tmp_path):
    model, info = pvf.load_model("torchvision:resnet18", weights="none")
    assert info["mean"] == (0.485, 0.456, 0.406) and not model.training
    path = tmp_path / "state.pt"
    torch.save(model.state_dict(), path)
    again, _ = pvf.load_model("torchvision:resnet18", weights=str(path))
    torch.testing.assert_close(again.fc.weight, model.fc.weight)
    scripted = tmp_path / "tiny.pt"
    torch.jit.script(tiny_cnn()).save(str(scripted))
    ts_model, ts_info = pvf.load_model(str(scripted))
    assert ts_info["source"] == "torchscript" and ts_info["mean"] is None
    assert pvf.render(ts_model, "output:1", **FAST).status == ["ok"]
    with pytest.raises(ValueError, match="inside a TorchScript model"):
        pvf.render(ts_model, "2:1", **FAST)
    factory, _ = pvf.load_model("engine_nets:tiny_cnn")
    assert isinstance(factory, nn.Sequential)


@pytest.mark.parametrize("spec, message", [
    ("torchvision:resnet19", "unknown torchvision model 'resnet19'.*resnet18"),
    ("nosuchpackage.mod:make", "cannot import module"),
    ("engine_nets:nothing", "has no callable 'nothing'"),
    ("mystery", "unknown model spec"),
])
def test_bad_model_specs(spec, message):
    with pytest.raises(ValueError, match=message):
        pvf.load_model(spec)


def test_random_init_of_a_segmentation_model_downloads_nothing(monkeypatch):
    """torchvision's segmentation builders fetch ImageNet weights for their backbone by default;
    weights='none' means none at all (these machines and many audit hosts have no network)."""
    import torch.hub

    def no_network(url, *args, **kwargs):
        raise AssertionError(f"downloaded {url}")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    model, _ = pvf.load_model("torchvision:lraspp_mobilenet_v3_large", weights="none")
    assert pvf.layers(model, input_size=(3, 64, 64))[-1].shape == (21, 64, 64)


def test_missing_weights_file():
    with pytest.raises(FileNotFoundError, match="weights file"):
        pvf.load_model("torchvision:resnet18", weights="/nonexistent/w.pt")


@pytest.mark.parametrize("spec", ["shapesnet", "engine_nets:tiny_cnn", "torchscript"])
def test_weights_are_loaded_into_zoo_torchscript_and_factory_models(spec, tmp_path):
    """A weights path given with these specs was ignored: the shipped (or factory's) model ran."""
    if spec == "torchscript":
        spec = str(tmp_path / "tiny.pt")
        torch.jit.script(tiny_cnn()).save(spec)
    model, _ = pvf.load_model(spec)
    zeros = tmp_path / "zeros.pt"
    torch.save({name: torch.zeros_like(value) for name, value in model.state_dict().items()}, zeros)
    loaded, info = pvf.load_model(spec, weights=str(zeros))
    assert info["weights"] == str(zeros) and all(not p.any() for p in loaded.parameters())
    with pytest.raises(FileNotFoundError, match="weights file '/nonexistent/w.pt' does not exist"):
        pvf.load_model(spec, weights="/nonexistent/w.pt")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_a_device_this_machine_lacks_is_named_before_any_work():
    """render(device='cuda') without a GPU warned about the backend, then failed with torch's
    'Found no NVIDIA driver' from inside the model's first forward; every entry point now names it."""
    from pyviz_fast.zoo.shapes_data import make_batch

    photo = make_batch(1, size=16, seed=0)[0][0]
    for call in (lambda: pvf.render(tiny_cnn(), "2:0", device="cuda", **FAST),
                 lambda: pvf.accentuate(tiny_cnn(), photo, "2:0", layer="0", device="cuda:1", steps=1),
                 lambda: pvf.layers(tiny_cnn(), (3, 16, 16), device="cuda")):
        with pytest.raises(ValueError, match=r"device 'cuda(:1)?': CUDA is not available on this machine"):
            call()
    with pytest.raises(ValueError, match=r"device 'toaster' is not a torch device"):
        pvf.render(tiny_cnn(), "2:0", device="toaster", **FAST)


def test_rendering_one_model_from_two_threads_at_once_is_named():
    """A render prepares the model in place: a second one of the same object meanwhile is refused
    (it undid the first's set-up: misleading layer errors or wrong images); one after is fine."""
    import threading
    model, inside, release, results = tiny_cnn(), threading.Event(), threading.Event(), []

    def hold(info):  # the first render waits here until the second has tried
        inside.set()
        release.wait(30)

    first = threading.Thread(target=lambda: results.append(pvf.render(model, "2:0", **FAST, callback=hold)))
    first.start()
    try:
        assert inside.wait(30)
        with pytest.raises(RuntimeError, match=r"already being rendered .* copy.deepcopy\(model\)"):
            pvf.render(model, "2:1", **FAST)
    finally:
        release.set()
        first.join(30)
    assert results[0].status == ["ok"]
    assert pvf.render(model, "2:1", **FAST).status == ["ok"]


def test_one_thread_may_prepare_a_model_inside_its_own_render():
    """pvf.layers from a render's callback (or a benchmark's ceiling) nests on one thread: no
    'another thread' error, the render goes on prepared, and the model comes back as it was."""
    model, listed = tiny_cnn().train(), []
    result = pvf.render(model, "2:0", **FAST, callback=lambda info: listed.append(len(pvf.layers(model, (3, 16, 16)))))
    assert result.status == ["ok"] and listed and all(n == listed[0] > 0 for n in listed)
    assert model.training and all(p.requires_grad for p in model.parameters())


def test_a_model_made_under_inference_mode_is_named():
    with torch.inference_mode():
        model = tiny_cnn()
    with pytest.raises(ValueError, match=r"parameters are inference tensors .* copy.deepcopy\(model\)"):
        pvf.render(model, "2:0", **FAST)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_a_model_not_in_float32_is_named_with_the_fix(dtype):
    with pytest.raises(ValueError, match=rf"parameters are {dtype}; .* model.float\(\), with precision='fp16'"):
        pvf.render(tiny_cnn().to(dtype), "2:0", **FAST)


@pytest.mark.parametrize("call", [lambda model: pvf.render(model, "2:0", **FAST),
                                  lambda model: pvf.dream(model, torch.rand(3, 16, 16), "2:0", **FAST),
                                  lambda model: next(pvf.dream_zoom(model, torch.rand(3, 16, 16), "2:0", 1, **FAST)),
                                  lambda model: pvf.accentuate(model, torch.rand(3, 16, 16), "2:0", **FAST)])
def test_a_model_that_is_not_a_module_is_named(call):
    with pytest.raises(ValueError, match=r"^model must be a torch.nn.Module or a model spec string .*got None$"):
        call(None)


@pytest.mark.parametrize("seed", ["a", 1.5, True])
def test_a_seed_that_is_not_an_integer_is_named(seed):
    with pytest.raises(ValueError, match=r"^seed must be an integer, got "):
        pvf.render(tiny_cnn(), "2:0", seed=seed, **FAST)
    with pvf.Renderer(tiny_cnn(), "2:0", **FAST) as renderer, pytest.raises(ValueError, match="^seed must be"):
        renderer.render(seed=seed)


def test_a_numpy_integer_seed_is_a_seed():
    import numpy as np
    assert torch.equal(pvf.render(tiny_cnn(), "2:0", seed=np.int64(3), **FAST).images,
                       pvf.render(tiny_cnn(), "2:0", seed=3, **FAST).images)


@pytest.mark.parametrize("call", [lambda s: pvf.render(tiny_cnn(), "2:0", s),
                                  lambda s: pvf.dream(tiny_cnn(), torch.rand(3, 16, 16), "2:0", s),
                                  lambda s: pvf.accentuate(tiny_cnn(), torch.rand(3, 16, 16), "2:0", settings=s)])
def test_settings_given_as_a_dict_say_how_to_pass_them(call):
    with pytest.raises(ValueError, match=r"^settings must be a pvf.Settings, got dict; pass overrides as keyword"):
        call({"steps": 2})


def test_a_layer_argument_that_names_no_layer_is_named_by_its_argument():
    """caricature(m, img, 'conv3:0') said "unknown layer 'conv3:0' in unit 'conv3:0@deepdream'"."""
    model, photo = pvf.zoo.shapesnet(), torch.rand(3, 32, 32)
    with pytest.raises(ValueError, match="unknown layer 'conv3:0' given as caricature's layer .*closest: conv3"):
        pvf.caricature(model, photo, "conv3:0", steps=2)
    with pytest.raises(ValueError, match=r"unknown layer 'conv9' given as accentuate's closeness layer \(pyviz-fast"):
        pvf.accentuate(model, photo, "conv4:0", layer="conv9", steps=2)
    with pytest.raises(ValueError, match=r"unknown layer 'nope' given as diversity_layer \(--diversity-layer\)"):
        pvf.render(model, "conv3:0", size=32, steps=2, facets=2, diversity_layer="nope")
