"""Shared test helpers: build models from ONNX text, prune, and check the masking oracle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx.parser

from onnxprune import PruneConfig, make_plan, prune
from onnxprune.validate import input_feeds, run

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"


def parse(text: str, seed: int = 0, **weights: np.ndarray) -> onnx.ModelProto:
    """A model from ONNX text whose float initializers are refilled with seeded data.

    Declare weights in the graph's initializer list with a placeholder value, as in
    `<float[8,3,3,3] w = {0.0}>`: they are filled with seeded normal values (positive
    ones for names starting with "var"), or with the array passed as a keyword.
    """
    model = onnx.parser.parse_model(text)
    rng = np.random.default_rng(seed)
    for tensor in model.graph.initializer:
        if tensor.name in weights:
            value = np.asarray(weights[tensor.name])
        elif tensor.data_type == onnx.TensorProto.FLOAT:
            value = rng.standard_normal(tuple(tensor.dims)).astype(np.float32)
            if tensor.name.startswith("var"):
                value = np.abs(value) + 0.5
        else:
            value = onnx.numpy_helper.to_array(tensor)
        tensor.CopyFrom(
            onnx.numpy_helper.from_array(value.reshape(tuple(tensor.dims)), tensor.name)
        )
    onnx.checker.check_model(model, full_check=True)
    return model


def assert_exact(model: onnx.ModelProto, config: PruneConfig | None = None, rtol: float = 1e-5):
    """Prune `model` and check it equals the masked original; return (pruned, report, plan)."""
    config = config or PruneConfig(ratio=0.5)
    plan = make_plan(model, config)
    pruned, report = prune(model, config)
    feeds = input_feeds(model, config.input_shapes, seed=1)
    expected = run(plan.masked_original(model).SerializeToString(), feeds)
    got = run(pruned.SerializeToString(), feeds)
    for name, ref in expected.items():
        assert got[name].shape == ref.shape, name
        scale = max(float(np.abs(ref).max()), 1e-6)
        diff = float(np.abs(got[name] - ref).max())
        assert diff <= rtol * scale, f"{name}: max |diff| {diff:.3g} vs scale {scale:.3g}"
    return pruned, report, plan


def initializer_shape(model: onnx.ModelProto, name: str) -> list[int]:
    for t in model.graph.initializer:
        if t.name == name:
            return list(t.dims)
    raise KeyError(name)
