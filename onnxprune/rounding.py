"""`round_to="auto"`: choose the channel multiple from latency measured on this machine.

onnxruntime's CPU convolutions are fast only for some channel counts (its blocked NCHWc
layout wants multiples of 8 with AVX2, 16 with AVX-512), so the multiple that makes a
pruned model fastest depends on the machine. For every candidate multiple the planner
says how many channels each layer would keep; the layers that carry the most MACs are
grouped by shape (op, kernel, dilation, grouping, spatial size, channels), and each
shape is timed at the kept counts of every candidate as a small probe model: a chain of
`PROBE_DEPTH` layers of that kind alternating in->out->in channels at stride 1 (a chain,
so the layout conversions at a probe's ends weigh little, as inside a real network).
The predicted time of a candidate is the sum over probed shapes of (layers of that
shape) x (time per layer); the fastest wins, and within `TIE` of it the smallest
multiple, which keeps fewer extra channels and so more of the original's accuracy.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from . import latency
from .config import DATA_AWARE, PruneConfig
from .graph import node_label
from .progress import progress

CANDIDATES = (1, 4, 8, 16, 32)
PROBE_DEPTH = 4
MAX_SHAPES = 6
"""At most this many layer shapes are probed (those with the most MACs)."""
PROBE_SECONDS = 3.0
"""Rough time budget of the timed probe runs, shared by the probed shapes."""
TIE = 0.03
"""Candidates predicted within this fraction of the fastest count as equally fast."""

ProbeTimer = Callable[[list[onnx.ModelProto], float], list[float]]
"""Times probe models (given a time budget in seconds): median milliseconds of each."""


@dataclass
class LayerShape:
    """One Conv/Gemm/MatMul layer kind and the channels it keeps under each candidate."""

    label: str
    op: str
    """"conv" or "matmul"."""
    cin: int
    cout: int
    rows: int
    """MatMul: rows of the input (all leading dims); Conv: the batch size."""
    spatial: tuple[int, ...] = ()
    kernel: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()
    group: int = 1
    depthwise: bool = False
    kept: dict[int, tuple[int, int]] = field(default_factory=dict)
    count: int = 1
    macs: int = 0

    axes: tuple[int, int] = (1, 1)
    """Channel axes of the input and the output."""

    def key(self) -> tuple:
        kind = (self.op, self.rows, self.spatial, self.kernel, self.dilation, self.group)
        return (*kind, self.depthwise, self.cin, self.cout, tuple(sorted(self.kept.items())))

    def dims(self, channels: int) -> list[int]:
        """The activation shape with `channels` channels."""
        return [self.rows, channels, *self.spatial] if self.op == "conv" else [self.rows, channels]

    def macs_at(self, cin: int, cout: int) -> int:
        if self.op == "matmul":
            return self.rows * cin * cout
        per_out = (1 if self.depthwise else cin // self.group) * math.prod(self.kernel)
        return self.rows * math.prod(self.spatial) * cout * per_out


def _ints(node: onnx.NodeProto, name: str, default: list[int]) -> list[int]:
    for attr in node.attribute:
        if attr.name == name:
            return list(attr.ints) if attr.ints else [attr.i]
    return default


def _static(dims) -> bool:
    return dims is not None and all(isinstance(d, int) and d > 0 for d in dims)


def _layer(plan, i: int, node: onnx.NodeProto) -> LayerShape | None:
    """The shape of a Conv/Gemm/MatMul node with a constant weight, where it is known."""
    index = plan.analysis.index
    x, w, y = (index.shape(n) for n in (node.input[0], node.input[1], node.output[0]))
    if not (_static(x) and _static(w) and _static(y)) or index.const(node.input[1]) is None:
        return None
    label = node_label(node, i)
    if node.op_type == "Conv" and len(x) >= 3:
        group = _ints(node, "group", [1])[0]
        k = len(x) - 2
        return LayerShape(
            label, "conv", x[1], y[1], x[0], tuple(y[2:]), tuple(w[2:]),
            tuple(_ints(node, "dilations", [1] * k)), group,
            depthwise=group > 1 and group == x[1] == y[1], axes=(1, 1),
        )  # fmt: skip
    if node.op_type in ("MatMul", "Gemm") and len(w) == 2 and len(x) >= 2:
        trans_a = node.op_type == "Gemm" and _ints(node, "transA", [0])[0]
        cin = x[0] if trans_a else x[-1]
        rows = x[1] if trans_a else math.prod(x[:-1])
        axes = (0 if trans_a else len(x) - 1, len(y) - 1)
        return LayerShape(label, "matmul", cin, y[-1], rows, axes=axes)
    return None


def _kept_count(plan, tensor: str, axis: int, full: int) -> int:
    slots = plan.analysis.layouts.get(tensor, {}).get(axis)
    return full if slots is None else int(plan.kept(slots).sum())


def layer_shapes(model: onnx.ModelProto, config: PruneConfig, make_plan) -> list[LayerShape]:
    """Every compute layer's shape, with its kept (in, out) channels per candidate multiple.

    Kept counts come from the planner itself at each candidate round_to (with the L2
    criterion when the run's criterion needs calibration data: per-group counts do not
    depend on the scores, only global ranking's do).
    """
    criterion = "l2" if config.criterion in DATA_AWARE else config.criterion
    layers: dict[int, LayerShape] = {}
    for multiple in CANDIDATES:
        plan = make_plan(model, replace(config, round_to=multiple, criterion=criterion))
        for i, node in enumerate(plan.analysis.index.nodes):
            if node.op_type not in ("Conv", "Gemm", "MatMul") or node.domain not in ("", "ai.onnx"):
                continue
            if i not in layers:
                shape = _layer(plan, i, node)
                if shape is None:
                    continue
                layers[i] = shape
            layer = layers[i]
            cin = _kept_count(plan, node.input[0], layer.axes[0], layer.cin)
            cout = _kept_count(plan, node.output[0], layer.axes[1], layer.cout)
            layer.kept[multiple] = (cin, cout)
    for layer in layers.values():
        layer.macs = layer.macs_at(layer.cin, layer.cout)
    return list(layers.values())


def representative(layers: list[LayerShape], limit: int = MAX_SHAPES) -> list[LayerShape]:
    """Layers merged by shape (count = how many share it), the `limit` with most MACs."""
    merged: dict[tuple, LayerShape] = {}
    for layer in layers:
        key = layer.key()
        if key in merged:
            merged[key].count += 1
        else:
            merged[key] = replace(layer, count=1)
    shapes = [s for s in merged.values() if s.macs > 0]
    return sorted(shapes, key=lambda s: -s.macs * s.count)[:limit]


def probe_model(
    layer: LayerShape, cin: int, cout: int, depth: int = PROBE_DEPTH
) -> onnx.ModelProto:
    """A chain of `depth` layers of `layer`'s kind alternating cin->cout->cin, stride 1."""
    rng = np.random.default_rng(0)
    nodes, inits = [], []
    widths = [cin if k % 2 == 0 else cout for k in range(depth + 1)]
    for k in range(depth):
        a, b = widths[k], widths[k + 1]
        name = f"w{k}"
        if layer.op == "conv":
            group = a if layer.depthwise else layer.group
            shape = [b, a // group, *layer.kernel]
            pads = [d * (s - 1) for d, s in zip(layer.dilation, layer.kernel, strict=True)]
            attrs = {
                "group": group,
                "kernel_shape": list(layer.kernel),
                "dilations": list(layer.dilation),
                "pads": [p // 2 for p in pads] + [p - p // 2 for p in pads],
            }
            fan_in = math.prod(shape[1:])
        else:
            shape, attrs, fan_in = [a, b], {}, a
        weight = rng.standard_normal(shape).astype(np.float32) / math.sqrt(max(fan_in, 1))
        inits.append(numpy_helper.from_array(weight, name))
        op = "Conv" if layer.op == "conv" else "MatMul"
        nodes.append(helper.make_node(op, [f"t{k}", name], [f"t{k + 1}"], **attrs))
    graph = helper.make_graph(
        nodes, "probe", [helper.make_tensor_value_info("t0", TensorProto.FLOAT, layer.dims(cin))],
        [helper.make_tensor_value_info(f"t{depth}", TensorProto.FLOAT, layer.dims(widths[-1]))],
        inits,
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def time_probes(models: list[onnx.ModelProto], seconds: float) -> list[float]:
    """Median ms of each probe model in onnxruntime, timed interleaved within `seconds`."""
    rng = np.random.default_rng(0)
    calls = []
    for model in models:
        dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
        feeds = {"t0": rng.standard_normal(dims).astype(np.float32)}
        calls.append(latency.runner(model.SerializeToString(), feeds, latency.DEFAULT_THREADS))
    start = time.perf_counter()
    for call in calls:
        call()
    once = (time.perf_counter() - start) or 1e-3
    runs = int(min(max(seconds / once, 5), 40))
    return [t.median_ms for t in latency.time_interleaved(calls, runs, warmup=1)]


probe_timer: ProbeTimer = time_probes
"""What times the probes (tests replace it with a fake)."""


def choose_round_to(model: onnx.ModelProto, config: PruneConfig, make_plan) -> tuple[int, dict]:
    """The candidate multiple with the lowest predicted latency, and the figures behind it."""
    start = time.perf_counter()
    layers = layer_shapes(model, config, make_plan)
    shapes = representative(layers)
    total_macs = sum(layer.macs for layer in layers) or 1
    predicted = dict.fromkeys(CANDIDATES, 0.0)
    rows = []
    for shape in progress(shapes, "latency probe", total=len(shapes)):
        counts = sorted(set(shape.kept.values()))
        budget = PROBE_SECONDS / max(len(shapes), 1)
        times = probe_timer([probe_model(shape, *c) for c in counts], budget)
        per_layer = {c: t / PROBE_DEPTH for c, t in zip(counts, times, strict=True)}
        for m in CANDIDATES:
            predicted[m] += shape.count * per_layer[shape.kept[m]]
        rows.append({
            "layer": shape.label, "op": shape.op, "count": shape.count,
            "channels": [shape.cin, shape.cout], "spatial": list(shape.spatial),
            "kernel": list(shape.kernel), "depthwise": shape.depthwise,
            "kept": {str(m): list(shape.kept[m]) for m in CANDIDATES},
            "ms_per_layer": {str(m): per_layer[shape.kept[m]] for m in CANDIDATES},
        })  # fmt: skip
    best = min(predicted.values()) if shapes else 0.0
    chosen = next((m for m in CANDIDATES if predicted[m] <= best * (1 + TIE)), 1)
    covered = sum(s.macs * s.count for s in shapes) / total_macs
    candidates = [
        {
            "multiple": m,
            "predicted_ms": predicted[m],
            "macs_kept": sum(layer.macs_at(*layer.kept[m]) for layer in layers) / total_macs,
        }
        for m in CANDIDATES
    ]
    info = {
        "chosen": chosen,
        "candidates": candidates,
        "probed_layers": rows,
        "probed_macs_share": covered,
        "threads": latency.DEFAULT_THREADS,
        "provider": latency.PROVIDER,
        "seconds": time.perf_counter() - start,
    }
    return chosen, info
