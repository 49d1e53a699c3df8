"""Concat lays channel ranges one after another; Split and Slice cut ranges out of them,
and their sizes and bounds are rewritten from the kept counts."""

from __future__ import annotations

import numpy as np
import pytest

from ..helpers import assert_exact
from ._models import build, group_of, header, initializer, kept_channels, node, sandwich

INT64_MAX = 2**63 - 1


def test_densenet_concat_prunes_each_part_on_its_own():
    body = """
      [conv3] c = Conv <pads=[1,1,1,1]> (a, w3)
      b = Concat <axis=1> (a, c)
    """
    model = sandwich(body, width=14, weights=", float[6,8,3,3] w3")
    pruned, report, plan = assert_exact(model)
    assert group_of(report, "conv1") is not group_of(report, "conv3")
    assert group_of(report, "conv1").kept == 4
    assert group_of(report, "conv3").kept == 3
    keep = np.concatenate([kept_channels(plan, "conv1"), 8 + kept_channels(plan, "conv3")])
    np.testing.assert_array_equal(initializer(pruned, "w2"), initializer(model, "w2")[:, keep])
    w3 = initializer(model, "w3")[kept_channels(plan, "conv3")][:, kept_channels(plan, "conv1")]
    np.testing.assert_array_equal(initializer(pruned, "w3"), w3)


def test_concat_with_a_graph_input_freezes_that_part_only():
    text = f"""
    {header(13)}
    g (float[1,3,8,8] x, float[1,5,8,8] z) => (float[1,4,8,8] y)
    <float[8,3,3,3] w1, float[4,13,1,1] w2>
    {{
      [conv1] a = Conv <pads=[1,1,1,1]> (x, w1)
      [cat] b = Concat <axis=1> (z, a)
      [conv2] y = Conv (b, w2)
    }}
    """
    model = build(text)
    pruned, report, plan = assert_exact(model)
    assert group_of(report, "conv1").kept == 4
    placeholder = group_of(report, "cat")
    assert (placeholder.channels, placeholder.kept, placeholder.n_frozen) == (5, 5, 5)
    assert placeholder.frozen == ["Concat 'cat': input 'z' is not prunable"]
    keep = np.concatenate([np.arange(5), 5 + kept_channels(plan, "conv1")])
    np.testing.assert_array_equal(initializer(pruned, "w2"), initializer(model, "w2")[:, keep])


def _split_model(opset: int, split: str, weights: str = "", **values):
    body = f"""
      [split] p, q = Split {split}
      [convp] yp = Conv (p, wp)
      [convq] yq = Conv (q, wq)
      y = Add (yp, yq)
    """
    return sandwich(body, opset=opset, tail="", weights=weights, **values)


@pytest.mark.parametrize("opset", [11, 13])
def test_split_sizes_are_rewritten_to_the_kept_counts(opset):
    if opset < 13:
        model = _split_model(
            opset, "<axis=1, split=[3,5]> (a)", ", float[4,3,1,1] wp, float[4,5,1,1] wq"
        )
    else:
        weights = ", int64[2] sizes, float[4,3,1,1] wp, float[4,5,1,1] wq"
        model = _split_model(opset, "<axis=1> (a, sizes)", weights, sizes=[3, 5])
    pruned, report, plan = assert_exact(model)
    keep = kept_channels(plan, "conv1")
    assert group_of(report, "conv1").kept == 4
    first, second = keep[keep < 3], keep[keep >= 3] - 3
    assert len(first) >= 1 and len(second) >= 1  # every Split output keeps a channel
    split = node(pruned, "split")
    if opset < 13:
        sizes = {a.name: list(a.ints) for a in split.attribute}["split"]
        assert sizes == [len(first), len(second)]
    else:
        assert list(initializer(pruned, split.input[1])) == [len(first), len(second)]
    np.testing.assert_array_equal(initializer(pruned, "wp"), initializer(model, "wp")[:, first])
    np.testing.assert_array_equal(initializer(pruned, "wq"), initializer(model, "wq")[:, second])


@pytest.mark.parametrize("opset", [13, 18])
def test_equal_split_keeps_equal_counts(opset):
    attrs = "<axis=1, num_outputs=2>" if opset >= 18 else "<axis=1>"
    model = _split_model(opset, f"{attrs} (a)", ", float[4,4,1,1] wp, float[4,4,1,1] wq")
    pruned, report, plan = assert_exact(model)
    keep = kept_channels(plan, "conv1")
    assert group_of(report, "conv1").kept == 4
    assert (keep < 4).sum() == (keep >= 4).sum() == 2
    assert initializer(pruned, "wp").shape == initializer(pruned, "wq").shape == (4, 2, 1, 1)


def test_split_on_a_spatial_axis_passes_channels():
    body = """
      p, q = Split <axis=2> (a)
      b = Add (p, q)
    """
    model = sandwich(body, out="float[1,4,4,8]")
    _, report, _ = assert_exact(model)
    assert group_of(report, "conv1").kept == 4


def _slice_model(starts: int, ends: int, width: int, step: int | None = None):
    if step is None:
        body, extra, steps = "[slice] b = Slice (a, starts, ends, axes)", "", {}
    else:
        body, extra = "[slice] b = Slice (a, starts, ends, axes, steps)", ", int64[1] steps"
        steps = {"steps": [step]}
    weights = f", int64[1] starts, int64[1] ends, int64[1] axes{extra}"
    return sandwich(
        body, width=width, weights=weights, starts=[starts], ends=[ends], axes=[1], **steps
    )


@pytest.mark.parametrize(
    "starts, ends, picked",
    [
        (2, 7, range(2, 7)),
        (-6, -1, range(2, 7)),
        (3, INT64_MAX, range(3, 8)),
        (0, -3, range(0, 5)),
    ],
)
def test_slice_on_channels_rewrites_the_bounds(starts, ends, picked):
    model = _slice_model(starts, ends, len(picked))
    pruned, report, plan = assert_exact(model)
    keep = kept_channels(plan, "conv1")
    assert group_of(report, "conv1").n_frozen == 0
    inside = [k for k in keep if k in picked]
    before = sum(k < picked.start for k in keep)
    assert len(inside) >= 1  # the Slice output is never empty
    assert list(initializer(pruned, "starts")) == [before]
    assert list(initializer(pruned, "ends")) == [before + len(inside)]
    cols = [k - picked.start for k in inside]
    np.testing.assert_array_equal(initializer(pruned, "w2"), initializer(model, "w2")[:, cols])


def test_slice_at_opset_9_rewrites_attributes():
    body = "[slice] b = Slice <starts=[1], ends=[6], axes=[1]> (a)"
    model = sandwich(body, opset=9, width=5)
    pruned, _, plan = assert_exact(model)
    keep = kept_channels(plan, "conv1")
    attrs = {a.name: list(a.ints) for a in node(pruned, "slice").attribute}
    before, inside = int((keep < 1).sum()), int(((keep >= 1) & (keep < 6)).sum())
    assert attrs["starts"] == [before] and attrs["ends"] == [before + inside]


def test_slice_with_step_two_freezes():
    model = _slice_model(0, 8, 4, step=2)
    pruned, report, _ = assert_exact(model)
    group = group_of(report, "conv1")
    assert (group.kept, group.n_frozen) == (8, 8)
    assert group.frozen == ["Slice 'slice': Slice with a step other than 1"]
    assert list(initializer(pruned, "ends")) == [8]


def test_slice_on_a_spatial_axis_passes_channels():
    body = "b = Slice (a, starts, ends, axes)"
    weights = ", int64[1] starts, int64[1] ends, int64[1] axes"
    model = sandwich(body, weights=weights, out="float[1,4,8,4]", starts=[2], ends=[6], axes=[3])
    pruned, report, _ = assert_exact(model)
    assert group_of(report, "conv1").kept == 4
    assert list(initializer(pruned, "ends")) == [6]


def test_concat_on_a_spatial_axis_joins_both_operands():
    body = """
      [conv3] c = Conv <pads=[1,1,1,1]> (a, w3)
      b = Concat <axis=2> (c, a)
    """
    model = sandwich(body, weights=", float[8,8,3,3] w3", out="float[1,4,16,8]")
    _, report, plan = assert_exact(model)
    assert group_of(report, "conv1") is group_of(report, "conv3")
    np.testing.assert_array_equal(kept_channels(plan, "conv1"), kept_channels(plan, "conv3"))


def test_concat_with_a_negative_axis():
    body = """
      [conv3] c = Conv <pads=[1,1,1,1]> (a, w3)
      b = Concat <axis=-3> (c, a)
    """
    model = sandwich(body, width=14, weights=", float[6,8,3,3] w3")
    pruned, report, plan = assert_exact(model)
    keep = np.concatenate([kept_channels(plan, "conv3"), 6 + kept_channels(plan, "conv1")])
    np.testing.assert_array_equal(initializer(pruned, "w2"), initializer(model, "w2")[:, keep])


def test_uneven_split_into_equal_parts_freezes():
    """opset 18 num_outputs=3 on 8 channels gives 3, 3, 2: left alone."""
    body = """
      [split] p, q, r = Split <axis=1, num_outputs=3> (a)
      b = Concat <axis=1> (r, p)
    """
    model = sandwich(body, opset=18, width=5)
    _, report, _ = assert_exact(model)
    group = group_of(report, "conv1")
    assert (group.kept, group.n_frozen) == (8, 8)
    assert group.frozen == ["Split 'split': split sizes are computed at run time or uneven"]


def test_slice_over_several_axes_rewrites_the_channel_entry_only():
    body = "b = Slice (a, starts, ends, axes)"
    weights = ", int64[2] starts, int64[2] ends, int64[2] axes"
    model = sandwich(
        body, weights=weights, width=5, out="float[1,4,8,6]",
        starts=[1, 2], ends=[7, -1], axes=[3, -3],
    )  # fmt: skip
    pruned, _, plan = assert_exact(model)
    keep = kept_channels(plan, "conv1")
    before, inside = int((keep < 2).sum()), int(((keep >= 2) & (keep < 7)).sum())
    assert list(initializer(pruned, "starts")) == [1, before]
    assert list(initializer(pruned, "ends")) == [7, before + inside]
