"""Conv: W [M, C/group, k...]; ConvTranspose: W [C, M/group, k...]. Channels on axis 1."""

from __future__ import annotations

import numpy as np

from ..analysis import Kept, NodeContext
from ..errors import BadInputError
from ..linear import conv_form
from ._registry import register


def _input_channels(ctx: NodeContext) -> np.ndarray | None:
    layout = ctx.layout(0)
    for axis, slots in layout.items():
        if axis != 1:
            ctx.freeze(slots, f"channels on spatial axis {axis}")
    return layout.get(1)


def _bias(ctx: NodeContext, out: np.ndarray) -> None:
    if not ctx.has_input(2):
        return
    if ctx.const(2) is None:
        ctx.freeze(out, "bias is computed at run time")
    else:
        ctx.slice_input(2, 0, out)


def _group(ctx: NodeContext, w: np.ndarray, x: np.ndarray | None) -> int:
    """The group attribute, checked: it splits the weight's axis 0 evenly, and the input
    has the channels the weight and group need (Conv: W.shape[1] * group; ConvTranspose:
    W.shape[0])."""
    group = ctx.attr("group", 1)
    where = f"{ctx.op_type} '{ctx.label}'"
    if w.ndim < 3:
        raise BadInputError(f"{where}: its weight has {w.ndim} axes, a convolution's has 3 or more")
    if not isinstance(group, int) or group < 1 or w.shape[0] % group:
        raise BadInputError(
            f"{where}: group={group!r} does not split its weight's {w.shape[0]} rows evenly"
        )
    inputs = w.shape[1] * group if ctx.op_type == "Conv" else w.shape[0]
    if x is not None and len(x) != inputs:
        raise BadInputError(
            f"{where}: its input has {len(x)} channels, its weight and group={group} need {inputs}"
        )
    return group


def _set_group(count_slots: np.ndarray):
    def rewrite(node, kept: Kept) -> None:
        for attr in node.attribute:
            if attr.name == "group":
                attr.i = int(kept(count_slots).sum())

    return rewrite


def _grouped_weight(group: int, cols: np.ndarray, col_axis: int):
    """Each group's block of rows (axis 0) keeps its own columns (on col_axis).

    Rows are already sliced when this runs (equal kept counts per group).
    """

    def take(value: np.ndarray, kept: Kept) -> np.ndarray:
        row_blocks = np.split(value, group, axis=0)
        col_keep = np.split(kept(cols), group)
        return np.concatenate(
            [np.compress(k, b, axis=col_axis) for b, k in zip(row_blocks, col_keep, strict=True)],
            axis=0,
        )

    return take


@register("Conv")
def conv(ctx: NodeContext) -> None:
    w = ctx.const(1)
    if w is None:
        ctx.barrier("weight is computed at run time")
        return
    x = _input_channels(ctx)
    group = _group(ctx, w, x)
    m = w.shape[0]
    if group == 1:
        if x is not None:
            attrs = {a.name: ctx.attr(a.name) for a in ctx.node.attribute}
            ctx.read(0, 1, x, conv_form(w, attrs), rank=w.ndim)
            ctx.slice_input(1, 1, x)
        out = ctx.new_channels(1, 0)
    elif w.shape[1] == 1:  # depthwise: output channel o reads input channel o // (m / group)
        if x is None:
            return
        out = np.repeat(x, m // group)
        ctx.slice_input(1, 0, out)
        ctx.transform_node(_set_group(x))
    else:
        out = ctx.new_channels(1, 0)
        ctx.equal_blocks(np.split(out, group), f"grouped Conv (group={group}) outputs")
        if x is not None:
            ctx.read(0, 1, x, rank=w.ndim)
            ctx.equal_blocks(np.split(x, group), f"grouped Conv (group={group}) inputs")
            ctx.transform_input(1, _grouped_weight(group, x, 1))
    _bias(ctx, out)
    ctx.set_output(0, {1: out})


@register("ConvTranspose")
def conv_transpose(ctx: NodeContext) -> None:
    w = ctx.const(1)
    if w is None:
        ctx.barrier("weight is computed at run time")
        return
    x = _input_channels(ctx)
    group = _group(ctx, w, x)
    per_group = w.shape[1]
    if x is not None and group > 1 and w.shape[0] == group:  # depthwise
        out = np.repeat(x, per_group)
        ctx.slice_input(1, 0, x)
        ctx.transform_node(_set_group(x))
        _bias(ctx, out)
        ctx.set_output(0, {1: out})
        return
    if x is not None:
        ctx.read(0, 1, x, rank=w.ndim)
        ctx.slice_input(1, 0, x)
    if group == 1:
        out = ctx.new_channels(1, 1)
    else:
        out = ctx.new_slots(1, per_group * group, 1, _grouped_transpose_view(group))
        ctx.transform_input(1, _grouped_weight(group, out, 1))
        ctx.equal_blocks(np.split(out, group), f"grouped ConvTranspose (group={group}) outputs")
        if x is not None:
            ctx.equal_blocks(np.split(x, group), f"grouped ConvTranspose (group={group}) inputs")
    _bias(ctx, out)
    ctx.set_output(0, {1: out})


def _grouped_transpose_view(group: int):
    """W [C, M/g, k...] seen as [C/g, M, k...], so axis 1 is the output channel."""

    def view(w: np.ndarray) -> np.ndarray:
        c, mg = w.shape[:2]
        blocks = w.reshape(group, c // group, mg, *w.shape[2:])
        return np.concatenate(list(blocks), axis=1)

    return view
