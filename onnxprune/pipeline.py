"""load -> analyze -> score -> plan -> apply -> validate, and the report of it all."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx.checker import ValidationError as OnnxCheckerError

from .analysis import Analysis, analyze_graph
from .apply import apply_plan, count_params
from .config import PruneConfig
from .errors import BadInputError, UnsupportedModelError, ValidationError
from .graph import GraphIndex
from .groups import ChannelGroup, build_groups
from .oracle import masked_model
from .planner import ensure_nonempty, plan
from .report import GroupReport, PruneReport, layer_costs
from .scoring import normalise, score
from .validate import check, compare, input_dims, input_feeds, run

ModelLike = onnx.ModelProto | str | os.PathLike


def load_model(source: ModelLike) -> onnx.ModelProto:
    """A private copy of the model (a path is read, never written)."""
    if isinstance(source, onnx.ModelProto):
        model = onnx.ModelProto()
        model.CopyFrom(source)
        return model
    path = os.fspath(source)
    if not os.path.exists(path):
        raise BadInputError(f"{path}: no such file")
    if not os.path.isfile(path):
        raise BadInputError(f"{path}: not a file")
    try:
        model = onnx.load(path)
    except (DecodeError, RuntimeError, ValueError, OSError, OnnxCheckerError) as exc:
        # OnnxCheckerError: onnx.load rejects an external-data file (missing, not a file)
        raise BadInputError(f"{path}: not a readable ONNX model ({_short(exc)})") from exc
    if not model.graph.node:
        raise BadInputError(f"{path}: not an ONNX model (no graph nodes)")
    return model


@dataclass
class Plan:
    """What the analysis found and what was chosen; enough to rebuild the masking oracle."""

    analysis: Analysis
    groups: list[ChannelGroup]
    roots: np.ndarray
    keep_slot: np.ndarray

    def kept(self, slots: np.ndarray) -> np.ndarray:
        return self.keep_slot[self.roots[slots]]

    def masked_original(self, original: onnx.ModelProto) -> onnx.ModelProto:
        """The masking oracle for this plan: `original` with removed channels zeroed."""
        shapes = self.analysis.index.shapes
        ranks = {name: len(dims) for name, dims in shapes.items() if dims is not None}
        return masked_model(original, self.reader_masks(), ranks)

    def reader_masks(self) -> list[tuple[int, int, int, np.ndarray]]:
        """(node index, input index, axis, keep flag per position) for every channel reader."""
        return [(r.node, r.input_index, r.axis, self.kept(r.slots)) for r in self.analysis.readers]


def make_plan(model: onnx.ModelProto, config: PruneConfig) -> Plan:
    """Analyze `model` (not modified) and choose the channels to keep."""
    index = GraphIndex(model, input_dims(model, config.input_shapes))
    if index.opset() < 7:
        raise UnsupportedModelError(f"opset {index.opset()} is too old; onnxprune reads 7 to 23")
    analysis = analyze_graph(index, config)
    groups, roots = build_groups(analysis)
    scores = score(analysis, roots, config.criterion)
    if config.global_ranking:
        scores = normalise(scores, groups)
    keep_class = plan(groups, scores, len(analysis.table), config)
    required = analysis.nonempty + [
        np.arange(s.first, s.first + s.size) for s in analysis.table.spaces
    ]
    ensure_nonempty(keep_class, roots, scores, required)
    return Plan(analysis, groups, roots, keep_class[roots])


def prune(
    source: ModelLike, config: PruneConfig | None = None
) -> tuple[onnx.ModelProto, PruneReport]:
    """Prune a model (ModelProto or path); return the pruned model and its report.

    Raises BadInputError for unusable input, ValidationError when the pruned model
    fails a check (nothing is returned then).
    """
    config = (config or PruneConfig()).check()
    timer = _Timer()
    model = load_model(source)
    timer.lap("load")
    feeds = reference = None
    original_bytes = None
    if config.validate:
        original_bytes = model.SerializeToString()
        feeds = input_feeds(model, config.input_shapes, config.seed)
        try:
            reference = run(original_bytes, feeds)
        except Exception as exc:
            raise BadInputError(f"onnxruntime cannot run the input model: {_short(exc)}") from exc
        timer.lap("reference run")
    dims = {k: list(v.shape) for k, v in feeds.items()} if feeds else dict(config.input_shapes)
    before = layer_costs(model, dims)
    params_before = count_params(model)
    p = make_plan(model, config)
    timer.lap("analyze+plan")
    apply_plan(p.analysis, p.keep_slot)
    timer.lap("apply")
    report = _report(p, model, before, params_before, dims)
    if config.validate:
        check(model)
        pruned_bytes = model.SerializeToString()
        try:
            pruned_out = run(pruned_bytes, feeds, optimize=False)
            optimised_out = run(pruned_bytes, feeds)
        except Exception as exc:
            raise ValidationError(
                f"onnxruntime cannot run the pruned model: {_short(exc)}"
            ) from exc
        report.outputs = compare(reference, pruned_out)
        compare(reference, optimised_out)
        exact = not any(g.approximate and g.kept < g.channels for g in report.groups)
        report.oracle_rel_diff = _oracle_diff(original_bytes, p, feeds, pruned_out)
        if exact and report.oracle_rel_diff > ORACLE_TOLERANCE:
            raise ValidationError(
                "the pruned model does not compute what the original computes with the "
                f"removed channels masked (relative difference {report.oracle_rel_diff:.3g}); "
                "this is a bug in onnxprune: please report this model"
            )
        timer.lap("validate")
    report.seconds = timer.laps
    return model, report


ORACLE_TOLERANCE = 1e-4


def _oracle_diff(original_bytes: bytes, p: Plan, feeds, pruned_out) -> float:
    """Largest output difference from the masking oracle, relative to the output's scale."""
    masked = p.masked_original(onnx.load_from_string(original_bytes))
    expected = run(masked.SerializeToString(), feeds)
    worst = 0.0
    for name, ref in expected.items():
        ref64, got = ref.astype(np.float64), pruned_out[name].astype(np.float64)
        scale = max(float(np.abs(ref64).max()) if ref64.size else 0.0, 1e-12)
        worst = max(worst, float(np.abs(got - ref64).max() if ref64.size else 0.0) / scale)
    return worst


def _report(p: Plan, model, before, params_before: int, dims) -> PruneReport:
    after = layer_costs(model, dims)
    layers = [
        {
            "name": b.name,
            "op": b.op,
            "channels_before": b.channels,
            "channels_after": a.channels,
            "macs_before": b.macs,
            "macs_after": a.macs,
        }
        for b, a in zip(before, after, strict=True)
    ]
    groups = [
        GroupReport(
            g.id,
            g.labels,
            g.size,
            int(p.keep_slot[g.classes].sum()),
            g.frozen_reasons(),
            len(g.frozen),
            g.kind,
            list(g.approximate),
        )
        for g in p.groups
    ]
    return PruneReport(
        params_before=params_before,
        params_after=count_params(model),
        macs_before=sum(c.macs for c in before),
        macs_after=sum(c.macs for c in after),
        layers=layers,
        groups=groups,
        warnings=list(p.analysis.warnings),
    )


class _Timer:
    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = now - self._last
        self._last = now


def _short(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."
