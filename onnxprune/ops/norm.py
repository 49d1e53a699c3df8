"""BatchNormalization and InstanceNormalization: per-channel parameters on axis 1.
LayerNormalization: statistics over axes [axis, rank); channels there are frozen, or
with prune_hidden pruned approximately (the statistics change)."""

from __future__ import annotations

from ..analysis import NodeContext
from ._common import freeze_outputs_if_used, norm_axis
from ._registry import register


def _per_channel(ctx: NodeContext, params: range, stat: str | None) -> None:
    layout = dict(ctx.layout(0))
    for axis in [a for a in layout if a != 1]:
        ctx.freeze(layout.pop(axis), f"channels on axis {axis}, not the normalised axis 1")
    slots = layout.get(1)
    if slots is not None:
        if any(ctx.has_input(i) and ctx.const(i) is None for i in params):
            ctx.barrier("normalisation parameters are computed at run time")
            return
        for i in params:
            if ctx.has_input(i):
                ctx.slice_input(i, 0, slots)
        if stat:
            ctx.stat(stat, params[0], slots)
    freeze_outputs_if_used(ctx, range(1, 5), layout, "running statistics are used")
    ctx.set_output(0, layout)


@register("BatchNormalization")
def batch_norm(ctx: NodeContext) -> None:
    _per_channel(ctx, range(1, 5), "bn_gamma")


@register("InstanceNormalization")
def instance_norm(ctx: NodeContext) -> None:
    _per_channel(ctx, range(1, 3), None)


@register("LayerNormalization")
def layer_norm(ctx: NodeContext) -> None:
    rank = ctx.rank(0)
    if rank is None:
        ctx.barrier("input rank is unknown")
        return
    first = norm_axis(int(ctx.attr("axis", -1)), rank)
    layout = {}
    for axis, slots in ctx.layout(0).items():
        if axis < first:
            layout[axis] = slots
        elif ctx.options.prune_hidden and _slice_params(ctx, rank, axis, slots, (1, 2)):
            ctx.approximate(slots, "LayerNormalization statistics change with these channels")
            layout[axis] = slots
        else:
            ctx.freeze(slots, "LayerNormalization statistics span these channels")
    freeze_outputs_if_used(ctx, range(1, 3), layout, "mean / inverse std outputs are used")
    ctx.set_output(0, layout)


def _slice_params(ctx: NodeContext, rank: int, axis: int, slots, params) -> bool:
    """Slice the constant scale/bias inputs along `axis` (numpy-aligned); False when one
    is computed at run time."""
    for i in params:
        if not ctx.has_input(i):
            continue
        value = ctx.const(i)
        if value is None:
            return False
    for i in params:
        value = ctx.const(i) if ctx.has_input(i) else None
        at = axis - (rank - value.ndim) if value is not None else -1
        if value is not None and at >= 0 and value.shape[at] == len(slots):
            ctx.slice_input(i, at, slots)
    return True
