"""Conv and ConvTranspose: plain, depthwise and grouped, checked against the masking oracle.

Initializers are written `float[...] w = {0.0}`: `parse` fills them with seeded data.
"""

from __future__ import annotations

import numpy as np
import pytest

from onnxprune import PruneConfig

from ..helpers import assert_exact, initializer_shape, parse
from ..model_util import attr, header, rows_of, top_l2, weight


def rows_of_w1(model, pruned) -> list[int]:
    """Which output channels of the first conv (weight `w1`) remain."""
    return rows_of(weight(model, "w1"), weight(pruned, "w1"))


# -- Conv, group = 1 ------------------------------------------------------------------


@pytest.mark.parametrize("opset", [11, 17, 21])
def test_conv_with_bias_keeps_largest_filters(opset):
    model = parse(
        header(opset)
        + """
        g (float[1,3,8,8] x) => (float[1,4,8,8] y)
        <float[8,3,3,3] w1 = {0.0}, float[8] b1 = {0.0},
         float[4,8,1,1] w2 = {0.0}, float[4] b2 = {0.0}>
        {
          h = Conv <pads=[1,1,1,1]> (x, w1, b1)
          r = Relu (h)
          y = Conv (r, w2, b2)
        }
        """
    )
    pruned, report, _ = assert_exact(model, PruneConfig(ratio=0.5))
    w1 = weight(model, "w1")
    kept = rows_of(w1, weight(pruned, "w1"))
    assert kept == top_l2(w1, 4)
    assert weight(pruned, "b1").tolist() == weight(model, "b1")[kept].tolist()
    assert np.array_equal(weight(pruned, "w2"), weight(model, "w2")[:, kept])
    assert initializer_shape(pruned, "b2") == [4]
    assert [(g.channels, g.kept) for g in report.groups] == [(8, 4), (4, 4)]


def test_conv_without_bias():
    model = parse(
        header(11)
        + """
        g (float[1,3,8,8] x) => (float[1,4,6,6] y)
        <float[10,3,3,3] w1 = {0.0}, float[4,10,1,1] w2 = {0.0}>
        {
          h = Conv (x, w1)
          r = Relu (h)
          y = Conv (r, w2)
        }
        """
    )
    pruned, _, _ = assert_exact(model, PruneConfig(ratio=0.3))
    assert initializer_shape(pruned, "w1") == [7, 3, 3, 3]
    assert initializer_shape(pruned, "w2") == [4, 7, 1, 1]
    assert rows_of(weight(model, "w1"), weight(pruned, "w1")) == top_l2(weight(model, "w1"), 7)


def test_conv_chain_prunes_every_hidden_layer():
    model = parse(
        header(21)
        + """
        g (float[1,3,8,8] x) => (float[1,2,8,8] y)
        <float[8,3,3,3] w1 = {0.0}, float[8] b1 = {0.0},
         float[12,8,3,3] w2 = {0.0}, float[12] b2 = {0.0},
         float[2,12,1,1] w3 = {0.0}>
        {
          h1 = Conv <pads=[1,1,1,1]> (x, w1, b1)
          h2 = Conv <pads=[1,1,1,1]> (h1, w2, b2)
          r2 = Relu (h2)
          y = Conv (r2, w3)
        }
        """
    )
    pruned, report, _ = assert_exact(model, PruneConfig(ratio=0.5))
    assert initializer_shape(pruned, "w1") == [4, 3, 3, 3]
    assert initializer_shape(pruned, "w2") == [6, 4, 3, 3]
    assert initializer_shape(pruned, "w3") == [2, 6, 1, 1]
    kept1 = rows_of_w1(model, pruned)
    kept2 = rows_of(weight(model, "w2")[:, kept1], weight(pruned, "w2"))
    assert kept2 == top_l2(weight(model, "w2"), 6)
    assert [g.kept for g in report.groups] == [4, 6, 2]


# -- depthwise Conv ---------------------------------------------------------------------


@pytest.mark.parametrize("multiplier", [1, 2])
def test_depthwise_conv_follows_its_input_and_shrinks_group(multiplier):
    m = 8 * multiplier
    model = parse(
        header(17)
        + f"""
        g (float[1,3,8,8] x) => (float[1,4,8,8] y)
        <float[8,3,1,1] w1 = {{0.0}}, float[8] b1 = {{0.0}},
         float[{m},1,3,3] wd = {{0.0}}, float[{m}] bd = {{0.0}},
         float[4,{m},1,1] w3 = {{0.0}}>
        {{
          h1 = Conv (x, w1, b1)
          r1 = Relu (h1)
          h2 = Conv <group=8, pads=[1,1,1,1]> (r1, wd, bd)
          r2 = Relu (h2)
          y = Conv (r2, w3)
        }}
        """
    )
    pruned, report, _ = assert_exact(model, PruneConfig(ratio=0.5))
    assert attr(pruned, "Conv", "group") == [4]
    assert initializer_shape(pruned, "wd") == [4 * multiplier, 1, 3, 3]
    assert initializer_shape(pruned, "bd") == [4 * multiplier]
    assert initializer_shape(pruned, "w3") == [4, 4 * multiplier, 1, 1]
    kept = rows_of_w1(model, pruned)
    expected_dw = [k * multiplier + j for k in kept for j in range(multiplier)]
    assert rows_of(weight(model, "wd"), weight(pruned, "wd")) == expected_dw
    # the depthwise conv creates no channels of its own: one group for conv1 + dw
    assert [(g.channels, g.kept) for g in report.groups] == [(8, 4), (4, 4)]


# -- grouped Conv -----------------------------------------------------------------------


@pytest.mark.parametrize("c_in", [16, 8])
def test_grouped_conv_keeps_equal_counts_per_group(c_in):
    per_group = c_in // 4
    model = parse(
        header(17)
        + f"""
        g (float[1,3,8,8] x) => (float[1,4,8,8] y)
        <float[{c_in},3,1,1] w1 = {{0.0}}, float[{c_in}] b1 = {{0.0}},
         float[16,{per_group},3,3] wg = {{0.0}}, float[16] bg = {{0.0}},
         float[4,16,1,1] w3 = {{0.0}}>
        {{
          h1 = Conv (x, w1, b1)
          r1 = Relu (h1)
          h2 = Conv <group=4, pads=[1,1,1,1]> (r1, wg, bg)
          r2 = Relu (h2)
          y = Conv (r2, w3)
        }}
        """
    )
    pruned, _, plan = assert_exact(model, PruneConfig(ratio=0.5))
    assert attr(pruned, "Conv", "group") == [4]
    assert initializer_shape(pruned, "w1") == [c_in // 2, 3, 1, 1]
    assert initializer_shape(pruned, "wg") == [8, per_group // 2, 3, 3]
    assert initializer_shape(pruned, "w3") == [4, 8, 1, 1]
    kept_in = rows_of_w1(model, pruned)
    kept_out = rows_of(weight(model, "bg")[:, None], weight(pruned, "bg")[:, None])
    for kept, size in ((kept_in, c_in), (kept_out, 16)):
        counts = np.bincount(np.array(kept) // (size // 4), minlength=4)
        assert counts.tolist() == [len(kept) // 4] * 4
    # output block b of the pruned weight reads exactly the kept inputs of group b
    wg, new = weight(model, "wg"), weight(pruned, "wg")
    for row, o in enumerate(kept_out):
        cols = [k - (o // 4) * per_group for k in kept_in if k // per_group == o // 4]
        assert np.array_equal(new[row], wg[o][cols])
    blocked = [g for g in plan.groups if g.blocks]
    assert len(blocked) == 2 and all(len(g.blocks) == 4 for g in blocked)


def test_grouped_conv_reading_a_concat_plans_both_producers_together():
    """The groups of the grouped Conv straddle two producers: one ratio, equal counts."""
    model = parse(
        header(17)
        + """
        g (float[1,3,8,8] x) => (float[1,4,8,8] y)
        <float[8,3,1,1] wa = {0.0}, float[4,3,1,1] wb = {0.0},
         float[12,3,3,3] wg = {0.0}, float[4,12,1,1] w3 = {0.0}>
        {
          a = Conv (x, wa)
          b = Conv (x, wb)
          c = Concat <axis=1> (a, b)
          h = Conv <group=4, pads=[1,1,1,1]> (c, wg)
          y = Conv (h, w3)
        }
        """
    )
    pruned, report, _ = assert_exact(model, PruneConfig(ratio=0.5))
    kept_a = rows_of(weight(model, "wa"), weight(pruned, "wa"))
    kept_b = rows_of(weight(model, "wb"), weight(pruned, "wb"))
    kept = kept_a + [8 + k for k in kept_b]
    counts = np.bincount(np.array(kept) // 3, minlength=4).tolist()
    assert counts == [counts[0]] * 4 and counts[0] < 3
    assert initializer_shape(pruned, "wg")[1] == counts[0]
    (joint,) = [g for g in report.groups if len(g.members) == 2]
    assert joint.channels == 12 and joint.kept == len(kept)


# -- ConvTranspose ----------------------------------------------------------------------


def test_conv_transpose_group1():
    model = parse(
        header(17)
        + """
        g (float[1,3,4,4] x) => (float[1,4,8,8] y)
        <float[8,3,3,3] w1 = {0.0}, float[8] b1 = {0.0},
         float[8,6,2,2] wt = {0.0}, float[6] bt = {0.0},
         float[4,6,1,1] w3 = {0.0}>
        {
          h1 = Conv <pads=[1,1,1,1]> (x, w1, b1)
          r1 = Relu (h1)
          h2 = ConvTranspose <strides=[2,2]> (r1, wt, bt)
          r2 = Relu (h2)
          y = Conv (r2, w3)
        }
        """
    )
    pruned, report, _ = assert_exact(model, PruneConfig(ratio=0.5))
    assert initializer_shape(pruned, "wt") == [4, 3, 2, 2]
    assert initializer_shape(pruned, "bt") == [3]
    assert initializer_shape(pruned, "w3") == [4, 3, 1, 1]
    # the transpose weight's output channels are axis 1: scored there
    wt = weight(model, "wt")
    kept = rows_of(wt[rows_of_w1(model, pruned)], weight(pruned, "wt"), axis=1)
    assert kept == top_l2(wt, 3, axis=1)
    assert [(g.channels, g.kept) for g in report.groups] == [(8, 4), (6, 3), (4, 4)]


@pytest.mark.parametrize("multiplier", [1, 2])
def test_conv_transpose_depthwise(multiplier):
    m = 8 * multiplier
    model = parse(
        header(17)
        + f"""
        g (float[1,3,4,4] x) => (float[1,4,8,8] y)
        <float[8,3,1,1] w1 = {{0.0}}, float[8] b1 = {{0.0}},
         float[8,{multiplier},2,2] wt = {{0.0}}, float[{m}] bt = {{0.0}},
         float[4,{m},1,1] w3 = {{0.0}}>
        {{
          h1 = Conv (x, w1, b1)
          r1 = Relu (h1)
          h2 = ConvTranspose <group=8, strides=[2,2]> (r1, wt, bt)
          y = Conv (h2, w3)
        }}
        """
    )
    pruned, report, _ = assert_exact(model, PruneConfig(ratio=0.5))
    assert attr(pruned, "ConvTranspose", "group") == [4]
    assert initializer_shape(pruned, "wt") == [4, multiplier, 2, 2]
    assert initializer_shape(pruned, "bt") == [4 * multiplier]
    assert initializer_shape(pruned, "w3") == [4, 4 * multiplier, 1, 1]
    kept = rows_of_w1(model, pruned)
    assert rows_of(weight(model, "wt"), weight(pruned, "wt")) == kept
    assert [(g.channels, g.kept) for g in report.groups] == [(8, 4), (4, 4)]


def test_conv_transpose_grouped():
    model = parse(
        header(17)
        + """
        g (float[1,3,4,4] x) => (float[1,4,8,8] y)
        <float[16,3,1,1] w1 = {0.0}, float[16] b1 = {0.0},
         float[16,2,2,2] wt = {0.0}, float[8] bt = {0.0},
         float[4,8,1,1] w3 = {0.0}>
        {
          h1 = Conv (x, w1, b1)
          r1 = Relu (h1)
          h2 = ConvTranspose <group=4, strides=[2,2]> (r1, wt, bt)
          r2 = Relu (h2)
          y = Conv (r2, w3)
        }
        """
    )
    pruned, report, _ = assert_exact(model, PruneConfig(ratio=0.5))
    assert attr(pruned, "ConvTranspose", "group") == [4]
    assert initializer_shape(pruned, "w1") == [8, 3, 1, 1]
    assert initializer_shape(pruned, "wt") == [8, 1, 2, 2]
    assert initializer_shape(pruned, "bt") == [4]
    kept_in = rows_of_w1(model, pruned)
    assert np.bincount(np.array(kept_in) // 4, minlength=4).tolist() == [2, 2, 2, 2]
    kept_out = rows_of(weight(model, "bt")[:, None], weight(pruned, "bt")[:, None])
    assert np.bincount(np.array(kept_out) // 2, minlength=4).tolist() == [1, 1, 1, 1]
    assert [(g.channels, g.kept) for g in report.groups] == [(16, 8), (8, 4), (4, 4)]


# -- a weight computed at run time ------------------------------------------------------


def test_conv_with_computed_weight_is_a_barrier():
    model = parse(
        header(17)
        + """
        g (float[1,3,8,8] x) => (float[1,4,8,8] y)
        <float[8,3,3,3] w1 = {0.0}, float[8] b1 = {0.0},
         float[4,8,1,1] w2 = {0.0}, float[1] scale = {0.0}>
        {
          h1 = Conv <pads=[1,1,1,1]> (x, w1, b1)
          r1 = Relu (h1)
          w2s = Mul (w2, scale)
          [head_conv] y = Conv <group=1> (r1, w2s)
        }
        """
    )
    pruned, report, _ = assert_exact(model, PruneConfig(ratio=0.5))
    assert initializer_shape(pruned, "w1") == [8, 3, 3, 3]
    assert initializer_shape(pruned, "w2") == [4, 8, 1, 1]
    (group,) = report.groups
    assert group.kept == group.channels == 8 and group.n_frozen == 8
    assert group.frozen == ["Conv 'head_conv': weight is computed at run time"]
