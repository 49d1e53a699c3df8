"""load -> analyze -> score -> plan -> apply -> validate, and the report of it all."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx.checker import ValidationError as OnnxCheckerError

from . import modelio
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
from .checks import blamed_on_input, check_input, check_run_sizes, check_structure
from .config import PruneConfig
from .errors import (
    BadInputError,
    OnnxPruneError,
    UnsupportedModelError,
    ValidationError,
    first_line,
)
from .graph import GraphIndex
from .groups import ChannelGroup, build_groups
from .latency import before_after
from .modelio import (
    EXTERNAL_MODES,
    check_external_data,
    external_folder,
    has_external_data,
    load_external_into,
    save_model,
    source_bytes,
    wants_external,
)
from .oracle import masked_model
from .planner import keep_slots, unmatched_globs
from .progress import steps
from .reconstruct import ensure_biases, refit
from .report import GroupReport, PruneReport, layer_costs
from .rounding import choose_round_to
from .scoring import normalise, score
from .staging import Staging
from .validate import check, compare, input_dims, input_feeds, run, runner

ModelLike = onnx.ModelProto | str | os.PathLike


@dataclass
class Loaded:
    """A model as onnxprune holds it: its graph, with weights left on disk."""

    model: onnx.ModelProto
    folder: str | None
    """Where its external-data references resolve (None when it has none)."""
    external_source: bool
    """Whether the file itself kept weights in external data files."""


def load_model(source: ModelLike) -> Loaded:
    """A private copy of the model. A path is read, never written; weights stay on
    disk, checked, and are read only when used (see modelio): external data files, and
    for a large single-file model, the file itself (`modelio.load_lazily`)."""
    if isinstance(source, onnx.ModelProto):
        if has_external_data(source):
            raise BadInputError(
                "the model refers to external data but was given in memory; "
                "pass its path so its data files can be found"
            )
        model = onnx.ModelProto()
        model.CopyFrom(source)
        check_structure(model)
        return Loaded(model, None, False)
    path = os.fspath(source)
    if not os.path.exists(path):
        raise BadInputError(f"{path}: no such file")
    if not os.path.isfile(path):
        raise BadInputError(f"{path}: not a file")
    try:
        if os.path.getsize(path) >= modelio.LAZY_MIN_BYTES:
            model, external = modelio.load_lazily(path)
        else:
            model = onnx.load(path, load_external_data=False)
            external = has_external_data(model)
    except (DecodeError, RuntimeError, ValueError, OSError, OnnxCheckerError) as exc:
        raise BadInputError(f"{path}: not a readable ONNX model ({first_line(exc, 300)})") from exc
    if not model.graph.node:
        raise BadInputError(f"{path}: not an ONNX model (no graph nodes)")
    check_structure(model)
    folder = os.path.dirname(os.path.abspath(path))
    if has_external_data(model):
        check_external_data(model, folder, path)
        with external_folder(folder):
            load_external_into(model, attributes_only=True)
    return Loaded(model, folder if has_external_data(model) else None, external)


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

    def masked_original(
        self, original: onnx.ModelProto, in_place: bool = False, feeds: dict | None = None
    ) -> onnx.ModelProto:
        """The masking oracle for this plan: `original` with removed channels zeroed
        (`original` itself edited when `in_place`; masks as inputs valued in `feeds`
        when given, see oracle.masked_model)."""
        shapes = self.analysis.index.shapes
        ranks = {name: len(dims) for name, dims in shapes.items() if dims is not None}
        for r in self.analysis.readers:  # the op may fix a rank inference could not tell
            name = self.analysis.index.nodes[r.node].input[r.input_index]
            if name not in ranks and r.rank is not None:
                ranks[name] = r.rank
        return masked_model(original, self.reader_masks(), ranks, in_place, feeds)

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
    analysis.warnings.extend(unmatched_globs(groups, config))
    if stats is None and calib is not None:
        gram = config.refit == "lsq" or config.criterion == "energy"
        design = config.refit != "none" or config.criterion == "energy"
        stats = capture(model, analysis.readers, calib, gram, design, mask=config.calib_mask)
    scores = score(analysis, roots, config.criterion, stats)
    if config.global_ranking:
        scores = normalise(scores, groups)
    keep = keep_slots(analysis, groups, roots, scores, config)
    return Plan(analysis, groups, roots, keep, stats)


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

    The returned model holds all its weights, even when the source kept them in external
    data; for large models use `prune_file`, which streams them to the output instead.
    Raises BadInputError for unusable input, ValidationError when the pruned model
    fails a check (nothing is returned then).
    """
    config = (config or PruneConfig()).check()
    loaded = load_model(source)
    model = loaded.model
    with external_folder(loaded.folder), blamed_on_input(source):
        work = _prune(model, config, source)
        if config.validate:
            _validate(work, model)
        if work.timed:
            _time(work, model.SerializeToString())
        load_external_into(model)
    return model, work.report


def prune_file(
    source: str | os.PathLike,
    output: str | os.PathLike,
    config: PruneConfig | None = None,
    external_data: str = "auto",
    companions: Sequence[tuple[str, Callable[[str, PruneReport], None]]] = (),
) -> PruneReport:
    """Prune the model at `source` and write it to `output`; return the report.

    Weights are read from the source's external data as they are needed and streamed
    to the output, so memory holds little more than what pruning changed. The output
    is written under a temporary name in its folder and validated there (checker and
    onnxruntime from the file itself); only then is it moved into place, with each
    (path, write(path, report)) of `companions` (reports). On any failure nothing is
    left behind. `external_data`: auto (external when the source was, or the weights
    exceed 1 GiB), always, or never (one file, at most 2 GB).
    """
    config = (config or PruneConfig()).check()
    if external_data not in EXTERNAL_MODES:
        raise BadInputError(f"--external-data must be one of {', '.join(EXTERNAL_MODES)}")
    output = os.fspath(output)
    loaded = load_model(source)
    model = loaded.model
    file_bytes = source_bytes(source, model)
    with external_folder(loaded.folder), Staging() as staging, blamed_on_input(source):
        work = _prune(model, config, source)
        staged = staging.path(output)
        external = wants_external(model, external_data, loaded.external_source)
        try:
            written = save_model(model, staged, external)
        except OSError as exc:
            raise OnnxPruneError(f"cannot write {output}: {exc.strerror or exc}") from exc
        work.report.file_bytes_before = file_bytes
        work.report.file_bytes_after = sum(os.path.getsize(f) for f in written)
        del model, loaded  # what validation needs is on disk now: free the pruned weights
        if config.validate:
            _validate(work, staged)
        if work.timed:
            _time(work, staged)
        try:
            for path, write in companions:
                write(staging.path(path), work.report)
        except OSError as exc:
            raise OnnxPruneError(f"cannot write {path}: {exc.strerror or exc}") from exc
        staging.commit()
    return work.report


def _time(work: _Work, pruned: bytes | str) -> None:
    """Latency of the original and the pruned model, paired, into the report."""
    start = time.perf_counter()
    work.report.latency = before_after(work.original_bytes, pruned, work.feeds)
    work.report.seconds["latency"] = time.perf_counter() - start


@dataclass
class _Work:
    """What validation needs of a prune: the original, its outputs, the oracle's."""

    report: PruneReport
    original_bytes: bytes | None
    feeds: dict | None
    reference: dict | None
    """The original's outputs on `feeds` (unoptimised kernels)."""
    expected: dict | None
    """The masking oracle's outputs on `feeds`, where pruning is exact (else None)."""
    timed: bool
    """Measure latency before/after (--latency, --round-to auto)."""


def _prune(model: onnx.ModelProto, config: PruneConfig, source: ModelLike) -> _Work:
    """Everything but validation: `model` is pruned in place."""
    timer = _Timer()
    timed = config.latency or config.round_to == "auto"
    original_bytes = model.SerializeToString() if config.validate or timed else None
    calib = calibration(model, config)
    timer.lap("load")
    feeds = reference = expected = None
    if config.validate or timed:
        check_run_sizes(model, input_dims(model, config.input_shapes))
        feeds = input_feeds(model, config.input_shapes, config.seed)
    dims = (
        {k: list(v.shape) for k, v in feeds.items()}
        if feeds
        else input_dims(model, config.input_shapes)
    )
    before = layer_costs(model, dims)
    params_before = count_params(model)
    if config.refit != "none":
        pre = analyze_graph(GraphIndex(model, input_dims(model, config.input_shapes)), config)
        ensure_biases(model, pre.readers)
    auto = config.round_to == "auto"
    config = replace(config, round_to=1, round_down=True) if auto else config
    budget = rounding = None
    if config.target_macs or config.target_params:
        config, budget = _allocate(model, config, calib, dims, before, params_before)
        timer.lap("sensitivity")
    if auto:
        chosen, rounding = choose_round_to(model, config, make_plan)
        config = replace(config, round_to=chosen)
        timer.lap("latency probe")
    p = make_plan(model, config, calib)
    timer.lap("analyze+plan")
    notes = (
        refit(p.analysis, p.stats, p.keep_slot, config.refit, config.ridge)
        if (config.refit != "none")
        else []
    )
    exact = not notes and not any(
        g.approximate and p.keep_slot[g.classes].sum() < g.size for g in p.groups
    )
    if config.validate:
        unpruned = model.SerializeToString() if config.refit != "none" else original_bytes
        reference, expected = _reference_runs(unpruned, p, feeds, exact)
        check_input(model)  # its output is checked alike: refuse now, as bad input
        timer.lap("reference run")
    apply_plan(p.analysis, p.keep_slot)
    timer.lap("apply")
    report = _report(p, model, before, params_before, dims)
    report.refits = [asdict(n) for n in notes]
    report.budget = budget
    if budget and budget["warning"]:
        report.warnings.append(budget["warning"])
    if calib is not None:
        report.calib_rel_error = _calib_error(original_bytes or b"", model, calib, source)
    report.rounding = rounding
    report.seconds = timer.laps
    return _Work(report, original_bytes, feeds, reference, expected, timed)


def sensitivity(source: ModelLike, config: PruneConfig) -> tuple[list, int, int]:
    """Each prunable group's calibration-set deviation and savings when pruned alone at
    config.sensitivity_ratios: (sensitivities, MACs, parameters of the model)."""
    config = config.check()
    if not config.has_calibration:
        raise BadInputError("sensitivity needs calibration data (--calib or --calib-random)")
    loaded = load_model(source)
    with external_folder(loaded.folder), blamed_on_input(source):
        return _sensitivity(loaded.model, config)


def _sensitivity(model: onnx.ModelProto, config: PruneConfig) -> tuple[list, int, int]:
    calib = calibration(model, config)
    dims = input_dims(model, config.input_shapes)
    macs = sum(c.macs for c in layer_costs(model, dims))
    params = count_params(model)
    if config.refit != "none":
        pre = analyze_graph(GraphIndex(model, dims), config)
        ensure_biases(model, pre.readers)
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


def _reference_runs(unpruned: bytes, p: Plan, feeds: dict, exact: bool):
    """The original's outputs, and the masking oracle's where pruning is exact, from one
    onnxruntime session: the oracle's masks are inputs, all ones for the original."""
    keep: dict[str, np.ndarray] = {}
    masked = p.masked_original(onnx.load_from_string(unpruned), in_place=True, feeds=keep)
    ones = {name: np.ones_like(mask) for name, mask in keep.items()}
    with steps("reference run", 2 if exact else 1) as done:
        try:
            call = runner(masked.SerializeToString(), optimize=False)
            reference = call({**feeds, **ones})
        except Exception as exc:
            try:
                run(unpruned, feeds, optimize=False)
            except Exception:
                message = f"onnxruntime cannot run the input model: {first_line(exc, 300)}"
                raise BadInputError(message) from exc
            raise OnnxPruneError(
                f"the masking oracle does not run: {first_line(exc, 300)}"
            ) from exc
        done()
        expected = call({**feeds, **keep}) if exact else None
        done()
    return reference, expected


def _validate(work: _Work, pruned: onnx.ModelProto | str) -> None:
    """Check the pruned model (in memory, or the path it was written to) and compare it
    with the original, and with the masking oracle where pruning is exact."""
    start = time.perf_counter()
    report = work.report
    with steps("validation", 3) as done:
        check(pruned)
        done()
        target = pruned.SerializeToString() if isinstance(pruned, onnx.ModelProto) else pruned
        try:
            pruned_out = run(target, work.feeds, optimize=False)
            done()
            optimised_out = run(target, work.feeds)
            done()
        except Exception as exc:
            message = f"onnxruntime cannot run the pruned model: {first_line(exc, 300)}"
            raise ValidationError(message) from exc
        report.outputs = compare(work.reference, pruned_out)
        compare(work.reference, optimised_out)
    if work.expected is not None:
        report.oracle_rel_diff = _oracle_diff(work.expected, pruned_out)
        if report.oracle_rel_diff > ORACLE_TOLERANCE:
            raise ValidationError(
                "the pruned model does not compute what the original computes with the "
                f"removed channels masked (relative difference {report.oracle_rel_diff:.3g}); "
                "this is a bug in onnxprune: please report this model"
            )
    report.seconds["validate"] = time.perf_counter() - start


def _calib_error(original_bytes: bytes, pruned: onnx.ModelProto, calib: Calibration, source):
    """Relative squared output error of the pruned model on the calibration data."""
    if not original_bytes:
        original_bytes = load_model(source).model.SerializeToString()
    original = runner(original_bytes)
    return calib_deviation(pruned, calib, [original(feeds) for feeds in calib.batches()])


ORACLE_TOLERANCE = 1e-4


def _oracle_diff(expected: dict, pruned_out: dict) -> float:
    """Largest output difference from the masking oracle, relative to the output's scale
    (both runs use the unoptimised kernels: fused ones round differently)."""
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
