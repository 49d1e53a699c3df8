"""Channel groups: the classes of coupled slots, gathered by the producers they share.

A group is what a ratio applies to: the channels of one producer weight axis, plus
every other producer's channels that are coupled to them (a residual stream).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .analysis import Analysis
from .graph import node_label
from .slots import SlotTable


@dataclass
class ChannelGroup:
    """Prunable channels (`classes`, one root slot each) that share one ratio."""

    id: int
    classes: np.ndarray
    frozen: dict[int, str] = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)
    blocks: list[np.ndarray] | None = None
    """Classes per block where every block must keep the same count (grouped Conv)."""
    kind: str = "channels"
    """"channels", or "heads" when the units are whole attention heads."""
    approximate: list[str] = field(default_factory=list)
    """Why removing these channels is not exact, where it is not."""
    required: list[np.ndarray] = field(default_factory=list)
    """Sets of classes of which at least one must be kept (a weight's channels, a Split
    output): a tensor with no channel left is not a tensor onnxruntime can run."""
    names: list[str] = field(default_factory=list)
    """Names of the producer nodes that create these channels and of their constant
    inputs (what a name-glob ratio matches)."""

    @property
    def size(self) -> int:
        return len(self.classes)

    @property
    def fully_frozen(self) -> bool:
        return len(self.frozen) == self.size

    def frozen_reasons(self) -> list[str]:
        return sorted(set(self.frozen.values()))


def build_groups(a: Analysis) -> tuple[list[ChannelGroup], np.ndarray]:
    """The groups, and the class (root slot) of every slot."""
    table = a.table
    roots = table.find(np.arange(len(table), dtype=np.int64))
    linked = SlotTable()
    linked.new(len(table), "all")
    linked.union(np.arange(len(table)), roots)
    for space in table.spaces:
        ids = np.arange(space.first, space.first + space.size)
        linked.union(ids[:-1], ids[1:])
    for constraint in a.constraints:  # equal-count blocks are planned together
        ids = np.concatenate(constraint.blocks)
        linked.union(ids[:-1], ids[1:])
    group_of = linked.find(roots)
    groups: dict[int, ChannelGroup] = {}
    for space in table.spaces:
        gid = int(group_of[space.first])
        if gid not in groups:
            groups[gid] = ChannelGroup(len(groups), np.empty(0, np.int64))
        groups[gid].labels.append(space.label)
    classes = np.unique(roots)
    for gid, members in _split_by(classes, group_of[classes]).items():
        group = groups[gid]
        group.classes = members
        for c in members.tolist():
            reason = table.frozen_reason(c)
            if reason is not None:
                group.frozen[c] = reason
    result = list(groups.values())
    for slots in a.heads:
        groups[int(group_of[roots[slots[0]]])].kind = "heads"
    for slots, why in a.approximate:
        group = groups[int(group_of[roots[slots[0]]])]
        if why not in group.approximate:
            group.approximate.append(why)
    _attach_blocks(a, roots, group_of, groups)
    _attach_required(a, roots, group_of, groups)
    _attach_names(a, roots, group_of, groups)
    return result, roots


def _split_by(values: np.ndarray, keys: np.ndarray) -> dict[int, np.ndarray]:
    order = np.argsort(keys, kind="stable")
    keys, values = keys[order], values[order]
    cuts = np.flatnonzero(np.diff(keys)) + 1
    return {int(k[0]): v for k, v in zip(np.split(keys, cuts), np.split(values, cuts), strict=True)}


def _attach_blocks(a: Analysis, roots, group_of, groups: dict[int, ChannelGroup]) -> None:
    """Give each group its equal-count blocks; freeze a group whose blocks conflict."""
    for constraint in a.constraints:
        if _always_equal([roots[b] for b in constraint.blocks]):
            continue  # every class spans the blocks alike (fused QKV split into heads)
        blocks = [np.unique(roots[b]) for b in constraint.blocks]
        group = groups[int(group_of[blocks[0][0]])]
        flat = np.concatenate(blocks)
        disjoint = len(np.unique(flat)) == len(flat) and all(
            len(b) == len(blk) for b, blk in zip(blocks, constraint.blocks, strict=True)
        )
        same = group.blocks is None or _same_partition(group.blocks, blocks)
        if disjoint and same:
            group.blocks = blocks
            continue
        why = f"{constraint.why}: block structure conflicts with another constraint"
        for c in group.classes.tolist():
            group.frozen.setdefault(c, why)


def _always_equal(blocks: list[np.ndarray]) -> bool:
    """Whether each block holds the same classes the same number of times, so any plan
    keeps equal counts in every block."""
    first = np.unique(blocks[0], return_counts=True)
    for block in blocks[1:]:
        other = np.unique(block, return_counts=True)
        if not (np.array_equal(first[0], other[0]) and np.array_equal(first[1], other[1])):
            return False
    return True


def _attach_required(a: Analysis, roots, group_of, groups: dict[int, ChannelGroup]) -> None:
    """Give each group the sets (within it) that must keep at least one channel."""
    spaces = [np.arange(s.first, s.first + s.size) for s in a.table.spaces]
    for slots in spaces + list(a.nonempty):
        classes = np.unique(roots[slots])
        owners = np.unique(group_of[classes])
        if len(classes) and len(owners) == 1:
            groups[int(owners[0])].required.append(classes)


def _attach_names(a: Analysis, roots, group_of, groups: dict[int, ChannelGroup]) -> None:
    """Give each group the names of its producer nodes and of their constant inputs."""
    index = a.index
    for producer in a.producers:
        if not len(producer.slots):
            continue
        group = groups[int(group_of[roots[producer.slots[0]]])]
        node = index.nodes[producer.node]
        consts = [n for n in node.input if n and index.is_const(n)]
        for name in [node_label(node, producer.node), *consts]:
            if name not in group.names:
                group.names.append(name)


def _same_partition(x: list[np.ndarray], y: list[np.ndarray]) -> bool:
    return sorted(tuple(b.tolist()) for b in x) == sorted(tuple(np.sort(b).tolist()) for b in y)
