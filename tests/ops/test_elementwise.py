"""Channel-wise ops between two convs: channels pass, per-channel constants are sliced,
operands of a residual Add or a squeeze-excitation gate join one group."""

from __future__ import annotations

import numpy as np
import pytest

from onnxprune import PruneConfig
from onnxprune.ops.elementwise import BROADCAST, UNARY

from ..helpers import assert_exact
from ._models import build, group_of, header, initializer, kept_channels, sandwich

# Ops whose input must first be brought into their domain or type, and back to float.
PRE = {
    "Log": "p = Cosh (a)",  # >= 1: finite logs, roots, reciprocals, acosh
    "Sqrt": "p = Cosh (a)",
    "Reciprocal": "p = Cosh (a)",
    "Acosh": "p = Cosh (a)",
    "Asin": "p = Softsign (a)",  # in (-1, 1)
    "Acos": "p = Softsign (a)",
    "Atanh": "p = Softsign (a)",
    "Not": "p = Cast <to=9> (a)",  # bool
    "BitwiseNot": "p = Cast <to=6> (a)",  # int32
    "Cast": "p = Identity (a)",
}
TO = {"Cast": "<to=11>"}  # float -> double
NOT_FLOAT_OUT = {"Not", "BitwiseNot", "IsNaN", "IsInf", "Cast"}
FIRST_OPSET = {"HardSwish": 14, "Gelu": 20, "Mish": 18, "Swish": 24, "BitwiseNot": 18}


def _unary_model(op: str):
    pre = PRE.get(op, "p = Identity (a)")
    post = "b = Cast <to=1> (q)" if op in NOT_FLOAT_OUT else "b = Identity (q)"
    body = f"{pre}\n q = {op} {TO.get(op, '')} (p)\n {post}"
    return sandwich(body, opset=FIRST_OPSET.get(op, 13))


@pytest.mark.parametrize("op", UNARY)
def test_unary_op_passes_channels(op):
    model = _unary_model(op)
    pruned, report, plan = assert_exact(model)
    group = group_of(report, "conv1")
    assert (group.channels, group.kept, group.n_frozen) == (8, 4, 0)
    keep = kept_channels(plan, "conv1")
    np.testing.assert_array_equal(initializer(pruned, "w1"), initializer(model, "w1")[keep])
    np.testing.assert_array_equal(initializer(pruned, "w2"), initializer(model, "w2")[:, keep])


def test_every_unary_op_runs_in_its_test():
    """The parametrised test above covers UNARY exactly (no op is skipped)."""
    for op in UNARY:
        assert any(n.op_type == op for n in _unary_model(op).graph.node), op


@pytest.mark.parametrize("opset", [9, 13])
def test_clip_with_min_and_max(opset):
    if opset < 11:
        body = "b = Clip <min=-0.5, max=2.0> (a)"
        model = sandwich(body, opset=opset)
    else:
        body = "b = Clip (a, lo, hi)"
        model = sandwich(
            body, opset=opset, weights=", float lo, float hi", lo=np.float32(0.25), hi=2.0
        )
    pruned, report, _ = assert_exact(model)
    assert group_of(report, "conv1").kept == 4
    assert list(initializer(pruned, "w1").shape) == [4, 3, 3, 3]
    if opset >= 11:  # the scalar bounds are left alone
        assert initializer(pruned, "lo") == np.float32(0.25)


def test_prelu_slope_is_sliced_per_channel():
    model = sandwich("b = PRelu (a, slope)", weights=", float[8,1,1] slope")
    pruned, report, plan = assert_exact(model)
    keep = kept_channels(plan, "conv1")
    assert len(keep) == 4 and group_of(report, "conv1").n_frozen == 0
    np.testing.assert_array_equal(initializer(pruned, "slope"), initializer(model, "slope")[keep])


@pytest.mark.parametrize("op", ["Add", "Mul", "Sub", "Div"])
def test_per_channel_constant_is_sliced(op):
    model = sandwich(f"b = {op} (a, k)", weights=", float[8,1,1] k")
    pruned, _, plan = assert_exact(model)
    keep = kept_channels(plan, "conv1")
    np.testing.assert_array_equal(initializer(pruned, "k"), initializer(model, "k")[keep])


@pytest.mark.parametrize("op", ["Add", "Mul", "Sub", "Div"])
def test_nhwc_constant_after_transpose_is_sliced(op):
    """[1,6,6,8] (NHWC) op [8]: the constant's only axis lines up with the channels."""
    body = f"""
      t = Transpose <perm=[0,2,3,1]> (a)
      u = {op} (t, k)
      b = Transpose <perm=[0,3,1,2]> (u)
    """
    model = sandwich(body, hw=6, weights=", float[8] k")
    pruned, _, plan = assert_exact(model)
    keep = kept_channels(plan, "conv1")
    np.testing.assert_array_equal(initializer(pruned, "k"), initializer(model, "k")[keep])


def test_scalar_constant_is_left_alone():
    model = sandwich("b = Mul (a, k)", weights=", float[1] k")
    pruned, report, _ = assert_exact(model)
    assert group_of(report, "conv1").kept == 4
    assert initializer(pruned, "k").shape == (1,)


def test_residual_add_joins_both_convs_in_one_group():
    body = """
      [conv3] c = Conv <pads=[1,1,1,1]> (a, w3)
      b = Add (a, c)
    """
    model = sandwich(body, weights=", float[8,8,3,3] w3")
    pruned, report, plan = assert_exact(model)
    group = group_of(report, "conv1")
    assert group is group_of(report, "conv3")
    assert (group.channels, group.kept) == (8, 4)
    keep = kept_channels(plan, "conv1")
    np.testing.assert_array_equal(keep, kept_channels(plan, "conv3"))
    w3 = initializer(model, "w3")[keep][:, keep]
    np.testing.assert_array_equal(initializer(pruned, "w3"), w3)


def test_squeeze_excitation_gate_joins_the_gated_channels():
    body = """
      g = GlobalAveragePool (a)
      [reduce] s = Conv (g, wr, br)
      r = Relu (s)
      [excite] e = Conv (r, we, be)
      sg = Sigmoid (e)
      b = Mul (a, sg)
    """
    weights = ", float[2,8,1,1] wr, float[2] br, float[8,2,1,1] we, float[8] be"
    model = sandwich(body, weights=weights)
    pruned, report, plan = assert_exact(model)
    gated = group_of(report, "conv1")
    assert gated is group_of(report, "excite")
    assert (gated.channels, gated.kept) == (8, 4)
    assert group_of(report, "reduce").kept == 1
    keep = kept_channels(plan, "conv1")
    np.testing.assert_array_equal(keep, kept_channels(plan, "excite"))
    assert initializer(pruned, "we").shape == (4, 1, 1, 1)
    assert initializer(pruned, "wr").shape == (1, 4, 1, 1)
    np.testing.assert_array_equal(initializer(pruned, "be"), initializer(model, "be")[keep])


def test_add_of_a_full_size_graph_input_freezes():
    text = f"""
    {header(13)}
    g (float[1,3,8,8] x, float[1,8,8,8] z) => (float[1,4,8,8] y)
    <float[8,3,3,3] w1, float[4,8,1,1] w2>
    {{
      [conv1] a = Conv <pads=[1,1,1,1]> (x, w1)
      [add] b = Add (a, z)
      [conv2] y = Conv (b, w2)
    }}
    """
    model = build(text)
    pruned, report, _ = assert_exact(model)
    group = group_of(report, "conv1")
    assert (group.kept, group.n_frozen) == (8, 8)
    assert group.frozen == ["Add 'add': operand 'z' has 8 channels that cannot be sliced"]
    assert initializer(pruned, "w1").shape == (8, 3, 3, 3)


def test_add_of_a_broadcast_graph_input_passes():
    text = f"""
    {header(13)}
    g (float[1,3,8,8] x, float[1,1,8,8] z) => (float[1,4,8,8] y)
    <float[8,3,3,3] w1, float[4,8,1,1] w2>
    {{
      [conv1] a = Conv <pads=[1,1,1,1]> (x, w1)
      b = Add (a, z)
      [conv2] y = Conv (b, w2)
    }}
    """
    pruned, report, _ = assert_exact(build(text))
    assert group_of(report, "conv1").kept == 4
    assert initializer(pruned, "w1").shape == (4, 3, 3, 3)


def test_where_slices_its_per_channel_branch():
    body = """
      m = Greater (a, zero)
      b = Where (m, a, k)
    """
    model = sandwich(body, weights=", float zero, float[8,1,1] k", zero=np.float32(0.0))
    pruned, report, plan = assert_exact(model)
    keep = kept_channels(plan, "conv1")
    assert len(keep) == 4 and group_of(report, "conv1").n_frozen == 0
    np.testing.assert_array_equal(initializer(pruned, "k"), initializer(model, "k")[keep])


def test_broadcast_ops_are_registered():
    from onnxprune.ops._registry import lookup

    for op in BROADCAST + UNARY:
        assert lookup("", op, 18) is not None, op


def test_ratio_zero_keeps_every_channel():
    model = sandwich("b = PRelu (a, slope)", weights=", float[8,1,1] slope")
    pruned, report, _ = assert_exact(model, PruneConfig(ratio=0.0))
    assert group_of(report, "conv1").kept == 8
    assert initializer(pruned, "slope").shape == (8, 1, 1)


@pytest.mark.parametrize(
    "body, opset",
    [("b = CastLike (a, t)", 15), ("b, mask = Dropout (a)", 13)],
    ids=["CastLike", "Dropout"],
)
def test_ops_reading_their_first_input_only(body, opset):
    model = sandwich(body, opset=opset, weights=", float t", t=np.float32(1))
    pruned, report, _ = assert_exact(model)
    assert group_of(report, "conv1").kept == 4
    assert initializer(pruned, "t").shape == ()
