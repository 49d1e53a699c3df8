"""Refit the readers of removed channels so their outputs stay close to the original's
on the calibration data.

Each reader with a linear form computes y = D(x) @ Wm + b. With K the columns that
survive and mu, C the column means and covariance of D(x) on the (unpruned) model's
calibration data:

- bias compensation (FLAP-style): b' = b + mu_removed @ Wm_removed, Wm unchanged;
- least-squares refit: Wm'_K = (C_KK + lam I)^-1 (C_K: @ Wm + lam Wm_K), a ridge fit
  toward the original weights, and b' = b + mu @ Wm - mu_K @ Wm'_K, solved in float64.

The refit writes full-size weights before the plan slices them, so apply stays as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .activations import ReaderStats
from .analysis import Analysis, Reader
from .graph import constant_node_value, node_label
from .modelio import tensor_array

REFIT_ROWS_PER_COLUMN = 2
"""An unregularised least-squares refit needs this many sampled rows per kept column."""
RIDGE_ROWS_PER_COLUMN = 0.25
MIN_REFIT_ROWS = 16
"""With a ridge term the fit is well posed with fewer rows; below these it is noise."""


@dataclass
class RefitNote:
    node: str
    method: str
    """"lsq", "bias" or "none"."""
    why: str = ""


def ensure_biases(model: onnx.ModelProto, readers: list[Reader]) -> None:
    """Give every reader with a linear form a bias to adjust, in place: an added zero
    bias input, or an Add of zeros after a node that takes none."""
    out = model
    graph = out.graph
    nodes = list(graph.node)
    inserted: dict[int, onnx.NodeProto] = {}
    taken = {t.name for t in graph.initializer} | {o for n in nodes for o in n.output}
    for r in readers:
        form = r.form
        node = nodes[r.node]
        if form is None or _bias_name(out, nodes, r) is not None:
            continue
        width = form.to_matrix(_const(out, node.input[form.weight_input])).shape[1]
        name = _fresh(taken, f"{node_label(node, r.node)}.bias")
        graph.initializer.append(numpy_helper.from_array(np.zeros(width, np.float32), name))
        if form.bias_input is not None:
            while len(node.input) < form.bias_input:
                node.input.append("")
            node.input.append(name)
        else:
            raw = _fresh(taken, f"{node.output[0]}.unbiased")
            inserted[r.node] = helper.make_node("Add", [raw, name], [node.output[0]])
            node.output[0] = raw
    del graph.node[:]
    for k, node in enumerate(nodes):
        graph.node.append(node)
        if k in inserted:
            graph.node.append(inserted[k])


def refit(a: Analysis, stats: list[ReaderStats], keep_slot: np.ndarray, method: str, ridge: float):
    """Rewrite reader weights and biases in `a.index` (full size); one note per reader."""
    notes = []
    for r, st in zip(a.readers, stats, strict=True):
        kept = keep_slot[r.slots]
        if r.form is None or kept.all():
            continue
        notes.append(_refit_one(a, r, st, kept, method, ridge))
    return notes


def _refit_one(a: Analysis, r: Reader, st: ReaderStats, kept, method: str, ridge: float):
    index = a.index
    node = index.nodes[r.node]
    label = node_label(node, r.node)
    form = r.form
    weight = node.input[form.weight_input]
    bias = _bias_name(index.model, index.nodes, r)
    if bias is None or st is None or st.colsum is None or st.rows == 0:
        return RefitNote(label, "none", "no bias or no calibration statistics")
    shared = [n for n in (weight, bias) if len(index.consumers.get(n, [])) != 1]
    if shared or not index.is_stored(weight) or not index.is_stored(bias):
        return RefitNote(label, "none", "its weight or bias is shared with other nodes")
    w = index.const(weight)
    wm = form.to_matrix(w).astype(np.float64)
    if index.const(bias).size != wm.shape[1]:
        return RefitNote(label, "none", "its bias is not one value per output")
    keep = kept[form.columns]
    mu = st.colsum / st.rows
    per_column = RIDGE_ROWS_PER_COLUMN if ridge > 0 else REFIT_ROWS_PER_COLUMN
    enough = st.rows >= max(per_column * int(keep.sum()), MIN_REFIT_ROWS)
    if method == "lsq" and st.gram is not None and enough:
        cov = st.gram / st.rows - np.outer(mu, mu)
        ckk = cov[np.ix_(keep, keep)]
        lam = ridge * max(float(np.trace(ckk)) / max(int(keep.sum()), 1), 1e-12)
        rhs = cov[keep] @ wm + lam * wm[keep]
        fitted = _solve(ckk, rhs, lam)
        new = wm.copy()
        new[keep] = fitted
        delta = mu @ wm - mu[keep] @ fitted
        index.set_const(weight, form.from_matrix(new, w))
        note = RefitNote(label, "lsq")
    else:
        delta = mu[~keep] @ wm[~keep]
        why = (
            ""
            if method == "bias"
            else (
                f"{st.rows} sampled rows for {int(keep.sum())} kept inputs: too few for a "
                "least-squares fit, bias compensation instead"
            )
        )
        note = RefitNote(label, "bias", why)
    b = index.const(bias)
    index.set_const(bias, (b + delta.reshape(b.shape) / form.bias_scale).astype(b.dtype))
    return note


def _solve(ckk: np.ndarray, rhs: np.ndarray, lam: float) -> np.ndarray:
    """(ckk + lam I)^-1 rhs; without a ridge, the least-norm least-squares solution (kept
    inputs may be constant or linearly dependent on the calibration data)."""
    if lam > 0:
        return np.linalg.solve(ckk + lam * np.eye(len(ckk)), rhs)
    return np.linalg.lstsq(ckk, rhs, rcond=None)[0]


def _bias_name(model: onnx.ModelProto, nodes, r: Reader) -> str | None:
    """The constant holding the reader's bias: its bias input, or the constant operand
    of the single Add that follows it, of one entry per output."""
    node = nodes[r.node]
    form = r.form
    if form.bias_input is not None:
        present = len(node.input) > form.bias_input and node.input[form.bias_input]
        return node.input[form.bias_input] if present else None
    users = [n for n in nodes if node.output[0] in n.input]
    if len(users) != 1 or users[0].op_type != "Add" or users[0].domain not in ("", "ai.onnx"):
        return None
    width = form.to_matrix(_const(model, node.input[form.weight_input])).shape[1]
    for name in users[0].input:
        value = _const(model, name) if name != node.output[0] else None
        if value is not None and value.size == width and value.shape[-1] == width:
            return name
    return None


def _const(model: onnx.ModelProto, name: str) -> np.ndarray | None:
    """A constant of a model that has no GraphIndex yet (ensure_biases runs before one)."""
    for t in model.graph.initializer:
        if t.name == name:
            return tensor_array(t)
    for n in model.graph.node:
        if n.op_type == "Constant" and n.output[0] == name:
            return constant_node_value(n)
    return None


def _fresh(taken: set, base: str) -> str:
    name, k = base, 1
    while name in taken:
        name, k = f"{base}{k}", k + 1
    taken.add(name)
    return name
