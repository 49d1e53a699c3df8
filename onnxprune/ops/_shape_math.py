"""Evaluate run-time shape arithmetic (Shape -> Gather -> Add/Div/Mul -> Slice bounds)
for a hypothetical channel count, so a bound computed from the channel count itself
(`torch.chunk` as exporters write it) can be proven to follow the pruned count."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..graph import GraphIndex
from ._common import ints, norm_axis

MATH_OPS = {
    "Gather", "Unsqueeze", "Squeeze", "Concat", "Cast", "Identity", "Add", "Sub", "Mul",
    "Div", "Neg", "Floor", "Ceil", "Slice", "Max", "Min",
}  # fmt: skip
Dims = Callable[[str, int], int | None]
"""(tensor, axis) -> the size to assume for that dimension, or None if unknown."""


def feeds_only_slice_bounds(index: GraphIndex, name: str, limit: int = 64) -> bool:
    """Whether every use of `name`, through shape arithmetic, ends in a Slice's starts or
    ends: then the Slice handler, which proves or freezes, answers for the value."""
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
            if node.op_type == "Slice" and i in (1, 2):
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
    if op == "Slice":
        if a.ndim != 1 or len(args) > 3 and args[3] is not None and ints(args[3]) != [0]:
            return None
        return a[int(args[1].ravel()[0]) : int(args[2].ravel()[0])]
    b = args[1]
    if op == "Div" and np.issubdtype(np.asarray(a).dtype, np.integer):
        return np.trunc(np.asarray(a) / np.asarray(b)).astype(np.int64)
    return {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide,
            "Max": np.maximum, "Min": np.minimum}[op](a, b)  # fmt: skip
