"""Broken variants of the sample models, for tests/test_fuzz.py (hostile ones, external
data and terabyte sizes, are in fuzz_hostile.py).

A `Mutant` is the files of one input folder (the model, maybe its data file or a
symbolic link), files beside that folder (what an escaping path would reach), extra
command-line arguments, and what the run must end with where that is known. Every list
here is fixed or seeded, so a failing mutant has the same id on every run.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .helpers import SAMPLES

SEED = 20240611
MODEL = "model.onnx"
DATA = "model.data"


@dataclass
class Mutant:
    id: str
    files: dict[str, bytes]
    """Placed in the input folder: the model (MODEL) and any data file."""
    links: dict[str, str] = field(default_factory=dict)
    """Symbolic links in the input folder: name -> target."""
    outside: dict[str, bytes] = field(default_factory=dict)
    """Files beside the input folder (what `../x` reaches)."""
    args: tuple[str, ...] = ()
    expect: int | None = None
    """The exit code the run must return; None: any clean outcome (0, 1 or 2)."""
    says: str = ""
    """Text the error line must contain, when the run must fail."""
    huge: bool = False
    """Declares an allocation of terabytes: also run through `python -m onnxprune`."""


def load(name: str) -> onnx.ModelProto:
    return onnx.load(SAMPLES / f"{name}.onnx")


def sample_bytes(name: str) -> bytes:
    return (SAMPLES / f"{name}.onnx").read_bytes()


def _model(mid: str, model: onnx.ModelProto, **kw) -> Mutant:
    return Mutant(mid, {MODEL: model.SerializeToString()}, **kw)


def _nodes(model: onnx.ModelProto, op_type: str) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.op_type == op_type]


def _init(model: onnx.ModelProto, name: str) -> onnx.TensorProto:
    return next(t for t in model.graph.initializer if t.name == name)


def _set_attr(node: onnx.NodeProto, name: str, value) -> None:
    for k, a in enumerate(node.attribute):
        if a.name == name:
            del node.attribute[k]
            break
    node.attribute.append(helper.make_attribute(name, value))


# -- bytes ------------------------------------------------------------------------------

BYTE_SAMPLES = ("se_net", "mobilenetv2_small", "paddle_style", "vit_tiny")


def truncations() -> list[Mutant]:
    out = []
    for name in BYTE_SAMPLES[:3]:
        data = sample_bytes(name)
        n = len(data)
        for cut in (1, 7, 64, 1000, n // 3, n // 2, n - 200, n - 3, n - 1):
            out.append(Mutant(f"trunc-{name}-{cut}", {MODEL: data[:cut]}))
    return out


def _weight_ranges(model: onnx.ModelProto, data: bytes) -> list[tuple[int, int]]:
    """Byte ranges of the file that hold tensor values (flips there change numbers only)."""
    tensors = list(model.graph.initializer) + [
        a.t for n in model.graph.node for a in n.attribute if a.type == onnx.AttributeProto.TENSOR
    ]
    ranges = []
    for t in tensors:
        if len(t.raw_data) >= 16:
            at = data.find(t.raw_data)
            if at >= 0:
                ranges.append((at, at + len(t.raw_data)))
    return ranges


def byte_flips(count: int = 40) -> list[Mutant]:
    """Seeded random flips; half of them hit the structure (names, dims, attributes,
    field tags) rather than weight values."""
    rng = random.Random(SEED)
    out = []
    for k in range(count):
        name = BYTE_SAMPLES[k % len(BYTE_SAMPLES)]
        data = bytearray(sample_bytes(name))
        ranges = _weight_ranges(load(name), bytes(data))
        structural = k % 2 == 0
        for _ in range(rng.randint(1, 6)):
            while True:
                at = rng.randrange(len(data))
                in_weights = any(a <= at < b for a, b in ranges)
                if in_weights != structural:
                    break
            data[at] ^= rng.randint(1, 255)
        kind = "struct" if structural else "value"
        out.append(Mutant(f"flip-{kind}-{k:02d}-{name}", {MODEL: bytes(data)}))
    return out


# -- initializers and tensors -------------------------------------------------------------


def tensor_mutants() -> list[Mutant]:
    out = []

    def add(mid: str, fn: Callable[[onnx.ModelProto], None], base: str = "se_net", **kw):
        model = load(base)
        fn(model)
        out.append(_model(mid, model, **kw))

    w = "features.2.gate.1.weight"  # [8, 32, 1, 1]
    holds = {"expect": 2, "says": "but holds"}
    add("init-dims-plus-one", lambda m: _init(m, w).dims.__setitem__(0, 9), **holds)
    add("init-dims-drop-axis", lambda m: _init(m, w).dims.pop(), expect=2)
    add("init-dims-zero", lambda m: _init(m, w).dims.__setitem__(0, 0), expect=2)
    add("init-dims-negative", lambda m: _init(m, w).dims.__setitem__(0, -8), expect=2)
    add(
        "init-type-double", lambda m: setattr(_init(m, w), "data_type", TensorProto.DOUBLE), **holds
    )
    add("init-type-undefined", lambda m: setattr(_init(m, w), "data_type", 0), expect=2)
    add("init-type-999", lambda m: setattr(_init(m, w), "data_type", 999), expect=2)
    add("init-type-string", lambda m: setattr(_init(m, w), "data_type", TensorProto.STRING))

    def float_data(m):  # values in float_data *and* raw_data
        t = _init(m, w)
        t.float_data.extend([1.0] * 3)

    add("init-raw-and-float-data", float_data)

    def duplicate(m):
        m.graph.initializer.append(_init(m, w))

    add("init-duplicate-name", duplicate)

    def no_name(m):
        _init(m, w).name = ""

    add("init-empty-name", no_name, expect=2)

    def constant_dims(m):  # a Constant node whose tensor's dims disagree with its data
        node = _nodes(m, "Constant")[0]
        node.attribute[0].t.dims.append(5)

    add("constant-dims-mismatch", constant_dims, base="mobilenetv2_small")

    def constant_no_value(m):
        del _nodes(m, "Constant")[0].attribute[:]

    add("constant-no-value", constant_no_value, base="mobilenetv2_small", expect=2)

    def constant_two_values(m):
        _nodes(m, "Constant")[0].attribute.append(helper.make_attribute("value_float", 1.0))

    add("constant-two-values", constant_two_values, base="mobilenetv2_small")

    def paddle_weight_dims(m):  # paddle keeps weights in Constant nodes
        for node in _nodes(m, "Constant"):
            t = node.attribute[0].t
            if len(t.dims) == 4:
                t.dims[1] += 1
                break

    add("constant-weight-dims-mismatch", paddle_weight_dims, base="paddle_style", expect=2)
    return out


# -- graph structure ---------------------------------------------------------------------


NOWHERE = {"expect": 2, "says": "which nothing defines"}
TWICE = {"expect": 2, "says": "already defined"}
CYCLE = {"expect": 2, "says": "or has a cycle"}


def structure_mutants() -> list[Mutant]:
    out = []

    def add(mid: str, fn: Callable[[onnx.ModelProto], None], base: str = "se_net", **kw):
        model = load(base)
        fn(model)
        out.append(_model(mid, model, **kw))

    def node(m, k):
        return m.graph.node[k]

    add("dangling-data-input", lambda m: node(m, 2).input.__setitem__(0, "nowhere"), **NOWHERE)
    add("dangling-weight", lambda m: node(m, 2).input.__setitem__(1, "no_weight"), **NOWHERE)
    add("dangling-graph-output", lambda m: setattr(m.graph.output[0], "name", "ghost"), expect=2)
    add("missing-graph-inputs", lambda m: m.graph.ClearField("input"), **NOWHERE)
    add("no-graph-outputs", lambda m: m.graph.ClearField("output"), expect=2)
    add("empty-graph", lambda m: m.graph.ClearField("node"), expect=2)
    add("no-graph", lambda m: m.ClearField("graph"), expect=2)

    def duplicate_output(m):
        node(m, 3).output[0] = node(m, 1).output[0]

    add("duplicate-output", duplicate_output, **TWICE)

    def output_over_initializer(m):
        node(m, 1).output[0] = "features.2.gate.1.bias"

    add("output-shadows-initializer", output_over_initializer, **TWICE)

    def output_over_input(m):
        node(m, 1).output[0] = m.graph.input[0].name

    add("output-shadows-graph-input", output_over_input, **TWICE)

    def self_cycle(m):
        n = node(m, 1)  # Relu
        n.input[0] = n.output[0]

    add("cycle-self", self_cycle, **CYCLE)

    def pair_cycle(m):
        a, b = node(m, 1), node(m, 3)  # Relu, Relu
        a.input[0] = b.output[0]

    add("cycle-pair", pair_cycle, **CYCLE)

    def reversed_order(m):
        nodes = list(m.graph.node)[::-1]
        m.graph.ClearField("node")
        m.graph.node.extend(nodes)

    add("nodes-reversed", reversed_order, **CYCLE)
    add("node-no-outputs", lambda m: node(m, 1).ClearField("output"), expect=2)
    add("node-empty-op-type", lambda m: setattr(node(m, 1), "op_type", ""), expect=2)
    add("unknown-op", lambda m: setattr(node(m, 1), "op_type", "Frobnicate"), expect=2)
    add("undeclared-domain", lambda m: setattr(node(m, 1), "domain", "com.example"), expect=2)

    def extra_input(m):
        node(m, 1).input.append(node(m, 0).output[0])

    add("relu-two-inputs", extra_input, expect=2)

    def input_elem_type(value):
        return lambda m: setattr(m.graph.input[0].type.tensor_type, "elem_type", value)

    add("input-type-undefined", input_elem_type(0), expect=2)
    add("input-type-999", input_elem_type(999), expect=2)
    add("input-type-string", input_elem_type(TensorProto.STRING), expect=2)
    add("input-type-int64", input_elem_type(TensorProto.INT64), expect=2)
    add("input-no-type", lambda m: m.graph.input[0].ClearField("type"), expect=2)

    def input_sequence(m):
        vi = m.graph.input[0]
        vi.type.CopyFrom(helper.make_sequence_type_proto(vi.type))

    add("input-sequence-type", input_sequence, expect=2)

    def input_dims(dims):
        def fn(m):
            shape = m.graph.input[0].type.tensor_type.shape
            del shape.dim[:]
            for d in dims:
                entry = shape.dim.add()
                if isinstance(d, str):
                    entry.dim_param = d
                else:
                    entry.dim_value = d

        return fn

    add("input-rank-3", input_dims([1, 3, 32]), expect=2)
    add("input-batch-0", input_dims([0, 3, 32, 32]))
    add("input-negative-dim", input_dims([1, 3, -32, 32]))
    add("input-channels-5", input_dims([1, 5, 32, 32]), expect=2)
    add("input-no-shape", lambda m: m.graph.input[0].type.tensor_type.ClearField("shape"))
    add("input-all-symbolic", input_dims(["n", "c", "h", "w"]))

    def set_opset(version):
        return lambda m: setattr(m.opset_import[0], "version", version)

    add("opset-0", set_opset(0), expect=2)
    add("opset-999", set_opset(999), expect=2)
    add("opset-5", set_opset(5), expect=2)
    add("opset-none", lambda m: m.ClearField("opset_import"), expect=2)
    add("opset-twice", lambda m: m.opset_import.append(helper.make_opsetid("", 11)))
    add("ir-version-0", lambda m: setattr(m, "ir_version", 0), expect=2)
    add("ir-version-999", lambda m: setattr(m, "ir_version", 999), expect=2)
    return out


# -- attributes ---------------------------------------------------------------------------


def attribute_mutants() -> list[Mutant]:
    out = []

    def conv(mid: str, name: str, value, k: int = 4, **kw):  # a 3x3 Conv, 32 channels
        model = load("se_net")
        _set_attr(_nodes(model, "Conv")[k], name, value)
        out.append(_model(f"conv-{mid}", model, **kw))

    conv("group-0", "group", 0, expect=2)
    conv("group-0-1x1", "group", 0, k=2, expect=2)
    conv("group-1e9", "group", 10**9, expect=2)
    conv("group-3", "group", 3, expect=2)
    conv("group-negative", "group", -2, expect=2)
    conv("group-float", "group", 2.5, expect=2)
    conv("group-string", "group", "two", expect=2)
    conv("kernel-negative", "kernel_shape", [-3, -3], expect=2)
    conv("kernel-99", "kernel_shape", [99, 99], expect=2)
    conv("kernel-rank-1", "kernel_shape", [3], expect=2)
    conv("strides-0", "strides", [0, 0], expect=2)
    conv("strides-negative", "strides", [-1, -1], expect=2)
    conv("pads-huge", "pads", [10**9] * 4, expect=2)
    conv("pads-negative", "pads", [-5] * 4, expect=2)
    conv("pads-short", "pads", [1], expect=2)
    conv("dilations-0", "dilations", [0, 0], expect=2)
    conv("dilations-1e9", "dilations", [10**9, 10**9], expect=2)
    conv("auto-pad-bogus", "auto_pad", "BOGUS", expect=2)

    def other(mid: str, base: str, op: str, name: str, value, k: int = 0, **kw):
        model = load(base)
        _set_attr(_nodes(model, op)[k], name, value)
        out.append(_model(mid, model, **kw))

    other("flatten-axis-99", "se_net", "Flatten", "axis", 99, expect=2)
    other("flatten-axis-minus-99", "se_net", "Flatten", "axis", -99, expect=2)
    other("gemm-transB-7", "se_net", "Gemm", "transB", 7)
    other("gemm-transB-0", "se_net", "Gemm", "transB", 0, expect=2)
    other("concat-axis-99", "unet_small", "Concat", "axis", 99, expect=2)
    other("concat-axis-0", "unet_small", "Concat", "axis", 0, expect=2)
    other("softmax-axis-99", "vit_tiny", "Softmax", "axis", 99, expect=2)
    other("layernorm-axis-99", "vit_tiny", "LayerNormalization", "axis", 99, expect=2)
    other("transpose-perm-bad", "vit_tiny", "Transpose", "perm", [0, 0, 1, 2], expect=2)
    other("bn-epsilon-negative", "densenet_small", "BatchNormalization", "epsilon", -1.0)
    other("maxpool-kernel-0", "classifier_flatten", "MaxPool", "kernel_shape", [0, 0], expect=2)
    other("resize-mode-bogus", "unet_small", "Resize", "mode", "bogus", expect=2)
    other("split-axis-99", "csp_yolo_small", "Split", "axis", 99, expect=2)

    def split_sizes(sizes):
        def fn(m):
            node = _nodes(m, "Split")[0]
            name = node.input[1] if len(node.input) > 1 else ""
            tensor = numpy_helper.from_array(np.array(sizes, np.int64), "split_sizes_fuzz")
            m.graph.initializer.append(tensor)
            if name:
                node.input[1] = "split_sizes_fuzz"
            else:
                node.input.append("split_sizes_fuzz")

        return fn

    for mid, sizes in (("not-summing", [1, 1]), ("negative", [-4, 100]), ("one", [5])):
        model = load("csp_yolo_small")
        split_sizes(sizes)(model)
        out.append(_model(f"split-sizes-{mid}", model, expect=2))
    return out


def unvalidated(mutants: list[Mutant]) -> list[Mutant]:
    """The same inputs with --no-validate: onnxruntime never sees them, so only
    onnxprune's own checks and the op handlers stand between them and a crash. What
    loading refuses (a `says` is given) is refused all the same."""
    return [
        Mutant(
            f"{m.id}-nv",
            m.files,
            m.links,
            m.outside,
            (*m.args, "--no-validate"),
            expect=m.expect if m.says else None,
            says=m.says,
        )
        for m in mutants
        if "--no-validate" not in m.args
    ]
