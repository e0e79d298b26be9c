"""The benchmark helpers measure and report correctly (no timing is asserted, only bookkeeping)."""
import json
import math

import pytest
import torch
from torch import nn

from pyviz_fast.bench.metadata import collect_metadata
from pyviz_fast.bench.objective import channel_objective, layer_output
from pyviz_fast.bench.peers import PEERS, peer_status
from pyviz_fast.bench.results import Row, format_ratio_table, ratio, read_results, write_results
from pyviz_fast.bench.timing import time_callable


def test_time_callable_counts_calls_and_reports_the_median():
    calls = []
    m = time_callable(lambda: calls.append(1), warmup=2, min_runs=5, max_runs=5, min_time_s=10.0)
    assert len(calls) == 2 + 5
    assert m.runs == 5 and len(m.samples_s) == 5
    assert min(m.samples_s) == m.min_s <= m.median_s <= max(m.samples_s)
    assert m.rate(10) == pytest.approx(10 / m.median_s)


def _rows():
    return [Row("ops", "case", "reference", 5.0, "images/s"),
            Row("ops", "case", "fused", 40.0, "images/s", baseline="reference"),
            Row("ops", "other case", "fused", 40.0, "images/s", baseline="reference"),
            Row("peers", "case", "torch-lucent", math.nan, "image-steps/s", extra={"skipped": "not installed"})]


def test_ratio_is_taken_against_the_baseline_of_the_same_case():
    rows = _rows()
    assert ratio(rows[1], rows) == pytest.approx(8.0)
    assert math.isnan(ratio(rows[0], rows))  # no baseline
    assert math.isnan(ratio(rows[2], rows))  # its baseline is not among the rows


def test_ratio_table_shows_ratios_and_skips():
    text = format_ratio_table(_rows())
    lines = text.splitlines()
    assert len(lines) == 1 + 4
    assert "8.00x reference" in lines[2]
    assert "skipped: not installed" in lines[4]
    markdown = format_ratio_table(_rows(), markdown=True).splitlines()
    assert markdown[0].startswith("| section") and markdown[1].startswith("|---")


def test_results_json_round_trip_keeps_metadata_and_nan(tmp_path):
    path = write_results(tmp_path / "sub" / "r.json", _rows(), {"commit": "abc", "threads": 2})
    payload = json.loads(path.read_text())  # valid JSON: nan written as null
    assert payload["rows"][3]["rate"] is None
    metadata, rows = read_results(path)
    assert metadata == {"commit": "abc", "threads": 2}
    assert [r.variant for r in rows] == [r.variant for r in _rows()]
    assert math.isnan(rows[3].rate) and rows[1].rate == 40.0


def test_metadata_names_commit_versions_device_threads_date_cpu():
    meta = collect_metadata("cpu")
    for key in ("commit", "torch", "device", "torch_threads", "date_utc", "cpu_model", "peers"):
        assert meta[key] not in (None, ""), key
    assert meta["torch"] == torch.__version__ and meta["device"] == "cpu"
    json.dumps(meta)  # JSON-ready


class _Probe(nn.Module):
    """'ident' passes the input through; 'boom' fails if the forward goes past it."""

    def __init__(self):
        super().__init__()
        self.ident = nn.Identity()
        self.boom = nn.Identity()
        self.boom.register_forward_hook(lambda *args: (_ for _ in ()).throw(AssertionError("ran past the layer")))

    def forward(self, x):
        return self.boom(self.ident(x))


def test_channel_objective_reads_each_images_channel_after_normalization():
    images = torch.rand(3, 3, 8, 8)
    normalization = ((0.5, 0.25, 0.0), (0.5, 2.0, 1.0))
    got = channel_objective(_Probe(), "ident", [0, 1, 2], images, normalization)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in normalization)
    expected = ((images - mean) / std)[torch.arange(3), torch.tensor([0, 1, 2])].mean(dim=(1, 2))
    torch.testing.assert_close(got, expected)


def test_channel_objective_checks_its_arguments():
    with pytest.raises(ValueError, match="one channel per image"):
        channel_objective(_Probe(), "ident", [0, 1], torch.rand(3, 3, 8, 8))
    with pytest.raises(ValueError, match="'nope' is not a module"):
        layer_output(_Probe(), "nope", torch.rand(1, 3, 8, 8))


def test_peer_status_names_a_version_or_a_reason_for_every_peer():
    status = peer_status()
    assert set(status) == set(PEERS)
    for entry in status.values():
        assert (entry["version"] is None) != (entry["reason"] is None)
