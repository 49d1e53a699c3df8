"""Run the unpruned model on calibration batches and keep, for every channel reader, the
statistics data-aware scoring and the refit need: per-channel sums and sums of squares
and, for readers with a linear form, the Gram matrix of their design matrix. Batches are
streamed; of an activation, only the design rows sampled from it outlive its batch, and
only until a few hundred of them are added to the Gram matrix together."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx

from . import validate
from .analysis import Reader
from .calib import Calibration
from .graph import with_outputs
from .progress import progress

GRAM_BUDGET = 1 << 30
"""Bytes of Gram matrices accumulated in one pass; more readers take more passes."""


@dataclass
class ReaderStats:
    total: np.ndarray
    """Sum of the reader input per channel (reader position)."""
    sumsq: np.ndarray
    count: int
    """Elements summed per channel."""
    gram: np.ndarray | None = None
    """D(x)^T D(x) over the sampled rows (float64), where the reader has a linear form
    and a refit was asked for."""
    colsum: np.ndarray | None = None
    """Column sums of D(x) over the sampled rows, where the reader has a linear form."""
    rows: int = 0
    pending: list[np.ndarray] = field(default_factory=list, repr=False)
    """Sampled rows not yet in `gram` (a few larger products beat one small per batch)."""

    def flush(self) -> None:
        if self.pending:
            design = np.concatenate(self.pending)
            self.pending = []
            if self.gram is None:
                self.gram = np.zeros((design.shape[1], design.shape[1]))
            self.gram += design.T @ design

    @property
    def rms(self) -> np.ndarray:
        return np.sqrt(self.sumsq / max(self.count, 1))

    @property
    def mean(self) -> np.ndarray:
        return self.total / max(self.count, 1)


FLUSH_ROWS = 512
"""Sampled rows held back before they are added to a Gram matrix (at most half its
size for wide readers)."""

ROWS_PER_COLUMN = 16
"""Design-matrix rows sampled per column over the whole calibration set (refit rows)."""


def capture(
    model: onnx.ModelProto,
    readers: list[Reader],
    calib: Calibration,
    gram: bool,
    design: bool = True,
    seed: int = 0,
    mask: str | None = None,
) -> list[ReaderStats]:
    """Statistics for each reader (same order), from one or more passes over `calib`.

    design: also sample the readers' design matrices (column sums; Gram if `gram`),
    about ROWS_PER_COLUMN rows per column in all, spread over the batches.
    mask: a model input (an attention mask) whose zeros mark padding: a reader whose
    rows line up with its elements (one row per token) leaves those rows out."""
    stats: list[ReaderStats | None] = [None] * len(readers)
    names = [model.graph.node[r.node].input[r.input_index] for r in readers]
    for chunk in _chunks(readers, gram):
        wanted = sorted({names[k] for k in chunk})
        run = _runner(with_outputs(model, wanted), wanted)
        rng = np.random.default_rng(seed)
        batches = max(-(-calib.samples // calib.batch), 1)
        for feeds in progress(calib.batches(), "calibration", total=batches):
            outputs = run(feeds)
            keep_rows = feeds[mask].ravel() != 0 if mask else None
            for k in chunk:
                form = readers[k].form if design else None
                limit = -(-ROWS_PER_COLUMN * len(form.columns) // batches) if form else 0
                x = outputs[names[k]]
                stats[k] = _accumulate(stats[k], readers[k], form, x, gram, limit, rng, keep_rows)
        for k in chunk:
            if stats[k] is not None:
                stats[k].flush()
    return stats  # type: ignore[return-value]


def _chunks(readers: list[Reader], gram: bool) -> list[list[int]]:
    """Reader indices, in passes whose Gram matrices fit GRAM_BUDGET; no empty pass
    (onnxruntime asked for no output returns every output)."""
    if not readers:
        return []
    if not gram:
        return [list(range(len(readers)))]
    chunks: list[list[int]] = [[]]
    used = 0
    for k, r in enumerate(readers):
        size = 8 * len(r.form.columns) ** 2 if r.form is not None else 0
        if chunks[-1] and used + size > GRAM_BUDGET:
            chunks.append([])
            used = 0
        chunks[-1].append(k)
        used += size
    return chunks


def _runner(probe: onnx.ModelProto, names: list[str]):
    """feeds -> the tensors `names` by name, from one onnxruntime session for every batch
    of a pass (a session per batch costs more than the run when batches are small)."""
    session = validate.session(probe.SerializeToString(), optimize=False)
    return lambda feeds: dict(zip(names, session.run(names, feeds), strict=True))


def _accumulate(stats, reader: Reader, form, x, gram: bool, limit: int, rng, keep_rows=None):
    flat = np.moveaxis(x, reader.axis, -1).reshape(-1, x.shape[reader.axis]).astype(np.float64)
    last = reader.axis in (-1, x.ndim - 1)
    rows_match = keep_rows is not None and last and len(flat) == keep_rows.size
    if rows_match:
        flat = flat[keep_rows]
    if stats is None:
        stats = ReaderStats(np.zeros(flat.shape[1]), np.zeros(flat.shape[1]), 0)
    stats.total += flat.sum(axis=0)
    stats.sumsq += (flat**2).sum(axis=0)
    stats.count += flat.shape[0]
    if form is not None:
        design = form.design(x)
        if rows_match and len(design) == keep_rows.size:
            design = design[keep_rows]
        if len(design) > limit:
            design = design[rng.choice(len(design), limit, replace=False)]
        design = design.astype(np.float64)
        if stats.colsum is None:
            stats.colsum = np.zeros(design.shape[1])
        stats.colsum += design.sum(axis=0)
        stats.rows += len(design)
        if gram:
            stats.pending.append(design)
            if sum(len(d) for d in stats.pending) >= max(design.shape[1] // 2, FLUSH_ROWS):
                stats.flush()
    return stats
