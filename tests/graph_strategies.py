"""Hypothesis strategies: random valid CNN graphs built from the ops onnxprune handles.

`cnn_models()` draws an `onnx.ModelProto` that passes the full checker by construction:
the builder tracks every tensor's shape as it adds nodes (Conv, grouped and depthwise
Conv, ConvTranspose, BatchNormalization, activations, pools, residual Adds, Concat,
Split, Slice, squeeze-excitation Mul, Flatten/Reshape -> Gemm, ...), with narrow widths
(1-24 channels) and small spatial sizes so that one example runs in a fraction of a
second. `prune_configs()` draws the pruning options.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from onnxprune import PruneConfig

MAX_CHANNELS = 24
MAX_STEPS = 9
OPSETS = (11, 13, 17)


@dataclass
class Tensor:
    name: str
    shape: tuple[int, ...]

    @property
    def channels(self) -> int:
        return self.shape[1]


@dataclass
class Builder:
    """The graph under construction: nodes, initializers, and the tensors so far."""

    opset: int
    rng: np.random.Generator
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[onnx.TensorProto] = field(default_factory=list)
    tensors: list[Tensor] = field(default_factory=list)
    inputs: list[Tensor] = field(default_factory=list)
    consumed: set[str] = field(default_factory=set)
    count: int = 0

    def fresh(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def weight(self, shape, positive: bool = False, prefix: str = "w") -> str:
        value = self.rng.standard_normal(tuple(shape)).astype(np.float32)
        if positive:
            value = np.abs(value) + 0.5
        return self.const(value, prefix)

    def const(self, value: np.ndarray, prefix: str = "c") -> str:
        name = self.fresh(prefix)
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def ints(self, values, prefix: str = "i") -> str:
        return self.const(np.asarray(values, np.int64), prefix)

    def node(self, op: str, inputs: list[str], shapes: list[tuple[int, ...]], **attrs):
        """Add a node; its outputs (of the given shapes) join the tensor pool."""
        name = self.fresh(op.lower())
        outs = [Tensor(f"{name}_y{j}" if len(shapes) > 1 else f"{name}_y", s)
                for j, s in enumerate(shapes)]  # fmt: skip
        self.nodes.append(helper.make_node(op, inputs, [t.name for t in outs], name=name, **attrs))
        self.consumed.update(i for i in inputs if i)
        self.tensors.extend(outs)
        return outs


def _conv_out(size: int, k: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - k) // stride + 1


def _spatial(draw, x: Tensor) -> dict:
    """Kernel, stride and padding for a 2-D window over x (output at least 1x1)."""
    h = x.shape[2]
    k = draw(st.sampled_from([1, 3] if h >= 3 else [1]))
    pad = draw(st.sampled_from([0, 1])) if k == 3 else 0
    stride = draw(st.sampled_from([1, 2])) if h >= 2 else 1
    return {"k": k, "pad": pad, "stride": stride}


def _pick(draw, b: Builder, rank: int | None = 4, min_channels: int = 1) -> Tensor | None:
    """A tensor of the pool (recent ones more often), or None when none fits."""
    fits = [t for t in b.tensors if (rank is None or len(t.shape) == rank)]
    fits = [t for t in fits if len(t.shape) < 2 or t.channels >= min_channels]
    if not fits:
        return None
    recent = draw(st.booleans())
    return fits[-1] if recent else draw(st.sampled_from(fits))


def add_conv(draw, b: Builder) -> None:
    x = _pick(draw, b)
    if x is None:
        return
    c = x.channels
    kinds = ["plain"]
    divisors = [g for g in range(2, c) if c % g == 0]
    if divisors:
        kinds.append("grouped")
    if c > 1:
        kinds.append("depthwise")
    kind = draw(st.sampled_from(kinds))
    if kind == "plain":
        group, out = 1, draw(st.integers(1, MAX_CHANNELS))
    elif kind == "grouped":
        group = draw(st.sampled_from(divisors))
        out = group * draw(st.integers(1, max(1, MAX_CHANNELS // group)))
    else:
        group = c
        out = c * draw(st.sampled_from([1, 2] if 2 * c <= MAX_CHANNELS else [1]))
    s = _spatial(draw, x)
    k = s["k"]
    inputs = [x.name, b.weight([out, c // group, k, k])]
    if draw(st.booleans()):
        inputs.append(b.weight([out], prefix="b"))
    size = _conv_out(x.shape[2], k, s["stride"], s["pad"])
    b.node(
        "Conv", inputs, [(1, out, size, size)], kernel_shape=[k, k], strides=[s["stride"]] * 2,
        pads=[s["pad"]] * 4, group=group,
    )  # fmt: skip


def add_conv_transpose(draw, b: Builder) -> None:
    x = _pick(draw, b)
    if x is None:
        return
    c, h = x.channels, x.shape[2]
    kinds = ["plain"]
    divisors = [g for g in range(2, c) if c % g == 0]
    if divisors:
        kinds.append("grouped")
    if c > 1:
        kinds.append("depthwise")
    kind = draw(st.sampled_from(kinds))
    group = {"plain": 1, "grouped": None, "depthwise": c}[kind]
    if group is None:
        group = draw(st.sampled_from(divisors))
    per_group = draw(st.integers(1, max(1, MAX_CHANNELS // group)))
    k, stride, pad = draw(st.sampled_from([(3, 1, 1), (2, 2, 0)] if h <= 8 else [(3, 1, 1)]))
    inputs = [x.name, b.weight([c, per_group, k, k])]
    if draw(st.booleans()):
        inputs.append(b.weight([per_group * group], prefix="b"))
    size = (h - 1) * stride - 2 * pad + k
    b.node(
        "ConvTranspose", inputs, [(1, per_group * group, size, size)], kernel_shape=[k, k],
        strides=[stride] * 2, pads=[pad] * 4, group=group,
    )  # fmt: skip


def add_batch_norm(draw, b: Builder) -> None:
    x = _pick(draw, b, rank=None)
    if x is None or len(x.shape) < 2:
        return
    c = x.channels
    params = [b.weight([c], prefix="gamma"), b.weight([c], prefix="beta"),
              b.weight([c], prefix="mean"), b.weight([c], positive=True, prefix="var")]  # fmt: skip
    b.node("BatchNormalization", [x.name, *params], [x.shape], epsilon=1e-5)


def add_activation(draw, b: Builder) -> None:
    x = _pick(draw, b, rank=None)
    if x is None:
        return
    ops = ["Relu", "LeakyRelu", "Sigmoid", "Tanh", "Clip", "PRelu", "Identity"]
    if b.opset >= 14:
        ops.append("HardSwish")
    op = draw(st.sampled_from(ops))
    if op == "LeakyRelu":
        b.node(op, [x.name], [x.shape], alpha=0.1)
    elif op == "Clip":
        low, high = b.const(np.float32(0.0)), b.const(np.float32(6.0))
        b.node(op, [x.name, low, high], [x.shape])
    elif op == "PRelu":
        dims = [x.channels] + [1] * (len(x.shape) - 2)
        b.node(op, [x.name, b.weight(dims, prefix="slope")], [x.shape])
    else:
        b.node(op, [x.name], [x.shape])


def add_constant_op(draw, b: Builder) -> None:
    """Add or Mul by a per-channel or scalar constant (a folded scale or bias)."""
    x = _pick(draw, b, rank=None)
    if x is None:
        return
    extra = [1] * (len(x.shape) - 2)
    dims = draw(st.sampled_from([[x.channels, *extra], [1, x.channels, *extra], [1]]))
    op = draw(st.sampled_from(["Add", "Mul", "Sub", "Div"]))
    value = b.weight(dims, positive=op == "Div", prefix="k")
    b.node(op, [x.name, value] if draw(st.booleans()) or op == "Div" else [value, x.name],
           [x.shape])  # fmt: skip


def add_pool(draw, b: Builder) -> None:
    x = _pick(draw, b)
    if x is None:
        return
    c, h = x.channels, x.shape[2]
    ops = ["GlobalAveragePool", "GlobalMaxPool", "AveragePool"] + (["MaxPool"] if h >= 2 else [])
    op = draw(st.sampled_from(ops))
    if op.startswith("Global"):
        b.node(op, [x.name], [(1, c, 1, 1)])
    elif op == "MaxPool":
        b.node(op, [x.name], [(1, c, h // 2, h // 2)], kernel_shape=[2, 2], strides=[2, 2])
    else:
        b.node(op, [x.name], [x.shape], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
               count_include_pad=draw(st.sampled_from([0, 1])))  # fmt: skip


def add_binary(draw, b: Builder) -> None:
    """A residual Add (or Mul/Sub/Max) of two tensors of one shape; when only one tensor
    has the shape, a 1x1 Conv makes the other branch."""
    x = _pick(draw, b, rank=None)
    if x is None:
        return
    same = [t for t in b.tensors if t.shape == x.shape and t.name != x.name]
    if same and draw(st.booleans()):
        y = draw(st.sampled_from(same))
    elif len(x.shape) == 4:
        w = b.weight([x.channels, x.channels, 1, 1])
        (y,) = b.node("Conv", [x.name, w], [x.shape], kernel_shape=[1, 1])
    else:
        y = x
    op = draw(st.sampled_from(["Add", "Add", "Sub", "Mul", "Max", "Sum"]))
    b.node(op, [x.name, y.name], [x.shape])


def add_squeeze_excitation(draw, b: Builder) -> None:
    """x * Sigmoid(Conv(Relu(Conv(GlobalAveragePool(x))))): the SE block."""
    x = _pick(draw, b)
    if x is None:
        return
    c = x.channels
    r = draw(st.integers(1, max(1, c)))
    (s,) = b.node("GlobalAveragePool", [x.name], [(1, c, 1, 1)])
    (s,) = b.node("Conv", [s.name, b.weight([r, c, 1, 1]), b.weight([r], prefix="b")],
                  [(1, r, 1, 1)], kernel_shape=[1, 1])  # fmt: skip
    (s,) = b.node("Relu", [s.name], [s.shape])
    (s,) = b.node("Conv", [s.name, b.weight([c, r, 1, 1]), b.weight([c], prefix="b")],
                  [(1, c, 1, 1)], kernel_shape=[1, 1])  # fmt: skip
    (s,) = b.node(draw(st.sampled_from(["Sigmoid", "HardSigmoid"])), [s.name], [s.shape])
    order = [x.name, s.name] if draw(st.booleans()) else [s.name, x.name]
    b.node("Mul", order, [x.shape])


def add_concat(draw, b: Builder) -> None:
    x = _pick(draw, b, rank=None)
    if x is None:
        return
    if len(x.shape) == 4:
        mates = [t for t in b.tensors + b.inputs if len(t.shape) == 4 and t.shape[2:] == x.shape[2:]]
    else:
        mates = [t for t in b.tensors if t.shape[:1] == x.shape[:1] and len(t.shape) == 2]
    parts = [x] + draw(st.lists(st.sampled_from(mates), min_size=1, max_size=2))
    if draw(st.booleans()):
        parts.reverse()
    total = sum(t.channels for t in parts)
    shape = (x.shape[0], total, *x.shape[2:])
    b.node("Concat", [t.name for t in parts], [shape], axis=draw(st.sampled_from([1, 1 - len(shape)])))


def add_split(draw, b: Builder) -> None:
    x = _pick(draw, b, rank=None, min_channels=2)
    if x is None:
        return
    c = x.channels
    n = draw(st.integers(2, min(3, c)))
    equal = c % n == 0 and draw(st.booleans())
    if equal:
        sizes = [c // n] * n
    else:
        cuts = sorted(draw(st.permutations(range(1, c)))[: n - 1])
        sizes = list(np.diff([0, *cuts, c]))
    shapes = [(x.shape[0], int(s), *x.shape[2:]) for s in sizes]
    inputs, attrs = [x.name], {"axis": 1}
    if not equal:
        if b.opset >= 13:
            inputs.append(b.ints(sizes, "split"))
        else:
            attrs["split"] = [int(s) for s in sizes]
    outs = b.node("Split", inputs, shapes, **attrs)
    if draw(st.booleans()):  # one part is left unused, as a dead branch
        b.tensors.remove(outs[draw(st.integers(0, n - 1))])


def add_slice(draw, b: Builder) -> None:
    x = _pick(draw, b, rank=None, min_channels=2)
    if x is None:
        return
    c = x.channels
    if len(x.shape) == 4 and x.shape[2] >= 2 and draw(st.integers(0, 3)) == 0:
        end = draw(st.integers(1, x.shape[2]))  # a spatial crop: channels pass through
        b.node("Slice", [x.name, b.ints([0, 0]), b.ints([end, end]), b.ints([2, 3])],
               [(1, c, end, end)])  # fmt: skip
        return
    start = draw(st.integers(0, c - 1))
    end = draw(st.integers(start + 1, c))
    step = 2 if draw(st.integers(0, 4)) == 0 else 1
    count = len(range(start, end, step))
    end_value = end if end < c or draw(st.booleans()) else 2**31 - 1
    start_value = start - c if start and draw(st.booleans()) else start
    inputs = [x.name, b.ints([start_value]), b.ints([end_value]), b.ints([1])]
    if step != 1:
        inputs.append(b.ints([step]))
    b.node("Slice", inputs, [(x.shape[0], count, *x.shape[2:])])


def add_dense(draw, b: Builder) -> None:
    """Flatten (or Reshape) a 4-D tensor, or take a 2-D one, then Gemm."""
    x = _pick(draw, b, rank=None)
    if x is None:
        return
    if len(x.shape) == 4:
        features = int(np.prod(x.shape[1:]))
        if features > 256:
            (x,) = b.node("GlobalAveragePool", [x.name], [(1, x.channels, 1, 1)])
            features = x.channels
        if draw(st.booleans()):
            (x,) = b.node("Flatten", [x.name], [(1, features)], axis=1)
        else:
            target = b.ints(draw(st.sampled_from([[1, -1], [1, features], [-1, features]])))
            (x,) = b.node("Reshape", [x.name, target], [(1, features)])
    n = draw(st.integers(1, MAX_CHANNELS))
    trans_b = draw(st.sampled_from([0, 1]))
    w = b.weight([n, x.channels] if trans_b else [x.channels, n])
    inputs = [x.name, w]
    if draw(st.booleans()):
        inputs.append(b.weight(draw(st.sampled_from([[n], [1, n]])), prefix="b"))
    b.node("Gemm", inputs, [(1, n)], transB=trans_b)


STEPS = [
    add_conv, add_conv, add_conv, add_conv_transpose, add_batch_norm, add_activation,
    add_constant_op, add_pool, add_binary, add_binary, add_squeeze_excitation, add_concat,
    add_split, add_slice, add_dense,
]  # fmt: skip


def _head(draw, b: Builder, x: Tensor) -> Tensor:
    """Map the last tensor to a fixed-size output (graph outputs keep their channels)."""
    n = draw(st.integers(1, 4))
    if len(x.shape) == 4:
        if draw(st.booleans()):
            w = b.weight([n, x.channels, 1, 1])
            (y,) = b.node("Conv", [x.name, w], [(1, n, *x.shape[2:])], kernel_shape=[1, 1])
            return y
        (x,) = b.node("GlobalAveragePool", [x.name], [(1, x.channels, 1, 1)])
        (x,) = b.node("Flatten", [x.name], [(1, x.channels)], axis=1)
    (y,) = b.node("Gemm", [x.name, b.weight([x.channels, n]), b.weight([n])], [(1, n)])
    return y


def _value_info(t: Tensor) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(t.name, TensorProto.FLOAT, list(t.shape))


@st.composite
def cnn_models(draw) -> onnx.ModelProto:
    """A random valid CNN: input [1, C, H, H], a stem Conv, then random steps."""
    opset = draw(st.sampled_from(OPSETS))
    b = Builder(opset, np.random.default_rng(draw(st.integers(0, 2**16))))
    size = draw(st.sampled_from([4, 6, 8]))
    x = Tensor("x", (1, draw(st.integers(1, 4)), size, size))
    b.inputs.append(x)
    b.tensors.append(x)
    add_conv(draw, b)
    b.tensors.remove(x)  # later steps read it only through Concat, as an unprunable part
    for step in draw(st.lists(st.sampled_from(STEPS), min_size=1, max_size=MAX_STEPS)):
        step(draw, b)
    outputs = [_head(draw, b, b.tensors[-1])]
    extra = [t for t in b.tensors[:-1] if t.name not in b.consumed]
    if extra:  # dangling tensors stay dangling, or become graph outputs too
        outputs += draw(st.permutations(extra))[: draw(st.integers(0, 2))]
    graph = helper.make_graph(
        b.nodes, "random_cnn", [_value_info(x)], [_value_info(t) for t in outputs],
        initializer=b.initializers,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


@st.composite
def prune_configs(draw) -> PruneConfig:
    """Ratio, criterion, rounding and ranking; data-aware criteria with random
    calibration samples and no reconstruction (so the masking oracle stays exact)."""
    criterion = draw(st.sampled_from(["l2", "l1", "bn_gamma", "activation", "wanda", "energy"]))
    calib = 4 if criterion in ("activation", "wanda", "energy") else 0
    return PruneConfig(
        ratio=draw(st.sampled_from([0.25, 0.5, 0.75, 0.9]) | st.floats(0.0, 0.95)),
        criterion=criterion,
        round_to=draw(st.sampled_from([1, 1, 2, 4, 8])),
        min_channels=draw(st.sampled_from([1, 1, 2])),
        global_ranking=draw(st.booleans()),
        calib_random=calib,
        reconstruct="none",
    )
