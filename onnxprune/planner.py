"""Choose the channels to keep in every group, within the config's bounds."""

from __future__ import annotations

import math

import numpy as np

from .config import PruneConfig
from .groups import ChannelGroup


def _kept_target(n: int, n_drop: int, floor: int, config: PruneConfig, unit: int = 1) -> int:
    """Kept count for a group of n: at least `floor`, rounded up to round_to (units of `unit`)."""
    keep = max(n - n_drop, config.min_channels, floor, 1)
    while (keep * unit) % config.round_to and keep < n:
        keep += 1
    return min(keep, n)


def _drop_counts(groups: list[ChannelGroup], scores: np.ndarray, config: PruneConfig) -> dict:
    """How many channels each group should lose before bounds: per group, or one ranking."""
    if not config.global_ranking:
        return {g.id: math.floor(config.ratio * g.size) for g in groups}
    free = [(g, np.array([c for c in g.classes.tolist() if c not in g.frozen])) for g in groups]
    pool = np.concatenate([scores[f] for _, f in free if len(f)] or [np.empty(0)])
    total = sum(g.size for g in groups if not g.fully_frozen)
    n_drop = min(math.floor(config.ratio * total), len(pool))
    if n_drop == 0:
        return {g.id: 0 for g in groups}
    threshold = np.partition(pool, n_drop - 1)[n_drop - 1]
    return {g.id: int((scores[f] <= threshold).sum()) if len(f) else 0 for g, f in free}


def _choose_free(classes: np.ndarray, frozen: dict, scores: np.ndarray, keep: int) -> np.ndarray:
    """The `keep` best of `classes`, frozen ones first."""
    forced = np.array([c in frozen for c in classes.tolist()], bool)
    order = np.lexsort((-scores[classes], ~forced))
    return classes[order[:keep]]


def _plan_blocks(group: ChannelGroup, scores, n_drop: int, config: PruneConfig) -> list:
    blocks = group.blocks or []
    in_blocks = np.concatenate(blocks)
    size = len(blocks[0])
    n_blocked = len(in_blocks)
    drop_blocked = round(n_drop * n_blocked / group.size)
    floor = max(sum(c in group.frozen for c in b.tolist()) for b in blocks)
    min_total = max(config.min_channels, 1)
    keep = max(size - drop_blocked // len(blocks), floor, math.ceil(min_total / len(blocks)), 1)
    while (keep * len(blocks)) % config.round_to and keep < size:
        keep += 1
    kept = [_choose_free(b, group.frozen, scores, min(keep, size)) for b in blocks]
    rest = np.setdiff1d(group.classes, in_blocks)
    if len(rest):
        n_rest = len(rest) - math.floor(len(rest) * n_drop / group.size)
        kept.append(_choose_free(rest, group.frozen, scores, max(n_rest, 1)))
    return kept


def plan(
    groups: list[ChannelGroup], scores: np.ndarray, n_slots: int, config: PruneConfig
) -> np.ndarray:
    """A keep flag per slot id (read at class roots)."""
    keep = np.ones(n_slots, bool)
    drops = _drop_counts(groups, scores, config)
    for group in groups:
        if group.fully_frozen or drops[group.id] == 0:
            continue
        if group.blocks:
            kept = np.concatenate(_plan_blocks(group, scores, drops[group.id], config))
        else:
            target = _kept_target(group.size, drops[group.id], len(group.frozen), config)
            kept = _choose_free(group.classes, group.frozen, scores, target)
        keep[group.classes] = False
        keep[kept] = True
    return keep


def ensure_nonempty(keep: np.ndarray, roots: np.ndarray, scores, required: list) -> None:
    """Where a required set of positions lost every channel, keep its best one again."""
    for slots in required:
        classes = roots[slots]
        if not keep[classes].any():
            keep[classes[np.argmax(scores[classes])]] = True
