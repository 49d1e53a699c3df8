"""BatchNormalization, InstanceNormalization, LayerNormalization: per-channel parameters
follow the channels; statistics that span channels freeze them."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnxprune import PruneConfig

from ..helpers import assert_exact, initializer_shape, parse
from ..model_util import header, rows_of, top_l2, weight

BN_PARAMS = ("gamma", "beta", "mean", "var")

CONV_BN_CONV = """
    g (float[1,3,8,8] x) => (float[1,4,8,8] y)
    <float[8,3,3,3] w1 = {0.0}, float[8] gamma = {0.0}, float[8] beta = {0.0},
     float[8] mean = {0.0}, float[8] var = {0.0}, float[4,8,1,1] w2 = {0.0}>
    {
      h = Conv <pads=[1,1,1,1]> (x, w1)
      n = BatchNormalization <epsilon=0.001> (h, gamma, beta, mean, var)
      r = Relu (n)
      y = Conv (r, w2)
    }
"""


def test_conv_bn_relu_conv_slices_all_four_parameters():
    model = parse(header(17) + CONV_BN_CONV)
    pruned, report, _ = assert_exact(model, PruneConfig(ratio=0.5))
    w1 = weight(model, "w1")
    kept = rows_of(w1, weight(pruned, "w1"))
    assert kept == top_l2(w1, 4)
    for name in BN_PARAMS:
        assert np.array_equal(weight(pruned, name), weight(model, name)[kept]), name
    assert initializer_shape(pruned, "w2") == [4, 4, 1, 1]
    assert [(g.channels, g.kept) for g in report.groups] == [(8, 4), (4, 4)]


def test_bn_after_concat_slices_each_producers_part():
    model = parse(
        header(17)
        + """
        g (float[1,3,8,8] x) => (float[1,4,8,8] y)
        <float[4,3,1,1] wa = {0.0}, float[6,3,1,1] wb = {0.0},
         float[10] gamma = {0.0}, float[10] beta = {0.0}, float[10] mean = {0.0},
         float[10] var = {0.0}, float[4,10,1,1] w2 = {0.0}>
        {
          a = Conv (x, wa)
          b = Conv (x, wb)
          c = Concat <axis=1> (a, b)
          n = BatchNormalization (c, gamma, beta, mean, var)
          r = Relu (n)
          y = Conv (r, w2)
        }
        """
    )
    pruned, _, _ = assert_exact(model, PruneConfig(ratio=0.5))
    kept_a = rows_of(weight(model, "wa"), weight(pruned, "wa"))
    kept_b = rows_of(weight(model, "wb"), weight(pruned, "wb"))
    assert (len(kept_a), len(kept_b)) == (2, 3)
    kept = kept_a + [4 + k for k in kept_b]
    for name in BN_PARAMS:
        assert np.array_equal(weight(pruned, name), weight(model, name)[kept]), name
    assert np.array_equal(weight(pruned, "w2"), weight(model, "w2")[:, kept])


def test_instance_norm_slices_scale_and_bias():
    model = parse(
        header(17)
        + """
        g (float[2,3,8,8] x) => (float[2,4,8,8] y)
        <float[8,3,3,3] w1 = {0.0}, float[8] b1 = {0.0},
         float[8] scale = {0.0}, float[8] shift = {0.0}, float[4,8,1,1] w2 = {0.0}>
        {
          h = Conv <pads=[1,1,1,1]> (x, w1, b1)
          n = InstanceNormalization (h, scale, shift)
          r = Relu (n)
          y = Conv (r, w2)
        }
        """
    )
    pruned, _, _ = assert_exact(model, PruneConfig(ratio=0.5))
    kept = rows_of(weight(model, "w1"), weight(pruned, "w1"))
    assert len(kept) == 4
    for name in ("b1", "scale", "shift"):
        assert np.array_equal(weight(pruned, name), weight(model, name)[kept]), name


def test_layer_norm_over_the_channel_axis_freezes_those_channels():
    model = parse(
        header(17)
        + """
        g (float[1,3,4,4] x) => (float[1,4,4,4] y)
        <float[8,3,3,3] w1 = {0.0}, float[8,4,4] scale = {0.0}, float[4,8,1,1] w2 = {0.0}>
        {
          h = Conv <pads=[1,1,1,1]> (x, w1)
          n = LayerNormalization <axis=1> (h, scale)
          y = Conv (n, w2)
        }
        """
    )
    pruned, report, _ = assert_exact(model, PruneConfig(ratio=0.5))
    assert initializer_shape(pruned, "w1") == [8, 3, 3, 3]
    assert initializer_shape(pruned, "scale") == [8, 4, 4]
    first = report.groups[0]
    assert first.kept == first.channels == 8
    assert first.frozen == [
        "LayerNormalization 'LayerNormalization#1': "
        "LayerNormalization statistics span these channels"
    ]


def test_layer_norm_over_other_axes_passes_channels_through():
    model = parse(
        header(17)
        + """
        g (float[1,3,4,4] x) => (float[1,4,4,4] y)
        <float[8,3,3,3] w1 = {0.0}, float[4] scale = {0.0}, float[4,8,1,1] w2 = {0.0}>
        {
          h = Conv <pads=[1,1,1,1]> (x, w1)
          n = LayerNormalization <axis=-1> (h, scale)
          y = Conv (n, w2)
        }
        """
    )
    pruned, report, _ = assert_exact(model, PruneConfig(ratio=0.5))
    assert initializer_shape(pruned, "w1") == [4, 3, 3, 3]
    assert initializer_shape(pruned, "scale") == [4]
    assert report.groups[0].frozen == []


def _initializers_to_constant_nodes(model: onnx.ModelProto, names: tuple[str, ...]) -> None:
    """Move these initializers into Constant nodes at the front, as Paddle exports them."""
    graph = model.graph
    moved = [t for t in graph.initializer if t.name in names]
    keep = [t for t in graph.initializer if t.name not in names]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    nodes = [
        helper.make_node("Constant", [], [t.name], name=f"const_{t.name}", value=t) for t in moved
    ]
    rest = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + rest)
    onnx.checker.check_model(model, full_check=True)


def test_bn_parameters_in_constant_nodes():
    model = parse(header(17) + CONV_BN_CONV)
    _initializers_to_constant_nodes(model, BN_PARAMS)
    pruned, report, _ = assert_exact(model, PruneConfig(ratio=0.5))
    assert {t.name for t in pruned.graph.initializer} == {"w1", "w2"}
    kept = rows_of(weight(model, "w1"), weight(pruned, "w1"))
    assert len(kept) == 4
    for name in BN_PARAMS:
        (node,) = [n for n in pruned.graph.node if n.output[0] == name]
        assert node.op_type == "Constant"
        value = numpy_helper.to_array(node.attribute[0].t)
        assert np.array_equal(value, weight(model, name)[kept]), name
    assert report.params_after < report.params_before
