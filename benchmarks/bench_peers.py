"""pytest-benchmark: pyviz_fast against the peers on issue 3's case, one render each.

torchvision googlenet (weights=None, frozen), one image per channel of inception4a:0-15,
128 px, 64 steps (``PVF_BENCH_STEPS`` to change), each tool at its own defaults. Each test
records image-steps/s and the final objective (scored alike by
``pyviz_fast.bench.objective.channel_objective``) in ``extra_info``. Peers that are not
installed are skipped with the reason. Not part of the test suite (testpaths = tests):

    python -m pytest benchmarks/bench_peers.py --benchmark-columns=median,rounds
    python -m pytest benchmarks/bench_peers.py --benchmark-json=peers.json

Never asserts on times.
"""
import os

import pytest
import torch

import pyviz_fast as pvf
from pyviz_fast.bench.objective import channel_objective
from pyviz_fast.bench.peers import peer_status, run_peer

LAYER, CHANNELS, SIZE = "inception4a", list(range(16)), 128
STEPS = int(os.environ.get("PVF_BENCH_STEPS", "64"))


@pytest.fixture(scope="module")
def googlenet():
    torch.manual_seed(0)
    model, info = pvf.load_model("torchvision:googlenet", weights="none")
    for p in model.parameters():
        p.requires_grad_(False)
    return model, (info["mean"], info["std"])


def _record(benchmark, model, normalization, images, seconds):
    score = channel_objective(model, LAYER, CHANNELS, images, normalization)
    benchmark.extra_info.update({"image_steps_per_s": len(CHANNELS) * STEPS / seconds,
                                 "objective_median": float(score.median()), "steps": STEPS, "size": SIZE})


@pytest.mark.parametrize("tool", ["torch-lucent", "torch-dreams"])
def test_peer_defaults(benchmark, googlenet, tool):
    status = peer_status()[tool]
    if not status["version"]:
        pytest.skip(f"{tool} is not installed: {status['reason']}")
    model, normalization = googlenet
    run_peer(tool, model, LAYER, CHANNELS, size=SIZE, steps=1, normalization=normalization)  # prime
    run = benchmark.pedantic(run_peer, args=(tool, model, LAYER, CHANNELS),
                             kwargs={"size": SIZE, "steps": STEPS, "normalization": normalization}, rounds=1)
    _record(benchmark, model, normalization, run.images, run.seconds)


@pytest.mark.parametrize("precision,memory_format", [("fp32", "contiguous"), ("bf16", "channels_last")])
def test_pyviz_fast(benchmark, googlenet, precision, memory_format):
    model, normalization = googlenet
    settings = pvf.Settings(size=SIZE, steps=STEPS, batch_size=len(CHANNELS), precision=precision,
                            memory_format=memory_format)
    units = f"{LAYER}:0-{len(CHANNELS) - 1}"
    pvf.render(model, units, settings.replace(steps=2), seed=0, progress=False)  # prime
    result = benchmark.pedantic(pvf.render, args=(model, units, settings), kwargs={"seed": 0, "progress": False},
                                rounds=2)
    _record(benchmark, model, normalization, result.images, benchmark.stats.stats.median)
