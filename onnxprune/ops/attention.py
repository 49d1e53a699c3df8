"""onnxruntime's fused transformer ops (domain com.microsoft), as its optimiser and
exporters write them: Attention and MultiHeadAttention lose whole heads (their
`num_heads` is rewritten), the Gelu/bias variants pass channels through, and the
SkipLayerNormalization family behaves like LayerNormalization."""

from __future__ import annotations

import numpy as np

from ..analysis import Kept, NodeContext
from ._common import broadcast, kept_count
from ._registry import register
from .norm import _slice_params

MS = "com.microsoft"


def _set_num_heads(heads: np.ndarray):
    count = kept_count(heads)

    def rewrite(node, kept: Kept) -> None:
        total = len(heads)
        for attr in node.attribute:
            if attr.name == "num_heads":
                attr.i = count(kept)
            elif attr.name == "qkv_hidden_sizes":
                attr.ints[:] = [v // total * count(kept) for v in attr.ints]

    return rewrite


@register("Attention", domain=MS)
def attention(ctx: NodeContext) -> None:
    """input [B, S, hidden_in] x weights [hidden_in, q + k + v] + bias -> [B, S, v]."""
    w = ctx.const(1)
    heads_n = int(ctx.attr("num_heads", 0))
    sizes = list(ctx.attr("qkv_hidden_sizes", []) or [])
    if w is None or heads_n < 1 or (ctx.has_input(2) and ctx.const(2) is None):
        ctx.barrier("Attention weights or bias are computed at run time")
        return
    sizes = sizes or [w.shape[1] // 3] * 3
    if any(s % heads_n for s in sizes) or any(ctx.has_input(i) for i in range(4, 10)):
        ctx.barrier("Attention with past state, extra inputs or uneven head sizes")
        return
    rank = ctx.rank(0)
    x = ctx.layout(0)
    if rank is not None and rank - 1 in x:
        ctx.read(0, rank - 1, x[rank - 1])
        ctx.slice_input(1, 0, x[rank - 1])
    heads = ctx.new_heads(heads_n)
    columns = np.concatenate([np.repeat(heads, s // heads_n) for s in sizes])
    ctx.score_by(1, 1, columns)
    ctx.slice_input(1, 1, columns)
    if ctx.has_input(2):
        ctx.slice_input(2, 0, columns)
    ctx.transform_node(_set_num_heads(heads))
    out = np.repeat(heads, sizes[2] // heads_n)
    if ctx.output_used(1):
        ctx.freeze(out, "the present key/value state is used")
    ctx.set_output(0, {(rank or 3) - 1: out})


@register("MultiHeadAttention", domain=MS)
def multi_head_attention(ctx: NodeContext) -> None:
    """query, key, value [B, S, hidden] (already projected) -> [B, S, hidden_v]."""
    heads_n = int(ctx.attr("num_heads", 0))
    layouts = [ctx.layout(i).get(2) for i in range(3)]
    if heads_n < 1 or any(s is None for s in layouts) or any(ctx.rank(i) != 3 for i in range(3)):
        ctx.barrier("MultiHeadAttention whose query, key and value are not all prunable")
        return
    if any(len(s) % heads_n for s in layouts) or any(ctx.has_input(i) for i in range(6, 12)):
        ctx.barrier("MultiHeadAttention with past state or uneven head sizes")
        return
    units = [ctx.coarsen(s.reshape(heads_n, -1), 0) for s in layouts]
    ctx.union(units[0], units[1])
    ctx.union(units[0], units[2])
    if ctx.has_input(3):
        if ctx.const(3) is None:
            ctx.barrier("MultiHeadAttention bias is computed at run time")
            return
        ctx.slice_input(3, 0, np.concatenate(layouts))
    ctx.transform_node(_set_num_heads(units[0]))
    for j in (1, 2):
        if ctx.output_used(j):
            ctx.freeze(units[0], "the present key/value state is used")
    ctx.set_output(0, {2: layouts[2]})


@register("FastGelu", "BiasGelu", "Gelu", "QuickGelu", "BiasAdd", domain=MS)
def fused_elementwise(ctx: NodeContext) -> None:
    ctx.set_output(0, broadcast(ctx, list(range(ctx.n_inputs))))


def _skip_layer_norm(ctx: NodeContext, params: tuple[int, ...]) -> None:
    rank = ctx.rank(0)
    if rank is None:
        ctx.barrier("input rank is unknown")
        return
    summed = broadcast(ctx, [0, 1] + ([4] if ctx.has_input(4) and 4 not in params else []))
    out = {}
    for axis, slots in summed.items():
        if axis < rank - 1:
            out[axis] = slots
        elif ctx.options.prune_hidden and _slice_params(ctx, rank, axis, slots, params):
            ctx.approximate(slots, f"{ctx.op_type} statistics change with these channels")
            out[axis] = slots
        else:
            ctx.freeze(slots, f"{ctx.op_type} statistics span these channels")
    if ctx.output_used(1) or ctx.output_used(2):
        for slots in out.values():
            ctx.freeze(slots, "mean / inverse std outputs are used")
    ctx.set_output(0, out)
    ctx.set_output(3, summed if all(a in out for a in summed) else {})


@register("SkipLayerNormalization", domain=MS)
def skip_layer_norm(ctx: NodeContext) -> None:
    """input, skip, gamma, beta, bias: LayerNorm(input + skip + bias)."""
    _skip_layer_norm(ctx, (2, 3, 4))


@register("SkipSimplifiedLayerNormalization", domain=MS)
def skip_rms_norm(ctx: NodeContext) -> None:
    """input, skip, gamma, bias: RMSNorm(input + skip + bias)."""
    _skip_layer_norm(ctx, (2, 3))
