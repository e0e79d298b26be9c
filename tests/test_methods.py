"""The methods beyond plain ascent: MaCo, facets with diversity, accentuation, caricature, style transfer.

Quality thresholds are on the shipped ShapesNet (and a random-weight VGG-style net for style),
small sizes so they run on a shared 2-core CPU.
"""
import json
import math
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import pyviz_fast as pvf
from cli_forks import run_commands
from engine_nets import tiny_cnn
from pyviz_fast import zoo
from pyviz_fast.engine.accentuate import DEFAULT_GAIN
from pyviz_fast.engine.execution import PreparedModel
from pyviz_fast.engine.goals.diversity import mean_pairwise_gram_distance
from pyviz_fast.engine.goals.gram import gram, gram_distance
from pyviz_fast.engine.layout import Activation
from pyviz_fast.engine.settings import Settings
from pyviz_fast.zoo.random_vgg import random_vgg
from pyviz_fast.zoo.shapes_data import make_batch

NCHW = Activation((1, 1, 1), "nchw")  # the zoo's and random_vgg's conv maps are channel-first
FAST = dict(size=24, steps=12, precision="fp32", backend="reference")
MACO = dict(param="maco", maco_crops=3)


pytestmark = pytest.mark.usefixtures("one_thread")  # small renders on a shared 2-core machine


@pytest.fixture(scope="module")
def shapesnet():
    return zoo.shapesnet()


def activations(model, images, layers):
    with PreparedModel(model, Settings(precision="fp32", memory_format="contiguous"), "cpu") as prepared, \
            torch.no_grad():
        return prepared(images, layers)


def pooled_luminance(image, pool=8):
    """The block-averaged luminance of an image [C, H, W], flattened."""
    return F.avg_pool2d(image.mean(0, keepdim=True)[None], pool).flatten()


def pooled_luminance_correlation(a, b, pool=8):
    """Pearson correlation of the block-averaged luminance of two images [C, H, W]."""
    return float(torch.corrcoef(torch.stack([pooled_luminance(a, pool), pooled_luminance(b, pool)]))[0, 1])


def pooled_std(image):
    return float(pooled_luminance(image).std())


def high_frequency_std(image):
    """The std of an image [C, H, W] minus its 3x3 local mean: pixel-level noise and edges."""
    return float((image - F.avg_pool2d(image[None], 3, 1, 1, count_include_pad=False)[0]).std())


LAYOUT_STD = 0.06  # a photo's pooled luminance varies at least this much where it has a layout to keep


# ---- MaCo ---------------------------------------------------------------------------------------

def test_maco_rises_returns_alpha_and_is_deterministic_per_unit():
    cnn = tiny_cnn()
    batch = pvf.render(cnn, ["2:0-3", "4.2:1"], **FAST, **MACO, seed=2)
    assert batch.status == ["ok"] * 5, batch.reasons
    assert bool((batch.objective > batch.trajectory[:, 0]).all()), batch.trajectory
    assert batch.alpha.shape == (5, 1, 24, 24) and 0 <= batch.alpha.min() and batch.alpha.max() <= 1
    assert batch.alpha.flatten(1).std(1).min() > 0.01  # a map, not a constant
    alone = pvf.render(cnn, "2:2", **FAST, **MACO, seed=2)
    torch.testing.assert_close(alone.images[0], batch.images[2], atol=2e-3, rtol=0)
    assert batch.to_rgba(0).mode == "RGBA" and np.asarray(batch.to_rgba(0))[..., 3].std() > 0
    assert np.array_equal(np.asarray(batch.to_rgba(-1)), np.asarray(batch.to_rgba(len(batch) - 1)))
    with pytest.raises(ValueError, match="no alpha map"):
        pvf.render(cnn, "2:0", **FAST).to_rgba(0)


@pytest.mark.parametrize("magnitude", ["1/f", "shapes", "folder"])
def test_maco_magnitudes(tmp_path, magnitude):
    if magnitude == "folder":
        for k, image in enumerate(make_batch(3, size=32, seed=5)[0]):
            Image.fromarray((image.permute(1, 2, 0) * 255).byte().numpy()).save(tmp_path / f"{k}.png")
        magnitude = str(tmp_path)
    res = pvf.render(tiny_cnn(), "2:0", **{**FAST, "steps": 4}, **MACO, maco_magnitude=magnitude)
    assert res.status == ["ok"]


def test_maco_bad_settings_are_named(tmp_path):
    with pytest.raises(ValueError, match="not a folder"):
        pvf.render(tiny_cnn(), "2:0", **FAST, **MACO, maco_magnitude=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="holds no images"):
        pvf.render(tiny_cnn(), "2:0", **FAST, **MACO, maco_magnitude=str(tmp_path))
    with pytest.raises(ValueError, match="maco_box"):
        pvf.render(tiny_cnn(), "2:0", **FAST, **MACO, maco_box=(0.5, 1.5))
    with pytest.raises(ValueError, match="one size"):
        pvf.render(tiny_cnn(), "2:0", **FAST, **MACO, octaves=2)


def test_maco_class_images_are_recognised(shapesnet):
    """MaCo with the shapes spectrum: the model's own class images are classified as their class."""
    res = pvf.render(shapesnet, "fc:0-9", size=48, steps=32, precision="fp32", param="maco", maco_crops=4,
                     maco_magnitude="shapes")
    with torch.no_grad():
        predicted = shapesnet(res.images).argmax(1)
    assert (predicted == torch.arange(10)).float().mean() >= 0.8, predicted


# ---- facets and diversity -----------------------------------------------------------------------

FACET_UNITS = [f"conv4:{k}" for k in range(0, 96, 8)]  # a sample of the layer, not one chosen unit


def test_facets_differ_and_each_keeps_the_objective(shapesnet):
    base = dict(size=48, steps=48, precision="fp32", seed=0)
    single = pvf.render(shapesnet, FACET_UNITS, **base)
    res = pvf.render(shapesnet, FACET_UNITS, facets=3, diversity_layer="conv3", **base)
    same = pvf.render(shapesnet, FACET_UNITS, facets=3, diversity=0.0, **base)
    assert [str(u) for u in res.units] == [u for u in FACET_UNITS for _ in range(3)] and res.info["facets"] == 3
    assert res.seeds[::3] == single.seeds and len(set(res.seeds)) == len(res.seeds)
    # Issue 13 asks every facet to reach 80 % of the unit's single image. Measured: 12 of these 12
    # units with the diversity floor (9 with Lucid's symmetric penalty at weight 0.5, which pushes
    # a facet that is losing the unit further off; BENCHMARKS.md, "Facets and accentuation").
    kept = (res.objective.view(-1, 3) >= 0.8 * single.objective[:, None]).all(1)
    assert int(kept.sum()) >= 11, dict(zip(FACET_UNITS, (res.objective.view(-1, 3) / single.objective[:, None]).tolist()))

    def spread(images):  # mean over units of the pairwise Gram distance of its three facets
        acts = activations(shapesnet, images, ["conv3"])["conv3"]
        return sum(mean_pairwise_gram_distance(a, NCHW) for a in acts.split(3)) / len(FACET_UNITS)
    diverse, plain = spread(res.images), spread(same.images)  # measured 0.25 and 0.09 (seeds alone)
    assert diverse > 0.2 and diverse > 2.2 * plain, (diverse, plain)


VIT_FACET_UNITS = [f"blocks.3.mlp.act:{k}" for k in range(0, 96, 8)]


def test_vit_facets_default_to_fourier_and_keep_the_unit():
    """On a patch model, facets render with the Fourier parameterization unless param is given.
    Compared with the same seed rendered without diversity (a ViT's single images vary up to 3x
    with the seed, so facet 0's seed says little of the others'), every facet keeps 80 %:
    measured 11 of 12 units at these settings, 12 at 64 px and 128 steps; pixel facets 6 of 12
    (BENCHMARKS.md, "Facets and accentuation")."""
    vit = zoo.shapes_vit()
    base = dict(size=48, steps=64, precision="fp32", seed=0, facets=3)
    res = pvf.render(vit, VIT_FACET_UNITS, diversity_layer="blocks.1.mlp.act", **base)
    same = pvf.render(vit, VIT_FACET_UNITS, diversity=0.0, **base)
    assert res.settings.param == same.settings.param == "fourier"
    assert pvf.render(vit, "blocks.3.mlp.act:0", **{**base, "steps": 1}, param="pixel").settings.param == "pixel"
    # Fourier works at one size: with octaves the default stays pixel rather than a setting it cannot do
    assert pvf.render(vit, "blocks.3.mlp.act:0", **{**base, "steps": 2}, octaves=2).settings.param == "pixel"
    ratios = res.objective.view(-1, 3) / same.objective.view(-1, 3)
    assert int((ratios >= 0.8).all(1).sum()) >= 10, dict(zip(VIT_FACET_UNITS, ratios.tolist()))

    def spread(images):
        acts = activations(vit, images, ["blocks.1.mlp.act"])["blocks.1.mlp.act"]
        tokens = Activation(tuple(acts.shape[1:]), "tokens")
        return sum(mean_pairwise_gram_distance(a, tokens) for a in acts.split(3)) / len(VIT_FACET_UNITS)
    diverse, plain = spread(res.images), spread(same.images)  # measured 0.28 and 0.20 (seeds alone)
    assert diverse > 1.2 * plain, (diverse, plain)


def test_a_facet_below_the_floor_only_climbs_and_no_facet_pushes_another():
    from pyviz_fast.engine.goals.diversity import Diversity
    gen = torch.Generator().manual_seed(3)
    act = torch.randn(3, 4, 5, 5, generator=gen, requires_grad=True)
    main = torch.tensor([2.0, 1.9, 1.0])  # of the best facet: 1.0, 0.95, 0.5
    diversity = Diversity("conv", NCHW, facets=3, crops=1, weight=1.0, floor=0.8, inputs=None)
    penalty = diversity({"conv": act}, main)
    full = diversity({"conv": act}, torch.full((3,), float(main.mean())))  # same scale, every facet the best
    # the full push at the best facet, 0.75 of it at 0.95 of the best (3/4 of the way from 0.8 to 1), none below 0.8
    torch.testing.assert_close(penalty / full, torch.tensor([1.0, 0.75, 0.0]))
    assert (full < 0).all()
    for row in range(3):  # a facet's penalty moves that facet's activation only
        grad, = torch.autograd.grad(penalty[row], act, retain_graph=True)
        others = [r for r in range(3) if r != row]
        assert grad[others].abs().max() == 0 and (grad[row].abs().max() > 0) == (row < 2)


def test_a_units_facets_do_not_depend_on_the_batch():
    cnn = tiny_cnn()
    alone = pvf.render(cnn, "2:3", **FAST, facets=2)
    together = pvf.render(cnn, "2:1-3", **FAST, facets=2, batch_size=3)  # rounds to whole units: 2 per batch
    assert [str(u) for u in together.units] == ["2:1", "2:1", "2:2", "2:2", "2:3", "2:3"]
    torch.testing.assert_close(alone.images, together.images[4:], atol=2e-3, rtol=0)


# ---- accentuation and caricature ---------------------------------------------------------------

@pytest.fixture(scope="module")
def photo():
    return make_batch(2, size=48, seed=1)[0][0]


def _accentuated(shapesnet, photo, **kwargs):
    """(unit, its activation on the photo, after accentuation, the result): the conv4 unit the
    photo drives weakly (room to accentuate it), accentuated with closeness at conv2."""
    before = activations(shapesnet, photo[None], ["conv4"])["conv4"][0].mean((1, 2))
    unit = int(torch.where((before > 0.1) & (before < 0.5), before, torch.zeros(())).argmax())
    res = pvf.accentuate(shapesnet, photo, f"conv4:{unit}", layer="conv2", precision="fp32", **kwargs)
    after = activations(shapesnet, res.images, ["conv4"])["conv4"][0].mean((1, 2))
    return unit, float(before[unit]), float(after[unit]), res


def test_accentuation_keeps_the_layout_and_raises_the_unit(shapesnet):
    # Issue 13's criteria, the unit x3 and a pooled-luminance correlation >= 0.5 with the photo, on
    # every photo of a sample that has a layout at the pooling's scale. A photo whose 8x8-pooled
    # luminance is flat (fine stripes, dots: pooled std 0.01-0.05 against 0.07-0.14) has none to
    # keep: any change that raises its unit outweighs it (BENCHMARKS.md, "Facets and accentuation").
    steered, fixed = [], []
    for photo in make_batch(6, size=48, seed=1)[0]:
        for figures, gain in ((steered, DEFAULT_GAIN), (fixed, None)):
            unit, before, after, res = _accentuated(shapesnet, photo, gain=gain)
            figures.append((after / before, pooled_luminance_correlation(photo, res.images[0]), pooled_std(photo)))
    laid_out = [(raised, kept) for raised, kept, std in steered if std >= LAYOUT_STD]
    assert len(laid_out) >= 4 and all(raised >= 3 and kept >= 0.5 for raised, kept in laid_out), steered
    # the gain steers every unit to a similar factor (measured x5.0-7.0 for gain 3.5); a fixed weight does not (x5.6-18.7)
    assert all(DEFAULT_GAIN <= raised <= 2.5 * DEFAULT_GAIN for raised, _, _ in steered), steered
    assert max(raised for raised, _, _ in fixed) > 2.5 * DEFAULT_GAIN, fixed


def test_a_render_from_a_photo_reports_the_objective_on_the_photo(shapesnet, photo):
    """What accentuate, caricature, dream and style raised their objective from: the photo as it is
    (the trajectory's first point is the first step's jittered input: 4 px off here)."""
    unit, before, after, res = _accentuated(shapesnet, photo, steps=4)
    assert torch.allclose(res.info["photo_objective"], torch.tensor([before]), rtol=1e-4, atol=1e-6)
    assert abs(float(res.objective[0]) - after) <= 1e-4 * max(1.0, abs(after))
    dreamed = pvf.render(shapesnet, "conv3@deepdream", init="image", init_image=photo, size=48, steps=2,
                         octaves=2, precision="fp32")
    acts = activations(shapesnet, photo[None], ["conv3"])["conv3"]
    assert torch.allclose(dreamed.info["photo_objective"], acts.square().mean()[None], rtol=1e-4)
    assert "photo_objective" not in pvf.render(shapesnet, "conv4:0", size=32, steps=2).info


def test_style_default_layers_of_a_model_with_functional_activations():
    """googlenet applies F.relu inside each BasicConv2d: no activation module to read. Its blocks
    are past their activations and span five resolutions; a ViT's only map (the patch projection)
    is not a texture layer, so there the error asks for the layers."""
    import torchvision

    from pyviz_fast.engine.style_transfer import default_layers

    googlenet = torchvision.models.get_model("googlenet", weights=None, init_weights=False).eval()
    assert default_layers(googlenet, (96, 96), 3) == (
        "inception4e", ["conv1", "conv2", "inception3a", "inception4a", "inception5a"])
    vit = torchvision.models.get_model("vit_b_32", weights=None).eval()
    with pytest.raises(ValueError, match="pass content_layer= and style_layers="):
        default_layers(vit, (224, 224), 3)


@pytest.mark.parametrize("name, unit_layer", [("efficientnet_b0", "features.6"),
                                               ("regnet_y_400mf", "trunk_output.block3")])
def test_accentuation_default_closeness_layer_is_a_map(name, unit_layer):
    """Halfway below these units lies a squeeze-and-excitation gate ([C, 1, 1]): closeness there
    would hold no layout of the photo. The default is the nearest map with positions instead."""
    import torchvision

    from pyviz_fast.engine.accentuate import lower_layer

    model = torchvision.models.get_model(name, weights=None).eval()
    infos = {info.name: info for info in pvf.layers(model, input_size=(3, 96, 96))}
    layer = lower_layer(model, unit_layer, (96, 96), 3)
    assert infos[layer].is_map and infos[layer].shape[-1] > 1, (layer, infos[layer].shape)


@pytest.mark.parametrize("name, unit_layer, expected", [
    ("shapesnet", "conv4", "conv2"),  # what BENCHMARKS.md measured the criteria with
    ("resnet18", "layer4", "layer2"),
    ("googlenet", "inception5b", "inception4a"),
    ("convnext_tiny", "features.5", "features.2"),  # not one of features.5's own blocks
])
def test_accentuation_default_closeness_layer_is_a_block_halfway_below(name, unit_layer, expected):
    """The default closeness layer is one of the model's blocks (its default atlas layers), not a
    batch norm or a branch inside one, and never inside the unit's own layer."""
    import torchvision

    from pyviz_fast.engine.accentuate import lower_layer

    if name == "shapesnet":
        model, size = pvf.zoo.shapesnet(), 64
    else:
        extra = dict(init_weights=False) if name == "googlenet" else {}
        model, size = torchvision.models.get_model(name, weights=None, **extra).eval(), 96
    assert lower_layer(model, unit_layer, (size, size), 3) == expected


def test_accentuation_of_a_vit_unit_raises_it_on_the_photo_as_it_is():
    """A ViT cuts its input into patches: a jitter that is not a whole patch changes every token,
    and the unit rose on shifted copies of the photo while it fell on the photo itself (x3 and the
    layout kept on 1 of 12 photos with jitter 4). The default on a patch model is no jitter, and a
    wider gradient blur so that the change is not pixel-level color noise (its high-frequency
    energy over the photo's: median 2.0 on these photos with the CNN's blur 1 -> 0.5, 1.6 with 1.5 -> 0.75)."""
    vit, layer = pvf.zoo.shapes_vit(), "blocks.3.mlp.act"
    figures, noise = [], []
    for photo in make_batch(6, size=64, seed=1)[0]:
        before = activations(vit, photo[None], [layer])[layer][0].mean(0)
        unit = int(torch.where((before > 0.05) & (before < 0.5), before, torch.zeros(())).argmax())
        res = pvf.accentuate(vit, photo, f"{layer}:{unit}", precision="fp32")
        after = activations(vit, res.images, [layer])[layer][0].mean(0)
        figures.append((float(after[unit] / before[unit]), pooled_luminance_correlation(photo, res.images[0])))
        noise.append(high_frequency_std(res.images[0]) / high_frequency_std(photo))
    assert res.settings.jitter == 0
    assert all(raised >= 3 and kept >= 0.5 for raised, kept in figures), figures
    assert float(np.median(noise)) <= 1.8, noise


def test_accentuation_rejects_a_bad_gain(shapesnet, photo):
    for bad in (1.0, 0.5, float("inf"), "4"):
        with pytest.raises(ValueError, match="gain must be a number > 1"):
            pvf.accentuate(shapesnet, photo, "conv4:0", gain=bad, steps=1)


def test_accentuation_closeness_holds_the_photo(shapesnet, photo):
    unit, _, _, res = _accentuated(shapesnet, photo)
    assert res.info["closeness_layer"] == "conv2" and torch.equal(res.info["photo"], photo)
    _, _, _, free = _accentuated(shapesnet, photo, weight=0.0)
    assert (free.images[0] - photo).abs().mean() > (res.images[0] - photo).abs().mean()


def test_caricature_exaggerates_what_the_layer_sees(shapesnet, photo):
    res = pvf.caricature(shapesnet, photo, "conv3", power=1.0, precision="fp32", steps=32)
    assert res.status == ["ok"] and res.objective[0] > res.trajectory[0, 0]
    assert pooled_luminance_correlation(photo, res.images[0]) >= 0.5


# ---- style transfer ----------------------------------------------------------------------------

def layout_image(size=48):
    """A content image with a large-scale layout: a dark-to-light ramp and a bright disk."""
    y, x = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    disk = (((x - 0.35) ** 2 + (y - 0.4) ** 2) < 0.04).float()
    gray = (0.15 + 0.5 * x + 0.35 * disk).clamp(0, 1)
    return torch.stack([gray, 0.8 * gray, 0.6 * gray + 0.2])


@pytest.mark.parametrize("precision", ["fp32", "bf16"])  # bf16: the Gram products in bf16 too
@pytest.mark.parametrize("model_name", ["random_vgg", "shapesnet"])
def test_style_transfer_moves_texture_and_keeps_layout(model_name, precision, shapesnet):
    model = random_vgg() if model_name == "random_vgg" else shapesnet
    content = layout_image()
    styles = make_batch(4, size=48, seed=3)[0][[0, 2]]  # stripes and a checkerboard or the like
    res = pvf.style_transfer(model, content, styles, precision=precision, steps=64)
    assert [str(u) for u in res.units] == ["content0+style0", "content0+style1"] and res.ok
    layers = res.info["style_layers"]
    got, target, start = (activations(model, x, layers) for x in (res.images, styles, content[None].expand(2, -1, -1, -1)))
    before = torch.stack([gram_distance(gram(start[l], NCHW), gram(target[l], NCHW)) for l in layers]).mean(0)
    after = torch.stack([gram_distance(gram(got[l], NCHW), gram(target[l], NCHW)) for l in layers]).mean(0)
    assert bool((after <= 0.5 * before).all()), (before, after)
    for image in res.images:
        assert pooled_luminance_correlation(content, image) >= 0.5


@pytest.mark.parametrize("name, first_style", [("mobilenet_v3_small", "features.0.2"),   # a Hardswish
                                               ("efficientnet_b0", "features.0.2"),      # a SiLU
                                               ("regnet_y_400mf", "stem.2")])
def test_style_default_layers_are_maps_not_excitation_gates(name, first_style):
    """Squeeze-and-excitation blocks put an activation on a 1 x 1 map (one value per channel):
    no texture for a Gram matrix, no layout for a content loss. The defaults skip them and take
    the stem's activation, whatever its kind."""
    import torchvision

    from pyviz_fast.engine.style_transfer import default_layers

    model = torchvision.models.get_model(name, weights=None).eval()
    content, styles = default_layers(model, (96, 96), 3)
    shapes = {info.name: info.shape for info in pvf.layers(model, input_size=(3, 96, 96))}
    assert styles[0] == first_style and len(styles) == 5
    sides = [shapes[layer][-1] for layer in styles]  # [C, H, W]: W
    assert sides == sorted(sides, reverse=True) and sides[-1] > 1, dict(zip(styles, sides))
    assert shapes[content][-1] == sides[-2]


@pytest.mark.parametrize("kwargs, message", [
    # named by the argument and flag, not the internal unit 'nope@deepdream'
    (dict(style_layers=["nope"]), "unknown layer 'nope' in style_layers (pyviz-fast style: --style-layers); "),
    (dict(content_layer="nope"), "unknown layer 'nope' given as content_layer (pyviz-fast style: --content-layer); "),
    (dict(pairs=[(0, 3)]), "pairs"),
    (dict(style_weight=math.inf), "style_weight must be a finite number >= 0, got inf"),  # it ran: loss inf
    (dict(style_weight=math.nan), "style_weight must be a finite number >= 0, got nan"),
    (dict(content_weight=-1), "content_weight must be a finite number >= 0, got -1"),
])
def test_style_transfer_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        pvf.style_transfer(random_vgg(), layout_image(16), layout_image(16), steps=1, **kwargs)
    assert "@deepdream" not in str(caught.value)


# ---- the commands, as a user runs them ---------------------------------------------------------

def _cli(*args):
    return subprocess.run([sys.executable, "-m", "pyviz_fast", *map(str, args)], capture_output=True, text=True,
                          timeout=600)


def _save(image, path):
    Image.fromarray((image.permute(1, 2, 0) * 255).round().byte().numpy()).save(path)
    return path


def test_cli_accentuate_and_style(tmp_path, photo):
    photo_path = _save(photo, tmp_path / "photo.png")
    done = _cli("accentuate", photo_path, "--unit", "fc:3", "--steps", "4", "-q", "--out", tmp_path / "a.png")
    assert done.returncode == 0, done.stderr
    with Image.open(tmp_path / "a_panel.png") as panel:
        assert panel.size == (3 * 48, 48)
    assert (tmp_path / "a.png").is_file() and (tmp_path / "a_difference.png").is_file()
    style_path = _save(make_batch(1, size=32, seed=3)[0][0], tmp_path / "style.png")
    done = _cli("style", photo_path, style_path, style_path, "--steps", "4", "-q", "--style-layers",
                "conv1,conv2", "--content-layer", "conv3", "--out", tmp_path / "s.png")
    assert done.returncode == 0, done.stderr
    for k in range(2):
        with Image.open(tmp_path / f"s_{k}.png") as styled:
            assert styled.size == (48, 48)


def test_cli_errors_are_one_line(tmp_path, photo):
    photo_path = _save(photo, tmp_path / "photo.png")
    cases = [(("style", tmp_path / "missing.png", photo_path), "does not exist"),
             (("style", photo_path, photo_path, "--style-layers", "conv9"), "unknown layer 'conv9'"),
             (("accentuate", photo_path, "--unit", "conv4:999"), "channel 999"),
             (("accentuate", photo_path), "one of the arguments --unit --caricature is required"),
             (("accentuate", photo_path, "--unit", "fc:3", "--gain", "lots"), "expected a number > 1 or 'none'"),
             (("accentuate", photo_path, "--unit", "fc:3", "--gain", "1"), "gain must be a number > 1")]
    runs = run_commands([((*args, "--steps", "1", "-q"), tmp_path) for args, _ in cases])
    for (_, message), done in zip(cases, runs):
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_cli_facets_of_a_vit_default_to_fourier_unless_param_is_given(tmp_path):
    unit = ("blocks.0.mlp.act:0", "--model", "shapes_vit", "--facets", "2", "--size", "32", "--steps", "1", "-q")
    commands = [(("render", *unit, "--out", "r"), tmp_path), (("atlas", *unit, "--out", "a"), tmp_path),
                (("render", *unit, "--param", "pixel", "--out", "p"), tmp_path)]
    for done in run_commands(commands):
        assert done.returncode == 0, done.stderr
    params = [json.loads((tmp_path / name).read_text())["settings"]["param"]
              for name in ("r/render.json", "a/run.json", "p/render.json")]
    assert params == ["fourier", "fourier", "pixel"]


def test_cli_render_writes_facets_and_maco_alpha(tmp_path):
    done = _cli("render", "fc:1", "--param", "maco", "--maco-crops", "2", "--facets", "2", "--size", "32",
                "--steps", "3", "-q", "--out", tmp_path)
    assert done.returncode == 0, done.stderr
    for name in ("1", "1~facet1"):  # as in an atlas: fc/1.png, fc/1~facet1.png and their ~rgba variants
        with Image.open(tmp_path / "fc" / f"{name}~rgba.png") as rgba:
            assert rgba.mode == "RGBA" and rgba.size == (32, 32)
        assert (tmp_path / "fc" / f"{name}.png").is_file()


def _zoo_models():
    """The three zoo models, or a skip while their weights are not in this checkout."""
    names = getattr(zoo, "ZOO_MODELS", ())
    if len(names) < 3:
        pytest.skip("the zoo's shapes_resnet and shapes_vit are not in this checkout")
    try:
        return {name: zoo.load(name) for name in names}
    except FileNotFoundError as missing:
        pytest.skip(f"zoo weights missing: {missing}")


# Issue 13 asks for >= 80 % on average: the benchmark's 96 steps and 8 crops reach it (BENCHMARKS.md,
# "Zoo quality"); these 32 steps and 4 crops reach 72 % (45 % before the CNNs were trained to call
# MaCo's fixed-magnitude texture "no class": they called it "dots"). Measured per pair: CNN -> CNN
# 0.8 both ways, ViT -> CNNs 1.0 and 0.9, CNNs -> ViT 0.4 both; own classes 0.8 (ShapesNet), 0.9,
# 1.0. Regression floors under those figures.
TRANSFER_FLOOR, CNN_PAIR_FLOOR, OWN_FLOOR = 0.6, 0.7, 0.7


def test_maco_class_images_transfer_across_the_zoo():
    """Fel et al.'s transferability: each model's MaCo class images, classified by the other two."""
    models = _zoo_models()
    recognised = {}
    for name, model in models.items():
        res = pvf.render(model, "output:0-9", size=64, steps=32, precision="fp32", memory_format="contiguous",
                         param="maco", maco_crops=4, maco_magnitude="shapes")
        for judge_name, judge in models.items():
            with torch.no_grad():
                recognised[name, judge_name] = float((judge(res.images).argmax(1) == torch.arange(10)).float().mean())
    transfer = [v for (made, judged), v in recognised.items() if made != judged]
    cnn_pairs = [recognised["shapesnet", "shapes_resnet"], recognised["shapes_resnet", "shapesnet"]]
    assert sum(transfer) / len(transfer) >= TRANSFER_FLOOR, recognised
    assert sum(cnn_pairs) / 2 >= CNN_PAIR_FLOOR, recognised
    assert all(recognised[name, name] >= OWN_FLOOR for name in models), recognised
