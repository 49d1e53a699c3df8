"""Every shipped sample model prunes at 0.3 and 0.5, runs, keeps its output shapes and
matches the masking oracle; the CNN samples lose at least a third of their parameters
at 0.5. The transformer samples (both exporters) lose heads and MLP neurons and run
at other batch sizes and sequence lengths than the one they were validated at."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from onnxprune import PruneConfig, make_plan, prune
from onnxprune.validate import input_feeds, run

from .helpers import SAMPLES, assert_exact

CNNS = [
    "resnet_small",
    "resnet_small_unfused_bn",
    "mobilenetv2_small",
    "mobilenetv2_small_dynamo",
    "se_net",
    "densenet_small",
    "resnext_small",
    "csp_yolo_small",
    "unet_small",
    "classifier_flatten",
    "tf2onnx_style",
    "paddle_style",
]
TRANSFORMERS = [
    f"{n}{s}" for n in ("bert_tiny", "vit_tiny", "gpt_tiny", "gqa_tiny") for s in ("", "_dynamo")
]


def test_every_sample_is_covered():
    assert {p.stem for p in SAMPLES.glob("*.onnx")} == set(CNNS + TRANSFORMERS)


@pytest.mark.parametrize("ratio", [0.3, 0.5])
@pytest.mark.parametrize("name", CNNS)
def test_cnn_sample_prunes_exactly(name, ratio):
    model = onnx.load(SAMPLES / f"{name}.onnx")
    pruned, report, plan = assert_exact(model, PruneConfig(ratio=ratio))
    assert report.params_after < report.params_before
    if ratio == 0.5:
        assert report.params_after <= report.params_before * 2 / 3, report.to_text()
    assert report.oracle_rel_diff is not None and report.oracle_rel_diff < 1e-4


def _shapes(model: onnx.ModelProto, batch: int, seq: int) -> dict[str, list[int]]:
    shapes = {}
    for vi in model.graph.input:
        dims = [d.dim_value or None for d in vi.type.tensor_type.shape.dim]
        shapes[vi.name] = [batch if k == 0 else (d or seq) for k, d in enumerate(dims)]
    return shapes


@pytest.mark.parametrize("name", TRANSFORMERS)
def test_transformer_sample_loses_heads_and_neurons_exactly(name):
    model = onnx.load(SAMPLES / f"{name}.onnx")
    config = PruneConfig(ratio=0.5, input_shapes=_shapes(model, 1, 7))
    pruned, report, plan = assert_exact(model, config)
    heads = [g for g in report.groups if g.kind == "heads"]
    assert heads and all(g.kept == g.channels // 2 for g in heads), report.to_text()
    mlp = [g for g in report.groups if g.kind == "channels" and 0 < g.kept < g.channels]
    assert mlp, report.to_text()
    # the pruned model keeps its dynamic batch and sequence axes: other sizes run and
    # still equal the masked original
    masked = plan.masked_original(model).SerializeToString()
    for batch, seq in [(3, 12), (2, 5)]:
        feeds = input_feeds(model, _shapes(model, batch, seq), seed=batch)
        expected = run(masked, feeds)
        got = run(pruned.SerializeToString(), feeds)
        for key, ref in expected.items():
            assert got[key].shape == ref.shape
            np.testing.assert_allclose(got[key], ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


@pytest.mark.parametrize("name", ["bert_tiny", "gpt_tiny_dynamo"])
def test_transformer_sample_at_ratio_0_3(name):
    model = onnx.load(SAMPLES / f"{name}.onnx")
    pruned, report = prune(model, PruneConfig(ratio=0.3, input_shapes=_shapes(model, 2, 9)))
    assert report.params_after < report.params_before
    assert report.oracle_rel_diff < 1e-4


def test_plan_is_independent_of_the_validation_sizes():
    model = onnx.load(SAMPLES / "gqa_tiny.onnx")
    kept = [
        make_plan(model, PruneConfig(ratio=0.5, input_shapes=_shapes(model, b, s))).keep_slot
        for b, s in [(1, 7), (4, 33)]
    ]
    assert np.array_equal(kept[0], kept[1])


@pytest.mark.parametrize("name", ["vit_tiny", "vit_tiny_dynamo", "gpt_tiny", "gpt_tiny_dynamo"])
def test_prune_hidden_shrinks_the_residual_stream(name):
    """--prune-hidden: the hidden size (class token and position embedding included)
    is pruned, reported approximate, and the model keeps its output shapes."""
    model = onnx.load(SAMPLES / f"{name}.onnx")
    pruned, report = prune(
        model, PruneConfig(ratio=0.5, prune_hidden=True, input_shapes=_shapes(model, 1, 7))
    )
    hidden = [g for g in report.groups if g.approximate]
    assert len(hidden) == 1 and hidden[0].kept == hidden[0].channels // 2, report.to_text()
    assert "approximate" in report.to_text()
    feeds = input_feeds(model, _shapes(model, 2, 9), seed=0)
    got = run(pruned.SerializeToString(), feeds)
    expected = run(model.SerializeToString(), feeds)
    assert {k: v.shape for k, v in got.items()} == {k: v.shape for k, v in expected.items()}
