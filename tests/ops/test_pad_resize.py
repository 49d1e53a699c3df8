"""Pad and Resize/Upsample act on H and W: channels pass; padding or scaling the
channel axis freezes; a `sizes` entry holding the channel count is rewritten."""

from __future__ import annotations

import numpy as np
import pytest

from ..helpers import assert_exact
from ._models import group_of, initializer, kept_channels, sandwich


def _assert_passes(model, pruned, report, plan) -> None:
    group = group_of(report, "conv1")
    assert (group.kept, group.n_frozen) == (4, 0)
    keep = kept_channels(plan, "conv1")
    np.testing.assert_array_equal(initializer(pruned, "w2"), initializer(model, "w2")[:, keep])


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
def test_pad_spatial_opset_11(mode):
    body = f'b = Pad <mode="{mode}"> (a, pads, value)'
    model = sandwich(
        body, opset=11, weights=", int64[8] pads, float value", hw=6, out="float[1,4,8,8]",
        pads=[0, 0, 1, 1, 0, 0, 1, 1], value=np.float32(0.5),
    )  # fmt: skip
    pruned, report, plan = assert_exact(model)
    _assert_passes(model, pruned, report, plan)
    assert list(initializer(pruned, "pads")) == [0, 0, 1, 1, 0, 0, 1, 1]


def test_pad_spatial_opset_18_with_axes():
    body = "b = Pad (a, pads, value, axes)"
    model = sandwich(
        body, opset=18, weights=", int64[4] pads, float value, int64[2] axes", hw=6,
        out="float[1,4,9,7]", pads=[1, 0, 2, 1], value=np.float32(1.0), axes=[-2, 3],
    )  # fmt: skip
    pruned, report, plan = assert_exact(model)
    _assert_passes(model, pruned, report, plan)


def test_pad_at_opset_9_attribute():
    body = "b = Pad <pads=[0,0,1,2,0,0,1,0], value=0.25> (a)"
    model = sandwich(body, opset=9, hw=6, out="float[1,4,8,8]")
    pruned, report, plan = assert_exact(model)
    _assert_passes(model, pruned, report, plan)


@pytest.mark.parametrize("opset", [11, 18])
def test_pad_on_the_channel_axis_freezes(opset):
    if opset >= 18:
        body, weights = (
            "[pad] b = Pad (a, pads, value, axes)",
            ", int64[2] pads, float value, int64[1] axes",
        )
        values = {"pads": [1, 2], "axes": [1]}
    else:
        body = "[pad] b = Pad (a, pads, value)"
        weights = ", int64[8] pads, float value"
        values = {"pads": [0, 1, 0, 0, 0, 2, 0, 0]}
    model = sandwich(body, opset=opset, weights=weights, width=11, value=np.float32(0), **values)
    pruned, report, _ = assert_exact(model)
    group = group_of(report, "conv1")
    assert (group.kept, group.n_frozen) == (8, 8)
    assert group.frozen == ["Pad 'pad': Pad pads the channel axis"]
    assert initializer(pruned, "w1").shape == (8, 3, 3, 3)


def test_pad_on_a_spatial_axis_with_axes_that_skip_channels():
    """opset 18 pads only the listed axes: a zero pad on the channel axis passes."""
    body = "b = Pad (a, pads, value, axes)"
    model = sandwich(
        body, opset=18, weights=", int64[4] pads, float value, int64[2] axes",
        out="float[1,4,8,10]", pads=[0, 1, 0, 1], value=np.float32(0), axes=[1, 3],
    )  # fmt: skip
    pruned, report, plan = assert_exact(model)
    _assert_passes(model, pruned, report, plan)


@pytest.mark.parametrize("opset", [10, 13])
def test_resize_with_scales(opset):
    if opset == 10:
        body = 'b = Resize <mode="nearest"> (a, scales)'
    else:
        body = 'b = Resize <mode="linear"> (a, "", scales)'
    model = sandwich(
        body, opset=opset, weights=", float[4] scales", out="float[1,4,16,16]",
        scales=np.array([1, 1, 2, 2], np.float32),
    )  # fmt: skip
    pruned, report, plan = assert_exact(model)
    _assert_passes(model, pruned, report, plan)
    assert list(initializer(pruned, "scales")) == [1, 1, 2, 2]


def test_resize_with_sizes_rewrites_the_channel_count():
    body = 'b = Resize <mode="nearest"> (a, "", "", sizes)'
    model = sandwich(body, weights=", int64[4] sizes", out="float[1,4,12,16]", sizes=[1, 8, 12, 16])
    pruned, report, plan = assert_exact(model)
    _assert_passes(model, pruned, report, plan)
    assert list(initializer(pruned, "sizes")) == [1, 4, 12, 16]


def test_resize_opset_18_with_axes():
    body = 'b = Resize <mode="nearest", axes=[2,3]> (a, "", scales)'
    model = sandwich(
        body, opset=18, weights=", float[2] scales", out="float[1,4,16,16]",
        scales=np.array([2, 2], np.float32),
    )  # fmt: skip
    pruned, report, plan = assert_exact(model)
    _assert_passes(model, pruned, report, plan)


def test_resize_opset_18_sizes_with_axes_leave_channels_alone():
    body = 'b = Resize <mode="nearest", axes=[3,2]> (a, "", "", sizes)'
    model = sandwich(body, opset=18, weights=", int64[2] sizes", out="float[1,4,12,16]",
                     sizes=[16, 12])  # fmt: skip
    pruned, report, plan = assert_exact(model)
    _assert_passes(model, pruned, report, plan)
    assert list(initializer(pruned, "sizes")) == [16, 12]


def test_resize_scaling_the_channel_axis_freezes():
    body = '[up] b = Resize <mode="nearest"> (a, "", scales)'
    model = sandwich(body, weights=", float[4] scales", width=16,
                     scales=np.array([1, 2, 1, 1], np.float32))  # fmt: skip
    pruned, report, _ = assert_exact(model)
    group = group_of(report, "conv1")
    assert (group.kept, group.n_frozen) == (8, 8)
    assert group.frozen == ["Resize 'up': Resize scales the channel axis"]


def test_upsample_at_opset_9():
    body = 'b = Upsample <mode="nearest"> (a, scales)'
    model = sandwich(body, opset=9, weights=", float[4] scales", out="float[1,4,16,24]",
                     scales=np.array([1, 1, 2, 3], np.float32))  # fmt: skip
    pruned, report, plan = assert_exact(model)
    _assert_passes(model, pruned, report, plan)


def test_upsample_at_opset_7_attribute():
    body = 'b = Upsample <mode="nearest", scales=[1.0, 1.0, 2.0, 2.0]> (a)'
    model = sandwich(body, opset=7, out="float[1,4,16,16]")
    pruned, report, plan = assert_exact(model)
    _assert_passes(model, pruned, report, plan)


def test_resize_opset_11_with_empty_scales_and_sizes():
    body = 'b = Resize <mode="nearest"> (a, roi, scales, sizes)'
    model = sandwich(
        body, opset=11, weights=", float[0] roi, float[0] scales, int64[4] sizes",
        out="float[1,4,16,12]", sizes=[1, 8, 16, 12],
    )  # fmt: skip
    pruned, report, plan = assert_exact(model)
    _assert_passes(model, pruned, report, plan)
    assert list(initializer(pruned, "sizes")) == [1, 4, 16, 12]


def test_resize_opset_18_sizes_listing_the_channel_axis_are_rewritten():
    body = 'b = Resize <mode="nearest", axes=[1,2,3]> (a, "", "", sizes)'
    model = sandwich(body, opset=18, weights=", int64[3] sizes", out="float[1,4,16,16]",
                     sizes=[8, 16, 16])  # fmt: skip
    pruned, report, plan = assert_exact(model)
    _assert_passes(model, pruned, report, plan)
    assert list(initializer(pruned, "sizes")) == [4, 16, 16]
