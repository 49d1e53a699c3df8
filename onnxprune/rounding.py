"""`round_to="auto"`: choose the channel multiple from latency measured on this machine.

onnxruntime's CPU convolutions are fast only for some channel counts (its blocked NCHWc
layout wants multiples of 8 with AVX2, 16 with AVX-512; a depthwise conv at another
count can be several times slower), so the multiple that makes a pruned model fastest
depends on the machine. For every candidate multiple the planner says how many channels
each Conv/Gemm/MatMul would keep. Layers are grouped by shape (op, kernel, dilation,
grouping, positions, channels); of each kind (dense, depthwise or grouped conv, matmul)
the shapes with most MACs are probed, the kinds taking turns. A probe is a small model:
a chain of layers of that shape alternating in->out->in channels at stride 1 (a chain,
so the layout conversions at its ends weigh little, as inside a real network), timed
in onnxruntime at the kept counts of every candidate, interleaved and paired.
The predicted time of a candidate is the sum over probed shapes of (layers of that
shape) x (time per layer), scaled up to all the layers of the kind; the fastest wins,
and within `TIE` of it the smallest multiple, which removes fewer channels beyond the
ratio and so keeps more of the original's accuracy.

Kept counts are rounded down to the multiple (`PruneConfig.round_down`): a partial
block costs a whole block's time, so auto never keeps one. It therefore removes a
little more than `ratio` asks, as Torch-Pruning's `round_to` does; the report gives
the MACs kept beside the measured latency.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from . import latency, planner
from .config import DATA_AWARE, PruneConfig
from .graph import node_label
from .progress import progress
from .scoring import normalise, score

CANDIDATES = (1, 4, 8, 16, 32)
PROBE_DEPTH = 4
"""Layers in a depthwise probe chain (dense ones use 2: their compute hides the ends)."""
MAX_PIXELS = 784
"""Probes run on at most this many positions (28x28; MatMul rows); time scales linearly."""
MAX_SHAPES = 8
"""At most this many layer shapes are probed (shared out among the kinds of layer)."""
PROBE_SECONDS = 2.5
"""Rough time budget of the timed probe runs, shared by the probed shapes."""
PROBE_QUANTILE = 25
"""Probe time taken: this percentile of the runs (robust to a busy machine's slow runs)."""
TIE = 0.05
"""Candidates predicted within this fraction of the fastest count as equally fast (probe
noise on an idle machine stays under it; a real alignment gain is far larger)."""

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

    @property
    def varies(self) -> bool:
        """Whether its kept counts depend on the multiple (else probing it tells nothing)."""
        return len(set(self.kept.values())) > 1

    @property
    def kind(self) -> str:
        """What runs it: "matmul", "depthwise", "grouped" or "conv"."""
        if self.op == "matmul" or self.depthwise:
            return "matmul" if self.op == "matmul" else "depthwise"
        return "grouped" if self.group > 1 else "conv"

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


def _plans(model: onnx.ModelProto, config: PruneConfig, make_plan):
    """(multiple, plan) for every candidate: one analysis, re-planned per multiple (the
    last steps of make_plan, repeated with each round_to)."""
    criterion = "l2" if config.criterion in DATA_AWARE else config.criterion
    config = replace(config, round_to=1, criterion=criterion)
    base = make_plan(model, config)
    analysis = base.analysis
    # per-group counts do not depend on the scores (only which channels do), so only
    # global ranking pays for scoring again
    scores = np.zeros(len(analysis.table))
    if config.global_ranking:
        scores = normalise(score(analysis, base.roots, criterion, None), base.groups)
    for multiple in CANDIDATES:
        rounded = replace(config, round_to=multiple)
        keep = planner.keep_slots(analysis, base.groups, base.roots, scores, rounded)
        yield multiple, replace(base, keep_slot=keep)


def layer_shapes(model: onnx.ModelProto, config: PruneConfig, make_plan) -> list[LayerShape]:
    """Every compute layer's shape, with its kept (in, out) channels per candidate multiple.

    Kept counts come from the planner itself at each candidate round_to (with the L2
    criterion when the run's criterion needs calibration data: per-group counts do not
    depend on the scores, only global ranking's do).
    """
    layers: dict[int, LayerShape] = {}
    for multiple, plan in _plans(model, config, make_plan):
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
    """Layers merged by shape (count = how many share it); of each kind (dense, depthwise
    or grouped conv, matmul) the shapes with most MACs, the kinds taking turns.

    Taking turns matters: a depthwise conv has few MACs but, at an unaligned channel
    count, can cost more time than the dense convs around it.
    """
    merged: dict[tuple, LayerShape] = {}
    for layer in layers:
        key = layer.key()
        if key in merged:
            merged[key].count += 1
        else:
            merged[key] = replace(layer, count=1)
    by_kind: dict[str, list[LayerShape]] = {}
    for shape in sorted(merged.values(), key=lambda s: -s.macs * s.count):
        if shape.macs > 0 and shape.varies:
            by_kind.setdefault(shape.kind, []).append(shape)
    chosen: list[LayerShape] = []
    while len(chosen) < limit and any(by_kind.values()):
        for queue in by_kind.values():
            if queue and len(chosen) < limit:
                chosen.append(queue.pop(0))
    return chosen


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
    """Milliseconds of each probe model in onnxruntime, timed interleaved within `seconds`.

    The first model's time is its PROBE_QUANTILE percentile; every other model's is that
    times the median of its per-round ratios to the first (paired: the rounds run the
    models back to back, so load from elsewhere falls on all of them alike).
    """
    rng = np.random.default_rng(0)
    calls = []
    for model in models:
        dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
        feeds = {"t0": rng.standard_normal(dims).astype(np.float32)}
        calls.append(latency.runner(model.SerializeToString(), feeds, latency.DEFAULT_THREADS))
    for call in calls:
        call()  # the first run of a session is slow
    start = time.perf_counter()
    for call in calls:
        call()
    once = (time.perf_counter() - start) or 1e-3
    runs = int(min(max(seconds / once, 7), 150))
    timings = latency.time_interleaved(calls, runs, warmup=0)
    base = timings[0]
    return [
        base.percentile(PROBE_QUANTILE) * float(np.median(np.divide(t.runs_ms, base.runs_ms)))
        for t in timings
    ]


probe_timer: ProbeTimer = time_probes
"""What times the probes (tests replace it with a fake)."""


def choose_round_to(model: onnx.ModelProto, config: PruneConfig, make_plan) -> tuple[int, dict]:
    """The candidate multiple with the lowest predicted latency, and the figures behind it.

    Only layers whose kept counts differ between candidates are probed and predicted
    (the others add the same time to every candidate). A probed shape stands for the
    layers of its kind that were not probed: its time is scaled by (MACs of those
    layers of its kind) / (MACs of the probed shapes of its kind). Probing stops early,
    most important shapes first, once it has taken twice PROBE_SECONDS.
    """
    start = time.perf_counter()
    layers = layer_shapes(model, config, make_plan)
    shapes = representative(layers)
    probed: list[tuple[LayerShape, dict[int, float]]] = []
    probe_start = time.perf_counter()
    for shape in progress(shapes, "latency probe", total=len(shapes)):
        probed.append((shape, _probe(shape, PROBE_SECONDS / len(shapes))))
        if time.perf_counter() - probe_start > 2 * PROBE_SECONDS:
            break
    kind_macs: dict[str, float] = {}
    for layer in filter(lambda layer: layer.varies, layers):
        kind_macs[layer.kind] = kind_macs.get(layer.kind, 0) + layer.macs
    probed_macs: dict[str, float] = {}
    for shape, _ in probed:
        probed_macs[shape.kind] = probed_macs.get(shape.kind, 0) + shape.macs * shape.count
    predicted = dict.fromkeys(CANDIDATES, 0.0)
    rows = []
    for shape, per_layer in probed:
        scale = kind_macs[shape.kind] / probed_macs[shape.kind]
        for m in CANDIDATES:
            predicted[m] += scale * shape.count * per_layer[m]
        rows.append({
            "layer": shape.label, "kind": shape.kind, "count": shape.count,
            "channels": [shape.cin, shape.cout], "spatial": list(shape.spatial),
            "kernel": list(shape.kernel), "stands_for": scale,
            "kept": {str(m): list(shape.kept[m]) for m in CANDIDATES},
            "ms_per_layer": {str(m): per_layer[m] for m in CANDIDATES},
        })  # fmt: skip
    best = min(predicted.values()) if probed else 0.0
    chosen = next((m for m in CANDIDATES if predicted[m] <= best * (1 + TIE)), 1)
    total_macs = sum(layer.macs for layer in layers) or 1
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
        "probed_macs_share": sum(s.macs * s.count for s, _ in probed) / total_macs,
        "threads": latency.DEFAULT_THREADS,
        "provider": latency.PROVIDER,
        "seconds": time.perf_counter() - start,
    }
    return chosen, info


def _probe(shape: LayerShape, seconds: float) -> dict[int, float]:
    """Milliseconds per layer of `shape` at each candidate's kept counts (each distinct
    pair of counts timed once, on at most MAX_PIXELS positions, scaled up linearly)."""
    small, factor = _capped(shape)
    depth = PROBE_DEPTH if shape.depthwise else 2
    counts = sorted(set(shape.kept.values()))
    times = probe_timer([probe_model(small, *c, depth=depth) for c in counts], seconds)
    per_pair = {c: t * factor / depth for c, t in zip(counts, times, strict=True)}
    return {m: per_pair[shape.kept[m]] for m in CANDIDATES}


def _capped(shape: LayerShape) -> tuple[LayerShape, float]:
    """`shape` with its positions (rows x spatial) cut to about MAX_PIXELS, and by how
    much the time of the full shape is larger."""
    if shape.op == "matmul":
        rows = min(shape.rows, MAX_PIXELS)
        return replace(shape, rows=rows), shape.rows / rows
    pixels = math.prod(shape.spatial)
    if pixels <= MAX_PIXELS:
        return shape, 1.0
    f = (MAX_PIXELS / pixels) ** (1 / len(shape.spatial))
    spatial = tuple(max(k, round(d * f)) for d, k in zip(shape.spatial, shape.kernel, strict=True))
    return replace(shape, spatial=spatial), pixels / math.prod(spatial)
