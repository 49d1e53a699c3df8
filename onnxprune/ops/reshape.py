"""Ops that move or regroup axes: Transpose, Squeeze, Unsqueeze, Flatten, Reshape.

Flatten or Reshape that merges a channel axis with the axes after it expands each
channel into a block of features; one that splits an axis finds the output axis the
channels ride on. Literal channel counts in Reshape shapes are rewritten."""

from __future__ import annotations

import numpy as np

from ..analysis import Layout, NodeContext
from ._common import ints, kept_count, map_axes, norm_axis, set_entry
from ._registry import register
from ._shape_math import guard_reads
from ._shape_values import literal_sources, reshape_target, shape_vector


@register("Transpose")
def transpose(ctx: NodeContext) -> None:
    rank = ctx.rank(0)
    if rank is None:
        ctx.barrier("input rank is unknown")
        return
    perm = ctx.attr("perm") or list(reversed(range(rank)))
    mapping = {int(src): dst for dst, src in enumerate(perm)}
    ctx.set_output(0, map_axes(ctx, ctx.layout(0), mapping, "Transpose"))


def _axes(ctx: NodeContext) -> list[int] | None:
    if ctx.opset < 13:
        return ctx.attr("axes")
    if not ctx.has_input(1):
        return None
    value = ctx.const(1)
    return ints(value) if value is not None else "dynamic"  # type: ignore[return-value]


@register("Squeeze")
def squeeze(ctx: NodeContext) -> None:
    rank, shape = ctx.rank(0), ctx.shape(0)
    axes = _axes(ctx)
    if rank is None or axes == "dynamic" or (axes is None and shape is None):
        ctx.barrier("squeezed axes are unknown")
        return
    axes = (
        [norm_axis(a, rank) for a in axes] if axes else [a for a, d in enumerate(shape) if d == 1]
    )
    mapping = {a: a - sum(s < a for s in axes) for a in range(rank) if a not in axes}
    ctx.set_output(0, map_axes(ctx, ctx.layout(0), mapping, "Squeeze removes this axis"))


@register("Unsqueeze")
def unsqueeze(ctx: NodeContext) -> None:
    rank = ctx.rank(0)
    axes = _axes(ctx)
    if rank is None or axes in (None, "dynamic"):
        ctx.barrier("unsqueezed axes are unknown")
        return
    out_rank = rank + len(axes)
    inserted = {norm_axis(a, out_rank) for a in axes}
    kept_axes = [a for a in range(out_rank) if a not in inserted]
    ctx.set_output(0, map_axes(ctx, ctx.layout(0), dict(enumerate(kept_axes)), "Unsqueeze"))


def _merge(ctx: NodeContext, layout: Layout, shape, src: list[int], target: int, out: Layout):
    """Channels on one of the `src` axes become blocks of features on output `target`."""
    carried = [a for a in src if a in layout]
    if not carried:
        return
    dims = [shape[a] for a in src if a not in carried] if shape else [None]
    if len(carried) > 1 or not all(isinstance(d, int) for d in dims):
        for a in carried:
            ctx.freeze(layout[a], "merged with axes of unknown size or other channels")
        return
    axis = carried[0]
    inner = int(np.prod([shape[a] for a in src if a > axis], dtype=np.int64))
    outer = int(np.prod([shape[a] for a in src if a < axis], dtype=np.int64))
    out[target] = np.tile(np.repeat(layout[axis], inner), outer)


@register("Flatten")
def flatten(ctx: NodeContext) -> None:
    rank, shape, layout = ctx.rank(0), ctx.shape(0), ctx.layout(0)
    if rank is None:
        ctx.barrier("input rank is unknown")
        return
    axis = norm_axis(int(ctx.attr("axis", 1)), rank)
    out: Layout = {}
    _merge(ctx, layout, shape, list(range(axis)), 0, out)
    _merge(ctx, layout, shape, list(range(axis, rank)), 1, out)
    ctx.set_output(0, out)


def axis_groups(src: list, dst: list) -> list[tuple[list[int], list[int]]] | None:
    """Pair contiguous runs of input and output axes with equal products, or None."""
    groups: list[tuple[list[int], list[int]]] = []
    i = j = 0
    while i < len(src) and j < len(dst):
        a, b = src[i], dst[j]
        gi, gj = [i], [j]
        i, j = i + 1, j + 1
        if not (isinstance(a, int) and isinstance(b, int)):
            if a != b or a is None:
                return None
            groups.append((gi, gj))
            continue
        while a != b:
            if a < b and i < len(src) and isinstance(src[i], int):
                a, gi, i = a * src[i], gi + [i], i + 1
            elif b < a and j < len(dst) and isinstance(dst[j], int):
                b, gj, j = b * dst[j], gj + [j], j + 1
            else:
                return None
        groups.append((gi, gj))
    if any(src[k] != 1 for k in range(i, len(src))) or any(dst[k] != 1 for k in range(j, len(dst))):
        return None
    if groups:
        groups[-1][0].extend(range(i, len(src)))
        groups[-1][1].extend(range(j, len(dst)))
    return groups


def _split_axis(ctx: NodeContext, slots: np.ndarray, dims: list[int]):
    """The one output axis along which the channels vary when an axis is split into dims.

    Where they vary along several (a projection split into [heads, head_dim]) and head
    pruning is on, each index of the first axis becomes one unit: a head."""
    grid = ctx.classes(slots).reshape(dims)
    for t in range(len(dims)):
        along = np.moveaxis(grid, t, 0).reshape(dims[t], -1)
        if (along == along[:, :1]).all():
            return t, np.moveaxis(slots.reshape(dims), t, 0).reshape(dims[t], -1)[:, 0].copy()
    if ctx.options.prune_heads and len(dims) > 1:
        return 0, ctx.coarsen(slots.reshape(dims), 0)
    return None


def regroup(ctx: NodeContext, layout: Layout, src: list, dst: list) -> Layout:
    """Carry layouts from input shape `src` to output shape `dst` of a Reshape."""
    groups = axis_groups(src, dst)
    out: Layout = {}
    if groups is None:
        for slots in layout.values():
            ctx.freeze(slots, f"Reshape {src} -> {dst} cannot be followed")
        return out
    for gi, gj in groups:
        if len(gj) == 1:
            _merge(ctx, layout, src, gi, gj[0], out)
            continue
        carried = [a for a in gi if a in layout]
        if not carried:
            continue
        found = None
        if len(gi) == 1 and all(isinstance(dst[d], int) for d in gj):
            found = _split_axis(ctx, layout[gi[0]], [dst[d] for d in gj])
        if found is None:
            for a in carried:
                ctx.freeze(layout[a], f"Reshape {src} -> {dst} splits these channels")
        else:
            out[gj[found[0]]] = found[1]
    return out


def _all_known(dims, rank: int, src: list) -> bool:
    """Whether every output dim is a size, or a symbol the input shape also has (a fresh
    symbol from shape inference tells nothing about how the axes regroup)."""
    return (
        dims is not None
        and len(dims) == rank
        and all(d is not None and (not isinstance(d, str) or d in src) for d in dims)
    )


@register("Reshape")
def reshape(ctx: NodeContext) -> None:
    layout = ctx.layout(0)
    target = ctx.const(1)
    if not layout:
        if target is None:
            guard_reads(ctx, 1, {})
        return
    src, dst = ctx.shape(0), ctx.out_shape(0)
    entries = ints(target) if target is not None else shape_vector(ctx.graph, ctx.node.input[1])
    allowzero = int(ctx.attr("allowzero", 0))
    if src is not None and entries is not None and not _all_known(dst, len(entries), src):
        told = reshape_target(ctx.graph, src, entries, bool(allowzero))
        if dst is not None and len(dst) == len(told):
            told = [t if t is not None else d for d, t in zip(dst, told, strict=True)]
        dst = told
        ctx.refine_output_shape(0, dst)  # for the handlers downstream
    if src is None or dst is None:
        ctx.barrier("input or output shape is unknown")
        if target is None:
            guard_reads(ctx, 1, {})
        return
    out = regroup(ctx, layout, src, dst)
    sources = None if target is not None else literal_sources(ctx.graph, ctx.node.input[1])
    following = guard_reads(ctx, 1, out) if target is None else set()
    for axis, slots in list(out.items()):
        if axis in following:
            continue  # read from a pruned tensor's shape at run time: follows by itself
        entry = entries[axis] if entries is not None else None
        if entry == -1:
            continue
        if entry == 0 and not allowzero and axis in layout and np.array_equal(layout[axis], slots):
            continue
        if isinstance(entry, int) and entry > 0:
            if target is not None:
                ctx.transform_input(1, set_entry(axis, kept_count(slots)))
                continue
            source = sources[axis] if sources is not None else None
            if source is not None:  # a literal inside a Shape -> Concat chain
                node_index, i, position = source
                ctx.transform_use(node_index, i, set_entry(position, kept_count(slots)))
                continue
        ctx.freeze(slots, "Reshape's target shape fixes this channel count at run time")
        del out[axis]
    ctx.set_output(0, out)
