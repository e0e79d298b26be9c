"""'auto' execution by measurement (engine/autotune.py): the trial, its guard, the cache, the
batch size, and an atlas that decides once for every resumed run, shard and rank."""
import json
import os
import subprocess
import sys
import time

import pytest
import torch
from torch import nn

import pyviz_fast as pvf
from engine_nets import Viewer, tiny_cnn
from pyviz_fast.audit import AtlasJob, Shard, run_atlas
from pyviz_fast.engine import autotune
from pyviz_fast.engine.autotune import Execution
from pyviz_fast.engine.layout import Activation
from pyviz_fast.engine.units import Unit

# Long enough for a trial of 4 candidates (4 x 3 passes x TRIAL_WORTHWHILE), tiny enough to be quick.
TRIAL = dict(size=16, steps=48, backend="reference", batch_size=4)


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch):
    monkeypatch.delenv("PYVIZ_FAST_AUTOTUNE_CACHE", raising=False)
    autotune.clear_cache()
    yield
    autotune.clear_cache()


@pytest.fixture()
def trials(monkeypatch):
    """Counts the trials that ran (each a list of Trial)."""
    seen = []
    measure = autotune.measure

    def counting(*args, **kwargs):
        seen.append(measure(*args, **kwargs))
        return seen[-1]
    monkeypatch.setattr(autotune, "measure", counting)
    return seen


def test_auto_measures_every_candidate_once_then_reuses_the_decision(trials):
    model = tiny_cnn()
    first = pvf.render(model, "2:0-3", **TRIAL)
    record = first.info["execution"]
    assert record["source"] == "measured" and len(trials) == 1
    assert {t["execution"] for t in record["trials"]} == {
        "fp32/contiguous", "fp32/channels_last", "bf16/contiguous", "bf16/channels_last"}
    chosen = [t for t in record["trials"] if t["status"] == "chosen"]
    assert len(chosen) == 1 and chosen[0]["execution"] == f"{record['precision']}/{record['memory_format']}"
    assert chosen[0]["image_steps_per_s"] == max(t["image_steps_per_s"] for t in record["trials"]
                                                 if t["status"] in ("ok", "chosen"))
    second = pvf.render(model, "2:0-3", **TRIAL)
    assert second.info["execution"]["source"] == "cache" and len(trials) == 1
    assert (second.info["precision"], second.info["memory_format"]) == (record["precision"], record["memory_format"])


def test_trial_images_are_discarded_so_auto_equals_the_chosen_execution_set_explicitly():
    model = tiny_cnn()
    auto = pvf.render(model, "2:0-3", **TRIAL, seed=5)
    chosen = autotune.Decision.from_record(auto.info["execution"]).settings()
    explicit = pvf.render(model, "2:0-3", **TRIAL, **chosen, seed=5)
    assert explicit.info["execution"]["source"] == "settings"
    assert torch.equal(auto.images, explicit.images) and torch.equal(auto.trajectory, explicit.trajectory)


def test_short_renders_take_the_safe_execution_without_a_trial(trials):
    res = pvf.render(tiny_cnn(), "2:0-3", **{**TRIAL, "steps": 8})
    assert res.info["execution"]["source"] == "short render" and not trials
    assert (res.info["precision"], res.info["memory_format"]) == ("fp32", "contiguous")


def test_a_renderer_weighs_the_trial_against_all_its_renders(trials):
    # a zoom's frames: 8 steps each are too few for a trial, 6 renders of 8 are enough
    short = {**TRIAL, "steps": 8}
    with pvf.Renderer(tiny_cnn(), "2:0-3", **short, renders=1) as one:
        assert one.decision.source == "short render" and not trials
    with pvf.Renderer(tiny_cnn(), "2:0-3", **short, renders=6) as many:
        assert many.decision.source == "measured" and len(trials) == 1
        assert many.render().settings.steps == 8
    with pytest.raises(ValueError, match="renders must be an integer >= 1, got 0"):
        pvf.Renderer(tiny_cnn(), "2:0-3", **short, renders=0)


def test_explicit_settings_are_never_measured(trials):
    res = pvf.render(tiny_cnn(), "2:0-1", **TRIAL, precision="bf16", memory_format="channels_last")
    assert res.info["execution"]["source"] == "settings" and not trials
    assert (res.info["precision"], res.info["memory_format"]) == ("bf16", "channels_last")


def test_a_candidate_whose_forward_fails_is_rejected_with_the_reason():
    res = pvf.render(Viewer(16), "fc:1", **TRIAL)
    trials = {t["execution"]: t for t in res.info["execution"]["trials"]}
    for name in ("fp32/channels_last", "bf16/channels_last"):
        assert trials[name]["status"] == "rejected" and "RuntimeError" in trials[name]["reason"], trials[name]
    assert res.info["memory_format"] == "contiguous" and res.status == ["ok"]


class Cancels(nn.Module):
    """conv(x) + 1000 - 1000: exact in fp32, but bf16 keeps ~3 significant digits of 1000 + x."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        with torch.no_grad():
            self.conv.bias.fill_(1000.0)
        self.out = nn.Identity()

    def forward(self, x):
        return self.out(self.conv(x) - 1000.0)


def test_a_candidate_whose_objective_drifts_from_fp32_is_rejected():
    res = pvf.render(Cancels(), "out:0-3", **TRIAL)
    trials = {t["execution"]: t for t in res.info["execution"]["trials"]}
    for name in ("bf16/contiguous", "bf16/channels_last"):
        assert trials[name]["status"] == "rejected" and "drifts" in trials[name]["reason"], trials[name]
    assert res.info["precision"] == "fp32"


class SlowInBf16(nn.Module):
    """A conv whose forward also sleeps a second under CPU autocast: bf16 as slow as it is on a
    CPU without bf16 instructions, and slower, whatever the machine's load."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.out = nn.Identity()
        self.autocast_forwards = 0

    def forward(self, x):
        if torch.is_autocast_enabled("cpu"):
            self.autocast_forwards += 1
            time.sleep(1.0)
        return self.out(self.conv(x))


def test_a_candidate_whose_warm_up_is_many_times_the_fastest_is_not_timed_further():
    model = SlowInBf16()
    res = pvf.render(model, "out:0-3", **TRIAL)
    trials = {t["execution"]: t for t in res.info["execution"]["trials"]}
    for name in ("bf16/contiguous", "bf16/channels_last"):
        assert trials[name]["status"] == "slow" and "warm-up pass took" in trials[name]["reason"], trials[name]
        assert trials[name]["image_steps_per_s"] is None
    assert model.autocast_forwards == 2, "one warm-up pass per bf16 candidate, not the trial's three"
    assert res.info["precision"] == "fp32" and res.status == ["ok"] * 4
    assert "slow: its warm-up pass took" in autotune.Decision.from_record(res.info["execution"]).explain()


class SingleImage(nn.Module):
    """Takes one image at a time: the probe (one image) passes, every batched trial fails."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        if x.shape[0] > 1:
            raise RuntimeError("one image at a time, please")
        return self.conv(x)


def test_every_candidate_failing_is_an_error_naming_each_reason():
    with pytest.raises(RuntimeError, match="every candidate execution failed.*bf16/channels_last: .*one image"):
        pvf.render(SingleImage(), "conv:0-1", **TRIAL)


def test_disk_cache_survives_the_process(tmp_path, monkeypatch, trials):
    monkeypatch.setenv("PYVIZ_FAST_AUTOTUNE_CACHE", str(tmp_path))
    model = tiny_cnn()
    pvf.render(model, "2:0-3", **TRIAL)
    assert (tmp_path / "autotune.json").is_file() and len(trials) == 1
    autotune.clear_cache()  # as a new process would start
    res = pvf.render(tiny_cnn(), "2:0-3", **TRIAL)  # same class and weights, another object
    assert res.info["execution"]["source"] == "cache" and len(trials) == 1


def test_changed_weights_are_measured_again(trials):
    model = tiny_cnn()
    pvf.render(model, "2:0-3", **TRIAL)
    with torch.no_grad():
        model[0].weight.mul_(2)
    pvf.render(model, "2:0-3", **TRIAL)
    assert len(trials) == 2


def test_auto_batch_size_is_measured_and_keeps_results_per_unit():
    model = tiny_cnn()
    res = pvf.render(model, "2:0-11", **{**TRIAL, "batch_size": "auto"}, precision="fp32", memory_format="contiguous")
    record = res.info["execution"]
    assert record["batch_size"] in (8, 12) and res.info["batch_size"] == record["batch_size"]
    assert [t["batch_size"] for t in record["batch_trials"]][0] == 8
    fixed = pvf.render(model, "2:0-11", **{**TRIAL, "batch_size": 5}, precision="fp32", memory_format="contiguous")
    torch.testing.assert_close(res.images, fixed.images, atol=1e-5, rtol=0)


def test_auto_on_cuda_chooses_among_cuda_candidates(monkeypatch):
    """No GPU here: the trial runs a CPU model behind a prepared model that says it is on CUDA."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(autotune, "_sync", lambda device: None)
    options = autotune.candidates(pvf.Settings(), "cuda")
    assert {e.precision for e in options} == {"fp32", "bf16", "fp16"} and options[0] == autotune.SAFE

    class OnCuda:
        device, model = torch.device("cuda"), tiny_cnn()

        def __init__(self):
            self.used = []

        def use(self, execution, layers):
            self.used.append(execution)

        def __call__(self, images, layers, taps=None):
            return {"2": self.model[:3](images)}
    prepared = OnCuda()
    units = [Unit.channel("2", c) for c in range(2)]
    plan = pvf.engine.objectives.ObjectivePlan(units, {"2": Activation((16, 8, 8), "nchw")})
    trials = autotune.measure(prepared, pvf.Settings(), plan, torch.rand(2, 3, 8, 8), options)
    assert [t.execution for t in trials] == options and prepared.used == options
    assert sum(t.status == "chosen" for t in trials) == 1


def test_atlas_decides_once_and_every_resume_and_shard_reuses_the_record(tmp_path):
    from test_audit import FakeRenderer
    units = [Unit.channel("conv1", c) for c in range(6)]
    decided, seen = [], []
    record = {**vars(Execution("bf16", "channels_last")), "batch_size": None, "source": "measured", "trials": []}

    def decide():
        decided.append(1)
        return record

    def renderer(batch, execution):
        seen.append(execution)
        return FakeRenderer()(batch)
    job = AtlasJob(root=tmp_path, model="fake", seed=0, settings={"steps": 5}, batch_size=2, shard=Shard(0, 2))
    run_atlas(units, renderer, job, decide_execution=decide)
    job.shard = Shard(1, 2)
    run_atlas(units, renderer, job, decide_execution=decide)  # the other shard, in the same directory
    assert decided == [1] and seen and all(e == record for e in seen)
    assert json.loads((tmp_path / "run.json").read_text())["execution"] == record


def test_cli_prints_the_choice_and_explains_the_trial(tmp_path):
    command = [sys.executable, "-m", "pyviz_fast", "render", "conv1:0-3", "--size", "32", "--steps", "48",
               "--batch-size", "4", "--out", str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    plain = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert plain.returncode == 0, plain.stderr[-2000:]
    assert plain.stdout.count("execution: ") == 1 and "(measured" in plain.stdout and "candidate" not in plain.stdout
    explained = subprocess.run(command + ["--explain"], capture_output=True, text=True, timeout=300, env=env)
    assert "candidate" in explained.stdout and explained.stdout.count("fp32/contiguous") >= 1
