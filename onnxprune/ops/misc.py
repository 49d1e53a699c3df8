"""Shape, Gather, Expand and Tile: channels pass along axes that the op leaves alone."""

from __future__ import annotations

from ..analysis import NodeContext
from ._common import ints, kept_count, map_axes, norm_axis, set_entry
from ._registry import register
from ._shape_math import feeds_only_slice_bounds
from ._shape_values import dims_read


@register("Shape")
def shape(ctx: NodeContext) -> None:
    """A channel count read at run time would change; allow it only where it is unread.

    Shape(start, end) lists dims [start, end) of its input; a Gather index k of it
    (negative k counts from the end of that list) reads input axis start + k.
    """
    rank, layout = ctx.rank(0), ctx.layout(0)
    if not layout:
        return
    if rank is None:
        ctx.barrier("its channel count is read at run time")
        return
    start = min(max(norm_axis(int(ctx.attr("start", 0)), rank), 0), rank)
    end = min(max(norm_axis(int(ctx.attr("end", rank)), rank), 0), rank)
    if feeds_only_slice_bounds(ctx.graph, ctx.node.output[0]):
        return  # each Slice proves its bounds follow the pruned count, or freezes
    read = dims_read(ctx.graph, ctx.node.output[0], max(end - start, 0))
    for axis, slots in layout.items():
        listed = start <= axis < end
        if listed and (read is None or (axis - start) in read):
            ctx.freeze(slots, "its channel count is read at run time")


@register("Size")
def size(ctx: NodeContext) -> None:
    ctx.barrier("the element count is read at run time")


@register("Gather")
def gather(ctx: NodeContext) -> None:
    rank, idx_rank = ctx.rank(0), ctx.rank(1)
    if rank is None or idx_rank is None:
        ctx.barrier("input rank is unknown")
        return
    axis = norm_axis(int(ctx.attr("axis", 0)), rank)
    mapping = {a: (a if a < axis else a + idx_rank - 1) for a in range(rank) if a != axis}
    out = map_axes(ctx, ctx.layout(0), mapping, "Gather selects along this axis")
    table = ctx.const(0)
    if ctx.options.prune_hidden and table is not None and table.ndim == 2 and axis == 0:
        # an embedding lookup: the table's columns are the hidden size (vocabulary kept)
        out[idx_rank] = ctx.new_channels(0, 1)
    ctx.set_output(0, out)


@register("Tile")
def tile(ctx: NodeContext) -> None:
    repeats = ctx.const(1)
    layout = ctx.layout(0)
    if repeats is None:
        ctx.barrier("repeats are computed at run time")
        return
    reps = ints(repeats)
    mapping = {a: a for a in range(len(reps)) if reps[a] == 1}
    ctx.set_output(0, map_axes(ctx, layout, mapping, "Tile repeats these channels"))


@register("Expand")
def expand(ctx: NodeContext) -> None:
    layout, rank = ctx.layout(0), ctx.rank(0)
    target = ctx.const(1)
    if not layout:
        return
    if target is None or rank is None:
        ctx.barrier("the target shape is computed at run time")
        return
    dims = ints(target)
    shift = max(rank, len(dims)) - rank
    out = {}
    for axis, slots in layout.items():
        k = axis + shift - (max(rank, len(dims)) - len(dims))
        entry = dims[k] if k >= 0 else 1
        if entry not in (1, len(slots)):
            ctx.freeze(slots, "Expand target disagrees with the channel count")
            continue
        if entry == len(slots) and entry > 1:
            ctx.transform_input(1, set_entry(k, kept_count(slots)))
        out[axis + shift] = slots
    ctx.set_output(0, out)
