"""Evaluate run-time shape arithmetic (Shape -> Gather -> Add/Div/Mul -> Slice bounds)
for a hypothetical channel count, so a bound computed from the channel count itself
(`torch.chunk` as exporters write it) can be proven to follow the pruned count."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from onnx import numpy_helper

from ..graph import GraphIndex
from ._common import ints, norm_axis

MATH_OPS = {
    "Gather", "Unsqueeze", "Squeeze", "Concat", "Cast", "Identity", "Add", "Sub", "Mul",
    "Div", "Neg", "Floor", "Ceil", "Slice", "Max", "Min", "Where", "Equal",
    "ConstantOfShape", "Reshape",
}  # fmt: skip
TARGETS = {("Slice", 1), ("Slice", 2), ("Reshape", 1), ("Expand", 1)}
"""Inputs whose handlers prove that a value read from shapes follows the pruned counts."""
Dims = Callable[[str, int], int | None]
"""(tensor, axis) -> the size to assume for that dimension, or None if unknown."""


def feeds_only_shape_targets(index: GraphIndex, name: str, limit: int = 64) -> bool:
    """Whether every use of `name`, through shape arithmetic, ends in a Slice's bounds or
    a Reshape's or Expand's target shape: then those handlers, which prove or freeze,
    answer for the value."""
    todo, seen = [name], set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        if current in index.graph_outputs or current in index.subgraph_reads or len(seen) > limit:
            return False
        for node_idx, i in index.consumers.get(current, []):
            node = index.nodes[node_idx]
            if (node.op_type, i) in TARGETS:
                continue
            if node.op_type == "Shape":  # a shape vector's length does not change
                continue
            if node.op_type not in MATH_OPS or node.domain not in ("", "ai.onnx"):
                return False
            todo.extend(o for o in node.output if o)
    return True


def evaluate(index: GraphIndex, name: str, dims: Dims, reads: set, depth: int = 0):
    """The value of a small int tensor computed from shapes, with every Shape's dims
    taken from `dims`; records each (tensor, axis) read in `reads`. None if unknown."""
    value = index.const(name)
    if value is not None:
        return value
    if depth > 24 or name not in index.producer:
        return None
    node = index.nodes[index.producer[name]]
    op = node.op_type
    if op == "Shape":
        return _shape(index, node, dims, reads)
    if op not in MATH_OPS:
        return None
    args = [evaluate(index, n, dims, reads, depth + 1) if n else None for n in node.input]
    if any(a is None for a, n in zip(args, node.input, strict=True) if n):
        return None
    attrs = {a.name: a for a in node.attribute}
    return _apply(op, args, attrs)


def _shape(index: GraphIndex, node, dims: Dims, reads: set):
    x = node.input[0]
    rank = index.rank(x)
    if rank is None:
        return None
    attrs = {a.name: a.i for a in node.attribute}
    start = min(max(norm_axis(attrs.get("start", 0), rank), 0), rank)
    end = min(max(norm_axis(attrs.get("end", rank), rank), 0), rank)
    values = []
    for axis in range(start, end):
        reads.add((x, axis))
        size = dims(x, axis)
        if size is None:
            return None
        values.append(size)
    return np.array(values, np.int64)


def _apply(op: str, args: list, attrs: dict):
    a = args[0]
    if op in ("Cast", "Identity"):
        return a
    if op == "Neg":
        return -a
    if op in ("Floor", "Ceil"):
        return np.floor(a) if op == "Floor" else np.ceil(a)
    if op == "Squeeze":
        return np.squeeze(a)
    if op == "Unsqueeze":
        return a.reshape(-1) if a.size == 1 else None
    if op == "Concat":
        return np.concatenate([np.atleast_1d(x) for x in args])
    if op == "Gather":
        return np.take(a, args[1], axis=attrs["axis"].i if "axis" in attrs else 0)
    if op == "Where":
        return np.where(args[0], args[1], args[2])
    if op == "Equal":
        return np.equal(a, args[1])
    if op == "ConstantOfShape":
        fill = attrs["value"].t if "value" in attrs else None
        value = numpy_helper.to_array(fill).ravel()[0] if fill is not None else np.float32(0)
        return np.full([int(d) for d in np.atleast_1d(a)], value)
    if op == "Reshape":
        return a.reshape([int(d) for d in np.atleast_1d(args[1])]) if a.size < 64 else None
    if op == "Slice":
        if a.ndim != 1 or len(args) > 3 and args[3] is not None and ints(args[3]) != [0]:
            return None
        return a[int(args[1].ravel()[0]) : int(args[2].ravel()[0])]
    b = args[1]
    if op == "Div" and np.issubdtype(np.asarray(a).dtype, np.integer):
        return np.trunc(np.asarray(a) / np.asarray(b)).astype(np.int64)
    return {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide,
            "Max": np.maximum, "Min": np.minimum}[op](a, b)  # fmt: skip


def follow_target(ctx, name: str, out: dict) -> tuple[set[int], set]:
    """For a Reshape/Expand target computed at run time: the output axes whose size is
    read from a channel count and provably follows it when channels are removed, and
    the (tensor, axis) channel counts that could not be shown to (to be frozen).

    Each channel count read must count the same units (classes) as every other, so one
    number n (units kept) drives them all; the target is evaluated for n = 1..all and
    each output axis carrying those units must come out as n times its multiplicity.
    """
    index = ctx.graph
    reads: set = set()
    if evaluate(index, name, dims_as_they_are(ctx, 3), reads) is None:
        layout_reads = {r for r in reads if r[1] in ctx.layout_of(r[0])}
        return set(), layout_reads
    layout_reads = {r for r in reads if r[1] in ctx.layout_of(r[0])}
    if not layout_reads:
        return set(), set()
    units, per_read = _units(ctx, [ctx.layout_of(t)[a] for t, a in layout_reads])
    if units is None:
        return set(), layout_reads
    mult = dict(zip(layout_reads, per_read, strict=True))
    expected = {}
    for axis, slots in out.items():
        u, r = _units(ctx, [slots])
        if u is not None and np.array_equal(u, units):
            expected[axis] = r[0]
    base = np.atleast_1d(evaluate(index, name, dims_as_they_are(ctx, 3), set()))
    values = {}
    for n in _counts(len(units)):
        value = evaluate(index, name, _with_units(ctx, mult, n, 3), set())
        if value is None or np.atleast_1d(value).shape != base.shape:
            return set(), layout_reads
        values[n] = np.atleast_1d(value)
    varying = {k for v in values.values() for k in np.flatnonzero(v != base).tolist()}
    if any(expected.get(k) is None for k in varying) or any(
        v[k] != n * expected[k] for n, v in values.items() for k in varying
    ):
        return set(), layout_reads
    return varying, set()


def _units(ctx, arrays: list[np.ndarray]):
    """The distinct classes all arrays share, and each array's (uniform) multiplicity."""
    units, mults = None, []
    for slots in arrays:
        classes, counts = np.unique(ctx.classes(slots), return_counts=True)
        if units is not None and not np.array_equal(classes, units):
            return None, None
        if len(set(counts.tolist())) != 1:
            return None, None
        units = classes
        mults.append(int(counts[0]))
    return units, mults


def _counts(total: int) -> list[int]:
    if total <= 64:
        return list(range(1, total + 1))
    return sorted({1, 2, 3, total // 3, total // 2, total - 1, total})


def dims_as_they_are(ctx, probe: int) -> Dims:
    """Every dim as the unpruned model has it; unknown ones as `probe`."""

    def dims(tensor: str, axis: int):
        lay = ctx.layout_of(tensor)
        if axis in lay:
            return len(lay[axis])
        shape = ctx.graph.shape(tensor)
        size = shape[axis] if shape is not None and axis < len(shape) else None
        return size if isinstance(size, int) else probe

    return dims


def _with_units(ctx, mult: dict, n: int, probe: int) -> Dims:
    as_is = dims_as_they_are(ctx, probe)

    def dims(tensor: str, axis: int):
        if (tensor, axis) in mult:
            return n * mult[(tensor, axis)]
        return as_is(tensor, axis)

    return dims


def guard_reads(ctx, i: int, out: dict) -> set[int]:
    """Output axes of this node's run-time target (input i) that follow the pruned
    counts; every channel count the target reads that cannot be shown to follow is
    frozen here (the Shape node that read it left that to this node)."""
    following, unproven = follow_target(ctx, ctx.node.input[i], out)
    for tensor, axis in unproven:
        ctx.freeze(
            ctx.layout_of(tensor)[axis], f"its channel count is read for {ctx.op_type} sizes"
        )
    return following
