"""Small readers for test assertions: initializer values, attributes, which slices remain."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

IR_FOR_OPSET = {11: 6, 13: 7, 17: 8, 21: 10}


def header(opset: int) -> str:
    """The `<ir_version, opset_import>` line of an ONNX text model at this opset."""
    return f'<ir_version: {IR_FOR_OPSET[opset]}, opset_import: ["" : {opset}]>'


def weight(model: onnx.ModelProto, name: str) -> np.ndarray:
    """An initializer's value, or a Constant node's value when no initializer has the name."""
    for t in model.graph.initializer:
        if t.name == name:
            return numpy_helper.to_array(t)
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            return numpy_helper.to_array(node.attribute[0].t)
    raise KeyError(name)


def attr(model: onnx.ModelProto, op_type: str, name: str) -> list:
    """The values of attribute `name` on every node of `op_type`, in graph order."""
    return [
        onnx.helper.get_attribute_value(a)
        for n in model.graph.node
        if n.op_type == op_type
        for a in n.attribute
        if a.name == name
    ]


def rows_of(original: np.ndarray, pruned: np.ndarray, axis: int = 0) -> list[int]:
    """Which positions of `original` along `axis` the `pruned` array kept, in order."""
    orig = np.moveaxis(original, axis, 0)
    kept = []
    for row in np.moveaxis(pruned, axis, 0):
        hits = [k for k in range(len(orig)) if np.array_equal(orig[k], row)]
        assert len(hits) == 1, f"pruned slice matches {len(hits)} original slices"
        kept.append(hits[0])
    return kept


def top_l2(w: np.ndarray, keep: int, axis: int = 0) -> list[int]:
    """The `keep` positions of `axis` with the largest weight norm, ascending."""
    flat = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1).astype(np.float64)
    return sorted(np.argsort(-(flat**2).sum(axis=1))[:keep].tolist())
