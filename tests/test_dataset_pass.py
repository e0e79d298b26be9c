"""The dataset pass: per-example objectives equal the render's, top-K is exact, a killed pass resumes
to the same result, dataset specs, receptive-field boxes, and the signals next to a visualization."""
from collections import OrderedDict

import pytest
import torch
from PIL import Image
from torch import nn

import pyviz_fast as pvf
from pyviz_fast.engine.dataset_pass import dataset_pass, receptive_fields, visualization_signals
from pyviz_fast.engine.datasets import load_dataset
from pyviz_fast.engine.execution import PreparedModel
from pyviz_fast.engine.layers import probe_activations
from pyviz_fast.engine.objectives import ObjectivePlan

torch.set_num_threads(1)
SETTINGS = pvf.Settings(size=32, precision="fp32", memory_format="contiguous")


def tiny_model():
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(3, 4, 3, padding=1)), ("relu", nn.ReLU()),
        ("conv2", nn.Conv2d(4, 5, 3, padding=1, stride=2)),
        ("pool", nn.AdaptiveAvgPool2d(1)), ("flat", nn.Flatten()), ("fc", nn.Linear(5, 3))])).eval()


UNITS = ["conv1:0-3", "conv2:0-4", "conv2:1@neuron(2,3)", "fc:0-2", "0.5*conv1:0 + 0.5*fc:1"]
LAYERS = ["conv1", "conv2", "fc"]


def probe(prepared, layers=LAYERS):
    return probe_activations(prepared, layers, 3, [(32, 32)])[(32, 32)]


def every_activation(model, units, images):
    """float32 [N, U]: each unit's objective on each image, one image at a time (the render's plan)."""
    with PreparedModel(model, SETTINGS, "cpu") as prepared, torch.no_grad():
        plan = ObjectivePlan(units, probe(prepared))
        return torch.stack([plan(prepared(image[None].expand(len(units), -1, -1, -1), plan.layers))
                            for image in images])


def test_per_example_objectives_equal_the_render_objective_of_each_image():
    model = tiny_model()
    units = pvf.parse_units(UNITS, model=model)
    images = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with PreparedModel(model, SETTINGS, "cpu") as prepared, torch.no_grad():
        plan = ObjectivePlan(units, probe(prepared))
        every = plan.per_example(prepared(images, plan.layers))
    assert every.shape == (6, len(units))
    torch.testing.assert_close(every, every_activation(model, units, images))


def test_top_and_bottom_examples_and_stats_are_exact_and_a_killed_pass_resumes_to_the_same(tmp_path):
    model, data = tiny_model(), load_dataset("shapes:150", 32)
    units = pvf.parse_units(UNITS, model=model)
    whole = dataset_pass(model, units, data, SETTINGS, examples=5, workers=0, batch_size=16)
    every = every_activation(model, units, [data[i][0] for i in range(len(data))])
    for u in range(len(units)):
        expected = every[:, u].topk(5).indices.tolist()
        assert [e["index"] for e in whole.top[u]] == expected
        assert [e["index"] for e in whole.bottom[u]] == every[:, u].topk(5, largest=False).indices.tolist()
        assert whole.stats[u]["mean"] == pytest.approx(every[:, u].mean().item(), rel=1e-4, abs=1e-5)
        assert whole.stats[u]["max"] == pytest.approx(every[:, u].max().item(), rel=1e-5)
    saved = []

    def killed_after_three_batches(state):
        saved.append(state)
        if len(saved) == 3:
            raise KeyboardInterrupt  # as if killed right after this checkpoint

    with pytest.raises(KeyboardInterrupt):
        dataset_pass(model, units, data, SETTINGS, examples=5, workers=0, batch_size=16,
                     checkpoint=killed_after_three_batches, checkpoint_seconds=0)
    state = torch.load(_roundtrip(saved[2], tmp_path), weights_only=True)
    assert state["done"] == 48
    resumed = dataset_pass(model, units, data, SETTINGS, examples=5, workers=0, batch_size=16, resume=state)
    assert resumed.top == whole.top and resumed.bottom == whole.bottom and resumed.examples == 150
    torch.testing.assert_close(resumed.values, whole.values)


def _roundtrip(state, tmp_path):
    path = tmp_path / "state.pt"
    torch.save(state, path)
    return path


def test_receptive_field_boxes_follow_the_convolutions():
    model = tiny_model()
    with PreparedModel(model, SETTINGS, "cpu") as prepared:
        shapes = probe(prepared, ["conv1", "conv2"])
        fields = receptive_fields(prepared, ["conv1", "conv2"], shapes, 3, (32, 32))
    assert fields["conv1"][2:] == (-1.5, -1.5, 1.5, 1.5)  # a 3x3 window around the pixel
    sy, sx, y0, x0, y1, x1 = fields["conv2"]
    assert (sy, sx) == (2.0, 2.0) and (y1 - y0, x1 - x0) == (5.0, 5.0)  # 3x3 (stride 2) over 3x3 (stride 1): 5 px


def test_dataset_specs_folder_shapes_factory_and_errors(tmp_path, monkeypatch):
    for label, color in (("cat", (200, 30, 30)), ("dog", (30, 30, 200))):
        (tmp_path / "data" / label).mkdir(parents=True)
        for k in range(2):
            Image.new("RGB", (40, 30), color).save(tmp_path / "data" / label / f"{k}.png")
    folder = load_dataset(str(tmp_path / "data"), 16)
    assert len(folder) == 4 and folder.classes == ["cat", "dog"]
    image, label, index = folder[3]
    assert image.shape == (3, 16, 16) and folder.classes[label] == "dog" and folder.source(3) == "dog/1.png"
    shapes = load_dataset("shapes:20", 32)
    assert torch.equal(shapes[7][0], load_dataset("shapes:9", 32)[7][0]) and shapes.classes[shapes[7][1]] == "red"
    (tmp_path / "my_data.py").write_text("import torch\n"
                                         "def make():\n"
                                         "    return [(torch.full((3, 8, 8), k / 4), k % 2) for k in range(4)]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    factory = load_dataset("my_data:make", 16)
    image, label, index = factory[2]
    assert len(factory) == 4 and image.shape == (3, 16, 16) and label == 0 and float(image.mean()) == 0.5
    for bad, message in (("shapes:0", "positive count"), ("nowhere:nothing", "cannot import"),
                         (str(tmp_path / "missing"), "not a folder of images")):
        with pytest.raises(ValueError, match=message):
            load_dataset(bad, 32)


def test_shapesnet_class_units_top_examples_are_of_their_class_and_signals_are_sane():
    model, _ = pvf.load_model("shapesnet")
    settings = pvf.Settings(size=64)
    data = load_dataset("shapes:400", 64)
    units = pvf.parse_units(["conv2:0-1", "fc:0-9"], model=model)
    grounding = dataset_pass(model, units, data, settings, examples=3, workers=1)
    for k in range(10):
        assert {data.classes[data[e["index"]][1]] for e in grounding.top[2 + k]} == {data.classes[k]}
    images = torch.stack([data[grounding.top[u][0]["index"]][0] for u in range(len(units))])
    signals = visualization_signals(model, units, images, data, grounding, settings, workers=0)
    for u, signal in enumerate(signals):  # each unit shown its own best example
        assert signal["visualization_activation"] == pytest.approx(grounding.top[u][0]["activation"], rel=0.05, abs=0.05)
        assert signal["percentile"] > 99
    assert [p["layer"] for p in signals[5]["path_similarity"]] == ["conv2"]
    assert signals[0]["path_similarity"] == []  # nothing of the atlas below conv2
