"""Calibration data, data-aware criteria and the refit of the readers of removed channels.

Bad calibration input is a one-line BadInputError (exit 2) naming the input and the
shape it must have; the refit never makes the calibration-set error worse than none;
where removed channels are exact multiples of kept ones the least-squares refit gives
back the original function on fresh inputs; with too few samples it falls back to bias
compensation and says so; data-aware criteria see what weight norms cannot.
"""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import onnx
import pytest

from onnxprune import PruneConfig, prune
from onnxprune.cli import main
from onnxprune.validate import run

from .helpers import SAMPLES
from .model_util import rows_of, weight
from .ops._models import build, header

SE_NET = SAMPLES / "se_net.onnx"
SE_NET_WANTS = "'input' [N, 3, 32, 32] float32"


def _images(count: int, seed: int = 0, shape=(3, 32, 32)) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, *shape)).astype(np.float32)


def _outputs(model: onnx.ModelProto, feeds: dict) -> dict[str, np.ndarray]:
    return run(model.SerializeToString(), feeds, optimize=False)


def _assert_close(got: np.ndarray, ref: np.ndarray, rtol: float) -> None:
    scale = float(np.abs(ref).max())
    diff = float(np.abs(got.astype(np.float64) - ref).max())
    assert diff <= rtol * scale, f"max |diff| {diff:.3g} vs scale {scale:.3g}"


def _one_error_line(capsys) -> str:
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("onnxprune: error: "), err
    return lines[0]


# -- reconstruction never makes the calibration error worse -------------------------

RECONSTRUCTED = ["resnet_small", "mobilenetv2_small", "se_net", "classifier_flatten", "bert_tiny"]
SEQ = 16


def _any_batch(model: onnx.ModelProto) -> onnx.ModelProto:
    """The CNN samples declare batch 1, so calibration would run (and the calibration
    error be measured) one sample per onnxruntime session; a symbolic batch runs 8 at a
    time. The fixed-batch path is the CLI tests'."""
    for vi in [*model.graph.input, *model.graph.output]:
        vi.type.tensor_type.shape.dim[0].dim_param = "N"
    del model.graph.value_info[:]
    return model


def _sample_config(name: str, ratio: float, method: str) -> PruneConfig:
    if name == "bert_tiny":  # int64 token ids: random ones
        shapes = {"input_ids": [1, SEQ], "attention_mask": [1, SEQ]}
        return PruneConfig(
            ratio=ratio, calib_random=32, reconstruct=method, input_shapes=shapes, validate=False
        )
    return PruneConfig(
        ratio=ratio, calib={"input": _images(32)}, reconstruct=method, validate=False
    )


@pytest.mark.parametrize("ratio", [0.3, 0.5])
@pytest.mark.parametrize("name", RECONSTRUCTED)
def test_reconstruction_never_raises_the_calibration_error(name, ratio, capfd):
    model = onnx.load(SAMPLES / f"{name}.onnx")
    model = model if name == "bert_tiny" else _any_batch(model)
    errors, methods = {}, {}
    for method in ("none", "bias", "lsq"):
        _, report = prune(model, _sample_config(name, ratio, method))
        errors[method] = report.calib_rel_error
        methods[method] = {f["method"] for f in report.refits}
    assert capfd.readouterr() == ("", "")
    assert errors["none"] > 1e-4, errors  # something was removed
    assert errors["bias"] <= errors["none"] * (1 + 1e-6), errors
    assert errors["lsq"] <= errors["none"] * (1 + 1e-6), errors
    assert methods["none"] == set() and methods["bias"] == {"bias"}, methods
    assert "lsq" in methods["lsq"], methods


# -- the least-squares refit is exact where removed channels are multiples of kept ---


def _duplicated(w: np.ndarray, axis: int) -> np.ndarray:
    """Positions 0..3 of `axis` get equal norms and 4..7 become 0.5 x 0..3: half the
    norm, so an l2 plan removes exactly them."""
    w = np.moveaxis(w.copy(), axis, 0)
    w[0:4] /= np.sqrt((w[0:4].reshape(4, -1) ** 2).sum(axis=1)).reshape(-1, *[1] * (w.ndim - 1))
    w[4:8] = 0.5 * w[0:4]
    return np.moveaxis(w, 0, axis)


def _conv_pair(conv2: str, k: int) -> onnx.ModelProto:
    rng = np.random.default_rng(3)
    w1 = _duplicated(rng.standard_normal((8, 3, 3, 3)), 0)
    b1 = _duplicated(np.ones(8), 0)  # mostly active after Relu
    return build(
        f"""
        {header()}
        pair (float[N,3,8,8] x) => (float[N,4,?,?] y)
        <float[8,3,3,3] w1, float[8] b1, float[4,8,{k},{k}] w2, float[4] b2>
        {{
          [conv1] a = Conv <pads=[1,1,1,1]> (x, w1, b1)
          r = Relu (a)
          [conv2] y = {conv2} (r, w2, b2)
        }}
        """,
        w1=w1,
        b1=b1,
    )


def _matmul_pair() -> onnx.ModelProto:
    rng = np.random.default_rng(4)
    w1 = _duplicated(rng.standard_normal((6, 8)), 1)
    b1 = _duplicated(np.ones(8), 0)  # mostly active after Relu
    return build(
        f"""
        {header()}
        pair (float[N,16,6] x) => (float[N,16,4] y)
        <float[6,8] w1, float[8] b1, float[8,4] w2>
        {{
          [mm1] h = MatMul (x, w1)
          a = Add (h, b1)
          r = Relu (a)
          [mm2] y = MatMul (r, w2)
        }}
        """,
        w1=w1,
        b1=b1,
    )


def _gemm_pair() -> onnx.ModelProto:
    rng = np.random.default_rng(5)
    w1 = _duplicated(rng.standard_normal((8, 6)), 0)
    c1 = _duplicated(np.ones(8), 0)
    return build(
        f"""
        {header()}
        pair (float[N,6] x) => (float[N,4] y)
        <float[8,6] w1, float[8] c1, float[4,8] w2, float[4] c2>
        {{
          [gemm1] a = Gemm <transB=1> (x, w1, c1)
          r = Relu (a)
          [gemm2] y = Gemm <transB=1, alpha=0.5, beta=2.0> (r, w2, c2)
        }}
        """,
        w1=w1,
        c1=c1,
    )


CONV_X, MATMUL_X, GEMM_X = (3, 8, 8), (16, 6), (6,)
EXACT = {  # case: (model, axis of w1 that holds conv1's / mm1's / gemm1's outputs, x)
    "conv-1x1": (lambda: _conv_pair("Conv", 1), 0, CONV_X),
    "conv-3x3-pad-stride": (
        lambda: _conv_pair("Conv <pads=[1,1,1,1], strides=[2,2]>", 3),
        0,
        CONV_X,
    ),
    "conv-3x3-dilated": (
        lambda: _conv_pair("Conv <pads=[2,2,2,2], dilations=[2,2]>", 3),
        0,
        CONV_X,
    ),
    "matmul": (_matmul_pair, 1, MATMUL_X),
    "gemm-alpha-beta": (_gemm_pair, 0, GEMM_X),
}


@pytest.mark.parametrize("case", list(EXACT))
def test_lsq_refit_restores_the_function_on_fresh_inputs(case):
    make, axis, shape = EXACT[case]
    model = make()
    calib = {"x": _images(32, 0, shape)}
    config = PruneConfig(ratio=0.5, calib=calib, reconstruct="lsq", ridge=1e-8)
    pruned, report = prune(model, config)
    # the halved copies are the ones removed, and only the reader is refit
    assert rows_of(weight(model, "w1"), weight(pruned, "w1"), axis) == [0, 1, 2, 3]
    assert [(f["method"], f["why"]) for f in report.refits] == [("lsq", "")], report.refits
    assert report.calib_rel_error < 1e-9
    fresh = {"x": _images(8, 99, shape) * 2.0 + 0.5}
    expected = _outputs(model, fresh)["y"]
    _assert_close(_outputs(pruned, fresh)["y"], expected, rtol=1e-4)

    unfitted, _ = prune(model, PruneConfig(ratio=0.5, validate=False))
    assert np.abs(_outputs(unfitted, fresh)["y"] - expected).max() > 0.05 * np.abs(expected).max()


# -- too few samples: bias compensation, and the report says why ---------------------


def _flatten_gemm() -> onnx.ModelProto:
    return build(f"""
    {header()}
    flat (float[N,16,4,4] x) => (float[N,10] y)
    <float[16,16,1,1] w1, float[16] b1, float[10,256] w2, float[10] c2>
    {{
      [conv1] a = Conv (x, w1, b1)
      r = Relu (a)
      f = Flatten (r)
      [fc] y = Gemm <transB=1> (f, w2, c2)
    }}
    """)


def test_too_few_samples_fall_back_to_bias_compensation():
    model = _flatten_gemm()
    x = _images(2, 0, (16, 4, 4))
    pruned, report = prune(model, PruneConfig(ratio=0.5, calib={"x": x}, reconstruct="lsq"))
    [note] = report.refits
    assert note["node"] == "fc" and note["method"] == "bias"
    assert "2 sampled rows for 128 kept inputs" in note["why"] and "too few" in note["why"]
    text = report.to_text()
    assert "reconstruction: 1 bias" in text
    assert f"  fc: {note['why']}" in text.splitlines()
    # bias compensation keeps the mean output on the calibration data
    original, got = _outputs(model, {"x": x})["y"], _outputs(pruned, {"x": x})["y"]
    _assert_close(got.mean(axis=0), original.mean(axis=0).astype(np.float64), rtol=1e-5)
    assert np.abs(got - original).max() > 1e-3  # but not every output


def test_enough_samples_get_the_least_squares_fit():
    x = _images(300, 0, (16, 4, 4))
    config = PruneConfig(ratio=0.5, calib={"x": x}, calib_batch=100, validate=False)
    _, report = prune(_flatten_gemm(), config)
    assert [(f["node"], f["method"]) for f in report.refits] == [("fc", "lsq")]


# -- data-aware criteria see what weight norms cannot --------------------------------


def _loud_but_silent() -> tuple[onnx.ModelProto, np.ndarray]:
    """conv1's channel 0 has by far the largest weights but reads only input plane 2,
    which is zero in the calibration images; its bias is 0, so it is 0 where read."""
    w1 = np.random.default_rng(6).standard_normal((8, 3, 3, 3)).astype(np.float32)
    w1[0] = 0.0
    w1[0, 2] = 100.0
    b1 = np.random.default_rng(7).standard_normal(8).astype(np.float32)
    b1[0] = 0.0
    model = build(
        f"""
        {header()}
        silent (float[N,3,8,8] x) => (float[N,4,8,8] y)
        <float[8,3,3,3] w1, float[8] b1, float[4,8,1,1] w2>
        {{
          [conv1] a = Conv <pads=[1,1,1,1]> (x, w1, b1)
          r = Relu (a)
          [conv2] y = Conv (r, w2)
        }}
        """,
        w1=w1,
        b1=b1,
    )
    images = _images(16, 0, (3, 8, 8))
    images[:, 2] = 0.0
    return model, images


@pytest.mark.parametrize("criterion", ["activation", "wanda", "l2"])
def test_data_aware_criteria_prune_a_channel_that_is_silent_on_the_data(criterion):
    model, images = _loud_but_silent()
    config = PruneConfig(ratio=0.125, criterion=criterion, calib={"x": images}, reconstruct="none")
    pruned, report = prune(model, config)
    kept = rows_of(weight(model, "w1"), weight(pruned, "w1"))
    assert len(kept) == 7
    if criterion == "l2":
        assert 0 in kept
        assert report.calib_rel_error > 1e-4
    else:
        assert 0 not in kept
        assert report.calib_rel_error < 1e-10  # the removed channel was 0 on this data


# -- the command line ----------------------------------------------------------------


def _calibration_lines(out: str) -> tuple[str, float]:
    reconstruction = [line for line in out.splitlines() if line.startswith("reconstruction: ")]
    errors = re.findall(r"^calibration-set relative output error: (\S+)$", out, re.M)
    assert len(reconstruction) == 1 and len(errors) == 1, out
    return reconstruction[0], float(errors[0])


def test_cli_prunes_with_calibration_file(tmp_path, capsys):
    data = tmp_path / "data.npz"
    np.savez(data, input=_images(8))
    output = tmp_path / "small.onnx"
    assert main([str(SE_NET), "-o", str(output), "--calib", str(data), "--ratio", "0.5"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    reconstruction, error = _calibration_lines(out)
    assert re.match(r"reconstruction: \d+ lsq", reconstruction), reconstruction
    assert 0.0 < error < 0.01
    assert out.splitlines()[-1] == f"wrote {output}"
    pruned = onnx.load(output)
    onnx.checker.check_model(pruned, full_check=True)
    assert _outputs(pruned, {"input": _images(1, 5)})["output"].shape == (1, 10)


def test_cli_prunes_with_random_calibration(tmp_path, capsys):
    output = tmp_path / "small.onnx"
    argv = [str(SE_NET), "-o", str(output), "--calib-random", "8", "--reconstruct", "bias"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert err == ""
    reconstruction, error = _calibration_lines(out)
    assert re.match(r"reconstruction: \d+ bias \(", reconstruction), reconstruction
    assert 0.0 < error < 0.05
    assert output.is_file()


# -- refits that cannot or need not solve the usual way ------------------------------


def test_lsq_without_ridge_survives_an_input_that_is_constant_on_the_data():
    """l2 keeps conv1's channel 0, which is 0 on the calibration data: the Gram matrix of
    conv2's kept inputs is singular, and without a ridge the fit takes the least-norm
    solution instead of failing."""
    model, images = _loud_but_silent()
    base = PruneConfig(ratio=0.5, calib={"x": images}, validate=False)
    _, none = prune(model, replace(base, reconstruct="none"))
    _, lsq = prune(model, replace(base, reconstruct="lsq", ridge=0.0))
    assert [f["method"] for f in lsq.refits] == ["lsq"]
    assert lsq.calib_rel_error <= none.calib_rel_error * (1 + 1e-6)
    assert lsq.calib_rel_error < 0.5 * none.calib_rel_error


def test_gemm_whose_bias_is_one_broadcast_value_is_not_refit():
    model = build(f"""
    {header()}
    scalar_bias (float[N,6] x) => (float[N,4] y)
    <float[8,6] w1, float[8] c1, float[4,8] w2, float[1] c2>
    {{
      [gemm1] a = Gemm <transB=1> (x, w1, c1)
      r = Relu (a)
      [gemm2] y = Gemm <transB=1> (r, w2, c2)
    }}
    """)
    x = _images(32, 0, (6,))
    pruned, report = prune(model, PruneConfig(ratio=0.5, calib={"x": x}, reconstruct="lsq"))
    assert report.refits == [
        {"node": "gemm2", "method": "none", "why": "its bias is not one value per output"}
    ]
    assert weight(pruned, "c2").shape == (1,)
    assert "gemm2: its bias is not one value per output" in report.to_text()


@pytest.mark.parametrize("criterion", ["activation", "wanda", "energy"])
def test_data_aware_criteria_on_a_model_without_channel_readers(criterion):
    """Found by tests/test_property.py: a depthwise Conv of the graph input creates no
    prunable channels and the Gemm's channels reach the output, so no node reads pruned
    channels. Collecting statistics for no reader asked onnxruntime for no outputs, which
    returns all of them, and the capture crashed with a ValueError."""
    model = build(f"""
    {header()}
    no_readers (float[1,2,4,4] x) => (float[1,1] y)
    <float[2,1,3,3] w1, float[2,1] w2, float[1] c2>
    {{
      [dw] a = Conv <group=2> (x, w1)
      p = GlobalAveragePool (a)
      f = Flatten (p)
      [gemm] y = Gemm (f, w2, c2)
    }}
    """)
    config = PruneConfig(ratio=0.5, criterion=criterion, calib_random=4, reconstruct="none")
    pruned, report = prune(model, config)
    assert all(g.kept == g.channels for g in report.groups)
    assert report.oracle_rel_diff == 0.0
