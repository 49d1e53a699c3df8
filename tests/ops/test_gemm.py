"""Gemm and MatMul: constant weights create neurons; their K axis follows the input."""

from __future__ import annotations

import numpy as np
import pytest

from onnxprune import PruneConfig

from ..helpers import assert_exact, initializer_shape, parse
from ..model_util import header, rows_of, top_l2, weight


@pytest.mark.parametrize("c_shape", [[16], [1, 16]], ids=["C[N]", "C[1,N]"])
@pytest.mark.parametrize("trans_b", [0, 1])
def test_flatten_gemm_takes_whole_feature_blocks(trans_b, c_shape):
    b1 = "16,32" if trans_b else "32,16"
    b2 = "10,16" if trans_b else "16,10"
    c = ",".join(map(str, c_shape))
    model = parse(
        header(17)
        + f"""
        g (float[2,3,4,4] x) => (float[2,10] y)
        <float[8,3,3,3] w1 = {{0.0}}, float[8] b1 = {{0.0}},
         float[{b1}] fc1 = {{0.0}}, float[{c}] c1 = {{0.0}},
         float[{b2}] fc2 = {{0.0}}, float[10] c2 = {{0.0}}>
        {{
          h = Conv <strides=[2,2], pads=[1,1,1,1]> (x, w1, b1)
          r = Relu (h)
          f = Flatten (r)
          z = Gemm <transB={trans_b}> (f, fc1, c1)
          a = Relu (z)
          y = Gemm <transB={trans_b}> (a, fc2, c2)
        }}
        """
    )
    pruned, report, _ = assert_exact(model, PruneConfig(ratio=0.5))
    kept_ch = rows_of(weight(model, "w1"), weight(pruned, "w1"))
    features = [4 * k + j for k in kept_ch for j in range(4)]  # each channel is 2x2 features
    k_axis, n_axis = (1, 0) if trans_b else (0, 1)
    fc1, new_fc1 = weight(model, "fc1"), weight(pruned, "fc1")
    kept_n = top_l2(fc1, 8, axis=n_axis)
    assert np.array_equal(new_fc1, np.take(np.take(fc1, features, k_axis), kept_n, n_axis))
    assert initializer_shape(pruned, "c1") == [*c_shape[:-1], 8]
    assert np.array_equal(weight(pruned, "c1"), weight(model, "c1")[..., kept_n])
    fc2 = weight(model, "fc2")
    assert np.array_equal(weight(pruned, "fc2"), np.take(fc2, kept_n, 1 if trans_b else 0))
    assert [(g.channels, g.kept) for g in report.groups] == [(8, 4), (16, 8), (10, 10)]


def test_gemm_relu_gemm_prunes_neurons_opset11():
    model = parse(
        header(11)
        + """
        g (float[4,32] x) => (float[4,10] y)
        <float[32,20] fc1 = {0.0}, float[20] c1 = {0.0},
         float[20,10] fc2 = {0.0}, float[10] c2 = {0.0}>
        {
          z = Gemm (x, fc1, c1)
          a = Relu (z)
          y = Gemm (a, fc2, c2)
        }
        """
    )
    pruned, report, _ = assert_exact(model, PruneConfig(ratio=0.25))
    fc1 = weight(model, "fc1")
    kept = rows_of(fc1, weight(pruned, "fc1"), axis=1)
    assert kept == top_l2(fc1, 15, axis=1)
    assert np.array_equal(weight(pruned, "c1"), weight(model, "c1")[kept])
    assert np.array_equal(weight(pruned, "fc2"), weight(model, "fc2")[kept])
    assert initializer_shape(pruned, "fc1") == [32, 15]
    assert report.groups[1].frozen == ["reaches graph output 'y'"]


def test_matmul_chain_after_rank3_input():
    model = parse(
        header(17)
        + """
        g (float[2,5,16] x) => (float[2,5,8] y)
        <float[16,32] w1 = {0.0}, float[32] b1 = {0.0}, float[32,8] w2 = {0.0}>
        {
          m = MatMul (x, w1)
          z = Add (m, b1)
          a = Relu (z)
          y = MatMul (a, w2)
        }
        """
    )
    pruned, report, _ = assert_exact(model, PruneConfig(ratio=0.5))
    w1 = weight(model, "w1")
    kept = rows_of(w1, weight(pruned, "w1"), axis=1)
    assert kept == top_l2(w1, 16, axis=1)
    assert np.array_equal(weight(pruned, "b1"), weight(model, "b1")[kept])
    assert np.array_equal(weight(pruned, "w2"), weight(model, "w2")[kept])
    assert [(g.channels, g.kept) for g in report.groups] == [(32, 16), (8, 8)]


def test_matmul_with_constant_on_the_left():
    model = parse(
        header(17)
        + """
        g (float[2,8,6] x) => (float[2,4,6] y)
        <float[12,8] w1 = {0.0}, float[12,1] b1 = {0.0}, float[4,12] w2 = {0.0}>
        {
          m = MatMul (w1, x)
          z = Add (m, b1)
          a = Relu (z)
          y = MatMul (w2, a)
        }
        """
    )
    pruned, _, _ = assert_exact(model, PruneConfig(ratio=0.5))
    w1 = weight(model, "w1")
    kept = rows_of(w1, weight(pruned, "w1"))
    assert kept == top_l2(w1, 6)
    assert np.array_equal(weight(pruned, "b1"), weight(model, "b1")[kept])
    assert np.array_equal(weight(pruned, "w2"), weight(model, "w2")[:, kept])


ATTENTION_SCORES = """
    g (float[2,5,16] x) => (float[2,5,5] s)
    <float[16,8] wq = {0.0}, float[16,8] wk = {0.0}>
    {
      q = MatMul (x, wq)
      k = MatMul (x, wk)
      kt = Transpose <perm=[0,2,1]> (k)
      s = MatMul (q, kt)
    }
"""


def test_matmul_of_two_computed_tensors_couples_the_contracted_axes():
    model = parse(header(17) + ATTENTION_SCORES)
    pruned, report, _ = assert_exact(model, PruneConfig(ratio=0.5))
    kept_q = rows_of(weight(model, "wq"), weight(pruned, "wq"), axis=1)
    kept_k = rows_of(weight(model, "wk"), weight(pruned, "wk"), axis=1)
    assert kept_q == kept_k and len(kept_q) == 4
    # one channel is one (query column, key column) pair: scored over both weights
    both = np.concatenate([weight(model, "wq"), weight(model, "wk")], axis=0)
    assert kept_q == top_l2(both, 4, axis=1)
    (group,) = report.groups
    assert (group.channels, group.kept) == (8, 4) and len(group.members) == 2


def test_matmul_with_an_unprunable_operand_freezes_the_contracted_axis():
    model = parse(
        header(17)
        + """
        g (float[2,5,16] x, float[2,8,5] other) => (float[2,5,5] s)
        <float[16,8] wq = {0.0}>
        {
          q = MatMul (x, wq)
          s = MatMul (q, other)
        }
        """
    )
    pruned, report, _ = assert_exact(model, PruneConfig(ratio=0.5))
    assert initializer_shape(pruned, "wq") == [16, 8]
    (group,) = report.groups
    assert group.kept == 8
    assert "whose other operand is not pruned" in group.frozen[0]


def test_gemm_reading_a_tensor_whose_shape_inference_lost_is_checked():
    """Found by tests/test_property.py: at opset 11 shape inference cannot fold the
    `x.view(x.size(0), -1)` chain, so the MatMul after it has no inferred shape. The
    Gemm reading the MatMul's neurons knows its input is 2-D, but the masking oracle
    looked the rank up in the inferred shapes only, and prune() crashed with KeyError."""
    model = parse(
        header(11)
        + """
        g (float[1,1,4,4] x) => (float[1,3] y)
        <float[6,1,3,3] w1 = {0.0}, int64 i0 = {0}, int64[1] m1 = {-1},
         float[96,8] fc1 = {0.0}, float[8,3] fc2 = {0.0}, float[3] c2 = {0.0}>
        {
          h = Conv <pads=[1,1,1,1]> (x, w1)
          s = Shape (h)
          n = Gather <axis=0> (s, i0)
          u = Unsqueeze <axes=[0]> (n)
          t = Concat <axis=0> (u, m1)
          f = Reshape (h, t)
          z = MatMul (f, fc1)
          y = Gemm (z, fc2, c2)
        }
        """
    )
    pruned, report, _ = assert_exact(model, PruneConfig(ratio=0.5))
    assert initializer_shape(pruned, "fc2") == [4, 3]
    assert report.oracle_rel_diff < 1e-5
