"""Checks of an input model that the rest of onnxprune relies on, each a one-line
BadInputError naming what is wrong: readable names, tensors whose data matches their
dims and type, each tensor defined once and before it is read, declared sizes that fit
in memory before anything is allocated for them.

`check_structure` runs when a model is loaded; `check_feeds` before onnxprune makes
inputs for a model; `check_run_sizes` before onnxruntime runs one; `blamed_on_input`
turns a crash on an invalid model into the checker's verdict on it.
"""

from __future__ import annotations

import contextlib
import os
import resource
from collections.abc import Iterator

import numpy as np
import onnx
from google.protobuf.descriptor import FieldDescriptor
from onnx import TensorProto, helper

from .errors import BadInputError, OnnxPruneError, UnsupportedModelError, first_line
from .modelio import expected_bytes, is_external, light_copy
from .protowire import is_repeated

_VALUE_ATTRS = {
    "value", "value_float", "value_floats", "value_int", "value_ints",
    "value_string", "value_strings", "sparse_value",
}  # fmt: skip
_KNOWN_TYPES = set(TensorProto.DataType.values()) - {TensorProto.UNDEFINED}


def check_structure(model: onnx.ModelProto) -> None:
    """BadInputError unless the main graph is well formed: UTF-8 names, constants whose
    data fits their dims and type, every tensor defined once, before it is read, and
    every graph output defined."""
    _check_text(model)
    graph = model.graph
    for tensor in graph.initializer:
        _check_tensor(tensor, f"initializer '{tensor.name}'")
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            _check_constant(node)
    check_order(graph)


def check_order(graph: onnx.GraphProto) -> None:
    """Each tensor is defined once (graph input, initializer or node output), and every
    node reads only what is defined before it (no cycle, no dangling name)."""
    defined: set[str] = set()
    for vi in graph.input:
        if vi.name in defined:
            raise BadInputError(f"graph input '{vi.name}' is declared twice")
        defined.add(vi.name)
    initializers: set[str] = set()
    for tensor in graph.initializer:
        if tensor.name in initializers:
            raise BadInputError(f"two initializers are named '{tensor.name}'")
        initializers.add(tensor.name)
    defined |= initializers
    producers = {out: k for k, node in enumerate(graph.node) for out in node.output if out}
    for k, node in enumerate(graph.node):
        where = node.name or f"{node.op_type}#{k}"
        for name in node.input:
            if name and name not in defined:
                if name in producers:
                    raise BadInputError(
                        f"node '{where}' reads '{name}' before it is computed "
                        "(the graph is not topologically sorted, or has a cycle)"
                    )
                raise BadInputError(f"node '{where}' reads '{name}', which nothing defines")
        for name in node.output:
            if name and name in defined:
                raise BadInputError(
                    f"node '{where}' writes '{name}', which is already defined "
                    "(by another node, an initializer or a graph input)"
                )
            defined.add(name)
    for vi in graph.output:
        if vi.name not in defined:
            raise BadInputError(f"graph output '{vi.name}' is not computed by any node")


def _check_text(message, path: str = "model") -> None:
    """Protobuf hands back bytes for a string field that is not UTF-8 (upb): every
    name onnxprune or onnxruntime reads must be text."""
    for field, value in message.ListFields():
        if field.type == FieldDescriptor.TYPE_STRING:
            for v in value if is_repeated(field) else [value]:
                if not isinstance(v, str):
                    raise BadInputError(
                        f"{path}.{field.name} is not valid UTF-8 text: {bytes(v)[:60]!r}"
                    )
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if isinstance(message, TensorProto) and field.name != "external_data":
                continue
            for v in value if is_repeated(field) else [value]:
                _check_text(v, f"{path}.{field.name}")


def _check_constant(node: onnx.NodeProto) -> None:
    values = [a for a in node.attribute if a.name in _VALUE_ATTRS]
    where = f"Constant '{node.name or ','.join(node.output)}'"
    if len(values) != 1:
        raise BadInputError(f"{where} has {len(values)} values; a Constant holds exactly one")
    if values[0].type == onnx.AttributeProto.TENSOR:
        _check_tensor(values[0].t, where)


def _check_tensor(tensor: TensorProto, where: str) -> None:
    """The tensor's element type is known and its data has the size its dims say."""
    if tensor.data_type not in _KNOWN_TYPES:
        raise BadInputError(f"{where} has no known element type (data_type {tensor.data_type})")
    if any(d < 0 for d in tensor.dims):
        raise BadInputError(f"{where} has negative dims {list(tensor.dims)}")
    if is_external(tensor):
        return  # checked against its file by modelio
    count = 1
    for d in tensor.dims:
        count *= int(d)
    if tensor.HasField("raw_data"):
        expected = expected_bytes(tensor)
        held = len(tensor.raw_data)
        if expected is not None and held != expected:
            raise BadInputError(
                f"{where} declares dims {list(tensor.dims)} ({expected} bytes of "
                f"{helper.tensor_dtype_to_string(tensor.data_type)}) but holds {held} bytes"
            )
        return
    field, expected = _typed_field(tensor.data_type, count)
    held = len(getattr(tensor, field))
    if held != expected:
        raise BadInputError(
            f"{where} declares dims {list(tensor.dims)} ({count} values) but holds {held}"
        )


_FIELDS = {
    TensorProto.FLOAT: "float_data",
    TensorProto.COMPLEX64: "float_data",
    TensorProto.DOUBLE: "double_data",
    TensorProto.COMPLEX128: "double_data",
    TensorProto.INT64: "int64_data",
    TensorProto.UINT32: "uint64_data",
    TensorProto.UINT64: "uint64_data",
    TensorProto.STRING: "string_data",
}
_PACKED = {
    getattr(TensorProto, name)
    for name in ("INT4", "UINT4", "FLOAT4E2M1")
    if hasattr(TensorProto, name)
}


def _typed_field(data_type: int, count: int) -> tuple[str, int]:
    """The field holding a tensor's values when not in raw_data, and how many it needs."""
    field = _FIELDS.get(data_type, "int32_data")
    if data_type in (TensorProto.COMPLEX64, TensorProto.COMPLEX128):
        return field, 2 * count
    if data_type in _PACKED:
        return field, (count + 1) // 2
    return field, count


# -- declared sizes ---------------------------------------------------------------------


def memory_budget() -> int:
    """Bytes this process may use: physical memory, or the address-space limit if lower."""
    try:
        budget = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        budget = 1 << 40
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        budget = min(budget, soft)
    return budget


def _gb(n: int) -> str:
    return f"{n / 1e9:.3g} GB"


def check_feeds(model: onnx.ModelProto, dims: dict[str, list[int]]) -> None:
    """Inputs of these dims can be made for the model: tensors of a known element type,
    no negative dim, and all of them together well within memory."""
    types = {vi.name: vi.type for vi in model.graph.input}
    total = 0
    for name, shape in dims.items():
        kind = types[name].WhichOneof("value")
        if kind != "tensor_type":
            raise UnsupportedModelError(
                f"graph input '{name}' is a {kind or 'value of no type'}, not a tensor; "
                "onnxprune can only make tensor inputs"
            )
        elem = types[name].tensor_type.elem_type
        if elem not in _KNOWN_TYPES or elem == TensorProto.STRING:
            raise BadInputError(f"graph input '{name}' has no numeric element type ({elem})")
        if any(d < 0 for d in shape):
            raise BadInputError(f"graph input '{name}' would have negative dims {shape}")
        total += 8 * int(np.prod(shape, dtype=object))  # drawn as float64
        if total > memory_budget() // 4:
            raise BadInputError(
                f"graph input '{name}' of shape {shape} would take {_gb(total)}, more than "
                f"this machine can spare ({_gb(memory_budget())} in all); "
                "give smaller sizes with --input-shape"
            )


def check_run_sizes(model: onnx.ModelProto, dims: dict[str, list[int]]) -> None:
    """No tensor shape inference can size, with inputs of `dims`, needs more than half
    the memory budget (about 4 bytes an element) when onnxruntime runs the model."""
    from .graph import infer_shapes

    limit = memory_budget() // 2
    stored = {t.name for t in model.graph.initializer}
    inputs = {vi.name for vi in model.graph.input}
    for name, shape in infer_shapes(model, dims).items():
        if name in stored or shape is None or not all(isinstance(d, int) for d in shape):
            continue
        size = 4 * int(np.prod(shape, dtype=object))
        if size > limit:
            what = "graph input" if name in inputs else "tensor"
            raise BadInputError(
                f"{what} '{name}' would have shape {shape} (about {_gb(size)}) when the model "
                f"runs, more than this machine can spare ({_gb(memory_budget())} in all); "
                "onnxprune runs the model to validate the result: give smaller sizes with "
                "--input-shape, or --no-validate"
            )


# -- when something breaks on an invalid model ------------------------------------------


def checker_problem(model: onnx.ModelProto) -> str | None:
    """What onnx.checker (full, with shape inference) says is wrong with the model, or
    None. Tensors stored externally or over _CHECKED_BYTES are seen as typed graph
    inputs: their data is not copied (check_structure has checked its size)."""
    try:
        onnx.checker.check_model(light_copy(model, _CHECKED_BYTES), full_check=True)
    except Exception as exc:  # the checker raises several types
        return first_line(exc, 300)
    return None


_CHECKED_BYTES = 1 << 16


def check_input(model: onnx.ModelProto) -> None:
    """BadInputError when the input fails onnx.checker: its output is checked the same
    way, so nothing valid could come of it."""
    problem = checker_problem(model)
    if problem is not None:
        raise BadInputError(
            f"the input model fails onnx.checker: {problem} "
            "(fix the model, or skip all checks with --no-validate)"
        )


@contextlib.contextmanager
def blamed_on_input(source: onnx.ModelProto | str | os.PathLike) -> Iterator[None]:
    """An unexpected exception inside the block becomes a BadInputError when the model
    at `source` (a path, or a ModelProto the block does not modify) fails onnx.checker:
    the model, not onnxprune, is at fault. Otherwise it propagates as it is (a bug)."""
    try:
        yield
    except OnnxPruneError:
        raise
    except Exception as exc:
        problem = None
        with contextlib.suppress(Exception):
            original = (
                source
                if isinstance(source, onnx.ModelProto)
                else onnx.load(os.fspath(source), load_external_data=False)
            )
            problem = checker_problem(original)
        if problem is None:
            raise
        raise BadInputError(f"the input model is not valid ONNX: {problem}") from exc
