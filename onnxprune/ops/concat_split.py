"""Concat places its inputs' channels one after another on `axis`; Split and Slice take
ranges out of them (their sizes and bounds are rewritten from the kept counts)."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from ..analysis import Kept, NodeContext
from ._common import broadcast, ints, kept_count, norm_axis, set_entry
from ._registry import register
from ._shape_math import evaluate


@register("Concat")
def concat(ctx: NodeContext) -> None:
    rank = ctx.rank(0)
    if rank is None:
        ctx.barrier("input rank is unknown")
        return
    axis = norm_axis(int(ctx.attr("axis")), rank)
    out = broadcast(ctx, list(range(ctx.n_inputs)), skip_axis=axis)
    if any(axis in ctx.layout(i) for i in range(ctx.n_inputs)):
        pieces = []
        for i in range(ctx.n_inputs):
            slots = ctx.layout(i).get(axis)
            if slots is None:
                dim = (ctx.shape(i) or [None] * rank)[axis]
                if not isinstance(dim, int):
                    ctx.barrier(f"size of input '{ctx.node.input[i]}' on the axis is unknown")
                    return
                slots = ctx.placeholder(dim, f"input '{ctx.node.input[i]}' is not prunable")
            pieces.append(slots)
        out[axis] = np.concatenate(pieces)
    ctx.set_output(0, out)


def _rewrite_attr(name: str, index: int, count):
    def fn(node, kept: Kept) -> None:
        for attr in node.attribute:
            if attr.name == name:
                attr.ints[index] = count(kept)

    return fn


def _split_sizes(ctx: NodeContext) -> tuple[list[int] | None, str]:
    """Explicit split sizes and where they live ("attr", "input"), or (None, "equal")."""
    if ctx.opset < 13:
        sizes = ctx.attr("split")
        return (list(sizes), "attr") if sizes else (None, "equal")
    if ctx.has_input(1):
        value = ctx.const(1)
        return (ints(value), "input") if value is not None else (None, "dynamic")
    return None, "equal"


@register("Split")
def split(ctx: NodeContext) -> None:
    rank = ctx.rank(0)
    layout = ctx.layout(0)
    if rank is None:
        ctx.barrier("input rank is unknown")
        return
    axis = norm_axis(int(ctx.attr("axis", 0)), rank)
    n_out = len(ctx.node.output)
    pieces: list[np.ndarray | None] = [None] * n_out
    slots = layout.get(axis)
    if slots is not None:
        sizes, where = _split_sizes(ctx)
        if where == "dynamic" or (where == "equal" and len(slots) % n_out):
            ctx.freeze(slots, "split sizes are computed at run time or uneven")
        elif sizes is None:
            pieces = np.split(slots, n_out)
            ctx.equal_blocks(pieces, "Split into equal parts")
        else:
            pieces = np.split(slots, np.cumsum(sizes)[:-1])
            for j, piece in enumerate(pieces):
                count = kept_count(piece)
                if where == "attr":
                    ctx.transform_node(_rewrite_attr("split", j, count))
                else:
                    ctx.transform_input(1, set_entry(j, count))
        for piece in pieces:
            if piece is not None:
                ctx.nonempty(piece)
    for j in range(n_out):
        out = {a: s for a, s in layout.items() if a != axis}
        if pieces[j] is not None:
            out[axis] = pieces[j]
        ctx.set_output(j, out)


def _slice_params(ctx: NodeContext, rank: int):
    if ctx.opset < 10:
        starts, ends = ctx.attr("starts"), ctx.attr("ends")
        axes = ctx.attr("axes") or list(range(len(starts)))
        return list(starts), list(ends), list(axes), [1] * len(starts)
    values = [ctx.const(i) if ctx.has_input(i) else None for i in range(1, 5)]
    if (
        values[0] is None
        or values[1] is None
        or (ctx.has_input(3) and values[2] is None)
        or (ctx.has_input(4) and values[3] is None)
    ):
        return None
    starts, ends = ints(values[0]), ints(values[1])
    axes = ints(values[2]) if values[2] is not None else list(range(len(starts)))
    steps = ints(values[3]) if values[3] is not None else [1] * len(starts)
    return starts, ends, [norm_axis(a, rank) for a in axes], steps


@register("Slice")
def slice_(ctx: NodeContext) -> None:
    rank = ctx.rank(0)
    layout = ctx.layout(0)
    params = None if rank is None else _slice_params(ctx, rank)
    if params is None and ctx.opset >= 10 and rank is not None:
        _run_time_bounds(ctx, rank)
        return
    if not layout:
        return
    if params is None:
        ctx.barrier("Slice bounds are computed at run time")
        return
    starts, ends, axes, steps = params
    out = {}
    for axis, slots in layout.items():
        if axis not in axes:
            out[axis] = slots
            continue
        k = axes.index(axis)
        if steps[k] != 1:
            ctx.freeze(slots, "Slice with a step other than 1")
            continue
        span = range(len(slots))[starts[k] : ends[k]]
        piece = slots[span.start : span.stop]
        before = slots[: span.start]
        start_count = kept_count(before)
        end_count = lambda kept, b=before, p=piece: int(kept(b).sum() + kept(p).sum())  # noqa: E731
        if ctx.opset < 10:
            ctx.transform_node(_rewrite_attr("starts", k, start_count))
            ctx.transform_node(_rewrite_attr("ends", k, end_count))
        else:
            ctx.transform_input(1, set_entry(k, start_count))
            ctx.transform_input(2, set_entry(k, end_count))
        ctx.nonempty(piece)
        out[axis] = piece
    ctx.set_output(0, out)


def _run_time_bounds(ctx: NodeContext, rank: int) -> None:
    """Bounds computed from shapes: allowed where they scale with the channel count.

    torch.chunk(x, 2, dim=1) is exported as Slice bounds C/2 computed from Shape(x). If
    every bound on the channel axis is a fixed fraction p/q of the channel count for
    every count the plan could keep, the channels are cut into q blocks that keep equal
    counts, and the bounds follow the pruned count by themselves. Anything else freezes
    the channels the bounds read, and the sliced ones.
    """
    layout = ctx.layout(0)
    reads: set = set()
    proven = _proportional_slice(ctx, rank, reads)
    if proven is None:
        why = "Slice bounds are computed at run time from channel counts"
        for tensor, axis in reads:
            slots = ctx.layout_of(tensor).get(axis)
            if slots is not None:
                ctx.freeze(slots, why)
        ctx.barrier(why)
        return
    axis, q, (start, end) = proven
    slots = layout[axis]
    ctx.equal_blocks(np.split(slots, q), "Slice bounds follow the channel count at run time")
    piece = slots[start:end]
    ctx.nonempty(piece)
    ctx.set_output(0, {**layout, axis: piece})


def _proportional_slice(ctx: NodeContext, rank: int, reads: set):
    """(axis, q, (start, end)) when only channel-axis bounds vary, as fractions of C."""
    layout = ctx.layout(0)
    axes_value = ctx.const(3) if ctx.has_input(3) else None
    steps = ctx.const(4) if ctx.has_input(4) else None
    if (ctx.has_input(3) and axes_value is None) or (steps is not None and set(ints(steps)) != {1}):
        return None
    bounds = _bounds_fn(ctx, reads)
    base = bounds(None, 1)
    if base is None or not np.array_equal(base, bounds(None, 7)):
        return None
    n = len(base[0])
    axes = (
        [norm_axis(a, rank) for a in ints(axes_value)] if axes_value is not None else list(range(n))
    )
    moving = [k for k in range(n) if axes[k] in layout]
    if len(moving) != 1 or any(a != axes[moving[0]] for a in _read_axes(ctx, reads)):
        return None
    k = moving[0]
    slots = layout[axes[k]]
    total = len(slots)
    span = range(total)[base[0][k] : base[1][k]]
    fractions = [Fraction(span.start, total), Fraction(span.stop, total)]
    q = math.lcm(*(f.denominator for f in fractions))
    if total % q or q == total:  # one block per channel: nothing could be proven
        return None
    for count in range(q, total + 1, q):
        value = bounds(count, 1)
        if value is None or not _same_elsewhere(value, base, k):
            return None
        got = range(count)[value[0][k] : value[1][k]]
        if (got.start, got.stop) != tuple(int(f * count) for f in fractions):
            return None
    return axes[k], q, (span.start, span.stop)


def _bounds_fn(ctx: NodeContext, reads: set):
    """bounds(count, probe): (starts, ends) with channel axes of the sliced tensor read
    as `count` (None: as they are) and unknown dims as `probe`."""

    def bounds(count, probe):
        def dims(tensor: str, axis: int):
            lay = ctx.layout_of(tensor)
            if axis in lay:
                return len(lay[axis]) if count is None else count
            shape = ctx.graph.shape(tensor)
            size = shape[axis] if shape is not None and axis < len(shape) else None
            return size if isinstance(size, int) else probe

        values = [evaluate(ctx.graph, ctx.node.input[i], dims, reads) for i in (1, 2)]
        if any(v is None for v in values):
            return None
        return [ints(v) for v in values]

    return bounds


def _read_axes(ctx: NodeContext, reads: set):
    """The sliced axis each channel-carrying read stands for (None when it is another
    tensor's channels)."""
    layout = ctx.layout(0)
    for tensor, axis in reads:
        slots = ctx.layout_of(tensor).get(axis)
        if slots is None:
            continue
        match = [a for a, s in layout.items() if len(s) == len(slots) and np.array_equal(s, slots)]
        yield match[0] if match else None


def _same_elsewhere(value, base, k: int) -> bool:
    return all(value[j][i] == base[j][i] for j in range(2) for i in range(len(base[j])) if i != k)
