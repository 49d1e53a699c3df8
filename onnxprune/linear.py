"""Linear forms: a reader node seen as y = D(x) @ Wm + bias, where D(x) has one column
per (input channel, kernel offset). Handlers attach one to the channels a Conv, Gemm or
MatMul reads; calibration statistics, data-aware scores and the least-squares refit use
it without knowing which op it came from."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass
class LinearForm:
    weight_input: int
    """Which input of the node holds the constant weight W."""
    columns: np.ndarray
    """The reader position (input channel) of each column of D(x) and row of Wm."""
    design: Callable[[np.ndarray], np.ndarray]
    """A batch of the node's input -> D(x), rows x columns."""
    to_matrix: Callable[[np.ndarray], np.ndarray]
    """W -> Wm, columns x outputs."""
    from_matrix: Callable[[np.ndarray, np.ndarray], np.ndarray]
    """(Wm, original W) -> W."""
    bias_input: int | None = None
    """The input where the node takes a bias (present or not); None: it takes none, and a
    bias is an Add after it."""
    bias_scale: float = 1.0
    """Gemm's beta: the bias input is added as beta * C."""


def matmul_form(weight_input: int, k: int) -> LinearForm:
    """x [..., K] @ W [K, N]."""
    return LinearForm(
        weight_input,
        np.arange(k),
        design=lambda x: x.reshape(-1, k),
        to_matrix=lambda w: w,
        from_matrix=lambda m, w: m.astype(w.dtype),
    )


def gemm_form(k: int, trans_a: bool, trans_b: bool, alpha: float, beta: float) -> LinearForm:
    """alpha * A' @ B' + beta * C, with A' = A or A.T and B' = B or B.T."""
    return LinearForm(
        1,
        np.arange(k),
        design=(lambda x: x.T) if trans_a else (lambda x: x),
        to_matrix=lambda w: alpha * (w.T if trans_b else w),
        from_matrix=lambda m, w: ((m.T if trans_b else m) / alpha).astype(w.dtype),
        bias_input=2,
        bias_scale=beta,
    )


def conv_form(weight: np.ndarray, attrs: dict) -> LinearForm | None:
    """A 2-D Conv with group 1: D(x) is im2col of the (padded) input."""
    if weight.ndim != 4:
        return None
    m, c, kh, kw = weight.shape
    strides = attrs.get("strides") or [1, 1]
    dilations = attrs.get("dilations") or [1, 1]
    pads = attrs.get("pads") or [0, 0, 0, 0]
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad not in ("NOTSET", "VALID") and auto_pad:
        return None  # SAME_*: pads depend on the input size; not refitted

    def design(x: np.ndarray) -> np.ndarray:
        return im2col(x, (kh, kw), strides, dilations, pads if auto_pad != "VALID" else [0] * 4)

    return LinearForm(
        1,
        np.repeat(np.arange(c), kh * kw),
        design=design,
        to_matrix=lambda w: w.reshape(m, -1).T,
        from_matrix=lambda mat, w: mat.T.reshape(w.shape).astype(w.dtype),
        bias_input=2,
    )


def im2col(x: np.ndarray, kernel, strides, dilations, pads) -> np.ndarray:
    """[N, C, H, W] -> [N * OH * OW, C * kh * kw], columns ordered (c, kh, kw)."""
    kh, kw = kernel
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    span_h, span_w = (kh - 1) * dilations[0] + 1, (kw - 1) * dilations[1] + 1
    windows = np.lib.stride_tricks.sliding_window_view(xp, (span_h, span_w), axis=(2, 3))
    windows = windows[:, :, :: strides[0], :: strides[1], :: dilations[0], :: dilations[1]]
    n, c, oh, ow = windows.shape[:4]
    return windows.transpose(0, 2, 3, 1, 4, 5).reshape(n * oh * ow, c * kh * kw)
