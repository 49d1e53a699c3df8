"""The `onnxprune` command through `main([...])`: what a run prints and writes, and the
promise for bad input: one line on stderr naming the problem, exit code 2 (input) or 1
(failure), no traceback, the input file untouched and nothing new in the output folder.

A few tests run `python -m onnxprune` in a subprocess: the console entry itself, and the
unwritable output folders that root (the test user) can only meet with its capabilities
dropped (`setpriv`) or in a private mount namespace (`unshare`: a read-only bind, a full
tmpfs).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxprune import __version__
from onnxprune.apply import count_params
from onnxprune.cli import main
from onnxprune.ops import _registry

from .helpers import SAMPLES, parse

REPO = SAMPLES.parent
SE_NET = SAMPLES / "se_net.onnx"
OLD_MTIME_NS = 1_000_000_000 * 10**9  # 2001: any rewrite of the input would change it
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


class Workspace:
    """tmp_path/in holds the input model, tmp_path/out is where outputs go."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.inp = root / "in"
        self.out = root / "out"
        self.inp.mkdir()
        self.out.mkdir()
        self.model = self.place("se_net.onnx", SE_NET.read_bytes())
        self.output = self.out / "small.onnx"

    def place(self, name: str, data: bytes) -> Path:
        path = self.inp / name
        path.write_bytes(data)
        os.utime(path, ns=(OLD_MTIME_NS, OLD_MTIME_NS))
        return path

    def snapshot(self) -> dict[str, tuple]:
        """Every entry under root: a file's bytes and mtime, a link's target, a folder's
        name (its mtime moves when a temporary file comes and goes: not compared)."""
        state: dict[str, tuple] = {}
        for path in sorted(self.root.rglob("*")):
            name = str(path.relative_to(self.root))
            if path.is_symlink():
                state[name] = ("link", os.readlink(path))
            elif path.is_file():
                state[name] = ("file", path.read_bytes(), path.stat().st_mtime_ns)
            else:
                state[name] = ("dir",)
        return state


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path)


def one_error(err: str) -> str:
    """The single stderr line of a failed run."""
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("onnxprune: error: "), err
    return lines[0]


def fails(ws: Workspace, capsys, argv: list, code: int) -> str:
    """Run main(argv), expect `code`, nothing on stdout, nothing changed on disk."""
    before = ws.snapshot()
    assert main([str(a) for a in argv]) == code
    out, err = capsys.readouterr()
    assert out == ""
    assert ws.snapshot() == before
    return one_error(err)


def cli(*args, prefix: list[str] | None = None, cwd: Path | None = None):
    """`python -m onnxprune ARGS` in a subprocess (optionally under `prefix`)."""
    command = [*(prefix or []), sys.executable, "-m", "onnxprune", *map(str, args)]
    return subprocess.run(
        command, capture_output=True, text=True, cwd=cwd, env=ENV, timeout=300, check=False
    )


# -- success -------------------------------------------------------------------------


def test_prune_writes_a_smaller_loadable_model_and_prints_the_report(ws, capsys):
    assert main([str(ws.model), "-o", str(ws.output), "--ratio", "0.5"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    pruned = onnx.load(ws.output)
    onnx.checker.check_model(pruned, full_check=True)
    assert count_params(pruned) < count_params(onnx.load(SE_NET)) / 2
    lines = out.splitlines()
    params = next(line for line in lines if line.startswith("parameters"))
    before, after = count_params(onnx.load(SE_NET)), count_params(pruned)
    assert params.split()[1:3] == [f"{before:,}", f"{after:,}"]
    assert any(line.startswith("MACs") for line in lines)
    assert any(line.startswith("output 'output' [1, 10]") and "cosine" in line for line in lines)
    assert lines[-1] == f"wrote {ws.output}"
    assert ws.model.read_bytes() == SE_NET.read_bytes()
    assert ws.model.stat().st_mtime_ns == OLD_MTIME_NS
    assert sorted(p.name for p in ws.out.iterdir()) == ["small.onnx"]  # no temp files left

    feeds = {"input": np.random.default_rng(0).standard_normal((1, 3, 32, 32), np.float32)}
    session = ort.InferenceSession(str(ws.output), providers=["CPUExecutionProvider"])
    assert session.run(None, feeds)[0].shape == (1, 10)


def test_report_json_has_the_figures_of_the_written_model(ws, capsys):
    report_path = ws.out / "r.json"
    argv = [ws.model, "-o", ws.output, "--report", report_path, "-q"]
    assert main([str(a) for a in argv]) == 0
    assert capsys.readouterr() == ("", "")
    report = json.loads(report_path.read_text())
    assert report["params_before"] == count_params(onnx.load(SE_NET))
    assert report["params_after"] == count_params(onnx.load(ws.output))
    assert report["params_after"] < report["params_before"]
    assert report["macs_after"] < report["macs_before"]
    assert report["groups"] and all(g["kept"] <= g["channels"] for g in report["groups"])
    assert any(g["kept"] < g["channels"] for g in report["groups"])
    [output] = report["outputs"]
    assert output["name"] == "output" and output["shape"] == [1, 10]
    assert 0.0 < output["cosine"] <= 1.0 + 1e-9
    assert sorted(p.name for p in ws.out.iterdir()) == ["r.json", "small.onnx"]


def test_output_file_gets_the_usual_permissions(ws, capsys):
    old = os.umask(0o022)
    try:
        assert main([str(ws.model), "-o", str(ws.output), "-q"]) == 0
    finally:
        os.umask(old)
    assert ws.output.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0o600


def test_quiet_prints_nothing(ws, capsys):
    assert main([str(ws.model), "-o", str(ws.output), "-q"]) == 0
    assert capsys.readouterr() == ("", "")
    assert ws.output.is_file()


def test_version_and_help_return_zero(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"onnxprune {__version__}"
    assert main(["--help"]) == 0
    assert "--ratio" in capsys.readouterr().out


def test_console_entry_runs_and_fails_without_traceback(ws):
    ok = cli(ws.model, "-o", ws.output, "--ratio", "0.3", cwd=ws.root)
    assert ok.returncode == 0, ok.stderr
    assert "cosine" in ok.stdout and ok.stderr == ""
    assert onnx.load(ws.output).graph.node

    before = ws.snapshot()
    bad = cli(ws.inp / "missing.onnx", "-o", ws.out / "x.onnx", cwd=ws.root)
    assert bad.returncode == 2
    assert bad.stdout == ""
    assert "missing.onnx: no such file" in one_error(bad.stderr)
    assert ws.snapshot() == before


# -- bad input files -----------------------------------------------------------------


def test_missing_file(ws, capsys):
    line = fails(ws, capsys, [ws.inp / "nope.onnx", "-o", ws.output], 2)
    assert line.endswith("nope.onnx: no such file")


def test_folder_as_model(ws, capsys):
    line = fails(ws, capsys, [ws.inp, "-o", ws.output], 2)
    assert line == f"onnxprune: error: {ws.inp}: not a file"


@pytest.mark.parametrize(
    "data",
    [b"hello, this is not a model\n", b"\x00\xff" * 64, b""],
    ids=["text", "binary", "empty"],
)
def test_not_onnx(ws, capsys, data):
    path = ws.place("model.onnx", data)
    line = fails(ws, capsys, [path, "-o", ws.output], 2)
    assert f"{path}: not " in line and "ONNX model" in line


@pytest.mark.parametrize("keep", [10, 65, 0.5, -1], ids=["10B", "65B", "half", "all-but-1B"])
def test_truncated_protobuf(ws, capsys, keep):
    data = SE_NET.read_bytes()
    cut = int(len(data) * keep) if isinstance(keep, float) else keep
    path = ws.place("cut.onnx", data[:cut])
    line = fails(ws, capsys, [path, "-o", ws.output], 2)
    assert f"{path}: not a readable ONNX model" in line


def test_missing_external_data_file(ws, capsys):
    model = onnx.load(SE_NET)
    path = ws.inp / "ext.onnx"
    onnx.save(model, path, save_as_external_data=True, location="ext.data", size_threshold=0)
    (ws.inp / "ext.data").unlink()
    line = fails(ws, capsys, [path, "-o", ws.output], 2)
    assert f"{path}: tensor" in line and "external data file 'ext.data' is missing" in line


# -- bad arguments -------------------------------------------------------------------


@pytest.mark.parametrize("ratio", ["1", "1.5", "-0.1", "nan", "abc"])
def test_ratio_outside_range(ws, capsys, ratio):
    line = fails(ws, capsys, [ws.model, "-o", ws.output, "--ratio", ratio], 2)
    assert "--ratio" in line and ratio in line


def test_missing_output_flag(ws, capsys):
    line = fails(ws, capsys, [ws.model], 2)
    assert "-o/--output" in line


@pytest.mark.parametrize("spelling", ["same", "dotted", "symlink", "hardlink"])
def test_output_is_the_input(ws, capsys, spelling):
    if spelling == "same":
        output = str(ws.model)
    elif spelling == "dotted":
        output = f"{ws.inp}/../in/./{ws.model.name}"
    elif spelling == "symlink":
        output = ws.out / "link.onnx"
        output.symlink_to(ws.model)
    else:
        output = ws.out / "hard.onnx"
        os.link(ws.model, output)
    line = fails(ws, capsys, [ws.model, "-o", output], 2)
    assert line == f"onnxprune: error: output {output} is the input file; choose another path"


def test_report_is_the_input(ws, capsys):
    line = fails(ws, capsys, [ws.model, "-o", ws.output, "--report", ws.model], 2)
    assert f"--report {ws.model} is the input file" in line


def test_report_is_the_output(ws, capsys):
    line = fails(ws, capsys, [ws.model, "-o", ws.output, "--report", ws.output], 2)
    assert f"--report {ws.output} is also the output model" in line


def test_unknown_exclude_pattern_warns_and_succeeds(ws, capsys):
    report_path = ws.out / "r.json"
    argv = [ws.model, "-o", ws.output, "--exclude", "no_such_node*", "--report", report_path]
    assert main([*map(str, argv), "-q"]) == 0
    out, err = capsys.readouterr()
    warning = "--exclude 'no_such_node*' matches no node or initializer name"
    assert out == ""
    assert err.splitlines() == [f"onnxprune: warning: {warning}"]
    assert ws.output.is_file()
    assert json.loads(report_path.read_text())["warnings"] == [warning]

    assert main([str(a) for a in argv]) == 0
    out, err = capsys.readouterr()
    assert f"warning: {warning}" in out.splitlines() and err == ""


# -- unwritable output ---------------------------------------------------------------


def test_output_folder_does_not_exist(ws, capsys):
    output = ws.out / "missing" / "small.onnx"
    line = fails(ws, capsys, [ws.model, "-o", output], 2)
    assert line.endswith(f"cannot write {output}: folder {ws.out / 'missing'} does not exist")


def test_output_parent_is_a_regular_file(ws, capsys):
    (ws.out / "file.txt").write_text("x")
    output = ws.out / "file.txt" / "small.onnx"
    line = fails(ws, capsys, [ws.model, "-o", output], 2)
    assert line.endswith(f"cannot write {output}: {ws.out / 'file.txt'} is a file, not a folder")


def test_output_is_a_folder(ws, capsys):
    (ws.out / "sub").mkdir()
    line = fails(ws, capsys, [ws.model, "-o", ws.out / "sub"], 2)
    assert line.endswith("it is a folder")


_NO_DAC = [
    "setpriv",
    "--bounding-set=-dac_override,-dac_read_search",
    "--inh-caps=-dac_override,-dac_read_search",
]


@functools.cache
def _can_drop_dac_override() -> bool:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return False
    probe = subprocess.run([*_NO_DAC, "true"], capture_output=True, check=False)
    return probe.returncode == 0


def test_output_folder_not_writable_for_root_without_dac_override(ws):
    """Root ignores permission bits, so the subprocess runs as root with CAP_DAC_OVERRIDE
    dropped (setpriv): the 0o555 folder is then really unwritable (EACCES)."""
    if not _can_drop_dac_override():
        pytest.skip("needs root and setpriv")
    locked = ws.out / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    before = ws.snapshot()
    result = cli(ws.model, "-o", locked / "small.onnx", prefix=_NO_DAC, cwd=ws.root)
    assert result.returncode == 2
    line = one_error(result.stderr)
    assert line.endswith(f"cannot write {locked / 'small.onnx'}: folder {locked} is not writable")
    assert ws.snapshot() == before


def _private_mount(mount: str, folder: Path) -> list[str]:
    """A prefix running, in a private mount namespace, `mount` (on "$d" = folder), then the
    command, then `ls -A folder` on stdout (what is in the mount dies with the namespace)."""
    body = f'd="$1"; shift; {{ {mount}; }} || exit 97; "$@"; rc=$?; ls -A "$d"; exit $rc'
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", body, "sh", str(folder)]


@functools.cache
def _can_mount() -> bool:
    if shutil.which("unshare") is None:
        return False
    with tempfile.TemporaryDirectory() as scratch:
        probe = _private_mount('mount -t tmpfs onnxprune-probe "$d"', Path(scratch))
        result = subprocess.run([*probe, "true"], capture_output=True, check=False)
    return result.returncode == 0


def test_output_folder_on_a_read_only_bind_mount(ws):
    """The output folder is bind-mounted read-only in a private mount namespace (EROFS)."""
    if not _can_mount():
        pytest.skip("cannot mount in a private namespace (unshare -m)")
    ro = ws.out / "ro"
    ro.mkdir()
    before = ws.snapshot()
    prefix = _private_mount('mount --bind "$d" "$d" && mount -o remount,bind,ro "$d"', ro)
    result = cli(ws.model, "-o", ro / "small.onnx", prefix=prefix, cwd=ws.root)
    assert result.returncode == 2, result.stderr
    line = one_error(result.stderr)
    assert line.endswith(f"cannot write {ro / 'small.onnx'}: folder {ro} is not writable")
    assert result.stdout == ""  # the listing of the mounted folder: empty
    assert ws.snapshot() == before


_FILL_TMPFS = (  # a 64 KiB tmpfs, filled up by the file "fill"
    'mount -t tmpfs -o size=64k onnxprune-full "$d" && '
    '{ dd if=/dev/zero of="$d/fill" bs=4096 2>/dev/null; true; }'
)


def test_full_disk_leaves_no_partial_output(ws):
    """The folder passes every check but the write fails (a full tmpfs: ENOSPC): exit 1,
    and neither the output nor the temporary file remain in it."""
    if not _can_mount():
        pytest.skip("cannot mount in a private namespace (unshare -m)")
    full = ws.out / "full"
    full.mkdir()
    before = ws.snapshot()
    prefix = _private_mount(_FILL_TMPFS, full)
    result = cli(ws.model, "-o", full / "small.onnx", "-q", prefix=prefix, cwd=ws.root)
    assert result.returncode == 1, result.stderr
    line = one_error(result.stderr)
    assert line == f"onnxprune: error: cannot write {full / 'small.onnx'}: No space left on device"
    assert result.stdout.split() == ["fill"]
    assert ws.snapshot() == before


def test_failed_report_write_leaves_no_model_behind(ws):
    """The model's folder is fine, the report's is full: the model must not be left at -o."""
    if not _can_mount():
        pytest.skip("cannot mount in a private namespace (unshare -m)")
    full = ws.out / "full"
    full.mkdir()
    before = ws.snapshot()
    prefix = _private_mount(_FILL_TMPFS, full)
    argv = [ws.model, "-o", ws.output, "--report", full / "r.json", "-q"]
    result = cli(*argv, prefix=prefix, cwd=ws.root)
    assert result.returncode == 1, result.stderr
    assert "cannot write" in one_error(result.stderr) and "r.json" in result.stderr
    assert result.stdout.split() == ["fill"]
    assert ws.snapshot() == before  # nothing at -o, no temp file beside it


# -- models onnxruntime cannot run ---------------------------------------------------

_X = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
_Y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])
_W = numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), "w")


def _custom_op_model() -> onnx.ModelProto:
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("Frobnicate", ["c"], ["y"], domain="com.example.nowhere"),
    ]
    graph = helper.make_graph(nodes, "custom", [_X], [_Y], [_W])
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.example.nowhere", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    onnx.checker.check_model(model, full_check=True)
    return model


def _inconsistent_shapes_model() -> onnx.ModelProto:
    bias = numpy_helper.from_array(np.ones((5, 1, 1), np.float32), "b")  # 5 vs 4 channels
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("Add", ["c", "b"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "bad_add", [_X], [_Y], [_W, bias])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


@pytest.mark.parametrize("build", [_custom_op_model, _inconsistent_shapes_model])
def test_model_onnxruntime_cannot_run(ws, capsys, build):
    path = ws.place("model.onnx", build().SerializeToString())
    line = fails(ws, capsys, [path, "-o", ws.output], 2)
    assert line.startswith("onnxprune: error: onnxruntime cannot run the input model: ")


# -- validation failure --------------------------------------------------------------


def _forgetful_relu(monkeypatch) -> None:
    """Make the registry's Relu handler wrong: it no longer passes channels through."""
    _registry.load_handlers()
    entry = _registry._Entry(1, 10**9, lambda ctx: None)
    monkeypatch.setitem(_registry._HANDLERS, ("", "Relu"), [entry])


def test_pruned_model_failing_validation_is_not_written(ws, capsys, monkeypatch):
    _forgetful_relu(monkeypatch)
    line = fails(ws, capsys, [ws.model, "-o", ws.output, "--report", ws.out / "r.json"], 1)
    assert "pruned model" in line


def test_channel_mismatch_the_optimised_runtime_accepts_is_not_written(ws, capsys, monkeypatch):
    model = parse(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        chain (float[1,3,16,16] x) => (float[1,6,1,1] y)
        <float[8,3,3,3] w1 = {0.0}, float[8] b1 = {0.0}, float[6,8,3,3] w2 = {0.0}>
        {
          c1 = Conv <pads = [1,1,1,1]> (x, w1, b1)
          r1 = Relu (c1)
          c2 = Conv <pads = [1,1,1,1]> (r1, w2)
          y = GlobalAveragePool (c2)
        }
        """
    )
    path = ws.place("chain.onnx", model.SerializeToString())
    _forgetful_relu(monkeypatch)
    fails(ws, capsys, [path, "-o", ws.output, "-q"], 1)


# -- --input-shape -------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec", ["input", "input:", ":1x3x32x32", "input:1xAx32x32", "input:1x0x32x32", "input:1x-3"]
)
def test_input_shape_bad_syntax(ws, capsys, spec):
    line = fails(ws, capsys, [ws.model, "-o", ws.output, "--input-shape", spec], 2)
    assert "--input-shape" in line


def test_input_shape_names_no_input(ws, capsys):
    line = fails(ws, capsys, [ws.model, "-o", ws.output, "--input-shape", "image:1x3x32x32"], 2)
    assert line.endswith("--input-shape names no model input: image")


def test_input_shape_of_the_wrong_rank(ws, capsys):
    line = fails(ws, capsys, [ws.model, "-o", ws.output, "--input-shape", "input:1x3"], 2)
    assert "onnxruntime cannot run the input model" in line and "rank" in line


def _symbolic_se_net() -> onnx.ModelProto:
    model = onnx.load(SE_NET)
    [inp], [out] = model.graph.input, model.graph.output
    for dim, name in zip(inp.type.tensor_type.shape.dim, ["N", None, "H", "W"], strict=True):
        if name:
            dim.dim_param = name
    out.type.tensor_type.shape.dim[0].dim_param = "N"
    onnx.checker.check_model(model, full_check=True)
    return model


def test_symbolic_dims_with_input_shape(ws, capsys):
    path = ws.place("symbolic.onnx", _symbolic_se_net().SerializeToString())
    report_path = ws.out / "r.json"
    argv = [path, "-o", ws.output, "--input-shape", "input:1x3x48x48", "--report", report_path]
    assert main([*map(str, argv), "-q"]) == 0
    assert capsys.readouterr() == ("", "")
    report = json.loads(report_path.read_text())
    first = report["layers"][0]  # 16 filters of 3x3x3, stride 1: 432 MACs per pixel
    assert first["op"] == "Conv"
    assert (first["macs_before"], first["macs_after"]) == (432 * 48 * 48, 216 * 48 * 48)
    assert report["outputs"][0]["shape"] == [1, 10]

    pruned = onnx.load(ws.output)
    dims = [d.dim_param or d.dim_value for d in pruned.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["N", 3, "H", "W"]
    x = np.random.default_rng(0).standard_normal((2, 3, 40, 40), np.float32)
    session = ort.InferenceSession(str(ws.output), providers=["CPUExecutionProvider"])
    assert session.run(None, {"input": x})[0].shape == (2, 10)
