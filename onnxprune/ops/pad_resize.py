"""Pad and Resize/Upsample act on spatial axes; channels pass where the channel axis is
neither padded nor scaled (a `sizes` entry holding the channel count is rewritten)."""

from __future__ import annotations

from ..analysis import NodeContext
from ._common import ints, kept_count, norm_axis, set_entry
from ._registry import register


@register("Pad")
def pad(ctx: NodeContext) -> None:
    layout, rank = ctx.layout(0), ctx.rank(0)
    if not layout:
        return
    if ctx.opset < 11:
        pads = ctx.attr("pads") or ctx.attr("paddings")
    else:
        value = ctx.const(1)
        pads = ints(value) if value is not None else None
    axes_value = ctx.const(3) if ctx.has_input(3) else None
    if pads is None or rank is None or (ctx.has_input(3) and axes_value is None):
        ctx.barrier("pads are computed at run time")
        return
    axes = (
        [norm_axis(a, rank) for a in ints(axes_value)]
        if axes_value is not None
        else list(range(rank))
    )
    half = len(pads) // 2
    out = {}
    for axis, slots in layout.items():
        if axis in axes and (pads[axes.index(axis)] or pads[axes.index(axis) + half]):
            ctx.freeze(slots, "Pad pads the channel axis")
        else:
            out[axis] = slots
    ctx.set_output(0, out)


def _resize_inputs(ctx: NodeContext):
    """(scales or None, index of the sizes input or None); None when unreadable."""
    if ctx.op_type == "Upsample" and ctx.opset < 9:
        return ctx.attr("scales"), None
    scales_at = 1 if (ctx.op_type == "Upsample" or ctx.opset < 11) else 2
    scales = ctx.const(scales_at) if ctx.has_input(scales_at) else None
    if ctx.has_input(scales_at) and scales is None:
        return None
    sizes_at = 3 if ctx.has_input(3) and ctx.op_type == "Resize" else None
    if sizes_at is not None and ctx.const(sizes_at) is None:
        return None
    scales = [float(s) for s in scales.ravel()] if scales is not None and scales.size else None
    return scales, sizes_at


@register("Resize", "Upsample")
def resize(ctx: NodeContext) -> None:
    layout, rank = ctx.layout(0), ctx.rank(0)
    if not layout:
        return
    found = _resize_inputs(ctx)
    if found is None or rank is None:
        ctx.barrier("scales or sizes are computed at run time")
        return
    scales, sizes_at = found
    axes = [norm_axis(a, rank) for a in (ctx.attr("axes") or range(rank))]
    out = {}
    for axis, slots in layout.items():
        if axis not in axes:
            out[axis] = slots
            continue
        k = axes.index(axis)
        if scales is not None and scales[k] != 1.0:
            ctx.freeze(slots, "Resize scales the channel axis")
            continue
        if sizes_at is not None:
            ctx.transform_input(sizes_at, set_entry(k, kept_count(slots)))
        out[axis] = slots
    ctx.set_output(0, out)
