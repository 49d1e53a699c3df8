"""Shape, Gather, Expand and Tile: channels pass along axes that the op leaves alone."""

from __future__ import annotations

from ..analysis import NodeContext
from ._common import ints, kept_count, map_axes, norm_axis, set_entry
from ._registry import register
from ._shape_math import dims_as_they_are, evaluate, feeds_only_shape_targets, guard_reads
from ._shape_values import dims_read, literal_sources


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
    if feeds_only_shape_targets(ctx.graph, ctx.node.output[0]):
        return  # each Slice / Reshape / Expand proves its sizes follow, or freezes
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
    """Broadcast to a target shape: a channel axis keeps its place (right-aligned); a
    target entry equal to the channel count is rewritten, or follows at run time."""
    layout, rank = ctx.layout(0), ctx.rank(0)
    target = ctx.const(1)
    dynamic = target is None
    dims = ints(target) if target is not None else _target_now(ctx)
    _refine_shape(ctx, dims)
    if not layout:
        if dynamic:
            guard_reads(ctx, 1, {})
        return
    if dims is None or rank is None:
        ctx.barrier("the target shape cannot be told")
        if dynamic:
            guard_reads(ctx, 1, {})
        return
    out_rank = max(rank, len(dims))
    shift = out_rank - rank
    out = {axis + shift: slots for axis, slots in layout.items()}
    following = guard_reads(ctx, 1, out) if dynamic else set()
    sources = literal_sources(ctx.graph, ctx.node.input[1]) if dynamic else None
    for axis, slots in list(out.items()):
        k = axis - (out_rank - len(dims))
        entry = dims[k] if k >= 0 else 1
        if k in following or entry == 1 or (entry == len(slots) == 1):
            continue
        if entry == len(slots) and not dynamic:
            ctx.transform_input(1, set_entry(k, kept_count(slots)))
            continue
        source = sources[k] if sources is not None and k < len(sources) else None
        if entry == len(slots) and source is not None:
            node_index, i, position = source
            ctx.transform_use(node_index, i, set_entry(position, kept_count(slots)))
            continue
        ctx.freeze(slots, "Expand's target fixes this channel count")
        del out[axis]
    ctx.set_output(0, out)


def _refine_shape(ctx: NodeContext, dims: list[int] | None) -> None:
    """Record the output shape (input broadcast to the target) where inference lost it."""
    shape, out = ctx.shape(0), ctx.out_shape(0)
    if dims is None or shape is None or (out and all(isinstance(d, int) for d in out)):
        return
    rank = max(len(shape), len(dims))
    a = [1] * (rank - len(shape)) + list(shape)
    b = [1] * (rank - len(dims)) + list(dims)
    merged = [y if x == 1 else x for x, y in zip(a, b, strict=True)]
    if all(isinstance(d, int) for d in merged):
        ctx.refine_output_shape(0, merged)


def _target_now(ctx: NodeContext) -> list[int] | None:
    """The run-time target as the unpruned model computes it (symbolic dims probed)."""
    shape = ctx.out_shape(0)
    if shape is not None and all(isinstance(d, int) for d in shape):
        return [int(d) for d in shape]
    value = evaluate(ctx.graph, ctx.node.input[1], dims_as_they_are(ctx, probe=3), set())
    return None if value is None else ints(value)
