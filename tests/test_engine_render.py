"""render(): objectives rise, per-unit determinism, layouts, channel counts, every regularizer, backends."""
import pytest
import torch
from torch import nn

import pyviz_fast as pvf
from engine_nets import TokenNet, Viewer, tiny_cnn
from pyviz_fast.engine.schedules import stages


def _fused_cpu_kernel():
    return pvf.has_ops() and torch._C._dispatch_has_kernel_for_dispatch_key("pyviz_fast::fused_ascent_step", "CPU")


BACKENDS = ["reference", pytest.param("fused", marks=pytest.mark.skipif(
    not _fused_cpu_kernel(), reason="the fused CPU kernels are not built in this checkout"))]
FAST = dict(size=24, steps=12, precision="fp32", backend="reference")


@pytest.fixture(scope="module")
def cnn():
    return tiny_cnn()


def _rises(res):
    return bool((res.objective > res.trajectory[:, 0]).all())


@pytest.mark.parametrize("backend", BACKENDS)
def test_objectives_rise_and_result_is_complete(cnn, backend):
    res = pvf.render(cnn, ["2:0-2", "0:1@neuron", "2@deepdream", "4.2:1"], **{**FAST, "backend": backend}, seed=3)
    assert res.status == ["ok"] * 6 and res.reasons == [""] * 6
    assert res.images.shape == (6, 3, 24, 24) and res.images.dtype == torch.float32
    assert 0 <= res.images.min() and res.images.max() <= 1
    assert res.trajectory.shape == (6, 12) and res.objective.shape == (6,)
    assert _rises(res), res.trajectory
    assert len(set(res.seeds)) == 6 and res.info["backend"] == backend
    assert {"total", "setup", "forward_backward", "step"} <= set(res.timings)
    assert res.to_uint8().shape == (6, 24, 24, 3) and res.to_pil(0).mode == "RGB"


def test_unit_alone_equals_unit_in_a_batch_of_16(cnn):
    batch = pvf.render(cnn, "2:0-15", **FAST, seed=7)
    alone = pvf.render(cnn, "2:9", **FAST, seed=7)
    assert alone.seeds[0] == batch.seeds[9]
    torch.testing.assert_close(alone.images[0], batch.images[9], atol=2e-3, rtol=0)
    other_seed = pvf.render(cnn, "2:9", **FAST, seed=8)
    assert (other_seed.images[0] - alone.images[0]).abs().max() > 0.01


def test_batch_size_does_not_change_results(cnn):
    a = pvf.render(cnn, "2:0-5", **FAST, batch_size=6)
    b = pvf.render(cnn, "2:0-5", **FAST, batch_size=4)
    torch.testing.assert_close(a.images, b.images, atol=2e-3, rtol=0)


def test_batch_invariant_gives_a_unit_the_same_bits_in_any_batch(cnn):
    # by default oneDNN and NNPACK (from batch 16) round by batch (4e-7 here, growing over the ascent)
    exact = dict(FAST, memory_format="contiguous", batch_invariant=True, seed=7)
    batch = pvf.render(cnn, "2:0-15", **exact)
    alone = pvf.render(cnn, "2:9", **exact)
    assert torch.equal(alone.images[0], batch.images[9]) and torch.equal(alone.trajectory[0], batch.trajectory[9])
    assert torch.equal(pvf.render(cnn, "2:0-15", **exact, batch_size=5).images, batch.images)
    assert torch.backends.mkldnn.enabled  # given back as it was


def test_whole_layer_expands_to_every_channel(cnn):
    res = pvf.render(cnn, "0", size=8, steps=2, backend="reference")
    assert [str(u) for u in res.units] == [f"0:{c}" for c in range(8)]


def test_token_layout_model():
    # patch striding makes a token objective shift-variant: no jitter here
    res = pvf.render(TokenNet(), ["block:0-2", "block:1@neuron(3)", "output:1", "embed:2"], **FAST, jitter=0)
    assert res.status == ["ok"] * 6 and _rises(res)


@pytest.mark.parametrize("channels, mode", [(1, "L"), (4, "RGBA"), (6, "RGB")])
def test_any_number_of_input_channels(channels, mode):
    res = pvf.render(tiny_cnn(in_channels=channels), "2:0-1", **FAST)
    assert res.images.shape == (2, channels, 24, 24) and res.info["channels"] == channels
    assert res.to_pil(1).mode == mode and _rises(res)


@pytest.mark.parametrize("extra", [
    dict(octaves=3, steps=12),
    dict(canvas=32),
    dict(init="pink"),
    dict(optimizer="adam", lr=0.05),
    dict(param="fourier", optimizer="adam", lr=0.05, scale_range=(0.9, 1.1), rotate=10.0),
    dict(param="fourier"),
    dict(laplacian_levels=3),
    dict(image_blur_every=4),
    dict(scale_range=(0.9, 1.1), rotate=5.0),
    dict(decay=0.01, clip=2.0, norm="rms", lr_end=0.01, schedule="cosine"),
])
def test_every_regularizer_runs_and_helps(cnn, extra):
    res = pvf.render(cnn, ["2:0-1", "4.2:1"], **{**FAST, **extra})
    assert res.status == ["ok"] * 3, res.reasons
    hw = (extra.get("canvas") or 24,) * 2
    assert res.images.shape[-2:] == hw and 0 <= res.images.min() and res.images.max() <= 1
    assert _rises(res), res.trajectory


def test_init_image_is_the_start(cnn, tmp_path):
    from PIL import Image
    photo = torch.linspace(0, 1, 24).repeat(24, 1)
    path = tmp_path / "photo.png"
    Image.fromarray((photo * 255).byte().numpy(), "L").convert("RGB").save(path)
    res = pvf.render(cnn, "2@deepdream", **{**FAST, "steps": 1, "lr": 1e-6}, init="image", init_image=str(path))
    torch.testing.assert_close(res.images[0, 0], photo, atol=0.02, rtol=0)


def test_jitter_draws_are_per_unit_and_progress_bar(cnn, capsys):
    res = pvf.render(cnn, "2:0-1", **FAST, progress=True)
    assert "render" in capsys.readouterr().err
    assert res.status == ["ok", "ok"]


def test_a_render_under_inference_mode_is_the_same_render(cnn):
    want = pvf.render(cnn, "2:0-1", **FAST)
    with torch.inference_mode():
        got = pvf.render(cnn, "2:0-1", **FAST)
        photo = pvf.accentuate(cnn, torch.rand(3, 24, 24), "2:0", layer="0", **FAST)
    assert got.status == ["ok", "ok"] and torch.equal(got.images, want.images) and photo.status == ["ok"]


@pytest.mark.parametrize("precision, memory_format", [("bf16", "channels_last"), ("fp16", "contiguous")])
def test_reduced_precision(cnn, precision, memory_format):
    res = pvf.render(cnn, "2:0-1", **{**FAST, "precision": precision, "memory_format": memory_format})
    assert res.info["precision"] == precision and res.status == ["ok", "ok"] and _rises(res)


def test_models_that_view_run_contiguous_and_explicit_channels_last_is_an_error():
    res = pvf.render(Viewer(8), "fc:1", size=8, steps=2, backend="reference")
    assert res.status == ["ok"] and res.info["memory_format"] == "contiguous"
    with pytest.raises(ValueError, match="rejected an input"):
        pvf.render(Viewer(8), "fc:1", size=8, steps=2, backend="reference", memory_format="channels_last")


@pytest.mark.skipif(not _fused_cpu_kernel(), reason="the fused CPU kernels are not built in this checkout")
def test_fused_matches_reference(cnn):
    a = pvf.render(cnn, "2:0-3", **{**FAST, "backend": "reference"})
    b = pvf.render(cnn, "2:0-3", **{**FAST, "backend": "fused"})
    torch.testing.assert_close(a.images, b.images, atol=1e-3, rtol=0)


@pytest.mark.skipif(not _fused_cpu_kernel(), reason="the fused CPU kernels are not built in this checkout")
def test_render_holds_no_output_memory_when_done(cnn):
    """The fused CPU steps' outputs (here 1.2 MB each) are reused within a render, then freed."""
    from pyviz_fast import _ext
    res = pvf.render(cnn, "2:0-3", **{**FAST, "backend": "fused", "size": 160, "steps": 3})
    assert res.ok
    assert _ext._C.cached_output_bytes() == 0


class Poison(nn.Module):
    """Makes item ``row``'s activation NaN on forward calls number start..stop-1 (call 0 is the probe)."""

    def __init__(self, row, start, stop):
        super().__init__()
        self.row, self.start, self.stop, self.calls = row, start, stop, 0

    def forward(self, x):
        call, self.calls = self.calls, self.calls + 1
        if self.start <= call < self.stop and x.shape[0] > self.row:
            scale = torch.ones(x.shape[0], 1, 1, 1)
            scale[self.row] = float("nan")
            x = x * scale  # NaN activations and NaN gradients for that item only
        return x


@pytest.mark.parametrize("start, stop, status", [(3, 6, "nonfinite"), (3, 10 ** 9, "failed")])
def test_nonfinite_item_does_not_stop_the_batch(start, stop, status):
    clean = pvf.render(tiny_cnn(), "2:0-2", **FAST)
    model = tiny_cnn()
    model[1] = nn.Sequential(nn.ReLU(), Poison(1, start, stop))
    res = pvf.render(model, "2:0-2", **FAST)
    assert res.status == ["ok", status, "ok"], res.reasons
    assert "non-finite" in res.reasons[1] or "not finite" in res.reasons[1]
    torch.testing.assert_close(res.images[[0, 2]], clean.images[[0, 2]], atol=1e-4, rtol=0)
    assert torch.isfinite(res.images).all()


def test_compile_keeps_truncation_and_results():
    from engine_nets import Explodes
    model = tiny_cnn(tail=Explodes())  # compiled code must not run past the target either
    eager = pvf.render(model, "2:0-1", **{**FAST, "steps": 2})
    compiled = pvf.render(model, "2:0-1", **{**FAST, "steps": 2}, compile=True)
    torch.testing.assert_close(compiled.images, eager.images, atol=1e-4, rtol=0)
    assert all(getattr(m, "_compiled_call_impl", None) is None for m in model.modules())


@pytest.mark.parametrize("extra", [dict(), dict(octaves=2), dict(canvas=32), dict(optimizer="adam", lr=0.05),
                                   dict(param="fourier")])
def test_callback_sees_every_step_and_changes_nothing(cnn, extra):
    calls = []

    def record(info):
        calls.append((info.step, info.steps, info.rows, [str(u) for u in info.units], info.images.clone()))

    plain = pvf.render(cnn, "2:0-2", **FAST, **extra, batch_size=2)
    watched = pvf.render(cnn, "2:0-2", **FAST, **extra, batch_size=2, callback=record)
    assert torch.equal(watched.images, plain.images) and torch.equal(watched.trajectory, plain.trajectory)
    assert [(step, steps, rows) for step, steps, rows, _, _ in calls] == \
        [(t, 12, slice(0, 2)) for t in range(12)] + [(t, 12, slice(2, 3)) for t in range(12)]
    assert calls[0][3] == ["2:0", "2:1"] and calls[-1][3] == ["2:2"]
    settings = watched.settings
    sizes = [hw for hw, count in stages(settings.hw, 12, settings.octaves, settings.octave_scale) for _ in range(count)]
    for step, _, rows, _, images in calls:
        assert images.dtype == torch.float32 and images.shape[:2] == (rows.stop - rows.start, 3)
        assert 0 <= images.min() and images.max() <= 1
        assert images.shape[-2:] == ((extra["canvas"],) * 2 if "canvas" in extra else sizes[step])
    assert torch.equal(calls[11][4], plain.images[0:2]) and torch.equal(calls[-1][4], plain.images[2:3])
    assert not torch.equal(calls[0][4], calls[11][4])  # the images it sees progress


def test_callback_errors_end_the_render(cnn):
    def broken(info):
        raise RuntimeError("callback bug")

    with pytest.raises(RuntimeError, match="callback bug"):  # not turned into a 'batch failed' status
        pvf.render(cnn, "2:0", **FAST, callback=broken)


def test_progress_bar_advances_per_step(cnn, capsys):
    pvf.render(cnn, "2:0-2", **FAST, batch_size=2, progress=True)
    err = capsys.readouterr().err
    assert "36/36" in err and "batch 2/2" in err and "unit-step" in err
