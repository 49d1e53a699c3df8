"""Pooling (over spatial axes), reductions (ReduceX over `axes`), softmax-like ops and
ArgMax/ArgMin (over `axis`): channels on the reduced axes are frozen or read."""

from __future__ import annotations

from ..analysis import NodeContext
from ._common import freeze_outputs_if_used, ints, map_axes, norm_axis
from ._registry import register

POOLS = "MaxPool AveragePool LpPool GlobalAveragePool GlobalMaxPool GlobalLpPool".split()
REDUCE = (
    "ReduceMean ReduceMax ReduceMin ReduceSum ReduceProd ReduceL1 ReduceL2 ReduceLogSum "
    "ReduceLogSumExp ReduceSumSquare"
).split()
# Reductions for which a zeroed channel contributes nothing: removing it is exact.
ZERO_NEUTRAL = {"ReduceSum", "ReduceL1", "ReduceL2", "ReduceSumSquare"}
# Opset from which `axes` is an input rather than an attribute.
AXES_INPUT_SINCE = {"ReduceSum": 13}


@register(*POOLS)
def pool(ctx: NodeContext) -> None:
    layout = map_axes(ctx, ctx.layout(0), {0: 0, 1: 1}, f"{ctx.op_type} mixes this axis")
    freeze_outputs_if_used(ctx, range(1, 2), layout, "MaxPool indices are used")
    ctx.set_output(0, layout)


def _reduce_axes(ctx: NodeContext, rank: int) -> list[int] | None:
    if ctx.opset >= AXES_INPUT_SINCE.get(ctx.op_type, 18):
        if not ctx.has_input(1):
            axes = None
        else:
            value = ctx.const(1)
            if value is None:
                return None
            axes = ints(value)
    else:
        axes = ctx.attr("axes")
    if not axes:
        if int(ctx.attr("noop_with_empty_axes", 0)):
            return []
        return list(range(rank))
    return sorted(norm_axis(int(a), rank) for a in axes)


@register(*REDUCE)
def reduce(ctx: NodeContext) -> None:
    rank = ctx.rank(0)
    layout = ctx.layout(0)
    if rank is None:
        ctx.barrier("input rank is unknown")
        return
    axes = _reduce_axes(ctx, rank)
    if axes is None:
        ctx.barrier("reduction axes are computed at run time")
        return
    keep = int(ctx.attr("keepdims", 1))
    mapping: dict[int, int | None] = {}
    for axis in range(rank):
        if axis not in axes:
            mapping[axis] = axis if keep else axis - sum(a < axis for a in axes)
    for axis in axes:
        if axis in layout and ctx.op_type in ZERO_NEUTRAL:
            ctx.read(0, axis, layout[axis])
            mapping[axis] = -1  # consumed: not frozen, not passed on
        elif axis in layout and ctx.op_type == "ReduceMean" and ctx.options.prune_hidden:
            ctx.approximate(layout[axis], "the mean over these channels changes")
            mapping[axis] = -1  # a hand-written LayerNorm / RMSNorm statistic
    out = map_axes(ctx, layout, mapping, f"{ctx.op_type} reduces over these channels")
    out.pop(-1, None)
    ctx.set_output(0, out)


@register("Softmax", "LogSoftmax", "Hardmax")
def softmax(ctx: NodeContext) -> None:
    rank = ctx.rank(0)
    if rank is None:
        ctx.barrier("input rank is unknown")
        return
    if ctx.opset >= 13:
        axis = norm_axis(int(ctx.attr("axis", -1)), rank)
        mixed = {axis}
    else:  # coerced to 2-D: normalises over every axis from `axis` on
        mixed = set(range(norm_axis(int(ctx.attr("axis", 1)), rank), rank))
    mapping = {a: a for a in range(rank) if a not in mixed}
    ctx.set_output(0, map_axes(ctx, ctx.layout(0), mapping, f"{ctx.op_type} normalises over them"))


@register("ArgMax", "ArgMin")
def arg_reduce(ctx: NodeContext) -> None:
    rank = ctx.rank(0)
    if rank is None:
        ctx.barrier("input rank is unknown")
        return
    axis = norm_axis(int(ctx.attr("axis", 0)), rank)
    keep = int(ctx.attr("keepdims", 1))
    mapping = {a: (a if keep or a < axis else a - 1) for a in range(rank) if a != axis}
    ctx.set_output(0, map_axes(ctx, ctx.layout(0), mapping, f"{ctx.op_type} selects among them"))
