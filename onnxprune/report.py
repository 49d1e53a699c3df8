"""What a pruning run did: parameters, MACs, channels per group and layer, output drift."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np
import onnx

from .graph import infer_shapes, node_label, with_outputs
from .validate import OutputDiff

COMPUTE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


@dataclass
class LayerCost:
    name: str
    op: str
    channels: int
    macs: int


def _static(dims) -> bool:
    return dims is not None and all(isinstance(d, int) for d in dims)


def layer_costs(model: onnx.ModelProto, input_dims: dict[str, list[int]]) -> list[LayerCost]:
    """MACs and output channels of every Conv, ConvTranspose, Gemm and MatMul, in order."""
    shapes = infer_shapes(model, input_dims)
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    shapes.setdefault(node.output[0], list(attr.t.dims))
    compute = [
        (i, node)
        for i, node in enumerate(model.graph.node)
        if node.op_type in COMPUTE_OPS and node.domain in ("", "ai.onnx")
    ]
    unknown = {
        name
        for _, node in compute
        for name in [*node.input[:2], node.output[0]]
        if not _static(shapes.get(name))
    }
    if unknown:
        shapes.update(_measured_shapes(model, sorted(unknown), input_dims))
    costs = []
    for i, node in compute:
        ins = [shapes.get(name) for name in node.input[:2]]
        out = shapes.get(node.output[0])
        macs, channels = 0, 0
        if all(_static(s) for s in [*ins, out]):
            macs, channels = _macs(node, ins[0], ins[1], out)
        costs.append(LayerCost(node_label(node, i), node.op_type, channels, macs))
    return costs


def _measured_shapes(model: onnx.ModelProto, names: list[str], input_dims) -> dict:
    """Shapes shape inference could not tell, read off one onnxruntime run (or none)."""
    from .validate import input_feeds, run

    probe = with_outputs(model, names)
    try:
        feeds = input_feeds(probe, input_dims, seed=0)
        outputs = run(probe.SerializeToString(), feeds, optimize=False)
    except Exception:  # a model that cannot run keeps its unknown MACs at 0
        return {}
    return {name: list(outputs[name].shape) for name in names if name in outputs}


def _macs(node: onnx.NodeProto, x: list[int], w: list[int], out: list[int]) -> tuple[int, int]:
    prod = lambda dims: int(np.prod(dims, dtype=np.int64))  # noqa: E731
    if node.op_type == "Conv":
        return prod(out) * prod(w[1:]), w[0]
    if node.op_type == "ConvTranspose":
        return prod(x) * prod(w[1:]), out[1]
    if node.op_type == "Gemm":
        trans_a = any(a.name == "transA" and a.i for a in node.attribute)
        return prod(out) * (x[0] if trans_a else x[1]), out[1]
    return prod(out) * x[-1], out[-1]


@dataclass
class GroupReport:
    id: int
    members: list[str]
    channels: int
    kept: int
    frozen: list[str]
    n_frozen: int
    kind: str = "channels"
    """"channels", or "heads" when each unit is a whole attention head."""
    approximate: list[str] = field(default_factory=list)
    """Why pruning this group is not exact, when it is not (prune_hidden)."""


@dataclass
class PruneReport:
    """Before/after figures of one run. `to_dict()` is the JSON form."""

    params_before: int = 0
    params_after: int = 0
    macs_before: int = 0
    macs_after: int = 0
    layers: list[dict] = field(default_factory=list)
    groups: list[GroupReport] = field(default_factory=list)
    outputs: list[OutputDiff] = field(default_factory=list)
    oracle_rel_diff: float | None = None
    """Output difference from the original with removed channels masked (0 = exact)."""
    calib_rel_error: float | None = None
    """Relative squared output error on the calibration data, when there was any."""
    budget: dict | None = None
    """The MAC/parameter budget: its target, the per-group ratios chosen, the sensitivities."""
    refits: list[dict] = field(default_factory=list)
    """Per reader of removed channels: how it was refit (lsq, bias, none) and why."""
    warnings: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    file_bytes_before: int | None = None
    """Bytes of the model file and its external data files, when read from disk."""
    file_bytes_after: int | None = None
    """Bytes written (model file and its data file), when written by `prune_file`."""
    latency: dict | None = None
    """Measured onnxruntime CPU latency before/after (onnxprune.latency.Comparison.summary)."""
    rounding: dict | None = None
    """round_to="auto": the multiple chosen and the probe's figures per candidate."""

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_text(self, verbose: bool = False) -> str:
        return format_report(self, verbose)


def _ratio(after: int, before: int) -> str:
    return f"{after / before:.3f}" if before else "-"


def format_report(r: PruneReport, verbose: bool = False) -> str:
    lines = [
        f"{'':12}{'before':>14}{'after':>14}{'kept':>8}",
        f"{'parameters':12}{r.params_before:>14,}{r.params_after:>14,}"
        f"{_ratio(r.params_after, r.params_before):>8}",
        f"{'MACs':12}{r.macs_before:>14,}{r.macs_after:>14,}"
        f"{_ratio(r.macs_after, r.macs_before):>8}",
    ]
    if r.file_bytes_before and r.file_bytes_after:
        lines.append(
            f"{'file bytes':12}{r.file_bytes_before:>14,}{r.file_bytes_after:>14,}"
            f"{_ratio(r.file_bytes_after, r.file_bytes_before):>8}"
        )
    pruned = [g for g in r.groups if g.kept < g.channels]
    frozen = [g for g in r.groups if g.frozen]
    lines.append(
        f"groups: {len(r.groups)}, pruned {len(pruned)}, with frozen channels {len(frozen)}"
    )
    shown = r.groups if verbose else pruned
    if shown:
        lines.append(f"{'group':>6} {'channels':>9} {'kept':>6}  members")
        for g in shown:
            kind = " [heads]" if g.kind == "heads" else ""
            kind += " [approximate]" if g.approximate and g.kept < g.channels else ""
            members = ", ".join(g.members[:3]) + (
                f" (+{len(g.members) - 3})" if len(g.members) > 3 else ""
            )
            lines.append(f"{g.id:>6} {g.channels:>9} {g.kept:>6}  {members}{kind}")
    if frozen:
        lines.append("frozen (not pruned):")
        for g in frozen[: None if verbose else 12]:
            extent = "all" if g.n_frozen == g.channels else f"{g.n_frozen}"
            lines.append(f"  group {g.id} ({extent} of {g.channels}): {'; '.join(g.frozen[:2])}")
        if not verbose and len(frozen) > 12:
            lines.append(f"  ... {len(frozen) - 12} more (-v lists all)")
    for o in r.outputs:
        lines.append(
            f"output '{o.name}' {o.shape}: max |diff| {o.max_abs_diff:.4g}, cosine {o.cosine:.6f}"
        )
    if r.budget:
        reached = (
            _ratio(r.macs_after, r.macs_before)
            if r.budget["kind"] == "macs"
            else _ratio(r.params_after, r.params_before)
        )
        chosen = ", ".join(f"group {k}: {v:.2f}" for k, v in r.budget["ratios"].items())
        lines.append(
            f"budget: keep {r.budget['target']:.2f} of {r.budget['kind']}, reached {reached}; "
            f"ratios {chosen or 'none'}"
        )
    if r.refits:
        methods = [f["method"] for f in r.refits]
        lines.append(
            "reconstruction: "
            + ", ".join(f"{methods.count(m)} {m}" for m in ("lsq", "bias", "none") if m in methods)
            + " (readers of removed channels refit on the calibration data)"
        )
        lines.extend(f"  {f['node']}: {f['why']}" for f in r.refits if f["why"])
    if r.calib_rel_error is not None:
        lines.append(f"calibration-set relative output error: {r.calib_rel_error:.4g}")
    approximate = [g for g in r.groups if g.approximate and g.kept < g.channels]
    if approximate:
        lines.append(
            f"approximate: {len(approximate)} pruned group(s) change normalisation "
            "statistics (--prune-hidden); outputs are not expected to match exactly"
        )
    elif r.oracle_rel_diff is not None:
        lines.append(
            f"exactness: pruned vs original with removed channels masked: "
            f"max relative diff {r.oracle_rel_diff:.2g}"
        )
    if verbose and r.layers:
        lines.append(f"{'layer':40} {'op':>13} {'channels':>13} {'MACs kept':>10}")
        for layer in r.layers:
            chans = f"{layer['channels_before']}->{layer['channels_after']}"
            lines.append(
                f"{layer['name'][-40:]:40} {layer['op']:>13} {chans:>13} "
                f"{_ratio(layer['macs_after'], layer['macs_before']):>10}"
            )
    lines.extend(_latency_lines(r))
    lines.extend(f"warning: {w}" for w in r.warnings)
    if r.seconds:
        lines.append("time: " + ", ".join(f"{k} {v:.2f}s" for k, v in r.seconds.items()))
    return "\n".join(lines)


def _latency_lines(r: PruneReport) -> list[str]:
    """The auto rounding choice and the measured latency beside the MAC reduction."""
    lines = []
    if r.rounding:
        figures = ", ".join(
            f"{c['multiple']}: {c['predicted_ms']:.2f} ms ({c['macs_kept']:.2f} MACs)"
            for c in r.rounding["candidates"]
        )
        lines.append(
            f"round-to auto: chose {r.rounding['chosen']} (probed layers' predicted time per "
            f"multiple: {figures}; {r.rounding['probed_macs_share']:.0%} of MACs probed)"
        )
    if r.latency:
        lat = r.latency
        before, after = lat["before"], lat["after"]
        lines.append(
            f"latency ({lat['provider']}, {lat['threads']} threads, {after['runs']} paired runs): "
            f"{before['median_ms']:.2f} ms -> {after['median_ms']:.2f} ms, "
            f"kept {lat['ratio']:.3f} (paired {lat['paired_ratio']:.3f}) "
            f"at {_ratio(r.macs_after, r.macs_before)} of MACs"
        )
    return lines
