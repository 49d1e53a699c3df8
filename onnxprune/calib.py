"""Calibration data: arrays named like the model inputs, first axis = samples.

Sources: an .npz file, a folder of .npy files (one per input, named after it; or, for a
one-input model, any number of files whose samples are stacked in name order), or N
random samples. Batches are yielded one at a time, so nothing holds every activation.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import onnx

from .errors import BadInputError, first_line
from .validate import input_dims, input_feeds

MIN_SAMPLES_FOR_REFIT = 16


@dataclass
class Calibration:
    """Calibration samples per model input (first axis = samples)."""

    arrays: dict[str, np.ndarray]
    batch: int = 8
    fixed: bool = False
    """The model's batch size is fixed: only whole batches of `batch` samples are run."""

    @property
    def samples(self) -> int:
        return len(next(iter(self.arrays.values())))

    def batches(self) -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, self.samples, self.batch):
            if self.fixed and start + self.batch > self.samples:
                return
            yield {k: v[start : start + self.batch] for k, v in self.arrays.items()}


def batch_size(model: onnx.ModelProto, wanted: int) -> tuple[int, bool]:
    """(samples per run, fixed): the model's static batch size where it declares one."""
    sizes = {_declared(vi)[0] for vi in _inputs(model).values() if _declared(vi)}
    static = {s for s in sizes if s}
    if len(static) == 1 and None not in sizes:
        return static.pop(), True
    return wanted, False


def _inputs(model: onnx.ModelProto) -> dict[str, onnx.ValueInfoProto]:
    initializers = {t.name for t in model.graph.initializer}
    return {vi.name: vi for vi in model.graph.input if vi.name not in initializers}


def _declared(vi: onnx.ValueInfoProto) -> list[int | None]:
    return [d.dim_value if d.dim_value > 0 else None for d in vi.type.tensor_type.shape.dim]


def _ranked(vi: onnx.ValueInfoProto) -> bool:
    """The input declares its rank (a shape, possibly with symbolic dims)."""
    return vi.type.tensor_type.HasField("shape")


def _shape_text(dims: list[int | None]) -> str:
    shown = ["N" if k == 0 else (str(d) if d else "?") for k, d in enumerate(dims)]
    return "[" + ", ".join(shown) + "]"


def _dtype(vi: onnx.ValueInfoProto) -> np.dtype:
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type))


def _wanted(name: str, vi: onnx.ValueInfoProto) -> str:
    """'x' [N, 3, 32, 32] float32: what the array for one input must look like."""
    shape = _shape_text(_declared(vi)) if _ranked(vi) else "[N, ...]"
    return f"'{name}' {shape} {_dtype(vi)}"


def expected(model: onnx.ModelProto) -> str:
    """Every model input as calibration data must hold it (first axis N = samples)."""
    return ", ".join(_wanted(name, vi) for name, vi in _inputs(model).items())


def _fits(array: np.ndarray, vi: onnx.ValueInfoProto) -> bool:
    """A first axis of samples, then the declared dims (any size where symbolic)."""
    if array.ndim < 1 or not _ranked(vi):
        return array.ndim >= 1
    dims = _declared(vi)
    return array.ndim == len(dims) and all(
        d is None or d == s for d, s in zip(dims[1:], array.shape[1:], strict=True)
    )


def check_arrays(model: onnx.ModelProto, arrays: dict[str, np.ndarray], where: str) -> None:
    """BadInputError naming the first input whose array is missing or does not fit."""
    inputs = _inputs(model)
    extra = sorted(set(arrays) - set(inputs))
    if extra:
        raise BadInputError(
            f"{where}: '{extra[0]}' is not a model input; the model takes {expected(model)}"
        )
    counts = {}
    for name, vi in inputs.items():
        if name not in arrays:
            raise BadInputError(f"{where}: no array for model input {_wanted(name, vi)}")
        array = arrays[name]
        if not isinstance(array, np.ndarray):
            raise BadInputError(
                f"{where}: input '{name}' is a {type(array).__name__}, not a numpy array "
                f"(expected {_wanted(name, vi)})"
            )
        if array.dtype != _dtype(vi):
            raise BadInputError(
                f"{where}: input '{name}' has dtype {array.dtype}, the model expects "
                f"{_wanted(name, vi)}"
            )
        if not _fits(array, vi):
            raise BadInputError(
                f"{where}: input '{name}' has shape {list(array.shape)}, the model expects "
                f"{_wanted(name, vi)} (first axis N = samples)"
            )
        counts[name] = array.shape[0]
    if len(set(counts.values())) > 1:
        shown = ", ".join(f"'{k}' {v}" for k, v in counts.items())
        raise BadInputError(
            f"{where}: the inputs hold different numbers of samples (first axis): {shown}"
        )
    if 0 in counts.values():
        raise BadInputError(f"{where}: no samples (expected {expected(model)})")


def load_calibration(model: onnx.ModelProto, source: str) -> dict[str, np.ndarray]:
    """Arrays from an .npz file, an .npy file (one-input models) or a folder of .npy
    files, checked against the inputs."""
    if not os.path.exists(source):
        raise BadInputError(f"--calib {source}: no such file or folder")
    try:
        arrays = _from_folder(model, source) if os.path.isdir(source) else _from_file(model, source)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise BadInputError(
            f"--calib {source}: not readable as numpy data ({first_line(exc)}); expected "
            f"an .npz of {expected(model)}"
        ) from exc
    check_arrays(model, arrays, f"--calib {source}")
    return arrays


def _from_file(model: onnx.ModelProto, path: str) -> dict[str, np.ndarray]:
    data = np.load(path, allow_pickle=False)
    if isinstance(data, np.ndarray):  # a single .npy file
        inputs = _inputs(model)
        if len(inputs) != 1:
            raise BadInputError(
                f"--calib {path}: one array for a model of {len(inputs)} inputs; give an .npz "
                f"or a folder of .npy files named after the inputs: {expected(model)}"
            )
        return {next(iter(inputs)): data}
    with data:
        arrays = {k: data[k] for k in data.files}
    for name, value in arrays.items():
        if not isinstance(value, np.ndarray):  # a zip member that is not .npy data
            raise ValueError(f"member '{name}' is not a .npy array")
    return arrays


def _from_folder(model: onnx.ModelProto, folder: str) -> dict[str, np.ndarray]:
    files = sorted(f for f in os.listdir(folder) if f.endswith(".npy"))
    inputs = _inputs(model)
    if not files:
        raise BadInputError(
            f"--calib {folder}: the folder holds no .npy files; expected one per model input, "
            f"named after it: {expected(model)}"
        )
    named = {f[:-4]: f for f in files if f[:-4] in inputs}
    if named:
        return {k: np.load(os.path.join(folder, f), allow_pickle=False) for k, f in named.items()}
    if len(inputs) != 1:
        raise BadInputError(
            f"--calib {folder}: name the .npy files after the model inputs: {expected(model)}"
        )
    (name, vi), parts = next(iter(inputs.items())), []
    for f in files:
        part = np.load(os.path.join(folder, f), allow_pickle=False)
        if _ranked(vi) and part.ndim == len(_declared(vi)) - 1:
            part = part[None]  # one sample
        check_arrays(model, {name: part}, f"--calib {os.path.join(folder, f)}")
        parts.append(part)
    return {name: np.concatenate(parts)}


def random_calibration(model: onnx.ModelProto, count: int, shapes, seed: int) -> dict:
    """`count` random samples shaped like the validation inputs (a quick check only)."""
    if count < 1:
        raise BadInputError(f"--calib-random must be at least 1, got {count}")
    dims = input_dims(model, shapes)
    one = {k: [1] + v[1:] for k, v in dims.items()}
    draws = [input_feeds(model, one, seed + i) for i in range(count)]
    return {k: np.concatenate([d[k] for d in draws]) for k in dims}
