"""The shipped models (pyviz_fast.zoo): real trained weights, any input size, named layers."""
import subprocess
import sys

import pytest
import torch

from pyviz_fast import zoo
from pyviz_fast.zoo import quality
from pyviz_fast.zoo.shapes_data import COLOR_CHANNELS, SHAPES_CLASSES, make_batch, stripe_wave_angle
from pyviz_fast.zoo.catalog import ZOO
from pyviz_fast.zoo.train_shapes import evaluate, main, train

HELD_OUT_SEED = 987_654  # never used in training (training draws from seeds 0.. and 1_000_003+)


@pytest.fixture(scope="module", params=zoo.ZOO_MODELS)
def model(request):
    return zoo.load(request.param)


@pytest.fixture(scope="module")
def shapesnet():
    return zoo.shapesnet()


def test_the_factories_build_the_catalog_models():
    built = {"shapesnet": zoo.shapesnet(), "shapes_resnet": zoo.shapes_resnet(), "shapes_vit": zoo.shapes_vit()}
    assert set(built) == set(zoo.ZOO_MODELS)
    assert all(type(model) is ZOO[name].architecture for name, model in built.items())
    with pytest.raises(ValueError, match="valid: shapesnet, shapes_resnet, shapes_vit"):
        zoo.load("shapes_mlp")


def test_shipped_weights_classify_held_out_images(model):
    accuracy = evaluate(model, n=500, size=64, seed=HELD_OUT_SEED)
    assert accuracy >= 0.95, f"{type(model).__name__}: held-out accuracy {accuracy:.3f}"


@pytest.mark.parametrize("name", zoo.ZOO_MODELS)
def test_random_weights_do_not_pass_the_accuracy_bar(name):
    torch.manual_seed(0)
    accuracy = evaluate(zoo.load(name, pretrained=False), n=200, size=64, seed=HELD_OUT_SEED)
    assert accuracy < 0.5, f"a random {name} scored {accuracy:.3f}: the accuracy test could not fail"


@pytest.mark.parametrize("size", [32, 48, 100, 256])
def test_model_takes_any_size_from_32(model, size):
    images, labels = make_batch(10, size=size, seed=size, labels=torch.arange(10))
    logits = model(images)
    assert logits.shape == (10, len(SHAPES_CLASSES))
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("shape", [(1, 3, 31, 64), (1, 1, 64, 64), (3, 64, 64)])
def test_model_rejects_bad_input_shapes(model, shape):
    with pytest.raises(ValueError, match="H, W >= 32"):
        model(torch.rand(shape))


@pytest.mark.parametrize("name", zoo.ZOO_MODELS)
def test_model_is_frozen_eval_and_loads_from_the_package(name):
    model = zoo.load(name)
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())
    assert ZOO[name].weights.stat().st_size < 5e6


def test_named_layer_shapes(shapesnet):
    model = shapesnet
    shapes = {}
    hooks = [getattr(model, name).register_forward_hook(
        lambda _m, _i, out, name=name: shapes.__setitem__(name, tuple(out.shape)))
        for name in ("conv1", "conv2", "conv3", "conv4", "fc")]
    model(torch.rand(2, 3, 64, 64))
    for hook in hooks:
        hook.remove()
    assert shapes == {"conv1": (2, 16, 64, 64), "conv2": (2, 32, 32, 32), "conv3": (2, 64, 16, 16),
                      "conv4": (2, 96, 8, 8), "fc": (2, 10)}
    assert [name for name, _ in model.named_children()] == [
        "normalize", "conv1", "conv2", "conv3", "conv4", "pool", "flatten", "fc"]


def test_generator_is_seeded_and_balanced():
    a, labels_a = make_batch(20, size=40, seed=3)
    b, labels_b = make_batch(20, size=40, seed=3)
    c, _ = make_batch(20, size=40, seed=4)
    assert torch.equal(a, b) and torch.equal(labels_a, labels_b)
    assert not torch.equal(a, c)
    assert torch.bincount(labels_a, minlength=10).tolist() == [2] * 10
    assert a.min() >= 0 and a.max() <= 1 and a.shape == (20, 3, 40, 40)
    assert make_batch(2, size=(33, 57), seed=0)[0].shape == (2, 3, 33, 57)


@pytest.mark.parametrize("name", ["stripes_0", "stripes_45", "stripes_90", "stripes_135"])
def test_generated_stripes_follow_the_documented_orientation(name):
    images, _ = make_batch(8, size=64, seed=1, labels=torch.full((8,), SHAPES_CLASSES.index(name)))
    assert (quality.orientation_ratio(images, stripe_wave_angle(name)) >= 2).all()


def test_stripes_0_runs_horizontally():
    image, _ = make_batch(1, size=64, seed=2, labels=torch.tensor([0]))
    rows, cols = image[0].mean(0), image[0].mean(0).T
    # Constant along each row (the stripe direction) up to noise; varying down the columns.
    assert rows.std(dim=1).mean() < 0.5 * cols.std(dim=1).mean()


@pytest.mark.parametrize("name", sorted(COLOR_CHANNELS))
def test_generated_color_classes_are_dominated_by_their_color_in_the_blobs(name):
    images, _ = make_batch(8, size=64, seed=1, labels=torch.full((8,), SHAPES_CLASSES.index(name)))
    assert (quality.color_dominance(images, COLOR_CHANNELS[name]) > 0).all()


@pytest.mark.parametrize("bad", [dict(n=0), dict(n=2, size=4), dict(n=2, labels=torch.tensor([0, 10]))])
def test_generator_rejects_bad_arguments(bad):
    with pytest.raises(ValueError):
        make_batch(**bad)


def test_resnet_and_vit_layer_shapes():
    shapes = {}
    resnet, vit = zoo.shapes_resnet(pretrained=False), zoo.shapes_vit(pretrained=False)
    modules = {**{f"resnet.{n}": m for n, m in resnet.named_modules()}, **{f"vit.{n}": m for n, m in vit.named_modules()}}
    names = ["resnet.stem", "resnet.layer2", "resnet.layer4", "vit.patch_embed", "vit.blocks.3.mlp.act", "vit.blocks.3"]
    hooks = [modules[name].register_forward_hook(
        lambda _m, _i, out, name=name: shapes.__setitem__(name, tuple(out.shape))) for name in names]
    resnet(torch.rand(2, 3, 64, 64))
    vit(torch.rand(2, 3, 72, 64))  # 9 x 8 patches + the class token
    for hook in hooks:
        hook.remove()
    assert shapes == {"resnet.stem": (2, 24, 32, 32), "resnet.layer2": (2, 48, 16, 16),
                      "resnet.layer4": (2, 96, 8, 8), "vit.patch_embed": (2, 72, 64),
                      "vit.blocks.3.mlp.act": (2, 73, 256), "vit.blocks.3": (2, 73, 64)}


@pytest.mark.parametrize("name", zoo.ZOO_MODELS)
def test_training_is_seeded_and_reproducible(name):
    first, _, steps = train(name, seed=5, steps=3, batch_size=8, log_every=10)
    second, _, _ = train(name, seed=5, steps=3, batch_size=8, log_every=10)
    other, _, _ = train(name, seed=6, steps=3, batch_size=8, log_every=10)
    a, b, c = first.state_dict(), second.state_dict(), other.state_dict()
    assert steps == 3 and not first.training
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("name", zoo.ZOO_MODELS)
def test_training_script_writes_a_loadable_state_dict(tmp_path, capsys, name):
    out = tmp_path / "weights.pt"
    main(["--model", name, "--out", str(out), "--steps", "2", "--eval-images", "20"])
    assert "held-out accuracy at 64 px" in capsys.readouterr().out
    ZOO[name].architecture().load_state_dict(torch.load(out, weights_only=True))


@pytest.mark.parametrize("name, atlas", [("shapes_vit", [f"blocks.{k}.mlp.act" for k in range(4)]),
                                         ("shapes_resnet", ["stem", "layer1", "layer2", "layer3", "layer4"])])
def test_cli_lists_the_zoo_models_layers_and_atlas_defaults(name, atlas):
    def layers(*extra):
        done = subprocess.run([sys.executable, "-m", "pyviz_fast", "layers", "--model", name, "--size", "64", *extra],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return {line.split()[0]: line.split() for line in done.stdout.splitlines()[1:]}

    assert list(layers("--atlas")) == atlas
    every = layers()
    assert set(atlas) < set(every) and every["output"][-1] == "10"
    if name == "shapes_vit":  # tokens [N, D]: 64 patches of a 64 px image + the class token
        assert every["blocks.0.mlp.act"][2:] == ["[65,", "256]", "tokens", "256"]
