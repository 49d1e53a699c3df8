"""Channels that are dead in the original (zero weights, zero bias, zero BN beta and mean)
are the ones pruned, and removing them changes nothing: the pruned model's outputs equal
the original model's outputs, not only the masked model's."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from onnxprune import PruneConfig
from onnxprune.validate import input_feeds, run

from .helpers import assert_exact, parse
from .model_util import header, rows_of, weight


def zero(model: onnx.ModelProto, name: str, index: list[int], axis: int = 0) -> None:
    """Set positions `index` of initializer `name` along `axis` to zero, in place."""
    for t in model.graph.initializer:
        if t.name == name:
            value = numpy_helper.to_array(t).copy()
            slicer = [slice(None)] * value.ndim
            slicer[axis] = index
            value[tuple(slicer)] = 0.0
            t.CopyFrom(numpy_helper.from_array(value, name))
            return
    raise KeyError(name)


def alive(n: int, dead: list[int]) -> list[int]:
    return [k for k in range(n) if k not in dead]


def assert_same_as_original(model: onnx.ModelProto, config: PruneConfig):
    pruned, report, _ = assert_exact(model, config)
    feeds = input_feeds(model, {}, seed=3)
    original = run(model.SerializeToString(), feeds)
    got = run(pruned.SerializeToString(), feeds)
    for name, ref in original.items():
        scale = max(float(np.abs(ref).max()), 1e-6)
        assert float(np.abs(got[name] - ref).max()) <= 1e-5 * scale, name
    assert report.params_after < report.params_before
    return pruned, report


def test_dead_channels_of_a_conv_chain_are_removed_without_changing_outputs():
    model = parse(
        header(17)
        + """
        g (float[1,3,8,8] x) => (float[1,4,8,8] y)
        <float[8,3,3,3] w1 = {0.0}, float[8] b1 = {0.0},
         float[12,8,3,3] w2 = {0.0}, float[12] b2 = {0.0},
         float[12] gamma = {0.0}, float[12] beta = {0.0}, float[12] mean = {0.0},
         float[12] var = {0.0}, float[4,12,1,1] w3 = {0.0}, float[4] b3 = {0.0}>
        {
          h1 = Conv <pads=[1,1,1,1]> (x, w1, b1)
          r1 = Relu (h1)
          h2 = Conv <pads=[1,1,1,1]> (r1, w2, b2)
          n2 = BatchNormalization (h2, gamma, beta, mean, var)
          r2 = Relu (n2)
          y = Conv (r2, w3, b3)
        }
        """
    )
    dead1, dead2 = [1, 5, 6], [0, 3, 4, 11]
    zero(model, "w1", dead1)
    zero(model, "b1", dead1)
    for name in ("w2", "b2", "beta", "mean"):
        zero(model, name, dead2)
    pruned, report = assert_same_as_original(model, PruneConfig(ratio=0.375))
    assert rows_of(weight(model, "w1"), weight(pruned, "w1")) == alive(8, dead1)
    w2 = weight(model, "w2")[:, alive(8, dead1)]
    assert rows_of(w2, weight(pruned, "w2")) == alive(12, dead2)
    assert np.array_equal(weight(pruned, "beta"), weight(model, "beta")[alive(12, dead2)])
    assert [g.kept for g in report.groups] == [5, 8, 4]


def test_dead_channels_of_a_residual_block():
    model = parse(
        header(17)
        + """
        g (float[1,3,8,8] x) => (float[1,4,8,8] y)
        <float[8,3,3,3] w0 = {0.0}, float[8] b0 = {0.0},
         float[8,8,3,3] w1 = {0.0}, float[8] b1 = {0.0},
         float[8,8,3,3] w2 = {0.0}, float[8] b2 = {0.0},
         float[4,8,1,1] w3 = {0.0}>
        {
          h0 = Conv <pads=[1,1,1,1]> (x, w0, b0)
          a = Relu (h0)
          h1 = Conv <pads=[1,1,1,1]> (a, w1, b1)
          r1 = Relu (h1)
          h2 = Conv <pads=[1,1,1,1]> (r1, w2, b2)
          s = Add (h2, a)
          r = Relu (s)
          y = Conv (r, w3)
        }
        """
    )
    dead_stream, dead_inner = [2, 7], [0, 3]
    for name in ("w0", "b0", "w2", "b2"):
        zero(model, name, dead_stream)
    zero(model, "w1", dead_inner)
    zero(model, "b1", dead_inner)
    pruned, report = assert_same_as_original(model, PruneConfig(ratio=0.25))
    stream, inner = alive(8, dead_stream), alive(8, dead_inner)
    assert rows_of(weight(model, "w0"), weight(pruned, "w0")) == stream
    assert rows_of(weight(model, "w1")[:, stream], weight(pruned, "w1")) == inner
    assert rows_of(weight(model, "w2")[:, inner], weight(pruned, "w2")) == stream
    assert np.array_equal(weight(pruned, "w3"), weight(model, "w3")[:, stream])
    residual = [g for g in report.groups if len(g.members) == 2]
    assert [(g.channels, g.kept) for g in residual] == [(8, 6)]


def test_dead_channels_of_a_flatten_gemm_head():
    model = parse(
        header(17)
        + """
        g (float[2,3,4,4] x) => (float[2,10] y)
        <float[8,3,3,3] w1 = {0.0}, float[8] b1 = {0.0},
         float[32,16] fc1 = {0.0}, float[16] c1 = {0.0},
         float[16,10] fc2 = {0.0}, float[10] c2 = {0.0}>
        {
          h = Conv <strides=[2,2], pads=[1,1,1,1]> (x, w1, b1)
          r = Relu (h)
          f = Flatten (r)
          z = Gemm (f, fc1, c1)
          a = Relu (z)
          y = Gemm (a, fc2, c2)
        }
        """
    )
    dead_ch, dead_n = [1, 4], [3, 9, 10, 12]
    zero(model, "w1", dead_ch)
    zero(model, "b1", dead_ch)
    zero(model, "fc1", dead_n, axis=1)
    zero(model, "c1", dead_n)
    pruned, report = assert_same_as_original(model, PruneConfig(ratio=0.25))
    channels, neurons = alive(8, dead_ch), alive(16, dead_n)
    assert rows_of(weight(model, "w1"), weight(pruned, "w1")) == channels
    features = [4 * k + j for k in channels for j in range(4)]
    fc1 = weight(model, "fc1")[features]
    assert rows_of(fc1, weight(pruned, "fc1"), axis=1) == neurons
    assert np.array_equal(weight(pruned, "fc2"), weight(model, "fc2")[neurons])
    assert [g.kept for g in report.groups] == [6, 12, 10]
