"""Helpers shared by handlers: axis arithmetic and broadcasting of channel layouts."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..analysis import Kept, Layout, NodeContext


def kept_count(slots: np.ndarray) -> Callable[[Kept], int]:
    """How many of these positions are kept, once the plan is known."""
    return lambda kept: int(kept(slots).sum())


def set_entry(index: int, count: Callable[[Kept], int]) -> Callable[[np.ndarray, Kept], np.ndarray]:
    """A transform of a constant vector (a shape, split sizes, slice bounds) setting one entry."""

    def fn(value: np.ndarray, kept: Kept) -> np.ndarray:
        flat = value.reshape(-1).copy()
        flat[index] = count(kept)
        return flat.reshape(value.shape)

    return fn


def norm_axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


def ints(value) -> list[int]:
    return [int(v) for v in np.asarray(value).ravel()]


def passthrough(ctx: NodeContext, i: int = 0, outputs: tuple[int, ...] = (0,)) -> None:
    """Every output has input i's layout (a channel-wise op)."""
    for j in outputs:
        ctx.set_output(j, ctx.layout(i))


def freeze_outputs_if_used(ctx: NodeContext, outputs: range, layout: Layout, why: str) -> None:
    """Freeze `layout` when any of `outputs` is used (MaxPool indices, BN statistics...)."""
    if any(ctx.output_used(j) for j in outputs):
        for slots in layout.values():
            ctx.freeze(slots, why)


def map_axes(ctx: NodeContext, layout: Layout, mapping: dict[int, int | None], why: str) -> Layout:
    """Move layout axes by `mapping`; an axis mapped to None (or missing) is frozen."""
    out: Layout = {}
    for axis, slots in layout.items():
        target = mapping.get(axis)
        if target is None:
            ctx.freeze(slots, why)
        else:
            out[target] = slots
    return out


def slice_through(ctx: NodeContext, name: str, axis: int, slots: np.ndarray) -> bool:
    """Slice the constant behind `name` when `name` is that constant passed through
    Identity, Cast or an Expand that broadcasts other axes (ViT's class token,
    `cls.expand(B, -1, -1)`); False when it is anything else."""
    index = ctx.graph
    for _ in range(8):
        node_idx = index.producer.get(name)
        if node_idx is None:
            return False
        node = index.nodes[node_idx]
        if node.op_type not in ("Identity", "Cast", "Expand") or len(index.consumers[name]) != 1:
            return False
        source = node.input[0]
        src_shape, out_shape = index.shape(source), index.shape(name)
        if src_shape is None or out_shape is None:
            return False
        axis -= len(out_shape) - len(src_shape)  # Expand may add leading axes
        if axis < 0 or src_shape[axis] != len(slots):
            return False
        if index.const(source) is not None:
            ctx.transform_use(node_idx, 0, _take(axis, slots))
            return True
        name = source
    return False


def _take(axis: int, slots: np.ndarray):
    def fn(value: np.ndarray, kept: Kept) -> np.ndarray:
        return np.compress(kept(slots), value, axis=axis)

    return fn


def broadcast(ctx: NodeContext, inputs: list[int], skip_axis: int | None = None) -> Layout:
    """Couple the channel axes of inputs combined with numpy broadcasting.

    Layouts that meet on one output axis are united. An input without a layout there
    is sliced if it is a constant of full size, left alone if it broadcasts (size 1),
    and freezes the channels otherwise. `skip_axis` (an output axis) is left out.
    """
    present = [i for i in inputs if ctx.has_input(i)]
    ranks = {i: ctx.rank(i) for i in present}
    out_shape = ctx.out_shape(0)
    known = [r for r in ranks.values() if r is not None]
    out_rank = len(out_shape) if out_shape is not None else (max(known) if known else None)
    if out_rank is None or any(r is None for r in ranks.values()):
        ctx.barrier("input ranks are unknown (shape inference could not tell)")
        return {}
    merged: Layout = {}
    for i in present:
        shift = out_rank - ranks[i]
        for axis, slots in ctx.layout(i).items():
            target = axis + shift
            if target == skip_axis:
                continue
            if target not in merged:
                merged[target] = slots
            elif len(merged[target]) == len(slots):
                ctx.union(merged[target], slots)
            else:
                ctx.freeze(slots, "operands disagree on the channel count")
                ctx.freeze(merged[target], "operands disagree on the channel count")
    for i in present:
        shift = out_rank - ranks[i]
        shape = ctx.shape(i) or []
        mine = ctx.layout(i)
        for target, slots in merged.items():
            axis = target - shift
            if axis < 0 or axis in mine:
                continue
            dim = shape[axis]
            if dim == 1:
                continue
            if ctx.const(i) is not None and dim == len(slots):
                ctx.slice_input(i, axis, slots)
            elif dim == len(slots) and slice_through(ctx, ctx.node.input[i], axis, slots):
                pass
            else:
                name = ctx.node.input[i]
                ctx.freeze(slots, f"operand '{name}' has {dim} channels that cannot be sliced")
    return merged
