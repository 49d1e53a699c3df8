"""Calibration data: arrays named like the model inputs, first axis = samples.

Sources: an .npz file, a folder of .npy files (one per input, named after it; or, for a
one-input model, any number of files whose samples are stacked in name order), or N
random samples. Batches are yielded one at a time, so nothing holds every activation.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import onnx

from .errors import BadInputError
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


def _shape_text(dims: list[int | None]) -> str:
    shown = ["N" if k == 0 else (str(d) if d else "?") for k, d in enumerate(dims)]
    return "[" + ", ".join(shown) + "]"


def check_arrays(model: onnx.ModelProto, arrays: dict[str, np.ndarray], where: str) -> None:
    """BadInputError naming the first input whose array is missing or does not fit."""
    inputs = _inputs(model)
    extra = sorted(set(arrays) - set(inputs))
    if extra:
        raise BadInputError(f"{where}: '{extra[0]}' is not a model input ({', '.join(inputs)})")
    counts = set()
    for name, vi in inputs.items():
        if name not in arrays:
            raise BadInputError(f"{where}: no array for model input '{name}'")
        array, dims = arrays[name], _declared(vi)
        want = onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
        if array.dtype != want:
            raise BadInputError(
                f"{where}: input '{name}' has dtype {array.dtype}, the model expects {want}"
            )
        fits = array.ndim == len(dims) and all(
            d is None or k == 0 or d == s
            for k, (d, s) in enumerate(zip(dims, array.shape, strict=False))
        )
        if not fits:
            raise BadInputError(
                f"{where}: input '{name}' has shape {list(array.shape)}, the model expects "
                f"{_shape_text(dims)} (first axis = samples)"
            )
        counts.add(array.shape[0])
    if len(counts) != 1:
        raise BadInputError(f"{where}: inputs hold different numbers of samples {sorted(counts)}")
    if 0 in counts:
        raise BadInputError(f"{where}: no samples")


def load_calibration(model: onnx.ModelProto, source: str) -> dict[str, np.ndarray]:
    """Arrays from an .npz file or a folder of .npy files, checked against the inputs."""
    if not os.path.exists(source):
        raise BadInputError(f"--calib {source}: no such file or folder")
    try:
        if os.path.isdir(source):
            arrays = _from_folder(model, source)
        else:
            with np.load(source, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise BadInputError(f"--calib {source}: not readable as numpy data ({exc})") from exc
    check_arrays(model, arrays, f"--calib {source}")
    return arrays


def _from_folder(model: onnx.ModelProto, folder: str) -> dict[str, np.ndarray]:
    files = sorted(f for f in os.listdir(folder) if f.endswith(".npy"))
    if not files:
        raise BadInputError(f"--calib {folder}: the folder holds no .npy files")
    inputs = _inputs(model)
    named = {f[:-4]: f for f in files if f[:-4] in inputs}
    if named:
        return {k: np.load(os.path.join(folder, f), allow_pickle=False) for k, f in named.items()}
    if len(inputs) != 1:
        raise BadInputError(
            f"--calib {folder}: name the .npy files after the model inputs ({', '.join(inputs)})"
        )
    (name, vi), rank = next(iter(inputs.items())), None
    rank = len(_declared(vi))
    parts = [np.load(os.path.join(folder, f), allow_pickle=False) for f in files]
    parts = [p[None] if p.ndim == rank - 1 else p for p in parts]
    return {name: np.concatenate(parts)}


def random_calibration(model: onnx.ModelProto, count: int, shapes, seed: int) -> dict:
    """`count` random samples shaped like the validation inputs (a quick check only)."""
    if count < 1:
        raise BadInputError(f"--calib-random must be at least 1, got {count}")
    dims = input_dims(model, shapes)
    one = {k: [1] + v[1:] for k, v in dims.items()}
    draws = [input_feeds(model, one, seed + i) for i in range(count)]
    return {k: np.concatenate([d[k] for d in draws]) for k in dims}
