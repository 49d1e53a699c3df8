"""Gemm: Y[M, N] = A'[M, K] B'[K, N] + C; MatMul: numpy matmul, with a constant or two
dynamic operands. A constant weight's output axis creates channels; its K axis is
sliced by the channels of the operand it multiplies."""

from __future__ import annotations

from ..analysis import NodeContext
from ..linear import gemm_form, matmul_form
from ._registry import register


@register("Gemm")
def gemm(ctx: NodeContext) -> None:
    b = ctx.const(1)
    if b is None or ctx.const(0) is not None:
        ctx.barrier("Gemm without a constant B weight")
        return
    trans_a, trans_b = int(ctx.attr("transA", 0)), int(ctx.attr("transB", 0))
    k_axis = 0 if trans_a else 1
    a = ctx.layout(0)
    out = {}
    if k_axis in a:
        alpha, beta = float(ctx.attr("alpha", 1.0)), float(ctx.attr("beta", 1.0))
        form = gemm_form(len(a[k_axis]), bool(trans_a), bool(trans_b), alpha, beta)
        ctx.read(0, k_axis, a[k_axis], form if alpha != 0 and beta != 0 else None, rank=2)
        ctx.slice_input(1, 1 if trans_b else 0, a[k_axis])
    if 1 - k_axis in a:
        out[0] = a[1 - k_axis]
    out[1] = ctx.new_channels(1, 0 if trans_b else 1)
    if ctx.has_input(2):
        c = ctx.const(2)
        if c is None:
            ctx.freeze(out[1], "Gemm bias C is computed at run time")
        elif c.ndim >= 1 and c.shape[-1] == len(out[1]) and c.shape[-1] > 1:
            ctx.slice_input(2, c.ndim - 1, out[1])
        if c is not None and c.ndim == 2 and c.shape[0] > 1 and 0 in out:
            ctx.slice_input(2, 0, out[0])
    ctx.set_output(0, out)


@register("MatMul")
def matmul(ctx: NodeContext) -> None:
    wa, wb = ctx.const(0), ctx.const(1)
    ra, rb = ctx.rank(0), ctx.rank(1)
    if ra is None or rb is None or ra < 2 or rb < 2:
        ctx.barrier("MatMul operands of unknown rank or rank 1")
        return
    if wa is None and wb is not None:
        _x_times_weight(ctx, ra, wb.ndim)
    elif wa is not None and wb is None:
        _weight_times_x(ctx, rb, wa.ndim)
    elif wa is None and wb is None:
        _dynamic(ctx, ra, rb)


def _x_times_weight(ctx: NodeContext, ra: int, w_rank: int) -> None:
    x = ctx.layout(0)
    if w_rank != 2:
        ctx.barrier("MatMul with a batched constant weight")
        return
    out = {axis: slots for axis, slots in x.items() if axis != ra - 1}
    if ra - 1 in x:
        ctx.read(0, ra - 1, x[ra - 1], matmul_form(1, len(x[ra - 1])))
        ctx.slice_input(1, 0, x[ra - 1])
    out[ra - 1] = ctx.new_channels(1, 1)
    ctx.set_output(0, out)


def _weight_times_x(ctx: NodeContext, rb: int, w_rank: int) -> None:
    x = ctx.layout(1)
    if w_rank != 2:
        ctx.barrier("MatMul with a batched constant weight")
        return
    out = {axis: slots for axis, slots in x.items() if axis != rb - 2}
    if rb - 2 in x:
        ctx.read(1, rb - 2, x[rb - 2])
        ctx.slice_input(0, 1, x[rb - 2])
    out[rb - 2] = ctx.new_channels(0, 0)
    ctx.set_output(0, out)


def _dynamic(ctx: NodeContext, ra: int, rb: int) -> None:
    """Two computed operands (attention): the contracted axes are one channel set."""
    a, b = ctx.layout(0), ctx.layout(1)
    rank = max(ra, rb)
    ka, kb = a.get(ra - 1), b.get(rb - 2)
    if ka is not None and kb is not None and len(ka) == len(kb):
        ctx.union(ka, kb)
        ctx.read(0, ra - 1, ka)
        ctx.read(1, rb - 2, kb)
    else:
        for slots in (ka, kb):
            if slots is not None:
                ctx.freeze(slots, "contracted axis of a MatMul whose other operand is not pruned")
    out = {}
    if ra - 2 in a:
        out[rank - 2] = a[ra - 2]
    if rb - 1 in b:
        out[rank - 1] = b[rb - 1]
    for layout, r, other in ((a, ra, b), (b, rb, a)):
        for axis, slots in layout.items():
            if axis >= r - 2:
                continue
            target = axis + rank - r
            mate = other.get(target - rank + (rb if other is b else ra))
            if mate is not None and len(mate) == len(slots):
                ctx.union(slots, mate)
                out[target] = slots
            else:
                ctx.freeze(slots, "batch axis of a MatMul whose other operand is not pruned")
    ctx.set_output(0, out)
