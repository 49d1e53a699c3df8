"""A read-mostly index over an onnx.ModelProto: producers, consumers, constants, shapes.

Constants live in initializers or in `Constant` nodes (as Paddle exports write them);
`GraphIndex.const` and `GraphIndex.set_const` hide the difference.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .modelio import light_copy, tensor_array

_LIGHT_LIMIT = 512  # initializers of more bytes than this are typed inputs for inference
_CACHE_LIMIT = 1 << 16
"""Constants up to this many bytes are cached; larger ones (weights) are read on use."""
_CONSTANT_ATTRS = ("value", "value_float", "value_floats", "value_int", "value_ints")


def node_label(node: onnx.NodeProto, index: int) -> str:
    """A name a person can find in a model viewer: the node's name, or op type and index."""
    return node.name or f"{node.op_type}#{index}"


def subgraph_references(node: onnx.NodeProto) -> set[str]:
    """Names a node's subgraphs (If/Loop/Scan bodies) read from the enclosing scope."""
    names: set[str] = set()
    for attr in node.attribute:
        graphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
        for graph in graphs:
            local = {t.name for t in graph.initializer} | {i.name for i in graph.input}
            for inner in graph.node:
                local.update(inner.output)
            for inner in graph.node:
                names.update(n for n in inner.input if n and n not in local)
                names.update(subgraph_references(inner) - local)
            names.update(o.name for o in graph.output if o.name not in local)
    return names


Dim = int | str | None
"""A dimension: its size, the name of a symbolic size, or None when unknown."""


def _dims(type_proto: onnx.TypeProto) -> list[Dim] | None:
    if not type_proto.HasField("tensor_type") or not type_proto.tensor_type.HasField("shape"):
        return None
    return [
        d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
        for d in type_proto.tensor_type.shape.dim
    ]


def light_inference(
    model: onnx.ModelProto, input_dims: dict[str, list[int]] | None, value_info: bool
) -> onnx.ModelProto | None:
    """Shape inference on a light copy whose large initializers are typed graph inputs,
    so the weights are not serialised for the C++ pass; None if inference fails."""
    light = light_copy(model, _LIGHT_LIMIT)
    if not value_info:
        del light.graph.value_info[:]
    for vi in light.graph.input:
        if input_dims and vi.name in input_dims:
            dims = vi.type.tensor_type.shape.dim
            del dims[:]
            for size in input_dims[vi.name]:
                dims.add().dim_value = int(size)
    try:
        return onnx.shape_inference.infer_shapes(light, data_prop=True)
    except Exception:  # inference is best effort; unknown shapes freeze what needs them
        return None


def infer_shapes(
    model: onnx.ModelProto, input_dims: dict[str, list[int]] | None = None
) -> dict[str, list[Dim]]:
    """Shapes of every tensor shape inference can reach (None for unknown dims).

    `input_dims` fixes the dimensions of graph inputs. Empty if inference fails with
    them; without them a failure gives what the model itself declares.
    """
    graph = model.graph
    inferred = light_inference(model, input_dims, value_info=True)
    if inferred is None:
        if input_dims:
            return {}
        inferred = model
    shapes: dict[str, list[Dim]] = {}
    g = inferred.graph
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        dims = _dims(vi.type)
        if dims is not None:
            shapes[vi.name] = dims
    for init in graph.initializer:
        shapes[init.name] = list(init.dims)
    return shapes


def with_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy of `model` whose graph also outputs the tensors `names` (to read them)."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    present = {o.name for o in probe.graph.output}
    for name in names:
        if name not in present:
            probe.graph.output.add().name = name
    return probe


def refresh_value_info(model: onnx.ModelProto, before: dict, input_dims: dict | None) -> None:
    """Keep the value_info entries whose shape pruning did not change (`before`: shapes
    inferred with `input_dims` before pruning); re-infer the others, dropping those
    inference cannot reach. Keeping them keeps the symbolic names (onnxruntime's fusions
    rely on them)."""
    graph = model.graph
    declared = list(graph.value_info)
    if not declared:
        return
    del graph.value_info[:]
    after = infer_shapes(model, input_dims)
    changed = {vi.name for vi in declared if before.get(vi.name) != after.get(vi.name)}
    found = {}
    if changed:
        inferred = light_inference(model, None, value_info=False)
        found = {vi.name: vi for vi in inferred.graph.value_info} if inferred is not None else {}
    graph.value_info.extend(
        vi if vi.name not in changed else found[vi.name]
        for vi in declared
        if vi.name not in changed or vi.name in found
    )


def constant_node_value(node: onnx.NodeProto) -> np.ndarray | None:
    """The value of a `Constant` node, or None for sparse or string constants."""
    for attr in node.attribute:
        if attr.name == "value":
            return numpy_helper.to_array(attr.t)
        if attr.name in _CONSTANT_ATTRS:
            value = helper.get_attribute_value(attr)
            dtype = np.float32 if "float" in attr.name else np.int64
            return np.array(value, dtype=dtype)
    return None


class GraphIndex:
    """Producers, consumers, constants and inferred shapes of a model's main graph."""

    def __init__(
        self, model: onnx.ModelProto, input_dims: dict[str, list[int]] | None = None
    ) -> None:
        self.model = model
        graph = model.graph
        self.nodes = list(graph.node)
        self.initializers = {t.name: t for t in graph.initializer}
        self.constant_nodes: dict[str, onnx.NodeProto] = {}
        self.producer: dict[str, int] = {}
        self.consumers: dict[str, list[tuple[int, int]]] = defaultdict(list)
        self.subgraph_reads: set[str] = set()
        for i, node in enumerate(self.nodes):
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                if constant_node_value(node) is not None:
                    self.constant_nodes[node.output[0]] = node
            for out in node.output:
                if out:
                    self.producer[out] = i
            for j, name in enumerate(node.input):
                if name:
                    self.consumers[name].append((i, j))
            self.subgraph_reads |= subgraph_references(node)
        self.graph_inputs = [i.name for i in graph.input if i.name not in self.initializers]
        self.graph_outputs = [o.name for o in graph.output]
        self.opsets = {o.domain or "": o.version for o in model.opset_import}
        self.opsets.setdefault("ai.onnx", self.opsets.get("", 1))
        # Concrete input dims let shape inference fold the shape arithmetic exporters
        # write; nothing inferred is written back, so symbolic dims stay symbolic.
        self.input_dims = input_dims
        self.shapes = infer_shapes(model, input_dims) if input_dims else {}
        if not self.shapes:
            self.shapes = infer_shapes(model)
        self._cache: dict[str, np.ndarray] = {}

    def opset(self, domain: str = "") -> int:
        return self.opsets.get(domain or "", self.opsets.get("ai.onnx", 1))

    def is_const(self, name: str) -> bool:
        return self.is_stored(name) or self.const(name) is not None

    def is_stored(self, name: str) -> bool:
        """Whether the constant lives where set_const can rewrite it."""
        return name in self.initializers or name in self.constant_nodes

    def const(self, name: str) -> np.ndarray | None:
        """The constant's value (cached), or None when `name` is computed at run time."""
        if not name:
            return None
        if name not in self._cache:
            if name in self.initializers:
                value = tensor_array(self.initializers[name])
                if value.nbytes > _CACHE_LIMIT:
                    return value  # weights are read when needed, not kept twice
                self._cache[name] = value
            elif name in self.constant_nodes:
                value = constant_node_value(self.constant_nodes[name])
                if value is None:
                    return None
                self._cache[name] = value
            else:
                value = self._folded(name)
                if value is None:
                    return None
                self._cache[name] = value
        return self._cache[name]

    def _folded(self, name: str) -> np.ndarray | None:
        """Identity of a constant, or ConstantOfShape of a constant shape (old exporters)."""
        node = self.nodes[self.producer[name]] if name in self.producer else None
        if node is None or node.domain not in ("", "ai.onnx"):
            return None
        if node.op_type == "Identity":
            return self.const(node.input[0])
        if node.op_type == "ConstantOfShape":
            dims = self.const(node.input[0])
            if dims is None or dims.size > 8 or np.prod(dims) > 1 << 24:
                return None
            fill = np.zeros(1, np.float32)
            for attr in node.attribute:
                if attr.name == "value":
                    fill = numpy_helper.to_array(attr.t).ravel()
            return np.full([int(d) for d in dims], fill[0], dtype=fill.dtype)
        return None

    def set_const(self, name: str, value: np.ndarray) -> None:
        """Replace a constant's value where it lives (initializer or Constant node)."""
        self._cache.pop(name, None)
        if value.nbytes <= _CACHE_LIMIT:
            self._cache[name] = value
        tensor = numpy_helper.from_array(value, name)
        if name in self.initializers:
            self.initializers[name].CopyFrom(tensor)
            return
        node = self.constant_nodes[name]
        del node.attribute[:]
        node.attribute.append(helper.make_attribute("value", tensor))

    def add_initializer(self, name: str, value: np.ndarray) -> None:
        tensor = self.model.graph.initializer.add()
        tensor.CopyFrom(numpy_helper.from_array(value, name))
        self.initializers[name] = tensor
        if value.nbytes <= _CACHE_LIMIT:
            self._cache[name] = value

    def shape(self, name: str) -> list[Dim] | None:
        if name in self.shapes:
            return self.shapes[name]
        value = self.const(name)
        return list(value.shape) if value is not None else None

    def rank(self, name: str) -> int | None:
        shape = self.shape(name)
        return None if shape is None else len(shape)

    def unique_name(self, base: str) -> str:
        taken = set(self.producer) | set(self.initializers) | set(self.graph_inputs)
        k = 1
        while f"{base}__pruned{k}" in taken:
            k += 1
        return f"{base}__pruned{k}"

    def iter_nodes(self) -> Iterator[tuple[int, onnx.NodeProto]]:
        return enumerate(self.nodes)
