"""`onnxprune bench`: what it prints and writes for one and two models, and one-line
errors (exit 2) for bad input. Figures are never asserted, only their presence."""

from __future__ import annotations

import json

import pytest

from onnxprune.cli import main

from .helpers import SAMPLES

MOBILENET = str(SAMPLES / "mobilenetv2_small.onnx")
RESNET = str(SAMPLES / "resnet_small.onnx")
BERT = str(SAMPLES / "bert_tiny.onnx")
FAST = ["--runs", "3", "--warmup", "1"]


def test_one_model_prints_provider_threads_inputs_and_spread(capsys):
    assert main(["bench", MOBILENET, *FAST]) == 0
    out = capsys.readouterr().out
    assert "CPUExecutionProvider" in out and "2 intra-op threads" in out
    assert "input float32 1x3x32x32" in out and "3 timed runs" in out
    assert "median" in out and "IQR" in out and "p10-p90" in out
    assert "B/A" not in out


def test_two_models_side_by_side_with_json(tmp_path, capsys):
    js = tmp_path / "b.json"
    code = main(["bench", MOBILENET, RESNET, *FAST, "--threads", "1", "--json", str(js)])
    assert code == 0
    out = capsys.readouterr().out
    assert "1 intra-op threads" in out and "interleaved" in out and "paired" in out
    data = json.loads(js.read_text())
    assert data["provider"] == "CPUExecutionProvider" and data["threads"] == 1
    assert data["runs"] == 3 and data["warmup"] == 1
    assert data["inputs"] == {"input": {"dtype": "float32", "shape": [1, 3, 32, 32]}}
    assert [m["path"] for m in data["models"]] == [MOBILENET, RESNET]
    for m in data["models"]:
        assert m["runs"] == 3 and m["p10_ms"] <= m["median_ms"] <= m["p90_ms"]
    assert data["ratio"] > 0 and data["paired_ratio"] > 0


def test_input_shape_is_used_and_stated(capsys):
    shapes = ["--input-shape", "input_ids:2x16", "--input-shape", "attention_mask:2x16"]
    assert main(["bench", BERT, *FAST, *shapes, "-q"]) == 0
    assert capsys.readouterr().out == ""
    assert main(["bench", BERT, *FAST, *shapes]) == 0
    assert "input_ids int64 2x16, attention_mask int64 2x16" in capsys.readouterr().out


def test_a_model_onnxruntime_cannot_run_with_those_shapes_is_one_line(capsys):
    assert main(["bench", BERT, *FAST, "--input-shape", "input_ids:2x16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("onnxprune: error: onnxruntime cannot run")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["bench", "/nonexistent.onnx"], "no such file"),
        (["bench", str(SAMPLES)], "not a file"),
        (["bench", str(SAMPLES.parent / "README.md")], "not a readable ONNX model"),
        (["bench", MOBILENET, BERT], "take different inputs"),
        (["bench", MOBILENET, RESNET, MOBILENET], "one or two models"),
        (["bench", MOBILENET, "--runs", "0"], "--runs"),
        (["bench", MOBILENET, "--threads", "0"], "--threads"),
        (["bench", MOBILENET, "--input-shape", "nope:1x3"], "names no model input"),
        (["bench", MOBILENET, "--json", "/nonexistent/b.json"], "does not exist"),
        (["bench"], "required: MODEL"),
    ],
)
def test_bad_input_is_one_line_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("onnxprune: error:") and message in err[0]
