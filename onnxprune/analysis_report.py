"""`analyze()`: what pruning would see, before anything is pruned.

For every channel group: its members, size, kind, score spread, and the parameters and
MACs that removing its least important channel, or all of its channels, would save;
for every frozen group: the node and the reason. Savings are exact for the constants
(each handler's slicing is run on the group's channels alone, shared constants are
counted as apply.py would write them) and for Conv, ConvTranspose, Gemm and MatMul with
a constant weight (their MACs scale with the weight's size); MatMuls of two activations
(attention scores) scale with the channel layouts of their operands.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import onnx

from .analysis import Analysis
from .apply import count_params
from .checks import blamed_on_input
from .config import PruneConfig
from .modelio import external_folder
from .pipeline import ModelLike, calibration, load_model, make_plan
from .report import COMPUTE_OPS, layer_costs
from .scoring import score
from .validate import input_dims


@dataclass
class GroupAnalysis:
    """One channel group: what it couples and what pruning it would save."""

    id: int
    members: list[str]
    channels: int
    kind: str
    """"channels", or "heads" (each unit is a whole attention head)."""
    frozen: int
    """How many of its channels cannot be removed (reasons in AnalysisReport.frozen)."""
    approximate: list[str]
    params_one: int
    """Parameters saved by removing its lowest-scoring removable channel alone."""
    params_all: int
    """Parameters saved by removing every channel of the group (what it controls)."""
    macs_one: int
    macs_all: int
    score_min: float
    score_median: float
    score_max: float


@dataclass
class FrozenEntry:
    """Channels of a group that a node (or a rule) keeps, and why."""

    group: int
    channels: int
    node: str
    """The node that froze them ("Conv 'name'"), or "" for a rule (graph output, --exclude)."""
    reason: str


@dataclass
class AnalysisReport:
    """The groups and frozen channels of a model. `to_dict()` is the JSON form."""

    params: int = 0
    macs: int = 0
    criterion: str = "l2"
    groups: list[GroupAnalysis] = field(default_factory=list)
    frozen: list[FrozenEntry] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_text(self, verbose: bool = False) -> str:
        return format_analysis(self, verbose)


def analyze(source: ModelLike, config: PruneConfig | None = None) -> AnalysisReport:
    """The channel groups of a model (path or ModelProto, never modified) and what each
    controls, without pruning. Uses `config`'s criterion, exclusions, head and hidden
    options and input shapes; its ratios are ignored. Runs onnxruntime only when shape
    inference cannot tell a compute layer's shapes (or for data-aware criteria)."""
    start = time.perf_counter()
    config = replace(config or PruneConfig(), validate=False).check()
    loaded = load_model(source)
    with external_folder(loaded.folder), blamed_on_input(source):
        return _analyze(loaded.model, config, start)


def _analyze(model: onnx.ModelProto, config: PruneConfig, start: float) -> AnalysisReport:
    calib = calibration(model, config)
    p = make_plan(model, replace(config, ratio=0.0, head_ratio=0.0, group_ratios={}), calib)
    a = p.analysis
    scores = score(a, p.roots, config.criterion, p.stats)
    costs = layer_costs(model, input_dims(model, config.input_shapes))
    savings = _Savings(a, p.roots, [c.macs for c in costs])
    groups = []
    for g in p.groups:
        values = scores[g.classes] if g.size else np.zeros(1)
        removable = [c for c in g.classes.tolist() if c not in g.frozen] or g.classes.tolist()
        weakest = min(removable, key=lambda c: scores[c]) if removable else None
        one = savings.removing([weakest]) if weakest is not None else (0, 0)
        every = savings.removing(g.classes.tolist())
        groups.append(
            GroupAnalysis(
                id=g.id,
                members=list(g.labels),
                channels=g.size,
                kind=g.kind,
                frozen=len(g.frozen),
                approximate=list(g.approximate),
                params_one=one[0],
                params_all=every[0],
                macs_one=one[1],
                macs_all=every[1],
                score_min=float(values.min()),
                score_median=float(np.median(values)),
                score_max=float(values.max()),
            )
        )
    return AnalysisReport(
        params=count_params(model),
        macs=sum(c.macs for c in costs),
        criterion=config.criterion,
        groups=groups,
        frozen=[e for g in p.groups for e in _frozen_entries(g.id, g.frozen)],
        warnings=list(a.warnings),
        seconds=time.perf_counter() - start,
    )


_WHERE = re.compile(r"^(?P<node>[\w.:]+ '.*?'): (?P<reason>.*)$", re.S)


def _frozen_entries(group: int, frozen: dict[int, str]) -> list[FrozenEntry]:
    entries = []
    for reason, count in sorted(Counter(frozen.values()).items()):
        m = _WHERE.match(reason)
        node, why = (m["node"], m["reason"]) if m else ("", reason)
        entries.append(FrozenEntry(group, count, node, why))
    return entries


class _Savings:
    """Parameters and MACs saved by removing a set of channel classes, from the
    analysis' constant edits (producers' and readers' slicing, biases, norms) and the
    channel layouts of the compute layers."""

    def __init__(self, a: Analysis, roots: np.ndarray, macs: list[int]) -> None:
        self.a, self.roots, self.index = a, roots, a.index
        index = self.index
        self.uses: dict[str, list[tuple[int, int]]] = {}
        self.touched: dict[tuple[int, int], np.ndarray] = {}
        for site in a.const_edits:
            self.uses.setdefault(index.nodes[site[0]].input[site[1]], []).append(site)
            self.touched[site] = self._classes_read(site)
        compute = [
            i
            for i, node in index.iter_nodes()
            if node.op_type in COMPUTE_OPS and node.domain in ("", "ai.onnx")
        ]
        self.compute = list(zip(compute, macs, strict=True))

    def _classes_read(self, site: tuple[int, int]) -> np.ndarray:
        seen: list[np.ndarray] = []

        def spy(slots: np.ndarray) -> np.ndarray:
            seen.append(self.roots[slots].ravel())
            return np.ones(slots.shape, bool)

        if self._edited(site, spy) is None:
            return np.empty(0, np.int64)
        return np.unique(np.concatenate(seen)) if seen else np.empty(0, np.int64)

    def _edited(self, site: tuple[int, int], kept) -> np.ndarray | None:
        """The constant at `site` as its transforms rewrite it (None if they fail)."""
        index = self.index
        value = index.const(index.nodes[site[0]].input[site[1]])
        try:
            for fn in self.a.const_edits[site]:
                value = fn(value, kept)
        except Exception:  # a hypothetical removal some rewrite cannot express
            return None
        return value

    def removing(self, classes: list[int]) -> tuple[int, int]:
        """(parameters, MACs) saved when exactly these classes are removed."""
        removed = np.zeros(len(self.roots), bool)
        removed[classes] = True

        def kept(slots: np.ndarray) -> np.ndarray:
            return ~removed[self.roots[slots]]

        sites = {s for s, hit in self.touched.items() if hit.size and removed[hit].any()}
        values = {s: self._edited(s, kept) for s in sites}
        params = 0
        for name in {self.index.nodes[n].input[i] for n, i in sites}:
            params += self._stored_elements(name, {}) - self._stored_elements(name, values)
        macs = 0.0
        for node_idx, node_macs in self.compute:
            macs += node_macs * (1.0 - self._macs_kept(node_idx, values, kept))
        return max(params, 0), int(round(macs))

    def _stored_elements(self, name: str, values: dict) -> int:
        """Float elements stored for constant `name` once its uses take `values` (a use
        not in `values` keeps the original), shared as apply.py shares them."""
        index = self.index
        original = index.const(name)
        if original is None or not np.issubdtype(original.dtype, np.floating):
            return 0
        sites = self.uses[name]
        others = [s for s in index.consumers.get(name, []) if s not in set(sites)]
        distinct: list[np.ndarray] = []
        keeps_original = bool(others) or name in index.graph_outputs or not index.is_stored(name)
        for site in sites:
            value = values.get(site, original)
            if value is None or value is original:
                keeps_original = True
            elif not any(v.shape == value.shape and np.array_equal(v, value) for v in distinct):
                distinct.append(value)
        total = sum(int(v.size) for v in distinct)
        return total + (int(original.size) if keeps_original and index.is_stored(name) else 0)

    def _macs_kept(self, node_idx: int, values: dict, kept) -> float:
        """Fraction of a compute layer's MACs left: its constant weight's size ratio, or
        for two activations the kept fractions of the output's channel axes and of the
        first operand's contracted axis."""
        index = self.index
        node = index.nodes[node_idx]
        for i in (1, 0):
            if i < len(node.input) and index.is_const(node.input[i]):
                value = values.get((node_idx, i))
                shape = index.shape(node.input[i])  # its size only: no need to read it
                size = (
                    int(np.prod(shape)) if shape and all(isinstance(d, int) for d in shape) else 0
                )
                if value is None or not size:
                    return 1.0
                return value.size / size
        fraction = 1.0
        for slots in self.a.layouts.get(node.output[0], {}).values():
            fraction *= float(kept(slots).mean()) if slots.size else 1.0
        rank = index.rank(node.input[0])
        axis = {"MatMul": (rank or 0) - 1, "Gemm": 0}.get(node.op_type, 1)
        slots = self.a.layouts.get(node.input[0], {}).get(axis)
        if slots is not None and slots.size:
            fraction *= float(kept(slots).mean())
        return fraction


def _count(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.0f}"


def format_analysis(r: AnalysisReport, verbose: bool = False) -> str:
    """The human form: one row per group, then the frozen channels and their reasons."""
    prunable = [g for g in r.groups if g.frozen < g.channels]
    lines = [
        f"parameters {r.params:,}   MACs {r.macs:,}   groups {len(r.groups)} "
        f"(prunable {len(prunable)}, with frozen channels "
        f"{len({e.group for e in r.frozen})})   criterion {r.criterion}",
        f"{'group':>5} {'kind':>8} {'chan':>5} {'frozen':>6} {'MACs/ch':>8} "
        f"{'MACs all':>14} {'params/ch':>9} {'params all':>14}  "
        f"{'score min / median / max':>26}  members",
    ]
    for g in r.groups if verbose else prunable:
        share = f"{_count(g.macs_all)} {g.macs_all / r.macs:4.0%}" if r.macs else "-"
        pshare = f"{_count(g.params_all)} {g.params_all / r.params:4.0%}" if r.params else "-"
        scores = f"{g.score_min:.3g} / {g.score_median:.3g} / {g.score_max:.3g}"
        members = ", ".join(g.members[:3]) + (
            f" (+{len(g.members) - 3})" if len(g.members) > 3 else ""
        )
        flags = (" [heads]" if g.kind == "heads" else "") + (
            " [approximate]" if g.approximate else ""
        )
        lines.append(
            f"{g.id:>5} {g.kind:>8} {g.channels:>5} {g.frozen:>6} {_count(g.macs_one):>8} "
            f"{share:>14} {_count(g.params_one):>9} {pshare:>14}  {scores:>26}  "
            f"{members}{flags}"
        )
    if not verbose and len(prunable) < len(r.groups):
        lines.append(f"({len(r.groups) - len(prunable)} fully frozen groups not listed; -v)")
    if r.frozen:
        lines.append("frozen (not prunable):")
        shown = r.frozen if verbose else r.frozen[:20]
        for e in shown:
            where = f"{e.node}: " if e.node else ""
            lines.append(f"  group {e.group} ({e.channels} channels): {where}{e.reason}")
        if len(shown) < len(r.frozen):
            lines.append(f"  ... {len(r.frozen) - len(shown)} more (-v lists all)")
    lines.append(
        "/ch: saved by removing the group's lowest-scoring channel (head); all: by removing "
        "every channel of it (with the share of the model)"
    )
    lines.extend(f"warning: {w}" for w in r.warnings)
    return "\n".join(lines)
