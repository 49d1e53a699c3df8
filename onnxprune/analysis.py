"""Build channel groups from what the op handlers state about each node.

The walk visits nodes in graph order. A handler sees the channel layouts of its inputs
(for each axis that carries prunable channels, the slot id at every position) and
states the layouts of its outputs, the constant inputs to slice, the weights that create
new channels, and the channels it cannot follow (frozen, with a reason).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx

from .checks import check_order
from .config import PruneConfig
from .graph import GraphIndex, node_label
from .linear import LinearForm
from .ops._registry import lookup
from .slots import SlotTable

Layout = dict[int, np.ndarray]
Kept = Callable[[np.ndarray], np.ndarray]
"""Maps an array of slots to a boolean array: which positions are kept."""
ConstTransform = Callable[[np.ndarray, Kept], np.ndarray]
NodeTransform = Callable[[onnx.NodeProto, Kept], None]


@dataclass
class Producer:
    """A constant weight axis whose positions are new channels (scored by their norm)."""

    node: int
    input_index: int
    axis: int
    slots: np.ndarray
    view: Callable[[np.ndarray], np.ndarray] | None = None
    """Maps the weight to an array whose `axis` lines up with `slots`, where it does not."""


@dataclass
class Reader:
    """A node that consumes the channels of a tensor along an axis (a Conv's input)."""

    node: int
    input_index: int
    axis: int
    slots: np.ndarray
    form: LinearForm | None = None
    """How the node computes from these channels, where it is linear in them."""
    rank: int | None = None
    """Rank of the input read, where known (the oracle's mask needs it even when shape
    inference lost the tensor: Gemm's input is 2-D, Conv's has the weight's rank)."""


@dataclass
class ChannelStat:
    """A per-channel constant other criteria may score (BatchNormalization gamma)."""

    kind: str
    node: int
    input_index: int
    slots: np.ndarray


@dataclass
class EqualBlocks:
    """The kept count must be equal in every block (grouped Conv, equal Split)."""

    blocks: list[np.ndarray]
    why: str


@dataclass
class Analysis:
    index: GraphIndex
    table: SlotTable = field(default_factory=SlotTable)
    layouts: dict[str, Layout] = field(default_factory=dict)
    producers: list[Producer] = field(default_factory=list)
    readers: list[Reader] = field(default_factory=list)
    stats: list[ChannelStat] = field(default_factory=list)
    const_edits: dict[tuple[int, int], list[ConstTransform]] = field(default_factory=dict)
    node_edits: dict[int, list[NodeTransform]] = field(default_factory=dict)
    constraints: list[EqualBlocks] = field(default_factory=list)
    nonempty: list[np.ndarray] = field(default_factory=list)
    node_slots: dict[int, list[np.ndarray]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    config: PruneConfig = field(default_factory=PruneConfig)
    heads: list[np.ndarray] = field(default_factory=list)
    """Slots of channels that are whole attention heads (pruned at the head ratio)."""
    approximate: list[tuple[np.ndarray, str]] = field(default_factory=list)
    """Channels whose removal is not exact (normalisation statistics change), and why."""


class NodeContext:
    """What a handler may ask about one node and state about its channels."""

    def __init__(self, analysis: Analysis, index: int, node: onnx.NodeProto) -> None:
        self._a = analysis
        self.graph = analysis.index
        self.index = index
        self.node = node
        self.label = node_label(node, index)
        self.opset = analysis.index.opset(node.domain)

    # -- what the handler reads -------------------------------------------------------
    @property
    def options(self) -> PruneConfig:
        """The run's configuration (prune_heads, prune_hidden, ...)."""
        return self._a.config

    @property
    def op_type(self) -> str:
        return self.node.op_type

    @property
    def n_inputs(self) -> int:
        return len(self.node.input)

    def has_input(self, i: int) -> bool:
        return i < len(self.node.input) and bool(self.node.input[i])

    def layout(self, i: int) -> Layout:
        """Prunable channel axes of input i: {axis: slot per position}."""
        if not self.has_input(i):
            return {}
        return self._a.layouts.get(self.node.input[i], {})

    def layout_of(self, name: str) -> Layout:
        """Prunable channel axes of any tensor seen so far (as `layout` for an input)."""
        return self._a.layouts.get(name, {})

    def const(self, i: int) -> np.ndarray | None:
        return self.graph.const(self.node.input[i]) if self.has_input(i) else None

    def shape(self, i: int) -> list[int | None] | None:
        return self.graph.shape(self.node.input[i]) if self.has_input(i) else None

    def rank(self, i: int) -> int | None:
        shape = self.shape(i)
        if shape is None and self.layout(i):
            return None
        return None if shape is None else len(shape)

    def out_shape(self, j: int = 0) -> list[int | None] | None:
        return self.graph.shape(self.node.output[j]) if j < len(self.node.output) else None

    def attr(self, name: str, default=None):
        for a in self.node.attribute:
            if a.name == name:
                return onnx.helper.get_attribute_value(a)
        return default

    def output_used(self, j: int) -> bool:
        if j >= len(self.node.output) or not self.node.output[j]:
            return False
        name = self.node.output[j]
        return bool(self.graph.consumers.get(name)) or name in self.graph.graph_outputs

    # -- what the handler states ------------------------------------------------------
    def refine_output_shape(self, j: int, dims: list) -> None:
        """Record output j's shape where shape inference could not tell it."""
        self.graph.shapes[self.node.output[j]] = list(dims)

    def set_output(self, j: int, layout: Layout) -> None:
        if j < len(self.node.output) and self.node.output[j] and layout:
            self._a.layouts[self.node.output[j]] = dict(layout)
            self._a.node_slots.setdefault(self.index, []).extend(layout.values())

    def new_channels(self, i: int, axis: int, label: str | None = None) -> np.ndarray:
        """Constant input i's `axis` creates new channels; slice it by them; return slots.

        Two nodes sharing one weight share its channels.
        """
        name = self.node.input[i]
        key = f"{name}@{axis}"
        slots = self._a.layouts.get(key, {}).get(axis)
        if slots is None:
            size = self.const(i).shape[axis]
            slots = self._a.table.new(size, label or f"{self.label} ({self.op_type})")
            self._a.layouts[key] = {axis: slots}
        self._a.producers.append(Producer(self.index, i, axis, slots))
        self.slice_input(i, axis, slots)
        return slots

    def new_slots(self, i: int, size: int, axis: int, view=None) -> np.ndarray:
        """New channels scored on constant input i (through `view`), sliced by the caller."""
        slots = self._a.table.new(size, f"{self.label} ({self.op_type})")
        self._a.producers.append(Producer(self.index, i, axis, slots, view))
        return slots

    def placeholder(self, size: int, reason: str) -> np.ndarray:
        """Frozen slots for positions that come from something that cannot be pruned."""
        slots = self._a.table.new(size, f"{self.label} (not prunable)")
        self._a.table.freeze(slots, f"{self._where()}: {reason}")
        return slots

    def slice_input(self, i: int, axis: int, slots: np.ndarray) -> None:
        """Constant input i loses the positions of `axis` whose slots are removed."""

        def take(value: np.ndarray, kept: Kept) -> np.ndarray:
            return np.compress(kept(slots), value, axis=axis)

        self.transform_input(i, take)
        self._a.node_slots.setdefault(self.index, []).append(slots)

    def transform_input(self, i: int, fn: ConstTransform) -> None:
        """Constant input i is rewritten by fn(value, kept) after planning."""
        self._a.const_edits.setdefault((self.index, i), []).append(fn)

    def transform_use(self, node_index: int, i: int, fn: ConstTransform) -> None:
        """Like transform_input, for a constant read by another node (a shape literal
        inside a Shape -> Concat chain that feeds this node)."""
        self._a.const_edits.setdefault((node_index, i), []).append(fn)

    def coarsen(self, grid: np.ndarray, axis: int) -> np.ndarray:
        """Unite the slots of each index along `axis` of `grid` (every other axis folds
        into it); return one slot per index. Used to make each attention head one unit."""
        moved = np.moveaxis(grid, axis, 0).reshape(grid.shape[axis], -1)
        for column in range(1, moved.shape[1]):
            self.union(moved[:, 0], moved[:, column])
        self._a.heads.append(moved[:, 0])
        return moved[:, 0].copy()

    def new_heads(self, count: int) -> np.ndarray:
        """`count` new units, each a whole attention head (for fused attention ops)."""
        slots = self._a.table.new(count, f"{self.label} ({self.op_type} heads)")
        self._a.heads.append(slots)
        return slots

    def score_by(self, i: int, axis: int, slots: np.ndarray) -> None:
        """Score these (existing) channels by constant input i's slices along `axis`."""
        self._a.producers.append(Producer(self.index, i, axis, slots))

    def approximate(self, slots: np.ndarray, why: str) -> None:
        """Removing these channels changes results beyond masking (statistics change)."""
        self._a.approximate.append((slots, f"{self._where()}: {why}"))

    def transform_node(self, fn: NodeTransform) -> None:
        """The node (attributes) is rewritten by fn(node, kept) after planning."""
        self._a.node_edits.setdefault(self.index, []).append(fn)

    def read(
        self,
        i: int,
        axis: int,
        slots: np.ndarray,
        form: LinearForm | None = None,
        rank: int | None = None,
    ) -> None:
        """This node consumes input i's channels along `axis` (masked in the oracle);
        `form` says how its output is linear in them (for data-aware scores and refits);
        `rank`: input i's rank where the op fixes it and inference may not know it."""
        rank = self.rank(i) if rank is None else rank
        self._a.readers.append(Reader(self.index, i, axis, slots, form, rank))
        self._a.node_slots.setdefault(self.index, []).append(slots)

    def stat(self, kind: str, i: int, slots: np.ndarray) -> None:
        self._a.stats.append(ChannelStat(kind, self.index, i, slots))

    def classes(self, slots: np.ndarray) -> np.ndarray:
        """The class (union-find root) of each slot: equal classes are one channel."""
        return self._a.table.find(slots)

    def union(self, a: np.ndarray, b: np.ndarray) -> None:
        self._a.table.union(a, b)

    def equal_blocks(self, blocks: list[np.ndarray], why: str) -> None:
        self._a.constraints.append(EqualBlocks(blocks, f"{self._where()}: {why}"))

    def nonempty(self, slots: np.ndarray) -> None:
        """At least one of these positions must be kept (a Split or Slice output)."""
        self._a.nonempty.append(slots)

    def freeze(self, slots: np.ndarray, reason: str) -> None:
        self._a.table.freeze(slots, f"{self._where()}: {reason}")

    def freeze_input(self, i: int, reason: str) -> None:
        for slots in self.layout(i).values():
            self.freeze(slots, reason)

    def barrier(self, reason: str) -> None:
        """Freeze every channel of every input; outputs carry no prunable channels."""
        for i in range(self.n_inputs):
            self.freeze_input(i, reason)

    def _where(self) -> str:
        return f"{self.op_type} '{self.label}'"


def analyze_graph(index: GraphIndex, config: PruneConfig | None = None) -> Analysis:
    """Walk the graph once and return every coupling the handlers stated."""
    check_order(index.model.graph)
    config = config or PruneConfig()
    a = Analysis(index, config=config)
    for i, node in index.iter_nodes():
        ctx = NodeContext(a, i, node)
        handler = lookup(node.domain, node.op_type, ctx.opset)
        if handler is None:
            domain = f"{node.domain}::" if node.domain not in ("", "ai.onnx") else ""
            ctx.barrier(f"no handler for {domain}{node.op_type} (opset {ctx.opset})")
        else:
            handler(ctx)
    _freeze_boundaries(a)
    _freeze_excluded(a, config.exclude)
    return a


def _freeze_boundaries(a: Analysis) -> None:
    for name in a.index.graph_outputs:
        for slots in a.layouts.get(name, {}).values():
            a.table.freeze(slots, f"reaches graph output '{name}'")
    for name in a.index.subgraph_reads:
        for slots in a.layouts.get(name, {}).values():
            a.table.freeze(slots, f"'{name}' is read inside a subgraph (If/Loop/Scan)")


def _freeze_excluded(a: Analysis, patterns: list[str]) -> None:
    """Freeze every channel a node touches when its name or a constant it reads matches."""
    index = a.index
    for pattern in patterns:
        hit = False
        for i, node in index.iter_nodes():
            consts = [n for n in node.input if n and index.is_const(n)]
            names = [node.name, *consts]
            if any(fnmatch.fnmatchcase(name, pattern) for name in names if name):
                hit = True
                for slots in a.node_slots.get(i, []):
                    a.table.freeze(slots, f"excluded by --exclude {pattern!r}")
        if not hit:
            a.warnings.append(f"--exclude {pattern!r} matches no node or initializer name")
