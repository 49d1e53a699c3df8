"""load -> analyze -> score -> plan -> apply -> validate, and the report of it all."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, replace

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx.checker import ValidationError as OnnxCheckerError

from .activations import capture
from .analysis import Analysis, analyze_graph
from .apply import apply_plan, count_params
from .budget import calib_deviation, fit_budget, measure
from .calib import (
    Calibration,
    batch_size,
    check_arrays,
    load_calibration,
    random_calibration,
)
from .config import PruneConfig
from .errors import BadInputError, UnsupportedModelError, ValidationError
from .graph import GraphIndex
from .groups import ChannelGroup, build_groups
from .oracle import masked_model
from .planner import ensure_nonempty, plan
from .reconstruct import ensure_biases, refit
from .report import GroupReport, PruneReport, layer_costs
from .scoring import normalise, score
from .validate import check, compare, input_dims, input_feeds, run, runner

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
    stats: list | None = None
    """Calibration statistics per reader, when calibration data was given."""

    def kept(self, slots: np.ndarray) -> np.ndarray:
        return self.keep_slot[self.roots[slots]]

    def masked_original(self, original: onnx.ModelProto) -> onnx.ModelProto:
        """The masking oracle for this plan: `original` with removed channels zeroed."""
        shapes = self.analysis.index.shapes
        ranks = {name: len(dims) for name, dims in shapes.items() if dims is not None}
        for r in self.analysis.readers:  # the op may fix a rank inference could not tell
            name = self.analysis.index.nodes[r.node].input[r.input_index]
            if name not in ranks and r.rank is not None:
                ranks[name] = r.rank
        return masked_model(original, self.reader_masks(), ranks)

    def reader_masks(self) -> list[tuple[int, int, int, np.ndarray]]:
        """(node index, input index, axis, keep flag per position) for every channel reader."""
        return [(r.node, r.input_index, r.axis, self.kept(r.slots)) for r in self.analysis.readers]


def make_plan(
    model: onnx.ModelProto,
    config: PruneConfig,
    calib: Calibration | None = None,
    stats: list | None = None,
) -> Plan:
    """Analyze `model` (not modified) and choose the channels to keep; with calibration
    data, the readers' statistics are collected too (for data-aware scores and refits)."""
    index = GraphIndex(model, input_dims(model, config.input_shapes))
    if index.opset() < 7:
        raise UnsupportedModelError(f"opset {index.opset()} is too old; onnxprune reads 7 to 23")
    analysis = analyze_graph(index, config)
    groups, roots = build_groups(analysis)
    if stats is None and calib is not None:
        gram = config.refit == "lsq" or config.criterion == "energy"
        design = config.refit != "none" or config.criterion == "energy"
        stats = capture(model, analysis.readers, calib, gram, design, mask=config.calib_mask)
    scores = score(analysis, roots, config.criterion, stats)
    if config.global_ranking:
        scores = normalise(scores, groups)
    keep_class = plan(groups, scores, len(analysis.table), config)
    required = analysis.nonempty + [
        np.arange(s.first, s.first + s.size) for s in analysis.table.spaces
    ]
    ensure_nonempty(keep_class, roots, scores, required)
    return Plan(analysis, groups, roots, keep_class[roots], stats)


def calibration(model: onnx.ModelProto, config: PruneConfig) -> Calibration | None:
    """The calibration data the config names, checked against the model's inputs."""
    if config.calib is None and not config.calib_random:
        return None
    if isinstance(config.calib, dict):
        check_arrays(model, config.calib, "calibration data")
        arrays = config.calib
    elif config.calib is not None:
        arrays = load_calibration(model, os.fspath(config.calib))
    else:
        arrays = random_calibration(model, config.calib_random, config.input_shapes, config.seed)
    if config.calib_mask is not None and config.calib_mask not in arrays:
        raise BadInputError(f"--calib-mask {config.calib_mask}: no such model input")
    size, fixed = batch_size(model, config.calib_batch)
    if fixed and len(next(iter(arrays.values()))) < size:
        raise BadInputError(f"calibration data: the model runs {size} samples at a time")
    return Calibration(arrays, size, fixed)


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
    original_bytes = model.SerializeToString() if config.validate else None
    calib = calibration(model, config)
    timer.lap("load")
    feeds = reference = None
    if config.validate:
        feeds = input_feeds(model, config.input_shapes, config.seed)
        try:
            reference = run(original_bytes, feeds)
        except Exception as exc:
            raise BadInputError(f"onnxruntime cannot run the input model: {_short(exc)}") from exc
        timer.lap("reference run")
    dims = (
        {k: list(v.shape) for k, v in feeds.items()}
        if feeds
        else input_dims(model, config.input_shapes)
    )
    before = layer_costs(model, dims)
    params_before = count_params(model)
    if config.refit != "none":
        pre = analyze_graph(GraphIndex(model, input_dims(model, config.input_shapes)), config)
        model = ensure_biases(model, pre.readers)
    budget = None
    if config.target_macs or config.target_params:
        config, budget = _allocate(model, config, calib, dims, before, params_before)
        timer.lap("sensitivity")
    p = make_plan(model, config, calib)
    timer.lap("analyze+plan")
    notes = (
        refit(p.analysis, p.stats, p.keep_slot, config.refit, config.ridge)
        if (config.refit != "none")
        else []
    )
    apply_plan(p.analysis, p.keep_slot)
    timer.lap("apply")
    report = _report(p, model, before, params_before, dims)
    report.refits = [asdict(n) for n in notes]
    report.budget = budget
    if budget and budget["warning"]:
        report.warnings.append(budget["warning"])
    if calib is not None:
        report.calib_rel_error = _calib_error(original_bytes or b"", model, calib, source)
    if config.validate:
        _validate(report, model, p, original_bytes, feeds, reference, exact=not notes)
        timer.lap("validate")
    report.seconds = timer.laps
    return model, report


def sensitivity(source: ModelLike, config: PruneConfig) -> tuple[list, int, int]:
    """Each prunable group's calibration-set deviation and savings when pruned alone at
    config.sensitivity_ratios: (sensitivities, MACs, parameters of the model)."""
    config = config.check()
    if not config.has_calibration:
        raise BadInputError("sensitivity needs calibration data (--calib or --calib-random)")
    model = load_model(source)
    calib = calibration(model, config)
    dims = input_dims(model, config.input_shapes)
    macs = sum(c.macs for c in layer_costs(model, dims))
    params = count_params(model)
    if config.refit != "none":
        pre = analyze_graph(GraphIndex(model, dims), config)
        model = ensure_biases(model, pre.readers)
    found, _ = measure(model, config, calib, dims, make_plan)
    return found, macs, params


def _allocate(model, config: PruneConfig, calib, dims, before, params_before: int):
    """Measure every group's sensitivity and turn the budget into per-group ratios."""
    kind = "macs" if config.target_macs else "params"
    target = config.target_macs or config.target_params
    total = sum(c.macs for c in before) if kind == "macs" else params_before
    sensitivities, stats = measure(model, config, calib, dims, make_plan)
    ratios, warning = fit_budget(model, config, sensitivities, stats, dims, make_plan, kind, total)
    chosen = replace(config, ratio=0.0, head_ratio=0.0, group_ratios=ratios)
    info = {
        "kind": kind,
        "target": target,
        "ratios": {str(k): v for k, v in sorted(ratios.items())},
        "sensitivity": [asdict(s) for s in sensitivities],
        "warning": warning,
    }
    return chosen, info


def _validate(report, model, p: Plan, original_bytes, feeds, reference, exact: bool) -> None:
    check(model)
    pruned_bytes = model.SerializeToString()
    try:
        pruned_out = run(pruned_bytes, feeds, optimize=False)
        optimised_out = run(pruned_bytes, feeds)
    except Exception as exc:
        raise ValidationError(f"onnxruntime cannot run the pruned model: {_short(exc)}") from exc
    report.outputs = compare(reference, pruned_out)
    compare(reference, optimised_out)
    exact = exact and not any(g.approximate and g.kept < g.channels for g in report.groups)
    if not exact:
        return  # refitted or approximate: the masked original is not the reference
    report.oracle_rel_diff = _oracle_diff(original_bytes, p, feeds, pruned_out)
    if report.oracle_rel_diff > ORACLE_TOLERANCE:
        raise ValidationError(
            "the pruned model does not compute what the original computes with the "
            f"removed channels masked (relative difference {report.oracle_rel_diff:.3g}); "
            "this is a bug in onnxprune: please report this model"
        )


def _calib_error(original_bytes: bytes, pruned: onnx.ModelProto, calib: Calibration, source):
    """Relative squared output error of the pruned model on the calibration data."""
    if not original_bytes:
        original_bytes = load_model(source).SerializeToString()
    original = runner(original_bytes)
    return calib_deviation(pruned, calib, [original(feeds) for feeds in calib.batches()])


ORACLE_TOLERANCE = 1e-4


def _oracle_diff(original_bytes: bytes, p: Plan, feeds, pruned_out) -> float:
    """Largest output difference from the masking oracle, relative to the output's scale."""
    masked = p.masked_original(onnx.load_from_string(original_bytes))
    # the same (unoptimised) kernels as pruned_out: fused ones round differently
    expected = run(masked.SerializeToString(), feeds, optimize=False)
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
