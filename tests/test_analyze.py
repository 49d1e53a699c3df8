"""`onnxprune analyze` / `onnxprune.analyze`: the groups, what each controls, and the
frozen channels with node and reason, without writing anything but the --json file."""

from __future__ import annotations

import json

import onnxruntime as ort
import pytest

from onnxprune import PruneConfig, analyze, prune
from onnxprune.cli import main

from .helpers import SAMPLES


@pytest.mark.parametrize("name", ["resnet_small", "mobilenetv2_small", "bert_tiny", "se_net"])
def test_one_channel_savings_match_a_real_prune(name):
    """Removing a group's lowest-scoring channel (head) alone saves exactly the
    parameters and MACs the analysis says it would."""
    path = SAMPLES / f"{name}.onnx"
    report = analyze(path)
    checked = 0
    for g in report.groups:
        if g.frozen or g.channels < 2:
            continue
        config = PruneConfig(ratio=0.0, head_ratio=0.0, group_ratios={g.id: 1.5 / g.channels})
        _, pruned = prune(path, config)
        assert pruned.params_before - pruned.params_after == g.params_one, g
        assert pruned.macs_before - pruned.macs_after == g.macs_one, g
        assert g.params_one <= g.params_all <= report.params
        assert g.macs_one <= g.macs_all <= report.macs
        assert g.score_min <= g.score_median <= g.score_max
        checked += 1
    assert checked >= 2


def test_plain_group_controls_size_times_one_channel():
    report = analyze(SAMPLES / "resnet_small.onnx")
    g = report.groups[0]  # the stem's residual stream: no weight has both axes in it
    assert (g.params_all, g.macs_all) == (g.channels * g.params_one, g.channels * g.macs_one)
    assert report.params == 120_954


def test_analyze_runs_no_onnxruntime_when_shapes_are_known(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("analyze started an onnxruntime session")

    monkeypatch.setattr(ort, "InferenceSession", refuse)
    report = analyze(SAMPLES / "resnet_small.onnx")
    assert report.macs > 0 and all(g.macs_all > 0 for g in report.groups)


def test_cli_writes_only_the_json(tmp_path, capsys):
    model = tmp_path / "bert.onnx"
    model.write_bytes((SAMPLES / "bert_tiny.onnx").read_bytes())
    before = model.read_bytes()
    out = tmp_path / "groups.json"
    argv = ["analyze", str(model), "--no-prune-heads", "--exclude", "*mlp/up*", "--json", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "frozen (not prunable)" in text and "Reshape '/layers.0/attn/Reshape'" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bert.onnx", "groups.json"]
    assert model.read_bytes() == before
    data = json.loads(out.read_text())
    reshapes = [e for e in data["frozen"] if e["node"].startswith("Reshape ")]
    assert reshapes and all("splits these channels" in e["reason"] for e in reshapes)
    assert any(e["node"] == "" and "--exclude" in e["reason"] for e in data["frozen"])
    assert {g["kind"] for g in data["groups"]} == {"channels"}  # heads not pruned
    assert all(g["frozen"] == g["channels"] for g in data["groups"])


def test_cli_json_to_stdout_and_heads(capsys):
    assert main(["analyze", str(SAMPLES / "bert_tiny.onnx"), "--json", "-"]) == 0
    data = json.loads(capsys.readouterr().out)
    heads = [g for g in data["groups"] if g["kind"] == "heads"]
    assert len(heads) == 2 and all(g["channels"] == 4 and not g["frozen"] for g in heads)
    assert data["macs"] > 0 and data["params"] > 0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["analyze", "/nonexistent.onnx"], "no such file"),
        (["analyze", str(SAMPLES / "se_net.onnx"), "--criterion", "wanda"], "calibration"),
        (["analyze", str(SAMPLES / "se_net.onnx"), "--json", "/nonexistent/x.json"], "folder"),
    ],
)
def test_cli_bad_input(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("onnxprune: error:") and message in err[0]
