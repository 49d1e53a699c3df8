"""Pooling passes channels; reductions and softmax freeze the channels they mix, except
ReduceSum-like ops, which read them (a zeroed channel adds nothing)."""

from __future__ import annotations

import numpy as np
import pytest

from ..helpers import assert_exact
from ._models import group_of, initializer, kept_channels, sandwich


@pytest.mark.parametrize(
    "body, hw_out",
    [
        ("b = MaxPool <kernel_shape=[2,2], strides=[2,2]> (a)", 4),
        ("b = AveragePool <kernel_shape=[3,3], pads=[1,1,1,1]> (a)", 8),
        ("b = LpPool <kernel_shape=[2,2], strides=[2,2], p=2> (a)", 4),
        ("b = GlobalAveragePool (a)", 1),
        ("b = GlobalMaxPool (a)", 1),
        ("b = GlobalLpPool <p=2> (a)", 1),
    ],
    ids=lambda v: v.split()[2] if isinstance(v, str) else str(v),
)
def test_pooling_passes_channels(body, hw_out):
    model = sandwich(body, out=f"float[1,4,{hw_out},{hw_out}]")
    pruned, report, plan = assert_exact(model)
    group = group_of(report, "conv1")
    assert (group.channels, group.kept, group.n_frozen) == (8, 4, 0)
    keep = kept_channels(plan, "conv1")
    np.testing.assert_array_equal(initializer(pruned, "w2"), initializer(model, "w2")[:, keep])


def test_maxpool_indices_used_freeze():
    body = "b, idx = MaxPool <kernel_shape=[2,2], strides=[2,2]> (a)"
    model = sandwich(body, out="float[1,4,4,4]", more_outputs=", int64[1,8,4,4] idx")
    pruned, report, _ = assert_exact(model)
    group = group_of(report, "conv1")
    assert (group.kept, group.n_frozen) == (8, 8)
    assert any("MaxPool indices are used" in r for r in group.frozen)
    assert initializer(pruned, "w1").shape == (8, 3, 3, 3)


def test_maxpool_indices_unused_pass():
    body = "b, idx = MaxPool <kernel_shape=[2,2], strides=[2,2]> (a)"
    _, report, _ = assert_exact(sandwich(body, out="float[1,4,4,4]"))
    assert group_of(report, "conv1").kept == 4


def _reduce_model(op: str, opset: int, keepdims: int):
    if opset >= 18:
        body = f"b = {op} <keepdims={keepdims}> (a, axes)"
        weights = ", int64[2] axes"
    else:
        body = f"b = {op} <axes=[2,3], keepdims={keepdims}> (a)"
        weights = ""
    if keepdims:
        return sandwich(body, opset=opset, weights=weights, out="float[1,4,1,1]", axes=[2, 3])
    # [1,8] features into a Gemm
    tail = "[fc] y = Gemm (b, wf)"
    weights += ", float[8,5] wf"
    return sandwich(body, opset=opset, weights=weights, tail=tail, out="float[1,5]", axes=[2, 3])


@pytest.mark.parametrize("keepdims", [0, 1])
@pytest.mark.parametrize("opset", [13, 18])
@pytest.mark.parametrize("op", ["ReduceMean", "ReduceMax"])
def test_reduce_over_spatial_axes_passes(op, opset, keepdims):
    model = _reduce_model(op, opset, keepdims)
    pruned, report, plan = assert_exact(model)
    group = group_of(report, "conv1")
    assert (group.kept, group.n_frozen) == (4, 0)
    keep = kept_channels(plan, "conv1")
    reader = "w2" if keepdims else "wf"
    expected = initializer(model, reader)[:, keep] if keepdims else initializer(model, "wf")[keep]
    np.testing.assert_array_equal(initializer(pruned, reader), expected)


@pytest.mark.parametrize("opset", [11, 13])
def test_reduce_sum_over_channels_reads_them(opset):
    if opset >= 13:
        body, weights = "b = ReduceSum <keepdims=1> (a, axes)", ", int64[1] axes"
    else:
        body, weights = "b = ReduceSum <axes=[1], keepdims=1> (a)", ""
    model = sandwich(body, opset=opset, weights=weights, width=1, axes=[1])
    pruned, report, _ = assert_exact(model)
    group = group_of(report, "conv1")
    assert (group.kept, group.n_frozen) == (4, 0)
    assert initializer(pruned, "w1").shape == (4, 3, 3, 3)
    assert initializer(pruned, "w2").shape == (4, 1, 1, 1)


def test_reduce_sum_square_over_channels_reads_them():
    model = sandwich("b = ReduceSumSquare <axes=[1], keepdims=1> (a)", width=1)
    _, report, _ = assert_exact(model)
    assert group_of(report, "conv1").kept == 4


@pytest.mark.parametrize("op", ["ReduceMean", "ReduceMax", "ReduceProd"])
def test_reduce_mixing_channels_freezes(op):
    model = sandwich(f"b = {op} <axes=[1], keepdims=1> (a)", width=1)
    pruned, report, _ = assert_exact(model)
    group = group_of(report, "conv1")
    assert (group.kept, group.n_frozen) == (8, 8)
    assert group.frozen == [f"{op} '{op}#1': {op} reduces over these channels"]
    assert initializer(pruned, "w1").shape == (8, 3, 3, 3)


def test_reduce_over_every_axis_by_default_freezes():
    model = sandwich("r = ReduceMean <keepdims=0> (a)\n b = Add (a, r)")
    _, report, _ = assert_exact(model)
    assert group_of(report, "conv1").n_frozen == 8


@pytest.mark.parametrize(
    "opset, axis, mixes_channels",
    [
        (13, 1, True),
        (13, -1, False),
        (13, 0, False),  # opset 13 normalises over `axis` alone
        (11, 1, True),
        (11, 0, True),  # opset 11 flattens to 2-D: axes 0..3 are one row
        (11, 2, False),
        (11, -1, False),
    ],
)
@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
def test_softmax_freezes_only_the_axes_it_normalises(op, opset, axis, mixes_channels):
    model = sandwich(f"[sm] b = {op} <axis={axis}> (a)", opset=opset)
    pruned, report, _ = assert_exact(model)
    group = group_of(report, "conv1")
    if mixes_channels:
        assert (group.kept, group.n_frozen) == (8, 8)
        assert group.frozen == [f"{op} 'sm': {op} normalises over them"]
        assert initializer(pruned, "w1").shape == (8, 3, 3, 3)
    else:
        assert (group.kept, group.n_frozen) == (4, 0)
        assert initializer(pruned, "w1").shape == (4, 3, 3, 3)


def test_softmax_default_axis_differs_between_opsets():
    """No `axis`: opset 11 means 1 (channels mixed), opset 13 means -1 (W only)."""
    _, old, _ = assert_exact(sandwich("b = Softmax (a)", opset=11))
    _, new, _ = assert_exact(sandwich("b = Softmax (a)", opset=13))
    assert group_of(old, "conv1").kept == 8
    assert group_of(new, "conv1").kept == 4


def test_argmax_over_channels_freezes_and_over_width_passes():
    body = """
      i = ArgMax <axis=1, keepdims=1> (a)
      f = Cast <to=1> (i)
      b = Add (a, f)
    """
    _, report, _ = assert_exact(sandwich(body))
    group = group_of(report, "conv1")
    assert group.n_frozen == 8 and "ArgMax selects among them" in group.frozen[0]
    body = """
      i = ArgMax <axis=3, keepdims=1> (a)
      f = Cast <to=1> (i)
      b = Add (a, f)
    """
    _, report, _ = assert_exact(sandwich(body))
    assert group_of(report, "conv1").kept == 4
