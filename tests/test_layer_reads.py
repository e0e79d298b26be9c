"""What a layer name reads must be that layer's output, whatever the model does after it.

- A module that runs several times in one forward (one ``nn.ReLU`` shared by a block, as in
  torchvision's ResNets) is one name for two activations: the engine reads its first call, and
  every place that shows the layer says so (layers(), the render's warning and info, the
  `layers` listing, the atlas's records and gallery).
- A layer whose output the model overwrites in place later in the forward (VGG's
  ``ReLU(inplace=True)`` after each convolution) must be read as the layer made it, also when the
  forward runs past it for a deeper layer of the same batch; the listing marks it, and an atlas
  started before it was so read is not resumed on it.
- A layer cut from the image by the model (no_grad, detach) is an error naming it.
- A layer whose output holds no tensor (a detection model's image list) is listed without a
  shape, and an error naming it when asked for.
- A layer whose first dimension is not the batch (a transformer run sequence-first, [N, B, D], as
  OpenAI's CLIP runs it) has rows that are tokens, not images: listed as such, never a default,
  and an error naming it when asked for (it used to read token b as image b).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import pyviz_fast as pvf
from pyviz_fast.audit import read_records
from pyviz_fast.audit.gallery import _DATA_PREFIX, _read_js_json
from pyviz_fast.engine.layers import SharedLayerWarning

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))
from cli_models import (SharedReLUNet, inplace_relu_net, no_grad_stem_net, sequence_first_vit,  # noqa: E402
                        shared_relu_net, wrapped_input_net)

ENV = {**os.environ, "OMP_NUM_THREADS": "1",
       "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
TINY = dict(size=16, steps=2)


def test_layers_counts_the_calls_and_lists_the_first():
    by_name = {info.name: info for info in pvf.layers(shared_relu_net(), (3, 16, 16))}
    assert by_name["act"].calls == 2
    assert by_name["act"].channels == 4  # the first call's output (conv1's 4 channels, not conv2's 6)
    assert by_name["conv1"].calls == by_name["conv2"].calls == 1


def test_render_of_a_shared_layer_warns_and_records_it():
    with pytest.warns(SharedLayerWarning, match=r"'act' is one module that runs 2 times.*first call"):
        res = pvf.render(shared_relu_net(), "act:3", **TINY)
    assert res.info["shared_layers"] == {"act": 2}
    # the rendered channel is the first call's: its value is channel 3 of relu(conv1(image))
    model = shared_relu_net()
    first_call = model.act(model.conv1(res.images))[:, 3]
    assert torch.allclose(res.objective, first_call.mean((1, 2)), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="act"):  # channel 5 exists only at the second call
        pvf.render(shared_relu_net(), "act:5", **TINY)


def test_render_of_unshared_layers_does_not_warn(recwarn):
    res = pvf.render(shared_relu_net(), ["conv2:1", "conv1:0"], **TINY)
    assert res.info["shared_layers"] == {}
    assert not [w for w in recwarn if issubclass(w.category, SharedLayerWarning)]


def test_the_count_survives_a_head_made_for_another_size():
    """The count runs the forward past the rendered layer; a head that fails at the render's size
    after the layer ran must not fail the render (the truncated render never reaches it)."""
    torch.manual_seed(0)
    model = SharedReLUNet(head_size=8)
    with pytest.warns(SharedLayerWarning):
        res = pvf.render(model, "act:0", **TINY)  # 16 px: the head wants 8 px
    assert res.status == ["ok"] and res.info["shared_layers"] == {"act": 2}


def test_layers_a_method_picks_for_their_first_call_do_not_warn(recwarn):
    """style_transfer's defaults are the first activation at each resolution: a shared ReLU's
    first call is what it means, so only a user's explicit pick of the layer warns."""
    torch.manual_seed(0)
    content, style = torch.rand(3, 16, 16), torch.rand(3, 16, 16)
    res = pvf.style_transfer(shared_relu_net(), content, style, steps=2)
    assert res.info["style_layers"] == ["act"] and res.info["shared_layers"] == {"act": 2}
    assert not [w for w in recwarn if issubclass(w.category, SharedLayerWarning)]
    with pytest.warns(SharedLayerWarning, match="'act'"):
        pvf.style_transfer(shared_relu_net(), content, style, style_layers=["act"], content_layer="conv2", steps=2)


def pyviz(*args, cwd):
    return subprocess.run([sys.executable, "-m", "pyviz_fast", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=ENV, cwd=cwd)


@pytest.fixture(scope="module")
def atlas_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("shared")
    done = pyviz("atlas", "act", "conv2", "--model", "cli_models:shared_relu_net", "--size", "16", "--steps", "2",
                 "--out", "run", cwd=root)
    assert done.returncode == 0, done.stderr
    assert "'act' is one module that runs 2 times" in done.stderr  # the warning reaches the user
    return root / "run"


def test_cli_listing_and_atlas_say_which_call(tmp_path, atlas_dir):
    listing = pyviz("layers", "--model", "cli_models:shared_relu_net", "--size", "16", cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    rows = {line.split()[0]: line for line in listing.stdout.splitlines()[1:]}
    assert "runs 2x per forward: the first call" in rows["act"] and "runs" not in rows["conv1"]

    records = read_records(atlas_dir / "manifest.jsonl")
    assert {r["layer"]: r.get("layer_calls") for r in records} == {"act": 2, "conv2": None}
    summary = _read_js_json(atlas_dir / "gallery" / "data.js", _DATA_PREFIX)
    assert {layer["name"]: layer["calls"] for layer in summary["layers"]} == {"act": 2, "conv2": 1}


def test_gallery_marks_the_shared_layer(browser, atlas_dir):
    page = browser.new_page(viewport={"width": 1100, "height": 700})
    page.goto((atlas_dir / "index.html").as_uri() + "#layer=act&unit=act:1")
    page.wait_for_selector(".panel")
    assert "shared module: runs 2x per forward, the first call is shown" in page.inner_text("#layer-info")
    assert "the first call is shown" in page.inner_text(".panel")
    page.goto((atlas_dir / "index.html").as_uri() + "#layer=conv2")
    page.wait_for_function("document.querySelector('#layer-info').textContent.startsWith('conv2')")
    assert "shared module" not in page.inner_text("#layer-info")


def test_a_layer_overwritten_in_place_is_read_as_made_with_its_gradient():
    from pyviz_fast.engine.execution import PreparedModel
    torch.manual_seed(1)
    images = torch.rand(2, 3, 12, 12)
    fp32 = pvf.Settings(precision="fp32", memory_format="contiguous")

    def read(model):
        x = images.clone().requires_grad_()
        with PreparedModel(model, fp32, "cpu") as prepared:
            acts = prepared(x, ["0", "2"])  # conv1, and conv2 past conv1's in-place ReLU
            (acts["0"][:, 1].mean() - acts["2"][:, 3].mean()).backward()
        return acts["0"].detach(), x.grad

    conv1, grad = read(inplace_relu_net(inplace=True))
    expected_conv1, expected_grad = read(inplace_relu_net(inplace=False))
    assert conv1.min() < 0  # the convolution's own output, not after its ReLU
    assert torch.equal(conv1, expected_conv1) and torch.allclose(grad, expected_grad, atol=1e-7)


def test_a_tapped_layer_overwritten_in_place_is_tapped_as_made_with_its_gradient():
    """A style layer's tap (its Gram error taken inside the forward) on a convolution whose output
    the in-place ReLU after it rewrites: found on the first call, tapped beside the model's path
    from then on, with the loss and gradient of a model without in-place ReLUs."""
    from pyviz_fast.engine.execution import PreparedModel
    from pyviz_fast.engine.goals.gram import gram_error_tap, squared_norms
    from pyviz_fast.engine.layout import Activation
    from pyviz_fast.engine.truncate import TapValue
    torch.manual_seed(1)
    images = torch.rand(2, 3, 12, 12)
    target = torch.rand(2, 4, 4)
    tap = gram_error_tap(Activation((4, 12, 12), "nchw"), target, squared_norms(target))
    fp32 = pvf.Settings(precision="fp32", memory_format="contiguous")

    def read(model):
        x = images.clone().requires_grad_()
        with PreparedModel(model, fp32, "cpu") as prepared:
            acts = prepared(x, ["0", "2"], taps={"0": tap})
            error = acts[TapValue("0")]
            (error.sum() - acts["2"][:, 3].mean()).backward()
        return error.detach(), x.grad

    error, grad = read(inplace_relu_net(inplace=True))
    expected_error, expected_grad = read(inplace_relu_net(inplace=False))
    torch.testing.assert_close(error, expected_error, rtol=1e-6, atol=0)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-5, atol=1e-7)


def test_a_unit_renders_the_same_beside_a_deeper_layer():
    """A unit's result depends on (model, unit, settings, seed) only: beside a unit of a deeper
    layer (the forward then runs past its in-place ReLU) it must be the same image."""
    alone = pvf.render(inplace_relu_net(), "0:1", **TINY)
    mixed = pvf.render(inplace_relu_net(), ["0:1", "2:3"], **TINY)
    assert torch.equal(alone.images[0], mixed.images[0])
    assert torch.allclose(alone.objective[0], mixed.objective[0], rtol=1e-5)  # the final forward: batch size



def test_a_layer_cut_from_the_image_is_named_in_a_clear_error():
    with pytest.raises(ValueError, match=r"'stem', 'head' do not depend on the input image through autograd"):
        pvf.render(no_grad_stem_net(), ["stem:0", "head:1"], steps=2, size=16)


def test_layers_lists_the_outputs_rewritten_in_place():
    by_name = {info.name: info for info in pvf.layers(inplace_relu_net(), (3, 12, 12))}
    assert by_name["0"].rewritten and by_name["2"].rewritten  # each conv, by the ReLU after it
    assert not by_name["1"].rewritten and not by_name["4"].rewritten
    assert not any(info.rewritten for info in pvf.layers(inplace_relu_net(inplace=False), (3, 12, 12)))


def test_a_run_started_before_the_check_does_not_resume_on_rewritten_layers(tmp_path):
    """A run directory whose run.json predates ``layer_reads`` (its records may have read the
    conv after its ReLU) refuses to resume on such layers, resumes on others, and --force
    starts it over."""
    from pyviz_fast.audit import ReadsMismatchError, RunDir
    from pyviz_fast.audit.run_dir import LAYER_READS

    run = RunDir(tmp_path / "run")
    info = run.prepare("vgg", 0, {"steps": 2}, rewritten=("features.0",))
    assert info["layer_reads"] == LAYER_READS
    old = json.loads((run.root / "run.json").read_text())
    del old["layer_reads"]  # as a run made before the check wrote it
    (run.root / "run.json").write_text(json.dumps(old))
    run.check("vgg", 0, {"steps": 2}, rewritten=())  # layers nobody rewrites read the same
    with pytest.raises(ReadsMismatchError, match=r"'features.0'.*--force"):
        run.prepare("vgg", 0, {"steps": 2}, rewritten=("features.0",))
    assert run.prepare("vgg", 0, {"steps": 2}, rewritten=("features.0",), force=True)["layer_reads"] == LAYER_READS
    assert json.loads((run.root / "run.json").read_text())["layer_reads"] == LAYER_READS


def test_the_atlas_command_refuses_to_mix_readings(tmp_path):
    args = ["atlas", "0", "--model", "cli_models:inplace_relu_net", "--size", "12", "--steps", "2", "-q",
            "--out", "run"]
    assert pyviz(*args, cwd=tmp_path).returncode == 0
    run_json = tmp_path / "run" / "run.json"
    old = json.loads(run_json.read_text())
    del old["layer_reads"]  # as a run made before the check
    run_json.write_text(json.dumps(old))
    done = pyviz(*args, cwd=tmp_path)
    assert done.returncode == 2 and "would mix two readings" in done.stderr and "'0'" in done.stderr, done.stderr
    assert pyviz(*args, "--force", cwd=tmp_path).returncode == 0


def test_a_sequence_first_layer_is_listed_as_such_and_never_read_per_image():
    from pyviz_fast.engine.blocks import default_atlas_layers
    from pyviz_fast.engine.truncate import LayerError

    model = sequence_first_vit()
    infos = {info.name: info for info in pvf.layers(model, input_size=(3, 16, 16))}
    encoder = infos["encoder.0"]
    assert (encoder.batched, encoder.shape, encoder.layout, encoder.channels) == (False, (16, 1, 16), None, None)
    assert infos["patches"].batched and infos["output"].batched and infos["output"].channels == 5
    assert default_atlas_layers(model, list(infos.values())) == ["patches"]
    with pytest.raises(LayerError, match=r"'encoder.1' returns shape \[16, 1, 16\] for a batch of size 1"):
        pvf.render(model, ["encoder.1:0", "encoder.1:1"], size=16, steps=1, progress=False)
    listing = pyviz("layers", "--model", "cli_models:sequence_first_vit", "--size", "16", cwd=Path.cwd())
    assert listing.returncode == 0 and "encoder.0" in listing.stdout and "not the batch" in listing.stdout


def test_a_layer_whose_output_holds_no_tensor_is_listed_and_refused():
    """A detection model's ``transform`` returns an image list object: the listing crashed on it
    ("'NoneType' object is not iterable"); it lists it with no shape and says why."""
    from pyviz_fast.engine.truncate import LayerError

    listing = pyviz("layers", "--model", "cli_models:wrapped_input_net", "--size", "16", cwd=Path.cwd())
    assert listing.returncode == 0, listing.stderr
    row = next(line for line in listing.stdout.splitlines() if line.startswith("transform "))
    assert row.split()[1:4] == ["_Wrap", "-", "-"] and "holds no tensor" in row
    with pytest.raises(LayerError, match=r"layer 'transform' \(_Wrap\) returned no tensor"):
        pvf.render(wrapped_input_net(), "transform:0", size=16, steps=1, progress=False)
