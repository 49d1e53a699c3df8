"""Budget-driven allocation: measure how much each group's pruning moves the outputs on
the calibration data, then give each group the ratio that meets a MAC or parameter
budget with the least total deviation."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import onnx

from .apply import apply_plan, count_params
from .calib import Calibration
from .config import PruneConfig
from .planner import named_ratio
from .progress import progress
from .reconstruct import refit
from .report import layer_costs
from .validate import runner


@dataclass
class GroupSensitivity:
    """A group's output deviation and savings when it alone is pruned at each ratio."""

    id: int
    members: list[str]
    channels: int
    kind: str
    ratios: list[float] = field(default_factory=list)
    deviation: list[float] = field(default_factory=list)
    """Relative squared output error on the calibration data."""
    macs_saved: list[int] = field(default_factory=list)
    params_saved: list[int] = field(default_factory=list)


def measure(model, config: PruneConfig, calib: Calibration, dims, make_plan):
    """One trial per prunable group and ratio, each on a fresh copy of `model`; returns
    the sensitivities and the calibration statistics (reused for the final plan)."""
    base = make_plan(model, replace(config, ratio=0.0, head_ratio=0.0), calib)
    original = runner(model.SerializeToString())
    reference = [original(feeds) for feeds in calib.batches()]
    macs0 = sum(c.macs for c in layer_costs(model, dims))
    params0 = count_params(model)
    result = []
    for group in progress(base.groups, "sensitivity"):
        if group.fully_frozen or group.size < 2 or named_ratio(group, config) is not None:
            continue  # a group with a name-glob ratio keeps it: not the budget's to choose
        sens = GroupSensitivity(group.id, group.labels, group.size, group.kind)
        for ratio in config.sensitivity_ratios:
            only = {group.id: ratio}
            trial = replace(config, ratio=0.0, head_ratio=0.0, group_ratios=only, name_ratios={})
            pruned = _pruned_copy(model, trial, base.stats, make_plan)
            sens.ratios.append(ratio)
            sens.deviation.append(calib_deviation(pruned, calib, reference))
            sens.macs_saved.append(macs0 - sum(c.macs for c in layer_costs(pruned, dims)))
            sens.params_saved.append(params0 - count_params(pruned))
        result.append(sens)
    return result, base.stats


def fit_budget(model, config: PruneConfig, sensitivities, stats, dims, make_plan, kind, total):
    """Per-group ratios that meet the budget once applied together, and a warning when
    the measured ratios cannot meet it. Savings of neighbouring groups are not additive
    (a layer loses inputs and outputs), so the greedy chain of moves is cut at the
    shortest prefix whose combined model, built and measured, is within budget."""
    target = config.target_macs if kind == "macs" else config.target_params
    chain = greedy_chain(sensitivities, kind)

    def reached(k: int) -> float:
        trial = replace(config, ratio=0.0, head_ratio=0.0, group_ratios=_ratios(chain[:k]))
        pruned = _pruned_copy(model, trial, stats, make_plan)
        kept = (
            sum(c.macs for c in layer_costs(pruned, dims))
            if kind == "macs"
            else (count_params(pruned))
        )
        return kept / total if total else 1.0

    lo, hi = 0, len(chain)
    if not chain or reached(hi) > target:
        return _ratios(
            chain
        ), f"the budget ({target:.3g} of {kind}) is out of reach at the measured ratios"
    while lo < hi:  # shortest prefix within budget
        mid = (lo + hi) // 2
        if reached(mid) <= target:
            hi = mid
        else:
            lo = mid + 1
    return _ratios(chain[:lo]), None


def greedy_chain(sensitivities: list, kind: str) -> list[tuple[int, float]]:
    """Moves (group id, new ratio) in order of least added deviation per unit saved, each
    jumping to whichever later measured ratio of a group pays best (deviation curves are
    not always monotone), until every group is at its largest ratio."""
    state = {s.id: -1 for s in sensitivities}
    chain = []
    while True:
        best, best_rate = None, np.inf
        for s in sensitivities:
            i = state[s.id]
            base_dev = s.deviation[i] if i >= 0 else 0.0
            base_save = _saved(s, i, kind) if i >= 0 else 0
            for j in range(i + 1, len(s.ratios)):
                gain = _saved(s, j, kind) - base_save
                rate = max(s.deviation[j] - base_dev, 0.0) / gain if gain > 0 else np.inf
                if rate < best_rate:
                    best, best_rate = (s, j), rate
        if best is None:
            return chain
        s, j = best
        state[s.id] = j
        chain.append((s.id, s.ratios[j]))


def _ratios(moves: list[tuple[int, float]]) -> dict[int, float]:
    return dict(moves)  # later moves of a group replace earlier ones


def _pruned_copy(model, config: PruneConfig, stats, make_plan) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    p = make_plan(copy, config, None, stats)
    if config.refit != "none" and stats is not None:
        refit(p.analysis, stats, p.keep_slot, config.refit, config.ridge)
    apply_plan(p.analysis, p.keep_slot)
    return copy


def calib_deviation(pruned: onnx.ModelProto, calib: Calibration, reference: list) -> float:
    """Relative squared output error of `pruned` on the calibration batches, against the
    original's outputs `reference` (one dict per batch)."""
    pruned_run = runner(pruned.SerializeToString())
    err = total = 0.0
    for feeds, ref in zip(calib.batches(), reference, strict=True):
        got = pruned_run(feeds)
        for name, y in ref.items():
            y64 = y.astype(np.float64)
            err += float(((got[name].astype(np.float64) - y64) ** 2).sum())
            total += float((y64**2).sum())
    return err / total if total > 0 else 0.0


def _saved(s: GroupSensitivity, i: int, kind: str) -> int:
    return s.macs_saved[i] if kind == "macs" else s.params_saved[i]
