"""Hypothesis strategies: random valid CNN graphs built from the ops onnxprune handles.

`cnn_models()` draws an `onnx.ModelProto` that passes the full checker by construction:
the builder tracks every tensor's shape as it adds nodes, with narrow widths (1-24
channels) and small spatial sizes so that one example runs in a fraction of a second.
The steps cover plain, grouped, depthwise and dilated Conv, ConvTranspose,
BatchNormalization, InstanceNormalization, activations, pools, reductions, Pad, Resize,
residual Adds, Concat and Split (on channels or space), Slice, squeeze-excitation,
channel-last MatMul, and Flatten / Reshape / `x.view(x.size(0), -1)` -> Gemm or MatMul
-> Unsqueeze back to 4-D. Weights live in initializers or Constant nodes (as Paddle
writes them), may be shared between convs, the batch may be symbolic and the model may
carry inferred value_info. `prune_configs()` draws the pruning options.
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
    """Concrete shape (batch 1); [N, C, H, W] or [N, F]."""

    @property
    def channels(self) -> int:
        return self.shape[1]


@dataclass
class Builder:
    """The graph under construction: nodes, initializers, and the tensors so far."""

    opset: int
    rng: np.random.Generator
    constants: str = "init"
    """Where constants live: "init" (initializers), "node" (Constant nodes), "mixed"."""
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[onnx.TensorProto] = field(default_factory=list)
    tensors: list[Tensor] = field(default_factory=list)
    consumed: set[str] = field(default_factory=set)
    conv_weights: dict[tuple[int, int], list[tuple[str, int]]] = field(default_factory=dict)
    named: bool = True
    """Whether nodes carry names (exporters do not always write them)."""
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
        tensor = numpy_helper.from_array(np.asarray(value), name)
        as_node = self.constants == "node" or (
            self.constants == "mixed" and self.rng.random() < 0.5
        )
        if as_node:
            self.nodes.append(
                helper.make_node("Constant", [], [name], name=f"{name}_const", value=tensor)
            )
        else:
            self.initializers.append(tensor)
        return name

    def ints(self, values, prefix: str = "i") -> str:
        return self.const(np.asarray(values, np.int64), prefix)

    def node(self, op: str, inputs: list[str], shapes: list[tuple[int, ...]], pool=True, **attrs):
        """Add a node; its outputs (of the given shapes) join the tensor pool."""
        name = self.fresh(op.lower())
        outs = [Tensor(f"{name}_y{j}" if len(shapes) > 1 else f"{name}_y", tuple(s))
                for j, s in enumerate(shapes)]  # fmt: skip
        label = name if self.named else None
        self.nodes.append(helper.make_node(op, inputs, [t.name for t in outs], name=label, **attrs))
        self.consumed.update(i for i in inputs if i)
        if pool:
            self.tensors.extend(outs)
        return outs

    def axes_input(self, axes: list[int], attrs: dict, since: int = 13) -> list[str]:
        """`axes` as an input (from opset `since`) or an attribute (before)."""
        if self.opset >= since:
            return [self.ints(axes, "axes")]
        attrs["axes"] = axes
        return []


def _pick(draw, b: Builder, rank: int | None = 4, min_channels: int = 1) -> Tensor | None:
    """A tensor of the pool (the latest more often), or None when none fits."""
    fits = [t for t in b.tensors if rank is None or len(t.shape) == rank]
    fits = [t for t in fits if t.channels >= min_channels]
    if not fits:
        return None
    return fits[-1] if draw(st.booleans()) else draw(st.sampled_from(fits))


def _window(draw, h: int, w: int, dilate: bool = True) -> tuple[dict, tuple[int, int]]:
    """Conv / pool window attributes over an h x w input, and the output size."""
    k = draw(st.sampled_from([1, 3]))
    stride = draw(st.sampled_from([1, 2]))
    dilation = 2 if k == 3 and dilate and draw(st.integers(0, 4)) == 0 else 1
    span = dilation * (k - 1) + 1
    attrs = {"kernel_shape": [k, k], "strides": [stride] * 2}
    if dilation > 1:
        attrs["dilations"] = [2, 2]
    if dilation == 1 and draw(st.integers(0, 5)) == 0:  # onnxruntime: not with dilations
        attrs["auto_pad"] = "SAME_UPPER"
        return attrs, (-(-h // stride), -(-w // stride))
    pad = draw(st.sampled_from([0, span // 2]))
    if min(h, w) + 2 * pad < span:
        pad = span // 2
    attrs["pads"] = [pad] * 4
    return attrs, ((h + 2 * pad - span) // stride + 1, (w + 2 * pad - span) // stride + 1)


def _groups(draw, c: int) -> tuple[str, int]:
    kinds = ["plain"]
    divisors = [g for g in range(2, c) if c % g == 0]
    if divisors:
        kinds.append("grouped")
    if c > 1:
        kinds.append("depthwise")
    kind = draw(st.sampled_from(kinds))
    group = {"plain": 1, "depthwise": c}.get(kind) or draw(st.sampled_from(divisors))
    return kind, group


def add_conv(draw, b: Builder) -> None:
    x = _pick(draw, b)
    if x is None:
        return
    c = x.channels
    kind, group = _groups(draw, c)
    attrs, (h, w) = _window(draw, *x.shape[2:])
    k = attrs["kernel_shape"][0]
    shared = b.conv_weights.get((c, k), []) if kind == "plain" else []
    if shared and draw(st.booleans()):  # a second conv with the same weight
        weight, out = draw(st.sampled_from(shared))
    else:
        if kind == "plain":
            out = draw(st.integers(1, MAX_CHANNELS))
        elif kind == "grouped":
            out = group * draw(st.integers(1, max(1, MAX_CHANNELS // group)))
        else:
            out = c * draw(st.sampled_from([1, 2] if 2 * c <= MAX_CHANNELS else [1]))
        weight = b.weight([out, c // group, k, k])
        if kind == "plain":
            b.conv_weights.setdefault((c, k), []).append((weight, out))
    inputs = [x.name, weight]
    if draw(st.booleans()):
        inputs.append(b.weight([out], prefix="b"))
    b.node("Conv", inputs, [(1, out, h, w)], group=group, **attrs)


def add_conv_transpose(draw, b: Builder) -> None:
    x = _pick(draw, b)
    if x is None:
        return
    c, (h, w) = x.channels, x.shape[2:]
    _, group = _groups(draw, c)
    per_group = draw(st.integers(1, max(1, MAX_CHANNELS // group)))
    shapes = [(3, 1, 1, 0)] + ([(2, 2, 0, 0), (3, 2, 1, 1)] if max(h, w) <= 8 else [])
    k, stride, pad, extra = draw(st.sampled_from(shapes))
    inputs = [x.name, b.weight([c, per_group, k, k])]
    if draw(st.booleans()):
        inputs.append(b.weight([per_group * group], prefix="b"))
    attrs = {"kernel_shape": [k, k], "strides": [stride] * 2, "pads": [pad] * 4, "group": group}
    if extra:
        attrs["output_padding"] = [extra, extra]
    size = [(d - 1) * stride - 2 * pad + k + extra for d in (h, w)]
    b.node("ConvTranspose", inputs, [(1, per_group * group, *size)], **attrs)


def add_norm(draw, b: Builder) -> None:
    x = _pick(draw, b, rank=None)
    if x is None:
        return
    c = x.channels
    if len(x.shape) == 4 and draw(st.integers(0, 3)) == 0:
        params = [b.weight([c], prefix="scale"), b.weight([c], prefix="bias")]
        b.node("InstanceNormalization", [x.name, *params], [x.shape], epsilon=1e-5)
        return
    params = [b.weight([c], prefix="gamma"), b.weight([c], prefix="beta"),
              b.weight([c], prefix="mean"), b.weight([c], positive=True, prefix="var")]  # fmt: skip
    b.node("BatchNormalization", [x.name, *params], [x.shape], epsilon=1e-5)


def add_activation(draw, b: Builder) -> None:
    x = _pick(draw, b, rank=None)
    if x is None:
        return
    ops = ["Relu", "LeakyRelu", "Sigmoid", "Tanh", "Clip", "PRelu", "Identity", "Dropout",
           "Softmax", "Cast"] + (["HardSwish"] if b.opset >= 14 else [])  # fmt: skip
    op = draw(st.sampled_from(ops))
    if op == "LeakyRelu":
        b.node(op, [x.name], [x.shape], alpha=0.1)
    elif op == "Clip":
        low, high = b.const(np.float32(0.0)), b.const(np.float32(6.0))
        b.node(op, [x.name, low, high], [x.shape])
    elif op == "PRelu":
        dims = [x.channels] + [1] * (len(x.shape) - 2)
        b.node(op, [x.name, b.weight(dims, prefix="slope")], [x.shape])
    elif op == "Softmax":  # over the channels: they must be frozen
        b.node(op, [x.name], [x.shape], axis=1)
    elif op == "Cast":
        b.node(op, [x.name], [x.shape], to=TensorProto.FLOAT)
    else:
        b.node(op, [x.name], [x.shape])


def add_constant_op(draw, b: Builder) -> None:
    """Add, Mul, Sub or Div by a per-channel or scalar constant (a folded scale or bias)."""
    x = _pick(draw, b, rank=None)
    if x is None:
        return
    extra = [1] * (len(x.shape) - 2)
    dims = draw(st.sampled_from([[x.channels, *extra], [1, x.channels, *extra], [1]]))
    op = draw(st.sampled_from(["Add", "Mul", "Sub", "Div"]))
    value = b.weight(dims, positive=op == "Div", prefix="k")
    first = op == "Div" or draw(st.booleans())
    b.node(op, [x.name, value] if first else [value, x.name], [x.shape])


def add_pool(draw, b: Builder) -> None:
    x = _pick(draw, b)
    if x is None:
        return
    c, (h, w) = x.channels, x.shape[2:]
    ops = ["GlobalAveragePool", "GlobalMaxPool", "AveragePool"] + (
        ["MaxPool"] if min(h, w) >= 2 else []
    )
    op = draw(st.sampled_from(ops))
    if op.startswith("Global"):
        b.node(op, [x.name], [(1, c, 1, 1)])
    elif op == "MaxPool":
        ceil = draw(st.sampled_from([0, 1]))
        size = [(-(-(d - 2) // 2) if ceil else (d - 2) // 2) + 1 for d in (h, w)]
        b.node(op, [x.name], [(1, c, *size)], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=ceil)
    else:
        b.node(op, [x.name], [x.shape], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
               count_include_pad=draw(st.sampled_from([0, 1])))  # fmt: skip


def add_reduce(draw, b: Builder) -> None:
    """ReduceMean over space (keepdims or not), ReduceSum or ReduceMax over channels."""
    x = _pick(draw, b)
    if x is None:
        return
    c, (h, w) = x.channels, x.shape[2:]
    op = draw(st.sampled_from(["ReduceMean", "ReduceSum", "ReduceMax"]))
    if op == "ReduceMean":
        keep = draw(st.sampled_from([0, 1]))
        b.node(op, [x.name], [(1, c, 1, 1) if keep else (1, c)], axes=[2, 3], keepdims=keep)
        return
    attrs: dict = {"keepdims": 1}
    inputs = [x.name] + (b.axes_input([1], attrs) if op == "ReduceSum" else [])
    if op == "ReduceMax":
        attrs["axes"] = [1]
    b.node(op, inputs, [(1, 1, h, w)], **attrs)


def add_pad_or_resize(draw, b: Builder) -> None:
    x = _pick(draw, b)
    if x is None:
        return
    c, (h, w) = x.channels, x.shape[2:]
    if max(h, w) > 8 or draw(st.booleans()):
        mode = draw(st.sampled_from(["constant", "reflect", "edge"]))
        limit = 2 if mode != "reflect" else min(2, h - 1, w - 1)
        pads = [draw(st.integers(0, limit)) for _ in range(4)]  # top, left, bottom, right
        full = [0, 0, pads[0], pads[1], 0, 0, pads[2], pads[3]]
        shape = (1, c, h + pads[0] + pads[2], w + pads[1] + pads[3])
        b.node("Pad", [x.name, b.ints(full, "pads")], [shape], mode=mode)
        return
    empty = b.const(np.zeros(0, np.float32), "empty") if b.opset < 13 else ""
    if draw(st.booleans()):
        scales = b.const(np.array([1, 1, 2, 2], np.float32), "scales")
        inputs = [x.name, empty, scales]
    else:
        inputs = [x.name, empty, empty, b.ints([1, c, 2 * h, 2 * w], "sizes")]
    b.node("Resize", inputs, [(1, c, 2 * h, 2 * w)], mode="nearest")


def add_binary(draw, b: Builder) -> None:
    """A residual Add (or Mul/Sub/Max/Sum) of two tensors of one shape; when only one
    tensor has the shape, a 1x1 Conv makes the other branch."""
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


def add_concat(draw, b: Builder, inputs: list[Tensor]) -> None:
    """Concat on the channels (the graph input may be a part), or on a spatial axis."""
    x = _pick(draw, b, rank=None)
    if x is None:
        return
    rank = len(x.shape)
    axis = 1 if rank == 2 else draw(st.sampled_from([1, 1, 2, 3]))
    pool = b.tensors + (inputs if axis == 1 else [])
    mates = [t for t in pool if len(t.shape) == rank
             and all(t.shape[a] == x.shape[a] for a in range(rank) if a != axis)]  # fmt: skip
    parts = [x] + draw(st.lists(st.sampled_from(mates), min_size=1, max_size=2))
    if draw(st.booleans()):
        parts.reverse()
    shape = list(x.shape)
    shape[axis] = sum(t.shape[axis] for t in parts)
    b.node(
        "Concat", [t.name for t in parts], [shape], axis=draw(st.sampled_from([axis, axis - rank]))
    )


def add_split(draw, b: Builder) -> None:
    x = _pick(draw, b, rank=None)
    if x is None:
        return
    axis = 1 if len(x.shape) == 2 else draw(st.sampled_from([1, 1, 2]))
    total = x.shape[axis]
    if total < 2:
        return
    n = draw(st.integers(2, min(3, total)))
    equal = total % n == 0 and draw(st.booleans())
    if equal:
        sizes = [total // n] * n
    else:
        cuts = sorted(draw(st.permutations(range(1, total)))[: n - 1])
        sizes = [int(s) for s in np.diff([0, *cuts, total])]
    shapes = []
    for s in sizes:
        shape = list(x.shape)
        shape[axis] = s
        shapes.append(shape)
    inputs, attrs = [x.name], {"axis": axis}
    if not equal:
        if b.opset >= 13:
            inputs.append(b.ints(sizes, "split"))
        else:
            attrs["split"] = sizes
    outs = b.node("Split", inputs, shapes, **attrs)
    if draw(st.booleans()):  # one part is left unused, as a dead branch
        b.tensors.remove(outs[draw(st.integers(0, n - 1))])


def add_slice(draw, b: Builder) -> None:
    x = _pick(draw, b, rank=None, min_channels=2)
    if x is None:
        return
    c = x.channels
    if len(x.shape) == 4 and min(x.shape[2:]) >= 2 and draw(st.integers(0, 3)) == 0:
        end = draw(st.integers(1, min(x.shape[2:])))  # a spatial crop: channels pass through
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


def _flatten(draw, b: Builder, x: Tensor, symbolic: bool) -> Tensor:
    """[N, C, H, W] -> [N, C*H*W]: Flatten, Reshape to a constant, or x.view(x.size(0), -1)."""
    features = int(np.prod(x.shape[1:]))
    how = draw(st.sampled_from(["flatten", "reshape", "view"]))
    if how == "flatten":
        (y,) = b.node("Flatten", [x.name], [(1, features)], axis=1)
    elif how == "reshape":
        targets = [[-1, features], [0, -1]] + ([] if symbolic else [[1, -1], [1, features]])
        (y,) = b.node("Reshape", [x.name, b.ints(draw(st.sampled_from(targets)))], [(1, features)])
    else:
        (s,) = b.node("Shape", [x.name], [(4,)], pool=False)
        (n,) = b.node("Gather", [s.name, b.ints(0)], [()], pool=False, axis=0)
        attrs: dict = {}
        (n,) = b.node("Unsqueeze", [n.name, *b.axes_input([0], attrs)], [(1,)], pool=False, **attrs)
        (t,) = b.node("Concat", [n.name, b.ints([-1])], [(2,)], pool=False, axis=0)
        (y,) = b.node("Reshape", [x.name, t.name], [(1, features)])
    return y


def add_dense(draw, b: Builder, symbolic: bool) -> None:
    """Flatten a 4-D tensor (or take a 2-D one), then Gemm or MatMul (+ Add); sometimes
    Unsqueeze the result back to [N, F, 1, 1] for 1x1 convs."""
    x = _pick(draw, b, rank=None)
    if x is None:
        return
    if len(x.shape) == 4:
        if int(np.prod(x.shape[1:])) > 256:
            (x,) = b.node("GlobalAveragePool", [x.name], [(1, x.channels, 1, 1)])
        x = _flatten(draw, b, x, symbolic)
    n = draw(st.integers(1, MAX_CHANNELS))
    if draw(st.integers(0, 3)) == 0:
        (y,) = b.node("MatMul", [x.name, b.weight([x.channels, n])], [(1, n)])
        if draw(st.booleans()):
            (y,) = b.node("Add", [y.name, b.weight([n], prefix="b")], [(1, n)])
    else:
        trans_b = draw(st.sampled_from([0, 1]))
        inputs = [x.name, b.weight([n, x.channels] if trans_b else [x.channels, n])]
        if draw(st.booleans()):
            inputs.append(b.weight(draw(st.sampled_from([[n], [1, n]])), prefix="b"))
        (y,) = b.node("Gemm", inputs, [(1, n)], transB=trans_b)
    if draw(st.integers(0, 3)) == 0:
        attrs: dict = {}
        b.node("Unsqueeze", [y.name, *b.axes_input([2, 3], attrs)], [(1, n, 1, 1)], **attrs)


def add_channel_last_linear(draw, b: Builder) -> None:
    """Transpose to NHWC, MatMul by a [C, N] weight (+ bias), Transpose back (ConvNeXt)."""
    x = _pick(draw, b)
    if x is None:
        return
    c, (h, w) = x.channels, x.shape[2:]
    n = draw(st.integers(1, MAX_CHANNELS))
    (t,) = b.node("Transpose", [x.name], [(1, h, w, c)], pool=False, perm=[0, 2, 3, 1])
    (t,) = b.node("MatMul", [t.name, b.weight([c, n])], [(1, h, w, n)], pool=False)
    if draw(st.booleans()):
        (t,) = b.node("Add", [t.name, b.weight([n], prefix="b")], [(1, h, w, n)], pool=False)
    b.node("Transpose", [t.name], [(1, n, h, w)], perm=[0, 3, 1, 2])


STEPS = [
    add_conv, add_conv, add_conv, add_conv_transpose, add_norm, add_activation,
    add_constant_op, add_pool, add_reduce, add_pad_or_resize, add_binary, add_binary,
    add_squeeze_excitation, add_concat, add_split, add_slice, add_dense,
    add_channel_last_linear,
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


def _value_info(t: Tensor, batch) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(t.name, TensorProto.FLOAT, [batch, *t.shape[1:]])


@st.composite
def cnn_models(draw) -> onnx.ModelProto:
    """A random valid CNN: input [N, C, H, W], a stem Conv, then random steps."""
    opset = draw(st.sampled_from(OPSETS))
    constants = draw(st.sampled_from(["init", "init", "node", "mixed"]))
    b = Builder(opset, np.random.default_rng(draw(st.integers(0, 2**16))), constants)
    b.named = draw(st.integers(0, 4)) > 0
    symbolic = draw(st.booleans())
    h, w = draw(st.sampled_from([4, 6, 8])), draw(st.sampled_from([4, 5, 8]))
    x = Tensor("x", (1, draw(st.integers(1, 4)), h, w))
    b.tensors.append(x)
    add_conv(draw, b)
    if draw(st.integers(0, 3)):  # mostly, later steps read x only as a part of a Concat
        b.tensors.remove(x)
    for step in draw(st.lists(st.sampled_from(STEPS), min_size=1, max_size=MAX_STEPS)):
        if step is add_concat:
            step(draw, b, [x])
        elif step is add_dense:
            step(draw, b, symbolic)
        else:
            step(draw, b)
    outputs = [_head(draw, b, b.tensors[-1])]
    extra = [t for t in b.tensors[:-1] if t.name not in b.consumed and t is not x]
    if extra:  # dangling tensors stay dangling, or become graph outputs too
        outputs += draw(st.permutations(extra))[: draw(st.integers(0, 2))]
    batch = "N" if symbolic else 1
    graph = helper.make_graph(
        b.nodes, "random_cnn", [_value_info(x, batch)], [_value_info(t, batch) for t in outputs],
        initializer=b.initializers,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    if draw(st.booleans()):
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model, full_check=True)
    return model


@st.composite
def cnn_cases(draw) -> tuple[onnx.ModelProto, PruneConfig]:
    """A model and pruning options; a symbolic batch is sometimes run at batch 2."""
    model = draw(cnn_models())
    config = draw(prune_configs())
    dims = model.graph.input[0].type.tensor_type.shape.dim
    if dims[0].dim_param and draw(st.booleans()):
        config.input_shapes = {"x": [2] + [d.dim_value for d in dims[1:]]}
    return model, config


@st.composite
def prune_configs(draw) -> PruneConfig:
    """Ratio, criterion, rounding and ranking; data-aware criteria with random
    calibration samples and no reconstruction (so the masking oracle stays exact)."""
    criterion = draw(st.sampled_from(["l2", "l1", "bn_gamma", "activation", "wanda", "energy"]))
    calib = 4 if criterion in ("activation", "wanda", "energy") else 0
    return PruneConfig(
        ratio=draw(st.sampled_from([0.25, 0.5, 0.75, 0.9]) | st.floats(0.0, 0.95)),
        criterion=criterion,
        round_to=draw(st.sampled_from([1, 1, 1, 2, 4, 8])),
        min_channels=draw(st.sampled_from([1, 1, 2])),
        global_ranking=draw(st.booleans()),
        exclude=draw(st.sampled_from([[], [], [], ["conv1*"], ["*gemm*"]])),
        calib_random=calib,
        reconstruct="none",
    )
