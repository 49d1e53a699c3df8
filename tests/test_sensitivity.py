"""`onnxprune sensitivity`: a table, a PNG plot and JSON of each group's deviation when
pruned alone; and the budget allocation that uses the same measurements."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from onnxprune import PruneConfig, prune
from onnxprune.cli import main
from onnxprune.validate import input_feeds, run

from .helpers import SAMPLES

MODEL = str(SAMPLES / "se_net.onnx")


def test_sensitivity_prints_plots_and_writes_json(tmp_path, capsys):
    png, js = tmp_path / "s.png", tmp_path / "s.json"
    code = main(["sensitivity", MODEL, "--calib-random", "8", "--ratios", "0.25,0.5",
                 "--reconstruct", "none", "--plot", str(png), "--json", str(js)])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "dev@0.25" in out and "dev@0.5" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    data = json.loads(js.read_text())
    groups = data["groups"]
    assert groups and all(g["ratios"] == [0.25, 0.5] for g in groups)
    assert all(len(g["deviation"]) == 2 and min(g["deviation"]) >= 0 for g in groups)
    assert all(0 <= g["macs_saved"][0] <= g["macs_saved"][1] <= data["macs"] for g in groups)
    # the printed order is most fragile first
    rows = [line.split() for line in out.splitlines()[1:] if line.split()[0].isdigit()]
    devs = [float(r[4]) for r in rows]
    assert devs == sorted(devs, reverse=True)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["sensitivity", MODEL], "needs calibration data"),
        (["sensitivity", MODEL, "--calib-random", "4", "--ratios", "a,b"], "--ratios"),
        (["sensitivity", MODEL, "--calib-random", "4", "--ratios", "1.5"], "ratios"),
        (["sensitivity", "/nonexistent.onnx", "--calib-random", "4"], "no such file"),
    ],
)
def test_sensitivity_bad_input(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("onnxprune: error:") and message in err[0]


def test_mac_budget_is_met_and_beats_uniform_magnitude():
    """--target-macs: the per-group ratios reach the budget; with the same calibration
    data the calibration error is no worse than uniform L2 pruning at a similar budget."""
    model = onnx.load(SAMPLES / "resnet_small.onnx")
    calib = {"input": np.concatenate([input_feeds(model, {}, seed=s)["input"] for s in range(24)])}
    budget = PruneConfig(target_macs=0.4, calib=calib, criterion="activation", reconstruct="none")
    pruned, report = prune(model, budget)
    assert report.macs_after <= 0.4 * report.macs_before * 1.01
    assert report.budget["ratios"] and report.budget["kind"] == "macs"
    uniform = PruneConfig(ratio=0.4, calib=calib, reconstruct="none")
    _, flat = prune(model, uniform)
    assert flat.macs_after >= report.macs_after * 0.9  # a similar or larger model
    assert report.calib_rel_error <= flat.calib_rel_error
    feeds = input_feeds(model, {}, seed=99)
    assert run(pruned.SerializeToString(), feeds)["output"].shape == (1, 10)
