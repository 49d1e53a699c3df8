"""Every shipped sample model prunes at 0.3 and 0.5, runs, keeps its output shapes,
matches the masking oracle, and loses at least a third of its parameters at 0.5."""

from __future__ import annotations

import onnx
import pytest

from onnxprune import PruneConfig

from .helpers import SAMPLES, assert_exact

SAMPLE_FILES = sorted(SAMPLES.glob("*.onnx"))


def test_samples_are_shipped():
    names = {p.stem for p in SAMPLE_FILES}
    assert {
        "resnet_small",
        "mobilenetv2_small",
        "se_net",
        "densenet_small",
        "resnext_small",
        "csp_yolo_small",
        "unet_small",
        "classifier_flatten",
        "tf2onnx_style",
        "paddle_style",
    } <= names


@pytest.mark.parametrize("ratio", [0.3, 0.5])
@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.stem)
def test_sample_prunes_exactly(path, ratio):
    model = onnx.load(path)
    pruned, report, plan = assert_exact(model, PruneConfig(ratio=ratio))
    assert report.params_after < report.params_before
    if ratio == 0.5:
        assert report.params_after <= report.params_before * 2 / 3, report.to_text()
    for out in report.outputs:
        assert out.cosine > 0.0
