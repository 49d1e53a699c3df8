"""Calibration data as users give it: every bad file, array or flag is a one-line
error naming the input and its expected shape; the accepted layouts load the same data."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest

from onnxprune import BadInputError, PruneConfig, make_plan, prune
from onnxprune.cli import main

from .ops._models import build, header
from .test_calibration import SE_NET, SE_NET_WANTS, _conv_pair, _images, _one_error_line

# -- bad calibration input -----------------------------------------------------------


def _two_inputs() -> onnx.ModelProto:
    """x -> conv1 -> Relu -> conv2, plus z: two inputs with different channel counts."""
    return build(f"""
    {header()}
    two (float[N,3,8,8] x, float[N,4,8,8] z) => (float[N,4,8,8] y)
    <float[8,3,3,3] w1, float[8] b1, float[4,8,1,1] w2>
    {{
      [conv1] a = Conv <pads=[1,1,1,1]> (x, w1, b1)
      r = Relu (a)
      [conv2] c = Conv (r, w2)
      y = Add (c, z)
    }}
    """)


X_WANTS, Z_WANTS = "'x' [N, 3, 8, 8] float32", "'z' [N, 4, 8, 8] float32"


def _npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def _folder(path: Path, **arrays: np.ndarray) -> Path:
    path.mkdir()
    for name, value in arrays.items():
        np.save(path / f"{name}.npy", value)
    return path


def _npy(path: Path, array: np.ndarray) -> Path:
    np.save(path, array)
    return path


def _zip(path: Path, member: str, data: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(member, data)
    return path


def _text(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# id: (model "se_net" or "two", writer(tmp) -> calibration path, what the message says)
BAD = {
    "unknown-name": (
        "se_net",
        lambda t: _npz(t / "c.npz", input=_images(2), extra=_images(2)),
        ["'extra' is not a model input", SE_NET_WANTS],
    ),
    "missing-input": (
        "two",
        lambda t: _npz(t / "c.npz", x=_images(2, shape=(3, 8, 8))),
        ["no array for model input", Z_WANTS],
    ),
    "wrong-dtype": (
        "se_net",
        lambda t: _npz(t / "c.npz", input=_images(2).astype(np.float64)),
        ["'input' has dtype float64", SE_NET_WANTS],
    ),
    "wrong-rank": (
        "se_net",
        lambda t: _npz(t / "c.npz", input=_images(2, shape=(3, 32))),
        ["'input' has shape [2, 3, 32]", SE_NET_WANTS],
    ),
    "wrong-static-dim": (
        "se_net",
        lambda t: _npz(t / "c.npz", input=_images(2, shape=(3, 16, 16))),
        ["'input' has shape [2, 3, 16, 16]", SE_NET_WANTS],
    ),
    "different-sample-counts": (
        "two",
        lambda t: _npz(t / "c.npz", x=_images(4, shape=(3, 8, 8)), z=_images(3, shape=(4, 8, 8))),
        ["different numbers of samples", "'x' 4", "'z' 3"],
    ),
    "no-samples": (
        "se_net",
        lambda t: _npz(t / "c.npz", input=_images(0)),
        ["no samples", SE_NET_WANTS],
    ),
    "empty-folder": (
        "se_net",
        lambda t: _folder(t / "calib"),
        ["holds no .npy files", SE_NET_WANTS],
    ),
    "folder-not-named-after-inputs": (
        "two",
        lambda t: _folder(t / "calib", a=_images(2, shape=(3, 8, 8))),
        ["name the .npy files after the model inputs", X_WANTS, Z_WANTS],
    ),
    "stacked-file-of-wrong-shape": (
        "se_net",
        lambda t: _folder(t / "calib", a=_images(1)[0], b=_images(1, shape=(3, 8, 8))),
        ["b.npy", "'input' has shape [1, 3, 8, 8]", SE_NET_WANTS],
    ),
    "npz-that-is-text": (
        "se_net",
        lambda t: _text(t / "c.npz", b"input,1,2,3\n"),
        ["not readable as numpy data", SE_NET_WANTS],
    ),
    "npz-that-is-empty": (
        "se_net",
        lambda t: _text(t / "c.npz", b""),
        ["not readable as numpy data", SE_NET_WANTS],
    ),
    "npz-that-is-a-broken-zip": (
        "se_net",
        lambda t: _text(t / "c.npz", b"PK\x03\x04" + b"\x00" * 40),
        ["not readable as numpy data", SE_NET_WANTS],
    ),
    "npz-member-that-is-not-an-array": (
        "se_net",
        lambda t: _zip(t / "c.npz", "input", b"1,2,3"),
        ["member 'input' is not a .npy array", SE_NET_WANTS],
    ),
    "npy-for-a-two-input-model": (
        "two",
        lambda t: _npy(t / "c.npy", _images(2)),
        ["one array for a model of 2 inputs", X_WANTS, Z_WANTS],
    ),
    "no-such-file": (
        "se_net",
        lambda t: t / "missing.npz",
        ["missing.npz: no such file or folder"],
    ),
}


def _model_path(which: str, tmp_path: Path) -> Path:
    if which == "se_net":
        return SE_NET
    path = tmp_path / "two.onnx"
    onnx.save(_two_inputs(), path)
    return path


@pytest.mark.parametrize("case", list(BAD))
def test_bad_calibration_file_is_a_bad_input_error(case, tmp_path):
    which, write, says = BAD[case]
    source = write(tmp_path)
    with pytest.raises(BadInputError) as info:
        prune(_model_path(which, tmp_path), PruneConfig(calib=str(source)))
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"--calib {source}"), message
    for part in says:
        assert part in message, message


@pytest.mark.parametrize("case", list(BAD))
def test_bad_calibration_file_exits_2_with_one_line(case, tmp_path, capsys):
    which, write, says = BAD[case]
    source = write(tmp_path)
    output = tmp_path / "out.onnx"
    argv = [_model_path(which, tmp_path), "-o", output, "--calib", source]
    assert main([str(a) for a in argv]) == 2
    line = _one_error_line(capsys)
    for part in says:
        assert part in line, line
    assert not output.exists()


# the cases whose data is an .npz: the same arrays passed as a dict
AS_DICT = [
    "unknown-name",
    "missing-input",
    "wrong-dtype",
    "wrong-rank",
    "wrong-static-dim",
    "different-sample-counts",
    "no-samples",
]


@pytest.mark.parametrize("case", AS_DICT)
def test_bad_calibration_dict_is_a_bad_input_error(case, tmp_path):
    which, write, says = BAD[case]
    with np.load(write(tmp_path)) as data:
        arrays = {k: data[k] for k in data.files}
    model = onnx.load(SE_NET) if which == "se_net" else _two_inputs()
    with pytest.raises(BadInputError) as info:
        prune(model, PruneConfig(calib=arrays))
    message = str(info.value)
    assert message.startswith("calibration data: ") and "\n" not in message, message
    for part in says:
        assert part in message, message


def test_calibration_dict_of_lists_is_a_bad_input_error():
    with pytest.raises(BadInputError, match=r"'input' is a list, not a numpy array.*\[N, 3, 32"):
        prune(SE_NET, PruneConfig(calib={"input": [[0.0]]}))


def _calib_error(model, calib, **kw) -> float:
    config = PruneConfig(ratio=0.5, calib=calib, validate=False, **kw)
    return prune(model, config)[1].calib_rel_error


def test_folder_of_npy_files_is_stacked_for_a_one_input_model(tmp_path):
    images = _images(5, shape=(3, 8, 8))
    folder = tmp_path / "calib"
    folder.mkdir()
    np.save(folder / "a.npy", images[0])  # one sample
    np.save(folder / "b.npy", images[1:4])  # a batch
    np.save(folder / "c.npy", images[4])
    (folder / "notes.txt").write_text("not calibration data")
    model = _conv_pair("Conv", 1)
    from_folder = _calib_error(model, str(folder))
    assert from_folder == _calib_error(model, {"x": images})
    assert from_folder != _calib_error(model, {"x": images[:4]})  # every file counts


def test_single_npy_file_serves_a_one_input_model(tmp_path):
    images = _images(4, shape=(3, 8, 8))
    model = _conv_pair("Conv", 1)
    by_file = _calib_error(model, str(_npy(tmp_path / "c.npy", images)))
    assert by_file == _calib_error(model, {"x": images})


def test_npy_files_named_after_the_inputs(tmp_path):
    x, z = _images(6, shape=(3, 8, 8)), _images(6, 1, shape=(4, 8, 8))
    folder = _folder(tmp_path / "calib", x=x, z=z, unrelated=_images(1))
    model = _two_inputs()
    by_files = _calib_error(model, str(folder), reconstruct="lsq")
    assert by_files == _calib_error(model, {"x": x, "z": z}, reconstruct="lsq")
    assert _calib_error(model, str(_npz(tmp_path / "c.npz", x=x, z=z))) == by_files


# -- data-aware criteria and reconstruction need data --------------------------------


@pytest.mark.parametrize(
    "flags, says",
    [
        (["--criterion", "activation"], "--criterion activation needs calibration data"),
        (["--criterion", "wanda"], "--criterion wanda needs calibration data"),
        (["--reconstruct", "lsq"], "--reconstruct lsq needs calibration data"),
        (["--reconstruct", "bias"], "--reconstruct bias needs calibration data"),
    ],
)
def test_data_aware_options_without_calibration_exit_2(flags, says, tmp_path, capsys):
    output = tmp_path / "out.onnx"
    assert main([str(SE_NET), "-o", str(output), *flags]) == 2
    assert says in _one_error_line(capsys)
    assert not output.exists()


def test_data_aware_criterion_without_statistics_through_make_plan():
    with pytest.raises(BadInputError, match="activation needs calibration"):
        make_plan(onnx.load(SE_NET), PruneConfig(criterion="activation"))


def test_negative_calib_random_exits_2(tmp_path, capsys):
    argv = [str(SE_NET), "-o", str(tmp_path / "o.onnx"), "--calib-random", "-3"]
    assert main(argv) == 2
    assert "--calib-random must be at least 1, got -3" in _one_error_line(capsys)
