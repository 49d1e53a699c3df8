"""Build small ONNX graphs shaped like non-PyTorch exporters write them.

Uses only ``onnx.helper`` and numpy (no torch).  Writes, deterministically:

* ``tf2onnx_style.onnx`` (opset 14): NHWC input with Transposes around the conv
  body, unfused BatchNormalization, HardSwish, a residual Add, a bias Add on
  the NHWC last axis, nearest Resize with an empty roi and a ``scales``
  constant, GlobalAveragePool -> Reshape -> MatMul + Add head.
* ``paddle_style.onnx`` (opset 11): all weights and BN params in ``Constant``
  nodes, unfused BatchNormalization, a depthwise conv, a HardSigmoid SE gate,
  hardswish written as paddle2onnx does below opset 14 (Add/Clip/Mul/Div),
  Pad with pads given by a Constant input, Reshape ``[0, -1]`` -> MatMul + Add.

Usage (from the repo root): ``python tools/make_framework_graphs.py [--out DIR]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

SEED = 0


class GraphBuilder:
    """Accumulates nodes and weights; weights go to initializers or Constant nodes."""

    def __init__(self, seed: int, prefix: str, constant_nodes: bool = False) -> None:
        self.rng = np.random.default_rng(seed)
        self.prefix = prefix
        self.constant_nodes = constant_nodes
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.counts: dict[str, int] = {}

    def uid(self, kind: str) -> int:
        """Next running index for names of ``kind``."""
        self.counts[kind] = self.counts.get(kind, -1) + 1
        return self.counts[kind]

    def tensor(self, name: str, value: np.ndarray) -> str:
        """Register ``value`` as an initializer or a Constant node; return its name."""
        if self.constant_nodes:
            node_name = f"p2o.Constant.{self.uid('Constant')}"
            tensor = numpy_helper.from_array(value, name)
            self.nodes.append(helper.make_node("Constant", [], [name], node_name, value=tensor))
        else:
            self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def node(self, op: str, inputs: list[str], name: str, **attrs: object) -> str:
        """Append one node named ``name`` whose single output is ``name`` + ':0'."""
        out = f"{name}:0" if not self.constant_nodes else f"{name}.tmp_0"
        self.nodes.append(helper.make_node(op, inputs, [out], name, **attrs))
        return out

    def conv_weight(self, name: str, cout: int, cin_per_group: int, k: int) -> str:
        """He-normal conv weight [cout, cin/group, k, k]."""
        fan_in = cin_per_group * k * k
        w = self.rng.standard_normal((cout, cin_per_group, k, k)) * np.sqrt(2.0 / fan_in)
        return self.tensor(name, w.astype(np.float32))

    def vector(self, name: str, n: int, scale: float = 0.1) -> str:
        """Small normal vector [n] (biases)."""
        return self.tensor(name, (self.rng.standard_normal(n) * scale).astype(np.float32))

    def bn(self, x: str, c: int, name: str) -> str:
        """Unfused BatchNormalization with non-trivial scale/B/mean/var."""
        rng = self.rng
        params = {
            "scale": rng.uniform(0.5, 1.5, c),
            "B": rng.standard_normal(c) * 0.1,
            "mean": rng.standard_normal(c) * 0.1,
            "var": rng.uniform(0.5, 2.0, c),
        }
        names = [self.tensor(f"{name}/{k}", v.astype(np.float32)) for k, v in params.items()]
        return self.node("BatchNormalization", [x, *names], name, epsilon=1e-5, momentum=0.9)

    def scalar(self, name: str, value: float) -> str:
        """0-d float32 constant."""
        return self.tensor(name, np.array(value, dtype=np.float32))

    def ints(self, name: str, values: list[int]) -> str:
        """1-d int64 constant."""
        return self.tensor(name, np.array(values, dtype=np.int64))

    def model(
        self, name: str, inp: onnx.ValueInfoProto, out: onnx.ValueInfoProto, opset: int
    ) -> onnx.ModelProto:
        """Wrap the collected nodes into a ModelProto."""
        graph = helper.make_graph(self.nodes, name, [inp], [out], self.initializers)
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", opset)],
            producer_name=self.prefix,
        )
        model.ir_version = 8
        return model


def tf2onnx_body(b: GraphBuilder, x: str) -> str:
    """NCHW conv/BN/HardSwish residual block; returns the 16-channel NCHW tensor."""
    scope = "StatefulPartitionedCall/model"
    w1 = b.conv_weight(f"{scope}/conv2d/Conv2D/ReadVariableOp:0", 16, 3, 3)
    y = b.node("Conv", [x, w1], f"{scope}/conv2d/Conv2D", pads=[1, 1, 1, 1])
    y = b.bn(y, 16, f"{scope}/batch_normalization/FusedBatchNormV3")
    r1 = b.node("Relu", [y], f"{scope}/re_lu/Relu")
    w2 = b.conv_weight(f"{scope}/conv2d_1/Conv2D/ReadVariableOp:0", 16, 16, 3)
    y = b.node("Conv", [r1, w2], f"{scope}/conv2d_1/Conv2D", pads=[1, 1, 1, 1])
    y = b.bn(y, 16, f"{scope}/batch_normalization_1/FusedBatchNormV3")
    y = b.node("HardSwish", [y], f"{scope}/activation/HardSwish")
    return b.node("Add", [r1, y], f"{scope}/add/add")


def build_tf2onnx(seed: int = SEED) -> onnx.ModelProto:
    """tf2onnx-like graph: NHWC input, Transposes, unfused BN, Resize, MatMul head."""
    b = GraphBuilder(seed, "tf2onnx")
    scope = "StatefulPartitionedCall/model"
    x = b.node("Transpose", ["input"], "input__6", perm=[0, 3, 1, 2])
    y = tf2onnx_body(b, x)
    # back to NHWC for a channel-last bias Add, then to NCHW again
    y = b.node("Transpose", [y], f"{scope}/add/add__12", perm=[0, 2, 3, 1])
    bias = b.vector(f"{scope}/bias_add/ReadVariableOp:0", 16)
    y = b.node("Add", [y, bias], f"{scope}/bias_add/BiasAdd")
    y = b.node("Transpose", [y], f"{scope}/bias_add/BiasAdd__16", perm=[0, 3, 1, 2])
    w3 = b.conv_weight(f"{scope}/conv2d_2/Conv2D/ReadVariableOp:0", 24, 16, 3)
    b3 = b.vector(f"{scope}/conv2d_2/BiasAdd/ReadVariableOp:0", 24)
    y = b.node("Conv", [y, w3, b3], f"{scope}/conv2d_2/BiasAdd", pads=[1, 1, 1, 1], strides=[2, 2])
    y = b.node("Relu", [y], f"{scope}/conv2d_2/Relu")
    roi = b.tensor("roi__20", np.zeros(0, dtype=np.float32))
    scales = b.tensor("scales__21", np.array([1, 1, 2, 2], dtype=np.float32))
    y = b.node(
        "Resize",
        [y, roi, scales],
        f"{scope}/up_sampling2d/resize/ResizeNearestNeighbor",
        mode="nearest",
        coordinate_transformation_mode="asymmetric",
        nearest_mode="floor",
    )
    w4 = b.conv_weight(f"{scope}/conv2d_3/Conv2D/ReadVariableOp:0", 32, 24, 3)
    b4 = b.vector(f"{scope}/conv2d_3/BiasAdd/ReadVariableOp:0", 32)
    y = b.node("Conv", [y, w4, b4], f"{scope}/conv2d_3/BiasAdd", pads=[1, 1, 1, 1])
    y = b.node("GlobalAveragePool", [y], f"{scope}/global_average_pooling2d/Mean")
    shape = b.ints("const_fold_opt__30", [1, 32])
    y = b.node("Reshape", [y, shape], f"{scope}/global_average_pooling2d/Mean_Squeeze__25")
    wd = b.rng.standard_normal((32, 10)) * np.sqrt(1.0 / 32)
    wd_name = b.tensor(f"{scope}/dense/MatMul/ReadVariableOp:0", wd.astype(np.float32))
    y = b.node("MatMul", [y, wd_name], f"{scope}/dense/MatMul")
    bd = b.vector(f"{scope}/dense/BiasAdd/ReadVariableOp:0", 10)
    b.nodes.append(helper.make_node("Add", [y, bd], ["output"], f"{scope}/dense/BiasAdd"))
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 32, 32, 3])
    out = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 10])
    return b.model("tf2onnx", inp, out, opset=14)


def paddle_hardswish(b: GraphBuilder, x: str, name: str) -> str:
    """hardswish as paddle2onnx emits it below opset 14: x * clip(x + 3, 0, 6) / 6."""
    y = b.node("Add", [x, b.scalar(f"{name}.offset", 3.0)], f"{name}.add")
    lo, hi = b.scalar(f"{name}.min", 0.0), b.scalar(f"{name}.max", 6.0)
    y = b.node("Clip", [y, lo, hi], f"{name}.clip")
    y = b.node("Mul", [x, y], f"{name}.mul")
    return b.node("Div", [y, b.scalar(f"{name}.scale", 6.0)], name)


def paddle_conv(
    b: GraphBuilder,
    x: str,
    shape: tuple[int, int, int],
    idx: int,
    stride: int = 1,
    group: int = 1,
) -> str:
    """Bias-free 'same' conv; ``shape`` is (cin, cout, k); weight Constant ``conv2d_N.w_0``."""
    cin, cout, k = shape
    w = b.conv_weight(f"conv2d_{idx}.w_0", cout, cin // group, k)
    pad = 0 if k == 1 or stride == 2 else k // 2  # stride-2 convs follow an explicit Pad
    return b.node(
        "Conv",
        [x, w],
        f"conv2d_{idx}",
        kernel_shape=[k, k],
        strides=[stride, stride],
        pads=[pad] * 4,
        group=group,
    )


def paddle_se(b: GraphBuilder, x: str, c: int, reduced: int) -> str:
    """MobileNetV3-style SE: GAP -> conv+bias -> Relu -> conv+bias -> HardSigmoid -> Mul."""
    g = b.node("GlobalAveragePool", [x], "pool2d_0")
    w = b.conv_weight("conv2d_2.w_0", reduced, c, 1)
    g = b.node("Conv", [g, w, b.vector("conv2d_2.b_0", reduced)], "conv2d_2")
    g = b.node("Relu", [g], "relu_1")
    w = b.conv_weight("conv2d_3.w_0", c, reduced, 1)
    g = b.node("Conv", [g, w, b.vector("conv2d_3.b_0", c)], "conv2d_3")
    g = b.node("HardSigmoid", [g], "hardsigmoid_0", alpha=1.0 / 6.0, beta=0.5)
    return b.node("Mul", [x, g], "elementwise_mul_0")


def build_paddle(seed: int = SEED) -> onnx.ModelProto:
    """paddle2onnx-like graph: Constant-node weights, Pad, depthwise conv, hard activations."""
    b = GraphBuilder(seed, "PaddlePaddle", constant_nodes=True)
    pads = b.ints("pad2d_0.pads", [0, 0, 1, 1, 0, 0, 1, 1])
    y = b.node("Pad", ["input", pads, b.scalar("pad2d_0.value", 0.0)], "pad2d_0", mode="constant")
    y = paddle_conv(b, y, (3, 16, 3), 0, stride=2)
    y = b.bn(y, 16, "batch_norm_0")
    y = paddle_hardswish(b, y, "hardswish_0")
    y = paddle_conv(b, y, (16, 16, 3), 1, group=16)
    y = b.bn(y, 16, "batch_norm_1")
    y = b.node("Relu", [y], "relu_0")
    y = paddle_se(b, y, 16, 4)
    y = paddle_conv(b, y, (16, 24, 1), 4)
    y = b.bn(y, 24, "batch_norm_2")
    y = paddle_hardswish(b, y, "hardswish_1")
    pads = b.ints("pad2d_1.pads", [0, 0, 0, 0, 0, 0, 1, 1])
    y = b.node("Pad", [y, pads, b.scalar("pad2d_1.value", 0.0)], "pad2d_1", mode="constant")
    y = paddle_conv(b, y, (24, 32, 3), 5, stride=2)
    y = b.bn(y, 32, "batch_norm_3")
    y = b.node("Relu", [y], "relu_2")
    y = b.node("GlobalAveragePool", [y], "pool2d_1")
    y = b.node("Reshape", [y, b.ints("reshape2_0.shape", [0, -1])], "reshape2_0")
    wd = (b.rng.standard_normal((32, 10)) * np.sqrt(1.0 / 32)).astype(np.float32)
    y = b.node("MatMul", [y, b.tensor("linear_0.w_0", wd)], "linear_0.matmul")
    bd = b.vector("linear_0.b_0", 10)
    b.nodes.append(helper.make_node("Add", [y, bd], ["output"], "linear_0.add"))
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])
    out = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 10])
    return b.model("paddle", inp, out, opset=11)


BUILDERS = {"tf2onnx_style": build_tf2onnx, "paddle_style": build_paddle}


def check_and_run(model: onnx.ModelProto, path: Path) -> tuple[int, ...]:
    """Full onnx.checker pass on the saved file and one onnxruntime run; return output shape."""
    onnx.checker.check_model(str(path), full_check=True)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed_shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(SEED + 1).standard_normal(feed_shape).astype(np.float32)
    out = sess.run(None, {"input": x})[0]
    if not np.all(np.isfinite(out)):
        raise RuntimeError(f"{path.name}: non-finite output")
    return tuple(out.shape)


def main(argv: list[str] | None = None) -> int:
    """Build, save, check and run every framework-style graph."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("sample_models"), help="output directory")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, build in BUILDERS.items():
        model = build()
        path = args.out / f"{name}.onnx"
        onnx.save(model, str(path))
        shape = check_and_run(model, path)
        size_kb = path.stat().st_size / 1024
        print(f"{name:16s} {size_kb:7.1f} KB  {len(model.graph.node):3d} nodes  output {shape}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
