"""Channel slots and the union-find that couples them.

Every channel a producer weight creates is a *slot* (an integer id). A tensor's channel
axis is an array of slot ids, one per position; Concat concatenates such arrays, Split
and Slice cut them, Flatten repeats each slot over the H*W features it becomes.
Positions that must be kept or removed together (a residual Add, a shared bias) have
their slots united; a union-find class of slots is one prunable channel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Space:
    """A block of slots created together: one producer weight axis, or a placeholder."""

    first: int
    size: int
    label: str


class SlotTable:
    """Union-find over slot ids, with a frozen reason per class."""

    def __init__(self) -> None:
        self._parent: list[int] = []
        self._frozen: dict[int, str] = {}
        self.spaces: list[Space] = []

    def __len__(self) -> int:
        return len(self._parent)

    def new(self, size: int, label: str) -> np.ndarray:
        first = len(self._parent)
        self._parent.extend(range(first, first + size))
        self.spaces.append(Space(first, size, label))
        return np.arange(first, first + size, dtype=np.int64)

    def _find(self, x: int) -> int:
        parent = self._parent
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    def find(self, slots: np.ndarray) -> np.ndarray:
        """The class (root slot) of every position."""
        find = self._find
        return np.fromiter((find(int(s)) for s in slots.ravel()), np.int64, slots.size).reshape(
            slots.shape
        )

    def union(self, a: np.ndarray, b: np.ndarray) -> None:
        """Couple position i of `a` with position i of `b`, for every i."""
        for x, y in zip(a.tolist(), b.tolist(), strict=True):
            rx, ry = self._find(x), self._find(y)
            if rx == ry:
                continue
            if ry < rx:
                rx, ry = ry, rx
            self._parent[ry] = rx
            reason = self._frozen.pop(ry, None)
            if reason is not None:
                self._frozen.setdefault(rx, reason)

    def freeze(self, slots: np.ndarray, reason: str) -> None:
        for root in set(self.find(slots).tolist()):
            self._frozen.setdefault(root, reason)

    def frozen_reason(self, root: int) -> str | None:
        return self._frozen.get(root)
