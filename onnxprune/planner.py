"""Choose the channels to keep in every group, within the config's bounds."""

from __future__ import annotations

import fnmatch
import math

import numpy as np

from .analysis import Analysis
from .config import PruneConfig
from .errors import BadInputError
from .groups import ChannelGroup


def _kept_target(n: int, n_drop: int, floor: int, config: PruneConfig, unit: int = 1) -> int:
    """Kept count for a group of n: at least `floor`, rounded to round_to (in units of
    `unit` channels each)."""
    keep = max(n - n_drop, config.min_channels, floor, 1)
    least = max(config.min_channels, floor, 1)
    return _rounded(keep, n, least, config.round_to, unit, config.round_down)


def _rounded(
    keep: int, n: int, floor: int, round_to: int, unit: int = 1, down: bool = False
) -> int:
    """`keep` moved to the nearest count c (ties: the larger; `down`: the largest c not
    above keep) with c * unit a multiple of round_to and floor <= c <= n; all n when no
    such count is at least `floor`. Nearest, not up: rounding must not turn a ratio
    into systematically fewer removed channels."""
    step = round_to // math.gcd(round_to, unit)
    if step <= 1:
        return min(keep, n)
    lower = keep // step * step
    upper = min(lower + step if lower < keep else keep, n)
    candidates = [c for c in (lower, upper) if floor <= c <= n and c > 0]
    if not candidates:
        return n
    below = [c for c in candidates if c <= keep]
    if down and below:
        return max(below)
    return min(candidates, key=lambda c: (abs(c - keep), -c))


def _drop_counts(groups: list[ChannelGroup], scores: np.ndarray, config: PruneConfig) -> dict:
    """How many channels each group should lose before bounds: per group, or one ranking."""
    own = {g.id: math.floor(_ratio(g, config) * g.size) for g in groups}
    if not config.global_ranking or config.group_ratios:
        return own
    # head groups keep their own head ratio, named groups the ratio their glob gives
    fixed = {g.id for g in groups if g.kind == "heads" or named_ratio(g, config) is not None}
    groups = [g for g in groups if g.id not in fixed]
    free = [[c for c in g.classes.tolist() if c not in g.frozen] for g in groups]
    pool = np.array([c for f in free for c in f], np.int64)
    owner = np.array([k for k, f in enumerate(free) for _ in f], np.int64)
    # a class's place within its own group, 0..1: equal scores are shared out in
    # proportion to group size instead of emptying the group that comes first
    place = np.concatenate(
        [(np.argsort(np.argsort(scores[f], kind="stable")) + 0.5) / len(f) for f in free if f]
        or [np.empty(0)]
    )
    total = sum(g.size for g in groups if not g.fully_frozen)
    n_drop = min(math.floor(config.ratio * total), len(pool))
    lowest = owner[np.lexsort((place, scores[pool]))[:n_drop]]
    counts = np.bincount(lowest, minlength=len(groups))
    return {g.id: int(counts[k]) for k, g in enumerate(groups)} | {i: own[i] for i in fixed}


def _ratio(group: ChannelGroup, config: PruneConfig) -> float:
    if group.id in config.group_ratios:
        return config.group_ratios[group.id]
    named = named_ratio(group, config)
    if named is not None:
        return named
    return config.heads_ratio if group.kind == "heads" else config.ratio


def named_ratio(group: ChannelGroup, config: PruneConfig) -> float | None:
    """The ratio of the first config.name_ratios glob matching one of the group's
    producer node or initializer names, or None."""
    for pattern, ratio in config.name_ratios.items():
        if any(fnmatch.fnmatchcase(name, pattern) for name in group.names):
            return ratio
    return None


def unmatched_globs(groups: list[ChannelGroup], config: PruneConfig) -> list[str]:
    """A warning for every config.name_ratios glob that matches no group."""
    return [
        f"ratio glob {pattern!r} matches no producer node or initializer name of a group"
        for pattern in config.name_ratios
        if not any(fnmatch.fnmatchcase(n, pattern) for g in groups for n in g.names)
    ]


def _choose_free(classes: np.ndarray, frozen: dict, scores: np.ndarray, keep: int) -> np.ndarray:
    """The `keep` best of `classes`, frozen ones first."""
    forced = np.array([c in frozen for c in classes.tolist()], bool)
    order = np.lexsort((-scores[classes], ~forced))
    return classes[order[:keep]]


def _plan_blocks(group: ChannelGroup, scores, n_drop: int, config: PruneConfig) -> list:
    """Kept classes per part: each block (equal counts), then the classes in no block."""
    blocks = group.blocks or []
    in_blocks = np.concatenate(blocks)
    size = len(blocks[0])
    n_blocked = len(in_blocks)
    drop_blocked = round(n_drop * n_blocked / group.size)
    floor = max(sum(c in group.frozen for c in b.tolist()) for b in blocks)
    min_total = max(config.min_channels, 1)
    least = max(floor, math.ceil(min_total / len(blocks)), 1)
    keep = max(size - drop_blocked // len(blocks), least)
    keep = _rounded(keep, size, least, config.round_to, len(blocks), config.round_down)
    kept = [_choose_free(b, group.frozen, scores, min(keep, size)) for b in blocks]
    rest = _rest(group)
    if len(rest):
        n_frozen = sum(c in group.frozen for c in rest.tolist())
        n_rest = len(rest) - math.floor(len(rest) * n_drop / group.size)
        kept.append(_choose_free(rest, group.frozen, scores, max(n_rest, n_frozen, 1)))
    return kept


def _rest(group: ChannelGroup) -> np.ndarray:
    return np.setdiff1d(group.classes, np.concatenate(group.blocks or [np.empty(0, np.int64)]))


def _parts(group: ChannelGroup) -> list[np.ndarray]:
    """Where a kept class may be traded for another without breaking equal counts."""
    if not group.blocks:
        return [group.classes]
    rest = _rest(group)
    return list(group.blocks) + ([rest] if len(rest) else [])


def _keep_required(group: ChannelGroup, kept: list[np.ndarray], scores) -> bool:
    """Trade kept classes within a part so every required set keeps one; False if stuck.

    Trading, unlike adding, leaves every part's count (equal blocks, round_to) as planned.
    """
    parts = _parts(group)
    part_of = {c: p for p, classes in enumerate(parts) for c in classes.tolist()}
    kept_sets = [set(k.tolist()) for k in kept]
    kept_now = set().union(*kept_sets)
    sets_of: dict[int, list[int]] = {}
    for r, req in enumerate(group.required):
        for c in req.tolist():
            sets_of.setdefault(c, []).append(r)
    alive = [sum(c in kept_now for c in req.tolist()) for req in group.required]
    for r, req in enumerate(group.required):
        if alive[r]:
            continue
        for cand in req[np.argsort(-scores[req], kind="stable")].tolist():
            p = part_of[cand]
            victims = [
                v
                for v in kept_sets[p]
                if v not in group.frozen and all(alive[s] > 1 for s in sets_of.get(v, []))
            ]
            if victims:
                victim = min(victims, key=lambda v: scores[v])
                kept_sets[p].discard(victim)
                kept_sets[p].add(cand)
                for s in sets_of.get(victim, []):
                    alive[s] -= 1
                for s in sets_of.get(cand, []):
                    alive[s] += 1
                break
        else:
            return False
    for p, chosen in enumerate(kept_sets):
        kept[p] = np.array(sorted(chosen), np.int64)
    return True


def plan(
    groups: list[ChannelGroup], scores: np.ndarray, n_slots: int, config: PruneConfig
) -> np.ndarray:
    """A keep flag per slot id (read at class roots)."""
    if isinstance(config.round_to, str):
        raise BadInputError(
            f"round_to={config.round_to!r}: the planner needs a number (prune() resolves auto)"
        )
    keep = np.ones(n_slots, bool)
    drops = _drop_counts(groups, scores, config)
    for group in groups:
        if group.fully_frozen or drops[group.id] == 0:
            continue
        if group.blocks:
            kept = _plan_blocks(group, scores, drops[group.id], config)
        else:
            target = _kept_target(group.size, drops[group.id], len(group.frozen), config)
            kept = [_choose_free(group.classes, group.frozen, scores, target)]
        if not _keep_required(group, kept, scores):
            continue  # no trade keeps every tensor non-empty: leave the group whole
        keep[group.classes] = False
        keep[np.concatenate(kept)] = True
    return keep


def ensure_nonempty(keep: np.ndarray, roots: np.ndarray, scores, required: list) -> None:
    """Where a required set of positions lost every channel, keep its best one again."""
    for slots in required:
        classes = roots[slots]
        if len(classes) and not keep[classes].any():
            keep[classes[np.argmax(scores[classes])]] = True


def keep_slots(
    analysis: Analysis, groups: list[ChannelGroup], roots: np.ndarray, scores, config
) -> np.ndarray:
    """A keep flag per slot: `plan`, then every producer weight and every position set
    the analysis needs non-empty keeps at least its best channel."""
    keep_class = plan(groups, scores, len(analysis.table), config)
    required = analysis.nonempty + [
        np.arange(s.first, s.first + s.size) for s in analysis.table.spaces
    ]
    ensure_nonempty(keep_class, roots, scores, required)
    return keep_class[roots]
