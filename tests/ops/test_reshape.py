"""Flatten/Reshape turn channels into blocks of features; Transpose, Squeeze and
Unsqueeze move the channel axis; literal channel counts in shapes are rewritten."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from onnxprune import PruneConfig, make_plan, prune
from onnxprune.validate import input_feeds, run

from ..helpers import assert_exact
from ._models import build, group_of, header, initializer, kept_channels, sandwich

FC = "[fc] y = Gemm (b, wf, bf)"
FC_WEIGHTS = ", float[512,10] wf, float[10] bf"


def _feature_rows(keep: np.ndarray, per_channel: int) -> np.ndarray:
    """Feature indices of the kept channels when each becomes `per_channel` features."""
    return (keep[:, None] * per_channel + np.arange(per_channel)).ravel()


def _assert_fc_sliced(model, pruned, plan) -> None:
    rows = _feature_rows(kept_channels(plan, "conv1"), 64)
    np.testing.assert_array_equal(initializer(pruned, "wf"), initializer(model, "wf")[rows])


def test_flatten_into_gemm_takes_whole_blocks():
    model = sandwich("b = Flatten <axis=1> (a)", tail=FC, weights=FC_WEIGHTS, out="float[1,10]")
    pruned, report, plan = assert_exact(model)
    assert group_of(report, "conv1").kept == 4
    assert initializer(pruned, "wf").shape == (256, 10)
    _assert_fc_sliced(model, pruned, plan)


def test_flatten_into_transposed_gemm():
    tail = "[fc] y = Gemm <transB=1> (b, wf)"
    model = sandwich("b = Flatten (a)", tail=tail, weights=", float[10,512] wf", out="float[1,10]")
    pruned, _, plan = assert_exact(model)
    cols = _feature_rows(kept_channels(plan, "conv1"), 64)
    np.testing.assert_array_equal(initializer(pruned, "wf"), initializer(model, "wf")[:, cols])


@pytest.mark.parametrize(
    "shape, rewritten",
    [([1, 512], [1, 256]), ([0, -1], [0, -1]), ([1, -1], [1, -1])],
    ids=["literal", "zero-minus-one", "one-minus-one"],
)
def test_reshape_to_features(shape, rewritten):
    weights = FC_WEIGHTS + ", int64[2] shape"
    model = sandwich(
        "b = Reshape (a, shape)", tail=FC, weights=weights, out="float[1,10]", shape=shape
    )
    pruned, report, plan = assert_exact(model)
    assert group_of(report, "conv1").kept == 4
    assert list(initializer(pruned, "shape")) == rewritten
    _assert_fc_sliced(model, pruned, plan)


def _view_model(batch: str, fc: str = "Gemm"):
    """x.view(x.size(0), -1): Shape -> Gather(0) -> Unsqueeze -> Concat(-1) -> Reshape."""
    text = f"""
    {header(13)}
    g (float[{batch},3,8,8] x) => (float[{batch},10] y)
    <float[8,3,3,3] w1, float[8] b1, float[512,10] wf, int64 zero, int64[1] axes0,
     int64[1] minus_one>
    {{
      [conv1] a = Conv <pads=[1,1,1,1]> (x, w1, b1)
      s = Shape (a)
      n = Gather <axis=0> (s, zero)
      nu = Unsqueeze (n, axes0)
      target = Concat <axis=0> (nu, minus_one)
      b = Reshape (a, target)
      [fc] y = {fc} (b, wf)
    }}
    """
    return build(text, zero=0, axes0=[0], minus_one=[-1])


@pytest.mark.parametrize("fc", ["Gemm", "MatMul"])
@pytest.mark.parametrize("batch", ["1", "N"])
def test_view_batch_minus_one_pattern_prunes(batch, fc):
    """Shape inference cannot tell b's shape here; the handler folds the shape vector.

    Checked against the original with conv1's dropped channels zeroed at the source:
    the masking oracle needs b's inferred rank (see test_view_pattern_oracle).
    """
    model = _view_model(batch, fc)
    config = PruneConfig(ratio=0.5, validate=False)  # validation runs the oracle: see below
    plan = make_plan(model, config)
    pruned, report = prune(model, config)
    onnx.checker.check_model(pruned, full_check=True)
    group = group_of(report, "conv1")
    assert (group.kept, group.n_frozen) == (4, 0)
    keep = kept_channels(plan, "conv1")
    np.testing.assert_array_equal(
        initializer(pruned, "wf"), initializer(model, "wf")[_feature_rows(keep, 64)]
    )
    assert list(initializer(pruned, "minus_one")) == [-1]
    zeroed = onnx.ModelProto()
    zeroed.CopyFrom(model)
    drop = np.setdiff1d(np.arange(8), keep)
    for t in zeroed.graph.initializer:
        if t.name in ("w1", "b1"):
            value = numpy_helper.to_array(t).copy()
            value[drop] = 0
            t.CopyFrom(numpy_helper.from_array(value, t.name))
    feeds = input_feeds(model, {}, seed=1)
    expected = run(zeroed.SerializeToString(), feeds)["y"]
    got = run(pruned.SerializeToString(), feeds)["y"]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_view_pattern_oracle():
    """prune() with validation and assert_exact both build the masking oracle."""
    assert_exact(_view_model("1"))


def test_view_reading_the_channel_count_follows_it():
    """x.view(x.size(0), x.size(1), -1) reads C at run time, so the target follows the
    pruned count by itself; the later literal 512 (C*64) is rewritten."""
    body = """
      s = Shape (a)
      nc = Gather <axis=0> (s, first_two)
      target = Concat <axis=0> (nc, minus_one)
      r = Reshape (a, target)
      b = Reshape (r, flat)
    """
    weights = FC_WEIGHTS + ", int64[2] first_two, int64[1] minus_one, int64[2] flat"
    model = sandwich(
        body, tail=FC, weights=weights, out="float[1,10]",
        first_two=[0, 1], minus_one=[-1], flat=[1, 512],
    )  # fmt: skip
    pruned, report, _ = assert_exact(model)
    group = group_of(report, "conv1")
    assert (group.kept, group.n_frozen) == (4, 0)
    assert list(initializer(pruned, "flat")) == [1, 256]
    assert initializer(pruned, "wf").shape == (256, 10)


def test_unflatten_rewrites_the_literal_channel_count():
    body = """
      f = Flatten (a)
      [unflatten] b = Reshape (f, shape)
    """
    model = sandwich(body, weights=", int64[4] shape", shape=[1, 8, 8, 8])
    pruned, report, plan = assert_exact(model)
    assert group_of(report, "conv1").kept == 4
    assert list(initializer(pruned, "shape")) == [1, 4, 8, 8]
    keep = kept_channels(plan, "conv1")
    np.testing.assert_array_equal(initializer(pruned, "w2"), initializer(model, "w2")[:, keep])


def test_tf2onnx_style_transposes_around_nhwc_ops():
    body = """
      t = Transpose <perm=[0,2,3,1]> (a)
      r = Relu (t)
      u = Add (r, k)
      b = Transpose <perm=[0,3,1,2]> (u)
    """
    model = sandwich(body, hw=6, weights=", float[8] k")
    pruned, report, plan = assert_exact(model)
    assert group_of(report, "conv1").kept == 4
    keep = kept_channels(plan, "conv1")
    np.testing.assert_array_equal(initializer(pruned, "k"), initializer(model, "k")[keep])


def test_nhwc_conv_input_via_transpose_back():
    """NHWC activations feed a Conv through Transpose(0,3,1,2), as tf2onnx writes it."""
    text = f"""
    {header(13)}
    g (float[1,6,6,3] x) => (float[1,6,6,4] y)
    <float[8,3,3,3] w1, float[4,8,1,1] w2>
    {{
      xt = Transpose <perm=[0,3,1,2]> (x)
      [conv1] c1 = Conv <pads=[1,1,1,1]> (xt, w1)
      h = Transpose <perm=[0,2,3,1]> (c1)
      r = Relu (h)
      rt = Transpose <perm=[0,3,1,2]> (r)
      [conv2] c2 = Conv (rt, w2)
      y = Transpose <perm=[0,2,3,1]> (c2)
    }}
    """
    model = build(text)
    pruned, report, plan = assert_exact(model)
    assert group_of(report, "conv1").kept == 4
    keep = kept_channels(plan, "conv1")
    np.testing.assert_array_equal(initializer(pruned, "w2"), initializer(model, "w2")[:, keep])


@pytest.mark.parametrize("opset", [11, 13])
def test_squeeze_unsqueeze_around_gemm(opset):
    if opset < 13:
        squeeze, unsqueeze, extra = "Squeeze <axes=[2,3]> (g)", "Unsqueeze <axes=[2,3]> (h)", {}
        weights = ", float[8,6] wg, float[6] bg"
    else:
        squeeze, unsqueeze = "Squeeze (g, hw_axes)", "Unsqueeze (h, hw_axes)"
        weights, extra = ", float[8,6] wg, float[6] bg, int64[2] hw_axes", {"hw_axes": [2, 3]}
    body = f"""
      g = GlobalAveragePool (a)
      s = {squeeze}
      [fc] h = Gemm (s, wg, bg)
      b = {unsqueeze}
    """
    model = sandwich(body, opset=opset, width=6, weights=weights, out="float[1,4,1,1]", **extra)
    pruned, report, plan = assert_exact(model)
    assert group_of(report, "conv1").kept == 4
    assert group_of(report, "fc").kept == 3
    rows, cols = kept_channels(plan, "conv1"), kept_channels(plan, "fc")
    np.testing.assert_array_equal(
        initializer(pruned, "wg"), initializer(model, "wg")[rows][:, cols]
    )
    np.testing.assert_array_equal(initializer(pruned, "w2"), initializer(model, "w2")[:, cols])


def _split_model():
    body = """
      [split_c] r = Reshape (a, grouped)
      b = Reshape (r, back)
    """
    weights = ", int64[4] grouped, int64[4] back"
    return sandwich(body, weights=weights, grouped=[1, 2, 4, 64], back=[1, 8, 8, 8])


def test_reshape_splitting_channels_prunes_whole_units():
    """[1,8,8,8] -> [1,2,4,64]: with head pruning on, each of the 2 blocks of 4 channels
    is one unit (as an attention head is), and the literal 2 and 8 are rewritten."""
    pruned, report, plan = assert_exact(_split_model(), PruneConfig(ratio=0.5))
    kept = kept_channels(plan, "conv1")
    assert kept.tolist() in ([0, 1, 2, 3], [4, 5, 6, 7])
    assert list(initializer(pruned, "grouped")) == [1, 1, 4, 64]
    assert list(initializer(pruned, "back")) == [1, 4, 8, 8]


def test_reshape_splitting_channels_freezes_without_head_pruning():
    """[1,8,8,8] -> [1,2,4,64] splits the channel axis: no one output axis carries it."""
    pruned, report, _ = assert_exact(_split_model(), PruneConfig(ratio=0.5, prune_heads=False))
    group = group_of(report, "conv1")
    assert (group.kept, group.n_frozen) == (8, 8)
    assert group.frozen == [
        "Reshape 'split_c': Reshape [1, 8, 8, 8] -> [1, 2, 4, 64] splits these channels"
    ]
    assert list(initializer(pruned, "grouped")) == [1, 2, 4, 64]


def test_reshape_of_gemm_features_into_channels_freezes_without_head_pruning():
    """Gemm features [1, 8*4*4] -> [1, 8, 4, 4]: each feature is its own channel slot."""
    text = f"""
    {header(13)}
    g (float[1,16] x) => (float[1,4,4,4] y)
    <float[16,128] wg, float[4,8,1,1] w2, int64[4] shape>
    {{
      [fc] h = Gemm (x, wg)
      [reshape] r = Reshape (h, shape)
      [conv2] y = Conv (r, w2)
    }}
    """
    model = build(text, shape=[1, 8, 4, 4])
    pruned, report, _ = assert_exact(model, PruneConfig(ratio=0.5, prune_heads=False))
    group = group_of(report, "fc")
    assert (group.kept, group.n_frozen) == (128, 128)
    assert "splits these channels" in group.frozen[0]
    assert initializer(pruned, "wg").shape == (16, 128)
