"""The energy criterion and the calibration padding mask."""

from __future__ import annotations

import numpy as np
import onnx

from onnxprune import BadInputError, PruneConfig, make_plan, prune
from onnxprune.pipeline import calibration

from .helpers import SAMPLES


def _bert():
    return onnx.load(SAMPLES / "bert_tiny.onnx")


def _calib(model, samples=24, seq=10, pad_from=6):
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 100, size=(samples, seq)).astype(np.int64)
    mask = np.ones((samples, seq), np.int64)
    mask[:, pad_from:] = 0
    ids[:, pad_from:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def test_energy_ranks_by_data_not_weight_norms():
    model = _bert()
    data = _calib(model)
    energy = PruneConfig(ratio=0.5, criterion="energy", calib=data, reconstruct="none")
    l2 = PruneConfig(ratio=0.5, calib=data, reconstruct="none")
    keep_energy = make_plan(model, energy, calibration(model, energy)).keep_slot
    keep_l2 = make_plan(model, l2, calibration(model, l2)).keep_slot
    assert keep_energy.sum() == keep_l2.sum()
    assert not np.array_equal(keep_energy, keep_l2)
    _, report = prune(model, energy)
    _, plain = prune(model, l2)
    assert report.calib_rel_error < plain.calib_rel_error


def test_mask_leaves_padding_rows_out_of_the_statistics():
    model = _bert()
    data = _calib(model)
    masked = PruneConfig(ratio=0.5, calib=data, calib_mask="attention_mask", criterion="activation")
    plain = PruneConfig(ratio=0.5, calib=data, criterion="activation")
    with_mask = make_plan(model, masked, calibration(model, masked)).stats
    without = make_plan(model, plain, calibration(model, plain)).stats
    token_rows = [(a.count, b.count) for a, b in zip(with_mask, without, strict=True)]
    # every reader here sees one row per token: 6 real of 10 per sentence
    assert all(a * 10 == b * 6 for a, b in token_rows)


def test_mask_must_name_an_input():
    model = _bert()
    config = PruneConfig(ratio=0.5, calib=_calib(model), calib_mask="no_such_input")
    try:
        prune(model, config)
    except BadInputError as exc:
        assert "--calib-mask no_such_input" in str(exc)
    else:
        raise AssertionError("expected a BadInputError")
