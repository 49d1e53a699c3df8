"""Constants are constants wherever they live: initializers, Constant nodes, Identity of
a constant, ConstantOfShape of a constant shape (old model-zoo files)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxprune import PruneConfig

from .helpers import assert_exact


def _model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    w2 = rng.standard_normal((4, 8, 1, 1)).astype(np.float32)
    nodes = [
        helper.make_node("Constant", [], ["w1"], value=numpy_helper.from_array(w1)),
        helper.make_node("Identity", ["w1"], ["w1_id"]),
        helper.make_node("Constant", [], ["bias_shape"], value_ints=[8]),
        helper.make_node(
            "ConstantOfShape",
            ["bias_shape"],
            ["b1"],
            value=numpy_helper.from_array(np.array([0.25], np.float32)),
        ),
        helper.make_node("Conv", ["x", "w1_id", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        [numpy_helper.from_array(w2, "w2")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_identity_and_constant_of_shape_are_sliced():
    pruned, report, _ = assert_exact(_model(), PruneConfig(ratio=0.5))
    convs = [n for n in pruned.graph.node if n.op_type == "Conv"]
    inits = {t.name: t for t in pruned.graph.initializer}
    # the first conv's weight and bias are read through nodes that cannot be rewritten
    # in place, so they become sliced initializers of their own
    assert list(inits[convs[0].input[1]].dims) == [4, 3, 3, 3]
    assert list(inits[convs[0].input[2]].dims) == [4]
    assert list(inits[convs[1].input[1]].dims) == [4, 4, 1, 1]
    assert report.groups[0].kept == 4


def test_constant_node_weight_is_rewritten_in_place():
    model = _model()
    model.graph.node[4].input[1] = "w1"  # read the Constant node directly
    del model.graph.node[1]  # and nothing else reads it
    pruned, _, _ = assert_exact(model, PruneConfig(ratio=0.5))
    const = next(n for n in pruned.graph.node if n.output[0] == "w1")
    assert list(const.attribute[0].t.dims) == [4, 3, 3, 3]
    assert not any(t.name.startswith("w1") for t in pruned.graph.initializer)
