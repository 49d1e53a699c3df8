"""Importance of every channel class, from the weight slices the handlers pointed at.

No op knowledge here: a producer is (weight array, axis, slot per position).
"""

from __future__ import annotations

import numpy as np

from .analysis import Analysis
from .errors import BadInputError
from .groups import ChannelGroup
from .progress import progress


def _accumulate(n: int, parts) -> tuple[np.ndarray, np.ndarray]:
    total = np.zeros(n, np.float64)
    count = np.zeros(n, np.float64)
    for classes, values, sizes in parts:
        np.add.at(total, classes, values)
        np.add.at(count, classes, sizes)
    return total, count


def _producer_parts(a: Analysis, roots: np.ndarray, power: int):
    index = a.index
    for p in progress(a.producers, "scoring"):
        weight = index.const(index.nodes[p.node].input[p.input_index])
        if p.view is not None:
            weight = p.view(weight)
        if not np.issubdtype(weight.dtype, np.floating) or weight.dtype.itemsize < 4:
            weight = weight.astype(np.float32)
        axis = p.axis % weight.ndim
        others = tuple(k for k in range(weight.ndim) if k != axis)
        # squares in the weight's precision, sums in float64: half the time of a cast
        # (a weight beyond 1.8e19 squares to inf in float32: it ranks first, unwarned)
        with np.errstate(over="ignore"):
            part = np.square(weight) if power == 2 else np.abs(weight)
        values = part.sum(axis=others, dtype=np.float64)
        per_channel = weight.size // max(weight.shape[axis], 1)
        yield roots[p.slots], values, np.full(len(values), per_channel, np.float64)


def _stat_parts(a: Analysis, roots: np.ndarray, kind: str):
    index = a.index
    for s in a.stats:
        if s.kind == kind:
            value = np.abs(index.const(index.nodes[s.node].input[s.input_index]).astype(np.float64))
            yield roots[s.slots], value.ravel(), np.ones(value.size)


def score(a: Analysis, roots: np.ndarray, criterion: str, stats=None) -> np.ndarray:
    """A score per slot id (meaningful at class roots): higher means more important.

    l2: root mean square of the producers' weights of the channel; l1: mean absolute
    value; bn_gamma: mean |gamma| of its BatchNormalization nodes (l2 where it has none).
    Data-aware (need `stats`, the readers' calibration statistics): activation: the
    channel's RMS where it is read, summed over readers; wanda: that RMS times the L2
    norm of the reader's weights that multiply it (structured Wanda), summed; energy:
    the centred output energy the channel contributes at its readers (needs Gram).
    """
    n = len(a.table)
    if criterion in ("activation", "wanda", "energy"):
        if stats is None:
            raise BadInputError(
                f"criterion {criterion} needs calibration statistics: give calibration data "
                "(--calib or --calib-random)"
            )
        if criterion == "energy":
            return _energy(a, roots, stats)
        return _data_aware(a, roots, criterion, stats)
    total, count = _accumulate(n, _producer_parts(a, roots, 1 if criterion == "l1" else 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        result = total / count
    if criterion != "l1":
        result = np.sqrt(result)
    if criterion == "bn_gamma":
        gamma, seen = _accumulate(n, _stat_parts(a, roots, "bn_gamma"))
        with np.errstate(invalid="ignore", divide="ignore"):
            result = np.where(seen > 0, gamma / seen, result)
    return np.nan_to_num(result, nan=0.0)


def _data_aware(a: Analysis, roots: np.ndarray, criterion: str, stats) -> np.ndarray:
    result = np.zeros(len(a.table))
    index = a.index
    for r, st in zip(a.readers, stats, strict=True):
        if st is None:
            continue
        value = st.rms
        if criterion == "wanda" and r.form is not None:
            node = index.nodes[r.node]
            wm = r.form.to_matrix(index.const(node.input[r.form.weight_input]))
            squares = np.zeros(len(value))
            np.add.at(squares, r.form.columns, (wm.astype(np.float64) ** 2).sum(axis=1))
            value = value * np.sqrt(squares)
        np.add.at(result, roots[r.slots], value)
    return result


def _energy(a: Analysis, roots: np.ndarray, stats) -> np.ndarray:
    """Centred output energy of each channel at its readers: trace(W_S^T Cov_SS W_S)
    over the reader's columns S of the channel (what removing it takes away from the
    reader's output variance; the mean is restored by the refit's bias)."""
    result = np.zeros(len(roots))
    index = a.index
    for r, st in zip(a.readers, stats, strict=True):
        if st is None or r.form is None or st.gram is None or not st.rows:
            continue
        wm = r.form.to_matrix(index.const(index.nodes[r.node].input[r.form.weight_input]))
        wm = wm.astype(np.float64)
        mu = st.colsum / st.rows
        product = (wm @ wm.T) * (st.gram / st.rows - np.outer(mu, mu))
        labels, inverse = np.unique(roots[r.slots[r.form.columns]], return_inverse=True)
        by_class = np.zeros((len(labels), product.shape[1]))
        np.add.at(by_class, inverse, product)
        energy = np.zeros(len(labels))
        np.add.at(energy, inverse, by_class[inverse, np.arange(product.shape[1])])
        result[labels] += np.maximum(energy, 0.0)
    return result


def normalise(scores: np.ndarray, groups: list[ChannelGroup]) -> np.ndarray:
    """Divide each group's scores by their mean, so groups can be ranked together."""
    out = scores.copy()
    for group in groups:
        mean = scores[group.classes].mean() if group.size else 0.0
        if mean > 0:
            out[group.classes] = scores[group.classes] / mean
    return out
