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
    for group in base.groups:
        if group.fully_frozen or group.size < 2:
            continue
        sens = GroupSensitivity(group.id, group.labels, group.size, group.kind)
        for ratio in config.sensitivity_ratios:
            trial = replace(config, ratio=0.0, head_ratio=0.0, group_ratios={group.id: ratio})
            pruned = _pruned_copy(model, trial, base.stats, make_plan)
            sens.ratios.append(ratio)
            sens.deviation.append(_deviation(pruned, calib, reference))
            sens.macs_saved.append(macs0 - sum(c.macs for c in layer_costs(pruned, dims)))
            sens.params_saved.append(params0 - count_params(pruned))
        result.append(sens)
    return result, base.stats


def fit_budget(model, config: PruneConfig, sensitivities, stats, dims, make_plan, kind, total):
    """Per-group ratios that reach the budget once applied together: savings of
    neighbouring groups are not additive (a layer loses inputs and outputs), so the
    allocation is redone with the shortfall added until the combined model meets it."""
    target = config.target_macs if kind == "macs" else config.target_params
    budget = target
    ratios: dict[int, float] = {}
    for _ in range(8):
        ratios = allocate(sensitivities, budget, total, kind)
        trial = replace(config, ratio=0.0, head_ratio=0.0, group_ratios=ratios)
        pruned = _pruned_copy(model, trial, stats, make_plan)
        kept = (
            sum(c.macs for c in layer_costs(pruned, dims))
            if kind == "macs"
            else (count_params(pruned))
        )
        reached = kept / total if total else 1.0
        if reached <= target + 1e-3 or budget <= 0:
            break
        budget = max(budget - (reached - target), 0.0)
    return ratios


def _pruned_copy(model, config: PruneConfig, stats, make_plan) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    p = make_plan(copy, config, None, stats)
    if config.refit != "none" and stats is not None:
        refit(p.analysis, stats, p.keep_slot, config.refit, config.ridge)
    apply_plan(p.analysis, p.keep_slot)
    return copy


def _deviation(pruned: onnx.ModelProto, calib: Calibration, reference: list) -> float:
    pruned_run = runner(pruned.SerializeToString())
    err = total = 0.0
    for feeds, ref in zip(calib.batches(), reference, strict=True):
        got = pruned_run(feeds)
        for name, y in ref.items():
            y64 = y.astype(np.float64)
            err += float(((got[name].astype(np.float64) - y64) ** 2).sum())
            total += float((y64**2).sum())
    return err / total if total > 0 else 0.0


def allocate(sensitivities: list, budget: float, total: int, kind: str) -> dict[int, float]:
    """Per-group ratios whose savings bring `total` down to budget * total, chosen
    greedily by the least added deviation per unit saved (deviations taken as additive).
    Returns what it reached if the budget cannot be met at the measured ratios."""
    need = total - budget * total
    state = {s.id: 0 for s in sensitivities}
    saved = 0.0
    while saved < need:
        best, best_rate = None, np.inf
        for s in sensitivities:
            i = state[s.id]
            if i >= len(s.ratios):
                continue
            gain = _saved(s, i, kind) - (_saved(s, i - 1, kind) if i else 0)
            cost = s.deviation[i] - (s.deviation[i - 1] if i else 0.0)
            if gain > 0 and max(cost, 0.0) / gain < best_rate:
                best, best_rate = s, max(cost, 0.0) / gain
        if best is None:
            break
        i = state[best.id]
        saved += _saved(best, i, kind) - (_saved(best, i - 1, kind) if i else 0)
        state[best.id] = i + 1
    return {s.id: s.ratios[state[s.id] - 1] for s in sensitivities if state[s.id]}


def _saved(s: GroupSensitivity, i: int, kind: str) -> int:
    return s.macs_saved[i] if kind == "macs" else s.params_saved[i]
