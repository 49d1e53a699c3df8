"""Latency measurement, `round_to="auto"` and `--latency`: behaviour, never timing.

The auto-rounding tests replace the probe timer with a fake whose "latency" is known
(aligned channel counts fast, others slow) and check what the planner then keeps; the
end-to-end test runs the real probe and checks only that the result is a valid choice
and the pruned model is exact (the masking oracle).
"""

from __future__ import annotations

import json
import math

import numpy as np
import onnx
import pytest

from onnxprune import PruneConfig, latency, make_plan, progress, prune, rounding
from onnxprune.cli import main
from onnxprune.errors import BadInputError

from .helpers import SAMPLES, assert_exact

MOBILENET = SAMPLES / "mobilenetv2_small.onnx"


def _aligned_fast(block: int):
    """A fake probe timer: each node costs its MACs, 10x when a channel count is not a
    multiple of `block` (as onnxruntime's blocked conv layout behaves)."""

    def timer(models: list[onnx.ModelProto], seconds: float) -> list[float]:
        times = []
        for model in models:
            total = 0.0
            weights = {t.name: list(t.dims) for t in model.graph.initializer}
            for node in model.graph.node:
                w = weights[node.input[1]]
                group = next((a.i for a in node.attribute if a.name == "group"), 1)
                cout, cin = (w[0], w[1] * group) if node.op_type == "Conv" else (w[1], w[0])
                slow = cout % block or cin % block
                total += math.prod(w) * (10 if slow else 1)
            times.append(total / 1e6)
        return times

    return timer


def _flat(models: list[onnx.ModelProto], seconds: float) -> list[float]:
    return [1.0] * len(models)


def test_auto_picks_the_multiple_the_timer_favours_and_keeps_multiples_of_it(monkeypatch):
    monkeypatch.setattr(rounding, "probe_timer", _aligned_fast(8))
    model = onnx.load(MOBILENET)
    pruned, report = prune(model, PruneConfig(ratio=0.5, round_to="auto"))
    assert report.rounding["chosen"] == 8
    predicted = {c["multiple"]: c["predicted_ms"] for c in report.rounding["candidates"]}
    assert predicted[8] == min(predicted.values()) and predicted[1] > predicted[8]
    assert report.rounding["probed_layers"]
    assert any(layer["kind"] == "depthwise" for layer in report.rounding["probed_layers"])
    pruned_groups = [g for g in report.groups if g.kept < g.channels]
    assert pruned_groups and all(g.kept % 8 == 0 for g in pruned_groups)
    # the same plan as an explicit --round-to 8 --round-down, and exact (masking oracle)
    assert report.oracle_rel_diff is not None and report.oracle_rel_diff < 1e-4
    _, explicit, _ = assert_exact(model, PruneConfig(ratio=0.5, round_to=8, round_down=True))
    assert [g.kept for g in explicit.groups] == [g.kept for g in report.groups]
    # measured latency is in the report, both forms
    assert report.latency["before"]["median_ms"] > 0 and report.latency["after"]["runs"] > 0
    assert {"ratio", "paired_ratio", "threads", "provider"} <= set(report.latency)
    text = report.to_text()
    assert "round-to auto: chose 8" in text and "latency (CPUExecutionProvider, 2 threads" in text
    assert json.loads(report.to_json())["rounding"]["chosen"] == 8


def test_auto_prefers_the_smaller_multiple_on_a_tie(monkeypatch):
    monkeypatch.setattr(rounding, "probe_timer", _flat)
    _, report = prune(onnx.load(MOBILENET), PruneConfig(ratio=0.5, round_to="auto"))
    assert report.rounding["chosen"] == 1


def test_kept_counts_per_candidate_come_from_the_planner():
    model = onnx.load(MOBILENET)
    layers = rounding.layer_shapes(model, PruneConfig(ratio=0.5), make_plan)
    assert layers and all(set(layer.kept) == set(rounding.CANDIDATES) for layer in layers)
    for multiple in (1, 8):
        plan = make_plan(model, PruneConfig(ratio=0.5, round_to=multiple))
        for layer in layers:
            node = next(
                n for i, n in enumerate(plan.analysis.index.nodes) if layer.label.endswith(n.name)
            )
            slots = plan.analysis.layouts.get(node.output[0], {}).get(layer.axes[1])
            if slots is not None:
                assert layer.kept[multiple][1] == int(plan.kept(slots).sum())


@pytest.mark.parametrize("depthwise", [False, True])
def test_probe_model_is_a_valid_chain_of_the_layer_kind(depthwise):
    c = 24 if depthwise else 16
    layer = rounding.LayerShape(
        "x", "conv", c, 24, 1, (10, 10), (3, 3), (1, 1), 24 if depthwise else 1,
        depthwise=depthwise,
    )  # fmt: skip
    model = rounding.probe_model(layer, 16 if depthwise else 12, 16 if depthwise else 20)
    onnx.checker.check_model(model, full_check=True)
    convs = model.graph.node
    assert len(convs) == rounding.PROBE_DEPTH
    groups = [next(a.i for a in n.attribute if a.name == "group") for n in convs]
    assert groups == ([16] * len(convs) if depthwise else [1] * len(convs))
    feeds = {"t0": np.ones((1, 16 if depthwise else 12, 10, 10), np.float32)}
    out = latency.runner(model.SerializeToString(), feeds)()
    assert out[0].shape == (1, 16 if depthwise else 12, 10, 10)


def test_matmul_layers_are_probed_as_matmul_chains():
    layer = rounding.LayerShape("mm", "matmul", 64, 128, 8, axes=(1, 1))
    layer.kept = {m: (64, 96 if m == 1 else 128) for m in rounding.CANDIDATES}
    layer.macs = layer.macs_at(64, 128)
    assert rounding.representative([layer])[0].kind == "matmul"
    model = rounding.probe_model(layer, 64, 96)
    onnx.checker.check_model(model, full_check=True)
    assert [n.op_type for n in model.graph.node] == ["MatMul"] * rounding.PROBE_DEPTH


def test_auto_end_to_end_with_the_real_probe_is_exact(tmp_path, capsys):
    out, js = tmp_path / "small.onnx", tmp_path / "r.json"
    code = main([str(MOBILENET), "-o", str(out), "--ratio", "0.3", "--round-to", "auto",
                 "--report", str(js)])  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    assert "round-to auto: chose" in text and "latency (" in text
    report = json.loads(js.read_text())
    chosen = report["rounding"]["chosen"]
    assert chosen in rounding.CANDIDATES
    assert report["oracle_rel_diff"] < 1e-4
    config = PruneConfig(ratio=0.3, round_to=chosen, round_down=True)
    _, explicit, _ = assert_exact(onnx.load(MOBILENET), config)
    assert [g["kept"] for g in report["groups"]] == [g.kept for g in explicit.groups]


def test_latency_flag_reports_before_and_after(tmp_path, capsys):
    js = tmp_path / "r.json"
    code = main([str(MOBILENET), "-o", str(tmp_path / "s.onnx"), "--latency",
                 "--report", str(js)])  # fmt: skip
    assert code == 0
    assert "latency (CPUExecutionProvider, 2 threads" in capsys.readouterr().out
    lat = json.loads(js.read_text())["latency"]
    for side in ("before", "after"):
        assert set(lat[side]) >= {"median_ms", "q1_ms", "q3_ms", "p10_ms", "p90_ms", "runs"}
    assert lat["ratio"] > 0 and lat["paired_ratio"] > 0
    assert json.loads(js.read_text())["rounding"] is None


def test_no_latency_without_asking(tmp_path):
    _, report = prune(onnx.load(MOBILENET), PruneConfig(ratio=0.5))
    assert report.latency is None and report.rounding is None
    assert "latency" not in report.to_text()


@pytest.mark.parametrize("value", ["fast", 0, -8, 2.5, True])
def test_bad_round_to(value):
    with pytest.raises(BadInputError, match="round-to"):
        PruneConfig(round_to=value).check()


def test_cli_bad_round_to_is_one_line(tmp_path, capsys):
    assert main([str(MOBILENET), "-o", str(tmp_path / "s.onnx"), "--round-to", "fast"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("onnxprune: error:") and "auto" in err[0]


def test_make_plan_refuses_unresolved_auto():
    with pytest.raises(BadInputError, match="auto"):
        make_plan(onnx.load(MOBILENET), PruneConfig(round_to="auto"))


def test_interleaving_alternates_order_and_counts_runs():
    order: list[str] = []
    calls = [lambda: order.append("A"), lambda: order.append("B")]
    timings = latency.time_interleaved(calls, runs=4, warmup=2)
    assert order[:4] == ["A", "A", "B", "B"]  # warm-up
    rounds = ["".join(order[4 + 2 * i : 6 + 2 * i]) for i in range(4)]
    assert set(rounds) == {"AB", "BA"} and sorted(rounds) == ["AB", "AB", "BA", "BA"]
    assert [len(t.runs_ms) for t in timings] == [4, 4]


def test_comparison_ratios():
    a = latency.Timing([10.0, 10.0, 20.0])
    b = latency.Timing([5.0, 6.0, 10.0])
    pair = latency.Comparison(a, b, threads=2, warmup=0)
    assert pair.ratio == pytest.approx(0.6)
    assert pair.paired_ratio == pytest.approx(0.5)
    summary = pair.summary()
    assert summary["threads"] == 2 and summary["before"]["runs"] == 3


def test_progress_is_silent_off_a_terminal(capsys):
    assert list(progress.progress(range(3), "x")) == [0, 1, 2]
    progress.set_quiet(True)
    try:
        assert not progress.enabled()
        assert list(progress.progress(iter("ab"), "y", total=2)) == ["a", "b"]
    finally:
        progress.set_quiet(False)
    assert capsys.readouterr().err == ""
