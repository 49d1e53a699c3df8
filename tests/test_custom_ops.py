"""Custom-domain ops in the middle of a CNN are kept intact and are barriers unless a
handler knows them.

`com.microsoft` Gelu and BiasGelu have handlers: channels pass through them (BiasGelu's
bias is sliced with them). `com.microsoft` FusedConv and a `com.example` op have none:
every channel they read is frozen, with a reason naming the op, and what they compute
is not pruned either. Every custom node comes out with the same op, domain, attributes
and inputs (only constants a known handler slices lose positions). onnxruntime runs the
com.microsoft ops, so that model is checked against the masking oracle; it cannot run
the com.example op, so that model is pruned without validation and run with the op
swapped for what it stands for (Identity) in both the pruned and the masked original.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxprune import PruneConfig, make_plan, prune
from onnxprune.graph import with_outputs
from onnxprune.validate import input_feeds, run

from .helpers import assert_exact

MS, EXAMPLE = "com.microsoft", "com.example"


def _weights(**shapes: tuple[int, ...]) -> list[onnx.TensorProto]:
    rng = np.random.default_rng(7)
    return [
        numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), name)
        for name, s in shapes.items()
    ]


def _model(nodes, inits, domain: str) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 12, 12])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 1, 1])
    graph = helper.make_graph(nodes, "custom_cnn", [x], [y], inits)
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid(domain, 1)]
    model = helper.make_model(graph, opset_imports=opsets, ir_version=8)
    if domain == MS:
        _annotate_shapes(model)
    onnx.checker.check_model(model, full_check=True)
    return model


def _annotate_shapes(model: onnx.ModelProto) -> None:
    """onnx's shape inference stops at com.microsoft ops; write every intermediate
    shape as value_info, measured in onnxruntime (as its optimised models carry them)."""
    names = [o for n in model.graph.node for o in n.output if o != "y"]
    probe = with_outputs(model, names)
    values = run(probe.SerializeToString(), input_feeds(model, {}, seed=0))
    model.graph.value_info.extend(
        helper.make_tensor_value_info(name, TensorProto.FLOAT, list(values[name].shape))
        for name in names
    )


def microsoft_cnn() -> onnx.ModelProto:
    """conv1 (16) -> Gelu -> conv2 (24) -> NHWC -> BiasGelu (bias of 24) -> NCHW ->
    conv3 (16) -> FusedConv (Relu, 16) -> conv4 (8) -> GlobalAveragePool -> y."""
    make = helper.make_node
    nodes = [
        make("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        make("Gelu", ["c1"], ["g1"], name="gelu", domain=MS),
        make("Conv", ["g1", "w2", "b2"], ["c2"], name="conv2"),
        make("Transpose", ["c2"], ["t1"], name="to_nhwc", perm=[0, 2, 3, 1]),
        make("BiasGelu", ["t1", "bias"], ["g2"], name="bias_gelu", domain=MS),
        make("Transpose", ["g2"], ["t2"], name="to_nchw", perm=[0, 3, 1, 2]),
        make("Conv", ["t2", "w3", "b3"], ["c3"], name="conv3"),
        make(
            "FusedConv",
            ["c3", "wf", "bf"],
            ["f"],
            name="fused",
            domain=MS,
            activation="Relu",
            pads=[1, 1, 1, 1],
            kernel_shape=[3, 3],
        ),
        make("Conv", ["f", "w4", "b4"], ["c4"], name="conv4"),
        make("GlobalAveragePool", ["c4"], ["y"], name="pool"),
    ]
    inits = _weights(
        w1=(16, 3, 3, 3),
        b1=(16,),
        w2=(24, 16, 1, 1),
        b2=(24,),
        bias=(24,),
        w3=(16, 24, 1, 1),
        b3=(16,),
        wf=(16, 16, 3, 3),
        bf=(16,),
        w4=(8, 16, 1, 1),
        b4=(8,),
    )
    return _model(nodes, inits, MS)


def example_cnn() -> onnx.ModelProto:
    """conv1 (16) -> Relu -> conv2 (16) -> com.example Frobnicate -> conv3 (12) -> Relu
    -> conv4 (8) -> GlobalAveragePool -> y."""
    make = helper.make_node
    nodes = [
        make("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        make("Relu", ["c1"], ["r1"], name="relu1"),
        make("Conv", ["r1", "w2"], ["c2"], name="conv2"),
        make(
            "Frobnicate",
            ["c2", "scale"],
            ["fz"],
            name="frob",
            domain=EXAMPLE,
            alpha=0.5,
            mode="fast",
            taps=[1, 2, 3],
        ),
        make("Conv", ["fz", "w3"], ["c3"], name="conv3"),
        make("Relu", ["c3"], ["r3"], name="relu3"),
        make("Conv", ["r3", "w4"], ["c4"], name="conv4"),
        make("GlobalAveragePool", ["c4"], ["y"], name="pool"),
    ]
    inits = _weights(
        w1=(16, 3, 3, 3),
        w2=(16, 16, 1, 1),
        scale=(16, 1, 1),
        w3=(12, 16, 1, 1),
        w4=(8, 12, 1, 1),
    )
    return _model(nodes, inits, EXAMPLE)


def _node(model: onnx.ModelProto, name: str) -> onnx.NodeProto:
    return next(n for n in model.graph.node if n.name == name)


def _init(model: onnx.ModelProto, name: str) -> np.ndarray:
    return numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == name))


def _group(plan, node_name: str):
    """The group of the channels created by producer `node_name`."""
    found = [g for g in plan.groups if any(label.startswith(node_name) for label in g.labels)]
    assert len(found) == 1, [g.labels for g in plan.groups]
    return found[0]


def _assert_intact(before: onnx.NodeProto, after: onnx.NodeProto) -> None:
    assert (after.op_type, after.domain) == (before.op_type, before.domain)
    assert list(after.input) == list(before.input)
    assert list(after.output) == list(before.output)
    assert list(after.attribute) == list(before.attribute)


# -- com.microsoft: Gelu and BiasGelu known, FusedConv a barrier ---------------------------


@pytest.fixture(scope="module")
def microsoft():
    model = microsoft_cnn()
    pruned, report, plan = assert_exact(model, PruneConfig(ratio=0.5))
    return model, pruned, report, plan


def test_microsoft_nodes_are_kept_intact(microsoft):
    model, pruned, _, _ = microsoft
    for name in ("gelu", "bias_gelu", "fused"):
        _assert_intact(_node(model, name), _node(pruned, name))
    assert [n.name for n in pruned.graph.node] == [n.name for n in model.graph.node]


def test_known_microsoft_ops_pass_channels_through(microsoft):
    """Gelu passes conv1's channels to conv2; BiasGelu passes conv2's (channels last
    between the Transposes) to conv3, its bias sliced with them."""
    model, pruned, _, plan = microsoft
    for producer, width in (("conv1", 16), ("conv2", 24)):
        group = _group(plan, producer)
        assert group.size == width and not group.frozen
        assert int(plan.keep_slot[group.classes].sum()) == width // 2
    assert _init(pruned, "w1").shape[0] == 8 and _init(pruned, "w2").shape[1] == 8
    keep = np.isin(_init(model, "b2"), _init(pruned, "b2"))  # which of conv2's channels
    assert keep.sum() == 12
    np.testing.assert_array_equal(_init(pruned, "bias"), _init(model, "bias")[keep])
    np.testing.assert_array_equal(_init(pruned, "w3"), _init(model, "w3")[:, keep])


def test_fused_conv_is_a_barrier_named_in_the_reason(microsoft):
    """conv3's channels feed FusedConv: all frozen, the reason naming the op; FusedConv's
    own channels are not pruned (its weight and bias are untouched, conv4 reads all)."""
    model, pruned, report, plan = microsoft
    group = _group(plan, "conv3")
    assert group.fully_frozen
    assert group.frozen_reasons() == [
        "FusedConv 'fused': no handler for com.microsoft::FusedConv (opset 1)"
    ]
    for name in ("b3", "wf", "bf", "w4", "b4"):
        np.testing.assert_array_equal(_init(pruned, name), _init(model, name))
    assert _init(pruned, "w3").shape == (16, 12, 1, 1)  # only conv2's channels go
    assert report.params_after < report.params_before


# -- com.example: unknown everywhere, onnxruntime cannot run it ----------------------------


@pytest.fixture(scope="module")
def example():
    model = example_cnn()
    config = PruneConfig(ratio=0.5, validate=False)
    plan = make_plan(model, config)
    pruned, report = prune(model, config)
    return model, pruned, report, plan


def test_example_op_is_kept_intact_and_the_model_checks(example):
    model, pruned, _, _ = example
    _assert_intact(_node(model, "frob"), _node(pruned, "frob"))
    np.testing.assert_array_equal(_init(pruned, "scale"), _init(model, "scale"))
    assert list(pruned.opset_import) == list(model.opset_import)
    onnx.checker.check_model(pruned, full_check=True)


def test_example_op_freezes_what_it_reads_and_what_it_writes(example):
    """conv2's channels enter Frobnicate: frozen, reason naming com.example::Frobnicate;
    its output carries no prunable channels, so conv3 keeps all 16 input channels. The
    groups away from it (conv1, conv3) are pruned as usual."""
    model, pruned, _, plan = example
    group = _group(plan, "conv2")
    assert group.fully_frozen
    assert group.frozen_reasons() == [
        "Frobnicate 'frob': no handler for com.example::Frobnicate (opset 1)"
    ]
    assert _init(pruned, "w2").shape == (16, 8, 1, 1)  # conv1's group pruned, conv2's not
    assert _init(pruned, "w3").shape == (6, 16, 1, 1)  # conv3's group pruned, inputs kept
    assert _init(pruned, "w4").shape == (8, 6, 1, 1)
    for name in ("conv1", "conv3"):
        assert not _group(plan, name).frozen


def _as_identity(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with Frobnicate replaced by what it stands for here: Identity."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    node = _node(copy, "frob")
    node.op_type, node.domain = "Identity", ""
    del node.input[1:]
    del node.attribute[:]
    return copy


def test_pruning_around_the_example_op_is_exact(example):
    model, pruned, _, plan = example
    feeds = input_feeds(model, {}, seed=2)
    masked = plan.masked_original(_as_identity(model))  # same node indices as `model`
    expected = run(masked.SerializeToString(), feeds)
    got = run(_as_identity(pruned).SerializeToString(), feeds)
    scale = float(np.abs(expected["y"]).max())
    assert float(np.abs(got["y"] - expected["y"]).max()) <= 1e-5 * scale
