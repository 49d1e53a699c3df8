"""Fold the small shape computations exporters write (Shape -> Gather -> Unsqueeze ->
Concat) into a vector whose entries are ints or ("dim", tensor, axis) references."""

from __future__ import annotations

import numpy as np

from ..graph import GraphIndex
from ._common import ints, norm_axis

Entry = int | tuple[str, str, int]


def shape_vector(index: GraphIndex, name: str, depth: int = 0) -> list[Entry] | None:
    """Entries of a 0-D or 1-D int tensor, or None where they cannot be told statically."""
    value = index.const(name)
    if value is not None:
        return ints(value) if value.ndim <= 1 else None
    if depth > 16 or name not in index.producer:
        return None
    node = index.nodes[index.producer[name]]
    op = node.op_type
    attrs = {a.name: a for a in node.attribute}
    if op == "Shape":
        rank = index.rank(node.input[0])
        if rank is None:
            return None
        start = norm_axis(attrs["start"].i, rank) if "start" in attrs else 0
        end = norm_axis(attrs["end"].i, rank) if "end" in attrs else rank
        return [("dim", node.input[0], a) for a in range(max(start, 0), min(end, rank))]
    if op in ("Cast", "Identity", "Squeeze", "Unsqueeze"):
        return shape_vector(index, node.input[0], depth + 1)
    if op == "Concat":
        parts = [shape_vector(index, n, depth + 1) for n in node.input]
        return None if any(p is None for p in parts) else [e for p in parts for e in p]
    if op == "Slice" and len(node.input) >= 3:
        data = shape_vector(index, node.input[0], depth + 1)
        bounds = [index.const(n) if n else None for n in node.input[1:5]]
        if data is None or bounds[0] is None or bounds[1] is None:
            return None
        if any(b is not None and ints(b) not in ([0], [1]) for b in bounds[2:]):
            return None  # another axis, or a step other than 1
        return data[ints(bounds[0])[0] : ints(bounds[1])[0]]
    if op == "Gather":
        data = shape_vector(index, node.input[0], depth + 1)
        picks = index.const(node.input[1])
        if data is None or picks is None:
            return None
        return [data[norm_axis(i, len(data))] for i in ints(picks)]
    return None


Source = tuple[int, int, int] | None
"""Where a literal entry lives: (node index, input index, position in that constant)."""


def literal_sources(index: GraphIndex, name: str, depth: int = 0) -> list[Source] | None:
    """For each entry of `shape_vector(name)`, the constant use it was read from (None for
    entries read from shapes). Rewriting that use changes the entry at run time."""
    if depth > 16 or name not in index.producer or index.const(name) is not None:
        return None
    node_idx = index.producer[name]
    node = index.nodes[node_idx]
    if node.op_type == "Concat":
        sources: list[Source] = []
        for j, part in enumerate(node.input):
            value = index.const(part)
            if value is not None:
                sources.extend((node_idx, j, k) for k in range(max(value.size, 1)))
                continue
            inner = literal_sources(index, part, depth + 1)
            entries = shape_vector(index, part)
            if entries is None:
                return None
            sources.extend(inner if inner is not None else [None] * len(entries))
        return sources
    if node.op_type in ("Cast", "Identity", "Squeeze", "Unsqueeze"):
        if index.const(node.input[0]) is not None:
            return [(node_idx, 0, 0)] if index.const(node.input[0]).size == 1 else None
        return literal_sources(index, node.input[0], depth + 1)
    entries = shape_vector(index, name)
    return None if entries is None else [None] * len(entries)


def dims_read(index: GraphIndex, shape_output: str, length: int) -> set[int] | None:
    """Which entries of a Shape node's output (`length` of them) its consumers read, or
    None if any are unknown."""
    read: set[int] = set()
    for node_idx, _ in index.consumers.get(shape_output, []):
        node = index.nodes[node_idx]
        picks = index.const(node.input[1]) if len(node.input) > 1 else None
        if node.op_type != "Gather" or picks is None or node.input[0] != shape_output:
            return None
        read.update(norm_axis(i, length) for i in ints(picks))
    if shape_output in index.graph_outputs:
        return None
    return read


def reshape_target(
    index: GraphIndex, src: list, entries: list[Entry], allowzero: bool
) -> list[int | str | None]:
    """Reshape's output shape from its input shape and its shape entries (None: unknown).

    Shape inference gives up on the `x.view(x.size(0), -1)` pattern exporters write;
    the entries from `shape_vector` still tell it (`0` copies the input dim, one `-1`
    takes what is left, symbolic dims that appear on both sides cancel out).
    """
    dims: list[int | str | None] = []
    for k, entry in enumerate(entries):
        if isinstance(entry, tuple):
            shape = index.shape(entry[1])
            dims.append(shape[entry[2]] if shape is not None and entry[2] < len(shape) else None)
        elif entry == 0 and not allowzero:
            dims.append(src[k] if k < len(src) else None)
        else:
            dims.append(entry)
    if dims.count(-1) == 1:
        rest, others = list(src), []
        for d in dims:
            if isinstance(d, str) and d in rest:
                rest.remove(d)
            elif d != -1:
                others.append(d)
        known = all(isinstance(d, int) for d in rest + others)
        size = int(np.prod(others, dtype=np.int64)) if known else 0
        dims[dims.index(-1)] = int(np.prod(rest, dtype=np.int64)) // size if size > 0 else None
    return [d if d != -1 else None for d in dims]
