"""Hostile variants of the sample models, for tests/test_fuzz.py: external data that
points outside its folder or does not hold what it claims, and declared sizes of
terabytes (graph inputs, initializers, Constant nodes, and Expand, Tile, Resize,
ConstantOfShape or Reshape targets).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .fuzz_mutants import DATA, MODEL, SAMPLES, Mutant, _init, _model, load

# -- external data ------------------------------------------------------------------------


def _external(model_name: str = "se_net") -> tuple[onnx.ModelProto, bytes]:
    """The model with every initializer in DATA (as onnx writes it), and DATA's bytes."""
    model = load(model_name)
    data = bytearray()
    for t in model.graph.initializer:
        raw = numpy_helper.to_array(t).tobytes()
        offset = len(data)
        data += raw
        t.ClearField("raw_data")
        t.ClearField("float_data")
        t.data_location = TensorProto.EXTERNAL
        for key, value in (("location", DATA), ("offset", str(offset)), ("length", str(len(raw)))):
            entry = t.external_data.add()
            entry.key, entry.value = key, value
    return model, bytes(data)


def _entry(tensor: onnx.TensorProto, key: str, value: str | None) -> None:
    for k, e in enumerate(tensor.external_data):
        if e.key == key:
            del tensor.external_data[k]
            break
    if value is not None:
        e = tensor.external_data.add()
        e.key, e.value = key, value


def external_mutants() -> list[Mutant]:
    out = []
    base, data = _external()
    out.append(Mutant("ext-intact", {MODEL: base.SerializeToString(), DATA: data}, expect=0))

    def add(mid: str, fn: Callable[[onnx.TensorProto], None], files=None, expect=2, **kw):
        model = onnx.ModelProto()
        model.CopyFrom(base)
        fn(model.graph.initializer[0])
        files = {DATA: data} if files is None else files
        out.append(Mutant(mid, {MODEL: model.SerializeToString(), **files}, expect=expect, **kw))

    outside = {"x": data, "outside.data": data}
    add("ext-parent", lambda t: _entry(t, "location", "../x"), outside=outside, says="leaves")
    add(
        "ext-parent-deep",
        lambda t: _entry(t, "location", "sub/../../x"),
        outside=outside,
        says="leaves",
    )
    real = str(SAMPLES / "se_net.onnx")  # an absolute path to a real, readable file
    add("ext-absolute", lambda t: _entry(t, "location", real), says="absolute path")
    add("ext-etc-passwd", lambda t: _entry(t, "location", "/etc/passwd"), says="absolute path")
    add(
        "ext-symlink-file",
        lambda t: _entry(t, "location", "link.data"),
        outside=outside,
        links={"link.data": "../outside.data"},
        says="symbolic link",
    )
    add(
        "ext-symlink-folder",
        lambda t: _entry(t, "location", "up/outside.data"),
        outside=outside,
        links={"up": ".."},
        says="symbolic link",
    )
    add(
        "ext-symlink-dev-zero",
        lambda t: _entry(t, "location", "zero.data"),
        links={"zero.data": "/dev/zero"},
        says="symbolic link",
    )
    add("ext-missing-file", lambda t: None, files={}, says="missing")
    add("ext-short-file", lambda t: None, files={DATA: data[: len(data) // 2]}, says="too short")
    add("ext-empty-file", lambda t: None, files={DATA: b""}, says="too short")
    add("ext-length-huge", lambda t: _entry(t, "length", str(10**15)), says="length")
    add("ext-length-negative", lambda t: _entry(t, "length", "-4"), says="negative")
    add("ext-length-text", lambda t: _entry(t, "length", "lots"), says="not integers")
    add("ext-offset-huge", lambda t: _entry(t, "offset", str(10**15)), says="too short")
    add("ext-offset-negative", lambda t: _entry(t, "offset", "-1"), says="negative")
    add("ext-no-location", lambda t: _entry(t, "location", None), says="names no file")
    add("ext-location-dot", lambda t: _entry(t, "location", "."), says="not a regular file")
    # the model's own bytes read as weights: inside the folder, not an escape
    add("ext-location-model", lambda t: _entry(t, "location", MODEL), expect=None)

    def huge_dims(t):
        t.dims[0] = 10**12

    add("ext-dims-1e12", huge_dims, says="length", huge=True)

    def no_entries(t):
        del t.external_data[:]

    add("ext-no-entries", no_entries, says="names no file")
    return out


# -- declared sizes of terabytes ------------------------------------------------------------

TERA = 10**6  # a spatial side: [1, 32, TERA, TERA] float is 128 TB


def _blow_up(model: onnx.ModelProto, make: Callable[[str, str], list[onnx.NodeProto]]) -> None:
    """Route se_net's first pooled tensor (1x32x1x1) through `make(src, dst)` (nodes
    that declare a terabyte tensor) and a ReduceMean back to 1x32x1x1."""
    graph = model.graph
    k, gap = next((k, n) for k, n in enumerate(graph.node) if n.op_type == "GlobalAveragePool")
    src = gap.output[0]
    reduced = helper.make_node("ReduceMean", ["fuzz_big"], ["fuzz_small"], axes=[2, 3])
    for node in graph.node:
        node.input[:] = ["fuzz_small" if name == src else name for name in node.input]
    nodes = list(graph.node)
    new = [*make(src, "fuzz_big"), reduced]
    graph.ClearField("node")
    graph.node.extend(nodes[: k + 1] + new + nodes[k + 1 :])


def _shape_const(name: str, values: list[int]) -> onnx.NodeProto:
    tensor = numpy_helper.from_array(np.array(values, np.int64), name)
    return helper.make_node("Constant", [], [name], value=tensor)


def huge_mutants() -> list[Mutant]:
    out = []

    spare = "more than this machine can spare"

    def add(mid: str, fn: Callable[[onnx.ModelProto], None], args=(), base="se_net", says=spare):
        model = load(base)
        fn(model)
        out.append(_model(mid, model, args=tuple(args), expect=2, says=says, huge=True))

    def input_dims(dims):
        def fn(m):
            shape = m.graph.input[0].type.tensor_type.shape
            for entry, d in zip(shape.dim, dims, strict=True):
                entry.dim_value = d

        return fn

    add("huge-input-spatial", input_dims([1, 3, 10**9, 10**9]))
    add("huge-input-batch", input_dims([10**9, 3, 32, 32]), says="")  # the checker's turn
    add(
        "huge-input-calib",
        input_dims([1, 3, 10**9, 10**9]),
        args=("--calib-random", "2", "--no-validate"),
    )
    add(
        "huge-input-shape-flag",
        lambda m: None,
        args=("--input-shape", f"input:1x3x{10**6}x{10**6}"),
    )

    def weight_dims(m):
        _init(m, "features.2.gate.1.weight").dims[0] = 10**12

    add("huge-initializer-dims", weight_dims, says="but holds")

    def constant_huge(m):  # paddle keeps weights in Constant nodes
        tensor = next(
            n.attribute[0].t
            for n in m.graph.node
            if n.op_type == "Constant" and len(n.attribute[0].t.dims) == 4
        )
        tensor.dims[0] = 10**12

    add("huge-constant-node", constant_huge, base="paddle_style", says="but holds")

    def constant_of_shape(src, dst):
        return [
            _shape_const("fuzz_shape", [1, 32, TERA, TERA]),
            helper.make_node("ConstantOfShape", ["fuzz_shape"], ["fuzz_fill"]),
            helper.make_node("Add", [src, "fuzz_fill"], [dst]),
        ]

    def expand(src, dst):
        return [
            _shape_const("fuzz_shape", [1, 32, TERA, TERA]),
            helper.make_node("Expand", [src, "fuzz_shape"], [dst]),
        ]

    def tile(src, dst):
        return [
            _shape_const("fuzz_reps", [1, 1, TERA, TERA]),
            helper.make_node("Tile", [src, "fuzz_reps"], [dst]),
        ]

    def resize(src, dst):
        scales = numpy_helper.from_array(np.array([1, 1, TERA, TERA], np.float32), "fuzz_s")
        return [
            helper.make_node("Constant", [], ["fuzz_scales"], value=scales),
            helper.make_node("Resize", [src, "", "fuzz_scales"], [dst]),
        ]

    def reshape(src, dst):  # a reshape target of terabytes, its element count wrong
        return [
            _shape_const("fuzz_target", [1, 32, TERA, TERA]),
            helper.make_node("Reshape", [src, "fuzz_target"], [dst]),
        ]

    for mid, make in (
        ("constant-of-shape", constant_of_shape),
        ("expand", expand),
        ("tile", tile),
        ("resize", resize),
        ("reshape", reshape),
    ):
        add(f"huge-{mid}", lambda m, make=make: _blow_up(m, make))
        model = load("se_net")  # nothing runs it: pruned like any model
        _blow_up(model, make)
        out.append(_model(f"huge-{mid}-nv", model, args=("--no-validate",), huge=True))
    return out
