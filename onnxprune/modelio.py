"""Models whose weights live in external data files: checked loading, memory-mapped
reads, streamed writes.

A model loaded from a path keeps its external tensors as references (no weight is read
at load). `external_folder` names the folder those references resolve against while
onnxprune works on the model; `tensor_array` maps one tensor at a time, and
`save_model` streams every tensor to the output, so memory holds only what pruning
changed. Every reference is checked before anything is read: a location must be a
relative path inside the model's folder (symlinks resolved), name a regular file, and
that file must hold the bytes the tensor's type and dims need.
"""

from __future__ import annotations

import contextlib
import functools
import mmap
import os
from collections.abc import Iterator
from contextvars import ContextVar

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import helper, numpy_helper

from .errors import BadInputError, OnnxPruneError
from .progress import progress
from .protowire import (
    GRAPH_INITIALIZER,
    MODEL_GRAPH,
    TENSOR_DATA_LOCATION,
    TENSOR_EXTERNAL_DATA,
    TENSOR_RAW_DATA,
    copy_without,
    field_header,
    fields,
    varint_bytes,
)

EXTERNAL_MODES = ("auto", "always", "never")
PROTOBUF_LIMIT = 2**31 - 1
"""Serialised protobuf messages cannot exceed 2 GiB: larger models need external data."""
INLINE_LIMIT = 1 << 30
"""`auto` writes external data when the weights exceed this (1 GiB), or when the source
model stored its weights externally."""
EXTERNAL_MIN_BYTES = 1024
"""Tensors smaller than this stay inline even in an external-data model (as onnx does)."""
ALIGN = 4096
"""Offsets of tensors in a written data file are multiples of this (page size), so a
reader can map each tensor directly."""
_COPY_CHUNK = 16 << 20

_folder: ContextVar[str | None] = ContextVar("onnxprune_external_folder", default=None)


@contextlib.contextmanager
def external_folder(folder: str | None) -> Iterator[None]:
    """Resolve external-data references of in-memory models against `folder` inside
    this block (None: the model has none)."""
    token = _folder.set(os.path.abspath(folder) if folder else None)
    try:
        yield
    finally:
        _folder.reset(token)


def current_folder() -> str | None:
    """The folder external-data references resolve against here, if any."""
    return _folder.get()


def is_external(tensor: onnx.TensorProto) -> bool:
    return tensor.data_location == onnx.TensorProto.EXTERNAL


def _entries(tensor: onnx.TensorProto) -> dict[str, str]:
    return {e.key: e.value for e in tensor.external_data}


def _stored_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """Initializers and the tensors of Constant nodes of the main graph."""
    yield from model.graph.initializer
    yield from _attribute_tensors(model)


def _attribute_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                yield attr.t


def has_external_data(model: onnx.ModelProto) -> bool:
    return any(is_external(t) for t in _stored_tensors(model))


def expected_bytes(tensor: onnx.TensorProto) -> int | None:
    """Bytes the tensor's data needs, or None for types without a fixed item size."""
    if tensor.data_type == onnx.TensorProto.STRING:
        return None
    try:
        itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
    except (KeyError, TypeError, ValueError):
        return None
    count = 1
    for d in tensor.dims:
        if d < 0:
            return None
        count *= int(d)
    if tensor.data_type in _SUBBYTE:
        return (count * _SUBBYTE[tensor.data_type] + 7) // 8
    return count * itemsize


_SUBBYTE = {
    getattr(onnx.TensorProto, name): 4
    for name in ("INT4", "UINT4", "FLOAT4E2M1")
    if hasattr(onnx.TensorProto, name)
}


class ExternalRef:
    """A checked external-data reference: the file, where the bytes start, how many."""

    def __init__(self, path: str, offset: int, length: int) -> None:
        self.path, self.offset, self.length = path, offset, length


def resolve(tensor: onnx.TensorProto, folder: str, model_name: str = "model") -> ExternalRef:
    """Check one external reference against `folder`; BadInputError naming the tensor."""
    entries = _entries(tensor)
    where = f"{model_name}: tensor '{tensor.name}'"
    location = entries.get("location", "")
    if not location:
        raise BadInputError(f"{where} is stored externally but names no file")
    if os.path.isabs(location) or location.startswith(("/", "\\")) or ":" in location[:2]:
        raise BadInputError(
            f"{where}: external data location {location!r} is an absolute path; "
            "onnxprune reads only files inside the model's folder"
        )
    parts = location.replace("\\", "/").split("/")
    if ".." in parts:
        raise BadInputError(
            f"{where}: external data location {location!r} leaves the model's folder"
        )
    path = _inside(folder, location)
    if path is None:
        raise BadInputError(
            f"{where}: external data location {location!r} resolves outside the model's "
            "folder (through a symbolic link)"
        )
    if not os.path.exists(path):
        raise BadInputError(f"{where}: external data file {location!r} is missing")
    if not os.path.isfile(path):
        raise BadInputError(f"{where}: external data {location!r} is not a regular file")
    try:
        offset = int(entries.get("offset", "0"))
        length = int(entries["length"]) if "length" in entries else None
    except ValueError as exc:
        raise BadInputError(f"{where}: external data offset/length are not integers") from exc
    if offset < 0 or (length is not None and length < 0):
        raise BadInputError(f"{where}: negative external data offset or length")
    size = os.path.getsize(path)
    expected = expected_bytes(tensor)
    if length is None:
        length = expected if expected is not None else size - offset
    if expected is not None and length != expected:
        raise BadInputError(
            f"{where}: external data length {length} does not match its type and dims "
            f"{list(tensor.dims)} ({expected} bytes)"
        )
    if offset + length > size:
        raise BadInputError(
            f"{where}: external data file {location!r} is too short ({size} bytes; the "
            f"tensor needs bytes {offset} to {offset + length})"
        )
    return ExternalRef(path, offset, length)


@functools.lru_cache(maxsize=4096)
def _inside(folder: str, location: str) -> str | None:
    """The real path of `location` under `folder`, or None when it leads outside (cached:
    a weight is read several times, and resolving links costs a system call per part)."""
    root = os.path.realpath(folder)
    path = os.path.realpath(os.path.join(root, location))
    return path if os.path.commonpath([root, path]) == root else None


def check_external_data(model: onnx.ModelProto, folder: str, model_name: str = "model") -> None:
    """Check every external reference of the main graph (see `resolve`)."""
    for tensor in _stored_tensors(model):
        if is_external(tensor):
            resolve(tensor, folder, model_name)


def tensor_array(tensor: onnx.TensorProto) -> np.ndarray:
    """The tensor's value. External data is memory-mapped read-only (no copy) where the
    type allows; it resolves against `external_folder`."""
    if not is_external(tensor):
        return numpy_helper.to_array(tensor)
    folder = current_folder()
    if folder is None:
        raise OnnxPruneError(
            f"tensor '{tensor.name}' is stored in external data, but the model's folder "
            "is unknown (load the model from its path)"
        )
    ref = resolve(tensor, folder)
    dtype = _plain_dtype(tensor.data_type)
    if dtype is None:  # bfloat16, float8, int4 ...: onnx's converter knows them
        return numpy_helper.to_array(tensor, base_dir=folder)
    shape = tuple(int(d) for d in tensor.dims)
    if ref.length == 0:
        return np.zeros(shape, dtype)
    return np.memmap(ref.path, dtype=dtype, mode="r", offset=ref.offset, shape=shape)


def _plain_dtype(data_type: int) -> np.dtype | None:
    """The little-endian numpy type whose bytes are the tensor's raw bytes, if any."""
    if data_type in (
        onnx.TensorProto.STRING,
        onnx.TensorProto.BFLOAT16,
        onnx.TensorProto.UNDEFINED,
    ):
        return None
    try:
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(data_type))
    except (KeyError, TypeError, ValueError):
        return None
    if dtype.kind not in "biufc":
        return None
    if data_type in _SUBBYTE or dtype.itemsize == 1 and data_type not in _BYTE_TYPES:
        return None  # float8 variants map to uint8-like storage with their own decoding
    return dtype.newbyteorder("<")


_BYTE_TYPES = {onnx.TensorProto.INT8, onnx.TensorProto.UINT8, onnx.TensorProto.BOOL}


def load_external_into(model: onnx.ModelProto, attributes_only: bool = False) -> None:
    """Read every external tensor into the model itself (its references resolve against
    `external_folder`), so the model no longer needs its folder. `attributes_only`: only
    the tensors of Constant nodes (and other attributes), which onnxprune keeps in memory
    as node attributes, like onnx.checker and the writers expect."""
    tensors = _attribute_tensors(model) if attributes_only else _stored_tensors(model)
    for tensor in tensors:
        if is_external(tensor):
            value = np.ascontiguousarray(tensor_array(tensor))
            _set_raw(tensor, value)


def _set_raw(tensor: onnx.TensorProto, value: np.ndarray) -> None:
    if _plain_dtype(tensor.data_type) is None:
        tensor.CopyFrom(numpy_helper.from_array(value, tensor.name))
        return
    del tensor.external_data[:]
    tensor.data_location = onnx.TensorProto.DEFAULT
    tensor.raw_data = value.astype(value.dtype.newbyteorder("<"), copy=False).tobytes()


def tensor_bytes(model: onnx.ModelProto) -> int:
    """Bytes of every initializer and Constant tensor, inline or external."""
    total = 0
    for tensor in _stored_tensors(model):
        size = expected_bytes(tensor)
        total += size if size is not None else tensor.ByteSize()
    return total


def source_bytes(path: str | os.PathLike, model: onnx.ModelProto) -> int:
    """Bytes of a model file plus the other files its (checked) external references
    name."""
    own = os.path.realpath(path)
    folder = os.path.dirname(os.path.abspath(path))
    files = {resolve(t, folder).path for t in _stored_tensors(model) if is_external(t)}
    return os.path.getsize(path) + sum(os.path.getsize(f) for f in files - {own})


def wants_external(model: onnx.ModelProto, mode: str, source_external: bool) -> bool:
    """Whether `save_model` writes external data under `mode` (auto|always|never)."""
    if mode == "always":
        return True
    if mode == "never":
        return False
    return source_external or tensor_bytes(model) > INLINE_LIMIT


def save_model(model: onnx.ModelProto, path: str, external: bool) -> list[str]:
    """Write `model` to `path`; with `external`, every tensor of at least
    EXTERNAL_MIN_BYTES goes to `<path>.data` beside it, streamed one tensor at a time
    (references into the source folder are copied in chunks, never loaded whole).

    The written tensors become references to the new data file in `model` too, which
    releases their bytes. Returns the files written.
    """
    if not external:
        _check_inline_size(model)
        with open(path, "wb") as f:
            _write_inline(model, f)
        return [path]
    data_path = path + ".data"
    location = os.path.basename(data_path)
    tensors = list(_stored_tensors(model))
    with open(data_path, "wb") as data:
        for tensor in progress(tensors, "writing"):
            size = expected_bytes(tensor)
            if size is None or size < EXTERNAL_MIN_BYTES:
                if is_external(tensor):  # a small or odd tensor stays inline
                    _set_raw(tensor, np.ascontiguousarray(tensor_array(tensor)))
                continue
            offset = -data.tell() % ALIGN
            data.write(b"\0" * offset)
            start = data.tell()
            if is_external(tensor):
                ref = resolve(tensor, current_folder() or "")
                _copy_range(ref, data)
            else:
                data.write(_raw_bytes(tensor))
            _point_to(tensor, location, start, data.tell() - start)
    with open(path, "wb") as f:
        f.write(model.SerializeToString())
    return [path, data_path]


def _write_inline(model: onnx.ModelProto, out) -> None:
    """Serialise `model` as one file, streaming its initializers: each large tensor's
    bytes go from memory or from its external file straight to `out`, so neither the
    whole model nor its serialised form is ever held in memory.

    The framing is written by hand (protobuf accepts fields in any order): the model's
    other fields, then the graph as its other fields followed by each initializer.
    """
    graph = model.graph
    entries = [_inline_entry(t) for t in graph.initializer]  # heads and sizes, no bytes
    graph_rest = copy_without(graph, "initializer", onnx.GraphProto()).SerializeToString()
    graph_len = len(graph_rest) + sum(
        1 + len(varint_bytes(size)) + size for _, _, _, size in entries
    )
    out.write(copy_without(model, "graph", onnx.ModelProto()).SerializeToString())
    out.write(field_header(MODEL_GRAPH, graph_len))
    out.write(graph_rest)
    for (head, source, length, size), tensor in zip(entries, graph.initializer, strict=True):
        out.write(field_header(GRAPH_INITIALIZER, size))
        out.write(head)
        if source is None:
            continue
        out.write(field_header(TENSOR_RAW_DATA, length))
        if isinstance(source, ExternalRef):
            _copy_range(source, out)
        else:
            out.write(tensor.raw_data)  # one tensor's bytes at a time


def _inline_entry(tensor: onnx.TensorProto) -> tuple[bytes, object, int, int]:
    """(the tensor's fields but raw_data; where its raw bytes lie: an ExternalRef, the
    tensor itself, or None when `head` is the whole tensor; their length; the size of
    the whole serialised TensorProto)."""
    if is_external(tensor):
        source: object = resolve(tensor, current_folder() or "")
        length = source.length
    elif tensor.HasField("raw_data") and (length := len(tensor.raw_data)) >= EXTERNAL_MIN_BYTES:
        source = tensor
    else:
        head = tensor.SerializeToString()
        return head, None, 0, len(head)
    shell = copy_without(tensor, "raw_data", onnx.TensorProto())
    del shell.external_data[:]
    shell.ClearField("data_location")
    head = shell.SerializeToString()
    return head, source, length, len(head) + 1 + len(varint_bytes(length)) + length


def light_copy(model: onnx.ModelProto, inline_limit: int | None = None) -> onnx.ModelProto:
    """A copy of `model` without its weights: every external initializer, and every
    inline one over `inline_limit` bytes (None: none), becomes a typed graph input, so
    the checker and shape inference see the graph without the bytes being copied."""
    light = copy_without(model, "graph", onnx.ModelProto())
    copy_without(model.graph, "initializer", light.graph)
    declared = {vi.name for vi in light.graph.input}
    for tensor in model.graph.initializer:
        moved = is_external(tensor) or (
            inline_limit is not None and tensor.ByteSize() > inline_limit
        )
        if not moved:
            light.graph.initializer.append(tensor)
        elif tensor.name not in declared:
            info = helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims))
            light.graph.input.append(info)
    return light


def _check_inline_size(model: onnx.ModelProto) -> None:
    # ByteSize() of the whole model would serialise it (and hold it) just to count
    graph_bytes = copy_without(model.graph, "initializer", onnx.GraphProto()).ByteSize()
    if tensor_bytes(model) + graph_bytes > PROTOBUF_LIMIT:
        raise BadInputError(
            "the pruned model is over 2 GB, the limit of a single ONNX file; "
            "write it with --external-data auto or always"
        )


def _raw_bytes(tensor: onnx.TensorProto) -> bytes:
    if tensor.HasField("raw_data"):
        return tensor.raw_data
    value = numpy_helper.to_array(tensor)
    return value.astype(value.dtype.newbyteorder("<"), copy=False).tobytes()


def _copy_range(ref: ExternalRef, out) -> None:
    with open(ref.path, "rb") as src:
        src.seek(ref.offset)
        left = ref.length
        while left:
            chunk = src.read(min(left, _COPY_CHUNK))
            if not chunk:
                raise BadInputError(f"external data file {ref.path} became shorter while read")
            out.write(chunk)
            left -= len(chunk)


def _point_to(tensor: onnx.TensorProto, location: str, offset: int, length: int) -> None:
    for field in ("raw_data", "float_data", "int32_data", "int64_data", "double_data",
                  "uint64_data", "string_data"):  # fmt: skip
        tensor.ClearField(field)
    del tensor.external_data[:]
    tensor.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value


LAZY_MIN_BYTES = 16 << 20
"""Model files at least this large are read lazily (see `load_lazily`)."""


def load_lazily(path: str) -> tuple[onnx.ModelProto, bool]:
    """The model at `path` without reading its weights: every initializer whose
    `raw_data` holds at least EXTERNAL_MIN_BYTES becomes an external-data reference into
    the model file itself (location = its own name, offset = where the bytes lie).

    Only the protobuf framing is walked (a few fields per node and tensor); the weights
    stay on disk, read through `tensor_array` like any external data. Returns the model
    and whether the file already referred to external data of its own.
    Raises DecodeError for a malformed file.
    """
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            raise DecodeError("empty file")
        buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        return _light_model(buf, os.path.basename(path))
    finally:
        buf.close()


def _light_model(buf: mmap.mmap, location: str) -> tuple[onnx.ModelProto, bool]:
    model_parts, graph_span = [], None
    for field, wire, start, payload, end in fields(buf, 0, len(buf)):
        if field == MODEL_GRAPH and wire == 2:
            if graph_span is not None:
                raise DecodeError("more than one graph field")
            graph_span = (payload, end)
        else:
            model_parts.append(buf[start:end])
    model = onnx.ModelProto()
    model.ParseFromString(b"".join(model_parts))
    if graph_span is None:
        return model, False
    graph_parts, tensors, external = [], [], False
    for field, wire, start, payload, end in fields(buf, *graph_span):
        if field == GRAPH_INITIALIZER and wire == 2:
            tensor, was_external = _light_tensor(buf, payload, end, location)
            tensors.append(tensor)
            external |= was_external
        else:
            graph_parts.append(buf[start:end])
    model.graph.ParseFromString(b"".join(graph_parts))
    model.graph.initializer.extend(tensors)
    return model, external


def _light_tensor(
    buf: mmap.mmap, begin: int, stop: int, location: str
) -> tuple[onnx.TensorProto, bool]:
    """The TensorProto at buf[begin:stop], its large raw_data left in the file."""
    kept, raw = [], None
    external = False
    for field, wire, start, payload, end in fields(buf, begin, stop):
        if field in (TENSOR_EXTERNAL_DATA, TENSOR_DATA_LOCATION):
            external = True
        if field == TENSOR_RAW_DATA and wire == 2 and end - payload >= EXTERNAL_MIN_BYTES:
            raw = (payload, end - payload)
        else:
            kept.append(buf[start:end])
    tensor = onnx.TensorProto()
    tensor.ParseFromString(b"".join(kept))
    if raw is not None and not external:
        _point_to(tensor, location, *raw)
    elif raw is not None:  # raw bytes and an external reference: keep the bytes inline
        tensor.raw_data = buf[raw[0] : raw[0] + raw[1]]
    return tensor, external
