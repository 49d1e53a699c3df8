"""Prove a pruned model: checker, shape inference, onnxruntime against the original."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import onnx
from google.protobuf.message import DecodeError

from . import modelio
from .checks import check_feeds
from .errors import BadInputError, ValidationError, first_line
from .modelio import (
    check_external_data,
    current_folder,
    has_external_data,
    light_copy,
    load_lazily,
)

DEFAULT_DIM = 64
"""Size given to a symbolic dimension other than the first (which gets 1)."""


@dataclass
class OutputDiff:
    name: str
    shape: list[int]
    max_abs_diff: float
    cosine: float


def input_dims(model: onnx.ModelProto, shapes: dict[str, list[int]]) -> dict[str, list[int]]:
    """Concrete dims of every graph input: `shapes` where given, else the declared size,
    1 for a symbolic first dim and DEFAULT_DIM for other symbolic dims."""
    initializers = {t.name for t in model.graph.initializer}
    dims = {}
    for vi in model.graph.input:
        if vi.name in initializers:
            continue
        if vi.name in shapes:
            dims[vi.name] = list(shapes[vi.name])
            continue
        dims[vi.name] = [
            d.dim_value if d.dim_value > 0 else (1 if k == 0 else DEFAULT_DIM)
            for k, d in enumerate(vi.type.tensor_type.shape.dim)
        ]
    unknown = set(shapes) - set(dims)
    if unknown:
        raise BadInputError(f"--input-shape names no model input: {', '.join(sorted(unknown))}")
    return dims


def input_feeds(
    model: onnx.ModelProto, shapes: dict[str, list[int]], seed: int
) -> dict[str, np.ndarray]:
    """Random inputs for every graph input; symbolic dims from `shapes` or defaults."""
    rng = np.random.default_rng(seed)
    types = {vi.name: vi.type.tensor_type.elem_type for vi in model.graph.input}
    feeds = {}
    all_dims = input_dims(model, shapes)
    check_feeds(model, all_dims)
    for name, dims in all_dims.items():
        dtype = onnx.helper.tensor_dtype_to_np_dtype(types[name])
        if np.issubdtype(dtype, np.floating):
            feeds[name] = rng.standard_normal(dims).astype(dtype)
        elif dtype == np.bool_:
            feeds[name] = rng.random(dims) > 0.5
        else:
            feeds[name] = rng.integers(0, _index_range(model, name), size=dims).astype(dtype)
    return feeds


def _index_range(model: onnx.ModelProto, name: str) -> int:
    """Exclusive upper bound for random values of an integer input: the size of the table
    it indexes (token ids into an embedding), else 2 (masks, flags, token types)."""
    sizes = {t.name: t.dims[0] for t in model.graph.initializer if t.dims}
    for node in model.graph.node:
        if node.op_type == "Gather" and len(node.input) > 1 and node.input[1] == name:
            if node.input[0] in sizes and not any(a.name == "axis" and a.i for a in node.attribute):
                return max(int(sizes[node.input[0]]), 1)
    return 2


def run(
    model: bytes | str, feeds: dict[str, np.ndarray], optimize: bool = True
) -> dict[str, np.ndarray]:
    """Run a model (serialised bytes or a path) in onnxruntime (CPU, 2 threads); outputs
    by name.

    optimize=False runs the graph as written: its kernels check every shape, where
    fused kernels of the optimised graph may not notice a channel-count mismatch.
    """
    return runner(model, optimize)(feeds)


def session(model: bytes | str, optimize: bool = True, threads: int = 2, timing: bool = False):
    """An onnxruntime CPU session (`threads` intra-op). External-data references in
    `model` bytes resolve against `modelio.external_folder`; a path resolves its own.
    `timing`: sequential execution and no spinning threads, for latency figures that a
    busy machine distorts less."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 4  # failures are raised and reported in one line
    if timing:
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if not optimize:  # the graph as written; weights not repacked for one or two runs
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.add_session_config_entry("session.disable_prepacking", "1")
    folder = current_folder()
    if folder and isinstance(model, bytes):
        options.add_session_config_entry(
            "session.model_external_initializers_file_folder_path", folder
        )
    source = model if isinstance(model, bytes) else os.fspath(model)
    # no fallback: it prints "EP Error" banners to stdout and retries the same provider
    return ort.InferenceSession(
        source, options, providers=["CPUExecutionProvider"], enable_fallback=0
    )


def runner(model: bytes | str, optimize: bool = True):
    """One onnxruntime session, as a function feeds -> outputs by name (see run)."""
    sess = session(model, optimize)
    names = [o.name for o in sess.get_outputs()]

    def call(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(names, sess.run(names, feeds), strict=True))

    return call


def check(model: onnx.ModelProto | str) -> None:
    """onnx.checker (full, with shape inference) on a model or a written model's path;
    ValidationError on failure. In-memory external-data references are checked by
    modelio when read and written, so the checker sees them as typed graph inputs."""
    if isinstance(model, str) and os.path.getsize(model) >= modelio.LAZY_MIN_BYTES:
        # the written file's graph, its weights checked against their dims in place
        # (the checker would parse the whole file, holding it twice)
        try:
            light, _ = load_lazily(model)
            check_external_data(light, os.path.dirname(os.path.abspath(model)), model)
        except (DecodeError, BadInputError) as exc:
            raise ValidationError(f"the written model does not read back: {exc}") from exc
        model = light
    if isinstance(model, onnx.ModelProto) and has_external_data(model):
        model = light_copy(model)
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # the checker raises several types
        raise ValidationError(f"pruned model fails onnx.checker: {first_line(exc)}") from exc


def compare(reference: dict[str, np.ndarray], pruned: dict[str, np.ndarray]) -> list[OutputDiff]:
    diffs = []
    for name, ref in reference.items():
        got = pruned.get(name)
        if got is None or got.shape != ref.shape:
            shape = None if got is None else list(got.shape)
            raise ValidationError(
                f"output '{name}' has shape {shape}, the original's is {list(ref.shape)}"
            )
        a = ref.astype(np.float64).ravel()
        b = got.astype(np.float64).ravel()
        norm = np.linalg.norm(a) * np.linalg.norm(b)
        cosine = float(a @ b / norm) if norm > 0 else float(np.array_equal(a, b))
        max_abs = float(np.abs(a - b).max()) if a.size else 0.0
        diffs.append(OutputDiff(name, list(ref.shape), max_abs, cosine))
    return diffs
