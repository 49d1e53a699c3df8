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


_LOCAL_STEPS = 8
"""Steps up the tree a find takes for its own slots before compressing the whole table."""


class SlotTable:
    """Union-find over slot ids, with a frozen reason per class. Finds and unions work
    on whole arrays at once (pointer jumping), so coupling two tensors of thousands of
    channels costs a few numpy passes, not a Python loop per channel."""

    def __init__(self) -> None:
        self._parent = np.zeros(64, np.int64)
        self._size = 0
        self._frozen: dict[int, str] = {}
        self.spaces: list[Space] = []

    def __len__(self) -> int:
        return self._size

    def new(self, size: int, label: str) -> np.ndarray:
        first = self._size
        if first + size > len(self._parent):
            grown = np.zeros(max(2 * len(self._parent), first + size), np.int64)
            grown[:first] = self._parent[:first]
            self._parent = grown
        slots = np.arange(first, first + size, dtype=np.int64)
        self._parent[first : first + size] = slots
        self._size += size
        self.spaces.append(Space(first, size, label))
        return slots

    def find(self, slots: np.ndarray) -> np.ndarray:
        """The class (root slot) of every position."""
        slots = np.asarray(slots, np.int64)
        parent = self._parent
        roots = parent[slots]
        for _ in range(_LOCAL_STEPS):
            up = parent[roots]
            if np.array_equal(up, roots):
                parent[slots] = roots  # path compression
                return roots
            roots = up
        self._compress()
        return self._parent[slots]

    def _compress(self) -> None:
        """Point every slot at its root: pointer doubling over the whole table, so a
        chain of length d costs log2(d) passes."""
        live = self._parent[: self._size]
        while True:
            up = live[live]
            if np.array_equal(up, live):
                return
            live[:] = up

    def union(self, a: np.ndarray, b: np.ndarray) -> None:
        """Couple position i of `a` with position i of `b`, for every i."""
        a = np.asarray(a, np.int64).ravel()
        b = np.asarray(b, np.int64).ravel()
        if a.shape != b.shape:
            raise ValueError(f"union of {a.size} and {b.size} positions")
        linked = []
        while True:
            ra, rb = self.find(a), self.find(b)
            differ = ra != rb
            if not differ.any():
                break
            low = np.minimum(ra[differ], rb[differ])
            high = np.maximum(ra[differ], rb[differ])
            np.minimum.at(self._parent, high, low)  # the smaller id stays the root
            linked.append(high)
        if linked and self._frozen:
            for old in np.unique(np.concatenate(linked)).tolist():
                reason = self._frozen.pop(old, None)
                if reason is not None:
                    self._frozen.setdefault(int(self.find(np.array([old]))[0]), reason)

    def freeze(self, slots: np.ndarray, reason: str) -> None:
        for root in np.unique(self.find(np.asarray(slots).ravel())).tolist():
            self._frozen.setdefault(root, reason)

    def frozen_reason(self, root: int) -> str | None:
        return self._frozen.get(root)
