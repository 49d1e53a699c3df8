"""onnxruntime's fused transformer ops (domain com.microsoft), as its optimiser and
exporters write them: Attention and MultiHeadAttention lose whole heads (their
`num_heads` and a per-head attention_bias follow), the Gelu/bias variants pass channels
through, and the SkipLayerNormalization family behaves like LayerNormalization. onnx's
shape inference does not know these ops, so each handler records its output shape."""

from __future__ import annotations

import numpy as np

from ..analysis import Kept, NodeContext
from ._common import broadcast, kept_count
from ._registry import register
from .norm import _slice_params

MS = "com.microsoft"


def _heads_allowed(ctx: NodeContext, heads: np.ndarray) -> None:
    """Heads stay whole units; with head pruning off they are not pruned at all."""
    if not ctx.options.prune_heads:
        ctx.freeze(heads, "head pruning is off (prune_heads=False)")


def _head_bias(ctx: NodeContext, i: int, heads: np.ndarray) -> None:
    """attention_bias [B or 1, num_heads or 1, S, T]: a per-head constant loses the
    removed heads; one computed at run time keeps every head."""
    if not ctx.has_input(i):
        return
    value = ctx.const(i)
    shape = ctx.shape(i) if value is None else list(value.shape)
    if shape is not None and len(shape) == 4 and shape[1] == 1:
        return  # one bias shared by every head
    if value is not None and value.ndim == 4 and value.shape[1] == len(heads):
        ctx.slice_input(i, 1, heads)
    else:
        ctx.freeze(heads, "attention_bias has a slice per head and is computed at run time")


def _refine(ctx: NodeContext, j: int, dims: list | None) -> None:
    """Record an output shape onnx's shape inference cannot tell (it does not know the
    com.microsoft ops), so the handlers downstream know its rank."""
    used = j < len(ctx.node.output) and ctx.node.output[j]
    if used and dims is not None and ctx.out_shape(j) is None:
        ctx.refine_output_shape(j, dims)


def _freeze_other_axes(ctx: NodeContext, i: int, keep: int) -> None:
    for axis, slots in ctx.layout(i).items():
        if axis != keep:
            ctx.freeze(slots, f"{ctx.op_type} mixes axis {axis} of input {i}")


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
    shape = ctx.shape(0) or [None, None, None]
    _refine(ctx, 0, [*shape[:-1], sizes[2]])  # input and output are [B, S, *]
    extra = [i for i in (4, *range(6, 10)) if ctx.has_input(i)]
    if any(s % heads_n for s in sizes) or extra:
        ctx.barrier("Attention with past state, extra inputs or uneven head sizes")
        return
    x = ctx.layout(0)
    if ctx.rank(0) != 3:  # [B, S, hidden_in]; unknown when onnx cannot infer it
        ctx.freeze_input(0, "Attention input of unknown rank")
    else:
        _freeze_other_axes(ctx, 0, 2)
        if 2 in x:
            ctx.read(0, 2, x[2])
            ctx.slice_input(1, 0, x[2])
    heads = ctx.new_heads(heads_n)
    _heads_allowed(ctx, heads)
    _head_bias(ctx, 5, heads)
    columns = np.concatenate([np.repeat(heads, s // heads_n) for s in sizes])
    ctx.score_by(1, 1, columns)
    ctx.slice_input(1, 1, columns)
    if ctx.has_input(2):
        ctx.slice_input(2, 0, columns)
    ctx.transform_node(_set_num_heads(heads))
    out = np.repeat(heads, sizes[2] // heads_n)
    if ctx.output_used(1):
        ctx.freeze(out, "the present key/value state is used")
    ctx.set_output(0, {2: out})


@register("MultiHeadAttention", domain=MS)
def multi_head_attention(ctx: NodeContext) -> None:
    """query, key, value [B, S, hidden] (already projected) -> [B, S, hidden_v]."""
    heads_n = int(ctx.attr("num_heads", 0))
    q_shape, v_shape = ctx.shape(0), ctx.shape(2)
    if q_shape is not None and len(q_shape) == 3 and v_shape is not None and len(v_shape) == 3:
        _refine(ctx, 0, [*q_shape[:2], v_shape[2]])
    layouts = [ctx.layout(i).get(2) for i in range(3)]
    if heads_n < 1 or any(s is None for s in layouts) or any(ctx.rank(i) != 3 for i in range(3)):
        ctx.barrier("MultiHeadAttention whose query, key and value are not all prunable")
        return
    if any(len(s) % heads_n for s in layouts) or any(ctx.has_input(i) for i in range(6, 12)):
        ctx.barrier("MultiHeadAttention with past state or uneven head sizes")
        return
    for i in range(3):
        _freeze_other_axes(ctx, i, 2)
    units = [ctx.coarsen(s.reshape(heads_n, -1), 0) for s in layouts]
    ctx.union(units[0], units[1])
    ctx.union(units[0], units[2])
    _heads_allowed(ctx, units[0])
    _head_bias(ctx, 5, units[0])
    if ctx.has_input(3):
        if ctx.const(3) is None:
            ctx.barrier("MultiHeadAttention bias is computed at run time")
            return
        ctx.slice_input(3, 0, np.concatenate(layouts))
    ctx.transform_node(_set_num_heads(units[0]))
    for j, what in ((1, "present key"), (2, "present value"), (3, "qk")):
        if ctx.output_used(j):
            ctx.freeze(units[0], f"the {what} output (one slice per head) is used")
    ctx.set_output(0, {2: layouts[2]})


@register("FastGelu", "BiasGelu", "Gelu", "QuickGelu", "BiasAdd", domain=MS)
def fused_elementwise(ctx: NodeContext) -> None:
    present = [i for i in range(ctx.n_inputs) if ctx.has_input(i)]
    _refine(ctx, 0, _broadcast_dims([ctx.shape(i) for i in present]))
    ctx.set_output(0, broadcast(ctx, present))


def _broadcast_dims(shapes: list) -> list | None:
    """numpy broadcasting of known shapes (dims may be symbolic names); None if unknown."""
    if not shapes or any(s is None for s in shapes):
        return None
    rank = max(len(s) for s in shapes)
    padded = [[1] * (rank - len(s)) + list(s) for s in shapes]
    return [next((d for d in dims if d != 1), 1) for dims in zip(*padded, strict=True)]


def _skip_layer_norm(ctx: NodeContext, params: tuple[int, ...]) -> None:
    for j in (0, 3):
        _refine(ctx, j, ctx.shape(0))
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
