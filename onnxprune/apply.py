"""Rewrite the model from a plan: slice constants, update attributes and shape constants.

Each use of a constant (node, input) gets the value its handler's transforms give.
Uses that agree share one tensor; a use that differs (a constant shared by two
unrelated groups) gets a copy under a new name, so every consumer stays exact.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx

from .analysis import Analysis, Kept
from .graph import infer_shapes, refresh_value_info
from .progress import progress


def apply_plan(a: Analysis, keep_slot: np.ndarray) -> None:
    """Mutate `a.index.model` so that only the kept slots remain."""

    def kept(slots: np.ndarray) -> np.ndarray:
        return keep_slot[slots]

    index = a.index
    before = infer_shapes(index.model, index.input_dims) if index.model.graph.value_info else {}
    uses: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for node_idx, i in a.const_edits:
        uses[index.nodes[node_idx].input[i]].append((node_idx, i))
    for name, sites in progress(uses.items(), "slicing", total=len(uses)):
        _rewrite_constant(a, name, sites, kept)
    for node_idx, fns in a.node_edits.items():
        for fn in fns:
            fn(index.nodes[node_idx], kept)
    refresh_value_info(index.model, before, index.input_dims)


def _rewrite_constant(a: Analysis, name: str, sites: list, kept: Kept) -> None:
    index = a.index
    original = index.const(name)
    edited = set(sites)
    others = [s for s in index.consumers.get(name, []) if s not in edited]
    pinned = (
        bool(others)
        or name in index.graph_outputs
        or name in index.subgraph_reads
        or not index.is_stored(name)
    )
    results: list[tuple[np.ndarray, list[tuple[int, int]]]] = [(original, others)]
    for site in sites:
        value = original
        for fn in a.const_edits[site]:
            value = fn(value, kept)
        for known, holders in results:
            if known.shape == value.shape and np.array_equal(known, value):
                holders.append(site)
                break
        else:
            results.append((value, [site]))
    (_, original_holders), rest = results[0], results[1:]
    if not original_holders and not pinned:
        (value, _), *rest = rest
        index.set_const(name, value)
    for value, holders in rest:
        new_name = index.unique_name(name)
        index.add_initializer(new_name, value)
        for node_idx, i in holders:
            index.nodes[node_idx].input[i] = new_name


def count_params(model: onnx.ModelProto) -> int:
    """Elements of every floating-point constant (initializers and Constant nodes)."""
    floats = {
        onnx.TensorProto.FLOAT,
        onnx.TensorProto.FLOAT16,
        onnx.TensorProto.DOUBLE,
        onnx.TensorProto.BFLOAT16,
    }
    tensors = list(model.graph.initializer) + [
        attr.t
        for node in model.graph.node
        if node.op_type == "Constant"
        for attr in node.attribute
        if attr.name == "value"
    ]
    return sum(int(np.prod(t.dims, dtype=np.int64)) for t in tensors if t.data_type in floats)
