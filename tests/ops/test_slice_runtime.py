"""Slice bounds computed at run time from the channel count (torch.chunk as exporters
write it): pruned when the bounds are fixed fractions of the count, frozen otherwise."""

from __future__ import annotations

import numpy as np
import pytest

from onnxprune import PruneConfig

from ..helpers import assert_exact
from ._models import group_of, kept_channels, sandwich

CHUNK = """
      shape = Shape (a)
      c = Gather <axis=0> (shape, one)
      c1 = Add (c, one)
      half = Div (c1, two)
      lo_end = Mul (half, one)
      hi_end = Mul (half, two)
      lo = Slice (a, zero, lo_end, one)
      hi = Slice (a, lo_end, hi_end, one)
      [conv_lo] p = Conv (lo, wl)
      [conv_hi] q = Conv (hi, wh)
      b = Concat <axis=1> (p, q)
"""
CHUNK_WEIGHTS = (
    ", int64[1] zero = {0}, int64[1] one = {1}, int64[1] two = {2},"
    " float[4,4,1,1] wl, float[4,4,1,1] wh"
)


def _chunk_model(body: str = CHUNK):
    return sandwich(body, weights=CHUNK_WEIGHTS, opset=13)


def test_chunk_halves_keep_equal_counts_and_stay_exact():
    model = _chunk_model()
    pruned, report, plan = assert_exact(model, PruneConfig(ratio=0.5))
    kept = kept_channels(plan, "conv1")
    assert len(kept) == 4
    assert (kept < 4).sum() == (kept >= 4).sum() == 2  # two from each half
    group = group_of(report, "conv1")
    assert group.kept == 4 and not group.frozen
    weights = {t.name: t.dims for t in pruned.graph.initializer}
    assert weights["wl"][1] == weights["wh"][1] == 2


def test_uneven_scores_still_split_evenly():
    w1 = np.ones((8, 3, 3, 3), np.float32)
    w1[4:] *= 10.0  # the upper half scores far higher
    _, _, plan = assert_exact(_chunk_model_with(w1), PruneConfig(ratio=0.5))
    kept = kept_channels(plan, "conv1")
    assert sorted((kept < 4).tolist()) == [False, False, True, True]


def _chunk_model_with(w1):
    return sandwich(CHUNK, weights=CHUNK_WEIGHTS, opset=13, w1=w1)


@pytest.mark.parametrize(
    "bound, lo",
    [
        ("lo_end = Sub (c, three)", 5),  # C - 3: not a fraction of C
        ("lo_end = Max (half, two)", 4),  # C / 2 at C = 8, but not at C = 2
    ],
)
def test_bounds_that_do_not_scale_freeze_the_channels(bound, lo):
    body = CHUNK.replace("lo_end = Mul (half, one)", bound).replace(
        "hi_end = Mul (half, two)", "hi_end = Mul (c, one)"
    )
    weights = CHUNK_WEIGHTS.replace(
        "float[4,4,1,1] wl, float[4,4,1,1] wh", f"float[4,{lo},1,1] wl, float[4,{8 - lo},1,1] wh"
    )
    model = sandwich(body, weights=weights + ", int64[1] three = {3}", opset=13)
    _, report, _ = assert_exact(model, PruneConfig(ratio=0.5))
    group = group_of(report, "conv1")
    assert group.kept == group.channels == 8
    assert any("computed at run time" in reason for reason in group.frozen)


def test_bound_read_from_other_channels_freezes_both():
    body = CHUNK.replace(
        "shape = Shape (a)", "[conv_other] o = Conv (x, wo)\n      shape = Shape (o)"
    )
    body = body.replace(
        "b = Concat <axis=1> (p, q)", "b0 = Concat <axis=1> (p, q)\n      b = Add (b0, osum)"
    )
    body = body.replace("[conv_lo]", "osum = ReduceSum <axes=[1], keepdims=1> (o)\n      [conv_lo]")
    model = sandwich(body, weights=CHUNK_WEIGHTS + ", float[8,3,1,1] wo", opset=12)
    _, report, _ = assert_exact(model, PruneConfig(ratio=0.5))
    for member in ("conv1", "conv_other"):
        group = group_of(report, member)
        assert group.kept == group.channels, member
        assert any("computed at run time" in reason for reason in group.frozen)
