"""Shape, Gather, Tile and Expand: channels pass along the axes the op leaves alone; a
channel count read at run time (Shape) or repeated (Tile) freezes."""

from __future__ import annotations

import numpy as np
import pytest

from ..helpers import assert_exact
from ._models import group_of, initializer, kept_channels, sandwich


def _shape_model(shape_attrs: str, pick: int, opset: int = 15):
    """Graph output n = float(Shape(a)[pick]) beside the conv output."""
    body = f"""
      [shape] s = Shape {shape_attrs} (a)
      d = Gather <axis=0> (s, pick)
      n = Cast <to=1> (d)
      b = Identity (a)
    """
    return sandwich(body, opset=opset, weights=", int64 pick", more_outputs=", float n", pick=pick)


@pytest.mark.parametrize(
    "attrs, pick",
    [("", 1), ("", -3), ("<start=1>", 0), ("<start=1>", -3), ("<end=2>", -1), ("<start=-3>", 0)],
)
def test_shape_whose_channel_dim_is_read_freezes(attrs, pick):
    model = _shape_model(attrs, pick)
    pruned, report, _ = assert_exact(model)
    group = group_of(report, "conv1")
    assert (group.kept, group.n_frozen) == (8, 8)
    assert group.frozen == ["Shape 'shape': its channel count is read at run time"]
    assert initializer(pruned, "w1").shape == (8, 3, 3, 3)


@pytest.mark.parametrize(
    "attrs, pick",
    [("", 0), ("", 2), ("", -1), ("<start=1>", 1), ("<start=1>", -1), ("<end=1>", 0)],
)
def test_shape_whose_channel_dim_is_unread_passes(attrs, pick):
    model = _shape_model(attrs, pick)
    pruned, report, _ = assert_exact(model)
    group = group_of(report, "conv1")
    assert (group.kept, group.n_frozen) == (4, 0)
    assert initializer(pruned, "w1").shape == (4, 3, 3, 3)


def test_shape_reaching_an_output_freezes():
    body = """
      [shape] s = Shape (a)
      b = Identity (a)
    """
    model = sandwich(body, more_outputs=", int64[4] s")
    _, report, _ = assert_exact(model)
    assert group_of(report, "conv1").frozen == [
        "Shape 'shape': its channel count is read at run time"
    ]


@pytest.mark.parametrize("scalar", [False, True])
def test_gather_on_a_spatial_axis_passes(scalar):
    if scalar:  # [1,8,8,8] -> [1,8,8] -> Unsqueeze back
        body = """
          g = Gather <axis=2> (a, idx)
          b = Unsqueeze (g, two)
        """
        model = sandwich(body, weights=", int64 idx, int64[1] two", out="float[1,4,1,8]",
                         idx=3, two=[2])  # fmt: skip
    else:
        body = "b = Gather <axis=3> (a, idx)"
        model = sandwich(body, weights=", int64[4] idx", out="float[1,4,8,4]", idx=[0, 2, 4, 6])
    pruned, report, plan = assert_exact(model)
    assert group_of(report, "conv1").kept == 4
    keep = kept_channels(plan, "conv1")
    np.testing.assert_array_equal(initializer(pruned, "w2"), initializer(model, "w2")[:, keep])


def test_gather_on_the_channel_axis_freezes():
    body = "[pick] b = Gather <axis=1> (a, idx)"
    model = sandwich(body, weights=", int64[3] idx", width=3, idx=[5, 0, 2])
    pruned, report, _ = assert_exact(model)
    group = group_of(report, "conv1")
    assert (group.kept, group.n_frozen) == (8, 8)
    assert group.frozen == ["Gather 'pick': Gather selects along this axis"]
    assert list(initializer(pruned, "idx")) == [5, 0, 2]


def test_tile_over_spatial_axes_passes():
    model = sandwich(
        "b = Tile (a, reps)", weights=", int64[4] reps", out="float[1,4,16,8]", reps=[1, 1, 2, 1]
    )
    pruned, report, _ = assert_exact(model)
    assert group_of(report, "conv1").kept == 4
    assert list(initializer(pruned, "reps")) == [1, 1, 2, 1]


def test_tile_over_channels_freezes():
    body = "[tile] b = Tile (a, reps)"
    model = sandwich(body, weights=", int64[4] reps", width=16, reps=[1, 2, 1, 1])
    _, report, _ = assert_exact(model)
    group = group_of(report, "conv1")
    assert (group.kept, group.n_frozen) == (8, 8)
    assert group.frozen == ["Tile 'tile': Tile repeats these channels"]


@pytest.mark.parametrize(
    "target, rewritten",
    [([1, 8, 8, 8], [1, 4, 8, 8]), ([1, 1, 8, 8], [1, 1, 8, 8]), ([8, 8], [8, 8])],
)
def test_expand_of_a_pooled_tensor(target, rewritten):
    body = """
      g = GlobalAveragePool (a)
      e = Expand (g, target)
      b = Mul (a, e)
    """
    weights = f", int64[{len(target)}] target"
    model = sandwich(body, weights=weights, target=target)
    pruned, report, _ = assert_exact(model)
    assert group_of(report, "conv1").kept == 4
    assert list(initializer(pruned, "target")) == rewritten


def test_expand_to_a_run_time_shape_follows_the_pruned_count():
    """Expand(g, Shape(a)): the target holds a's channel count, read at run time, so it
    follows the pruning by itself (proven by evaluating the target per kept count)."""
    body = """
      g = GlobalAveragePool (a)
      [shape] s = Shape (a)
      e = Expand (g, s)
      b = Mul (a, e)
    """
    pruned, report, _ = assert_exact(sandwich(body))
    group = group_of(report, "conv1")
    assert (group.kept, group.n_frozen) == (4, 0)
    assert initializer(pruned, "w1").shape == (4, 3, 3, 3)


def test_expand_reading_another_count_freezes():
    """Expand(g, Shape(o)) where o's channels are another group's: cannot be proven."""
    body = """
      g = GlobalAveragePool (a)
      [other] o = Conv (x, wo)
      [shape] s = Shape (o)
      e = Expand (g, s)
      b = Mul (a, e)
      c = Add (b, o)
    """
    model = sandwich(body, weights=", float[8,3,1,1] wo", tail="[conv2] y = Conv (c, w2)")
    pruned, report, _ = assert_exact(model)
    group = group_of(report, "other")
    assert group.kept == group.channels == 8
