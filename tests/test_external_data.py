"""Models stored with external data: lazy checked loading, streamed writes, refusals.

The output of a pruned external-data model must hold exactly what pruning the same
model stored inline gives; every bad reference is refused before anything is read or
written, and a failed write leaves nothing behind.
"""

from __future__ import annotations

import errno
import hashlib
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from onnxprune import BadInputError, PruneConfig, ValidationError, modelio, pipeline, prune
from onnxprune.cli import main
from onnxprune.pipeline import load_model, prune_file
from onnxprune.validate import input_feeds, run

from .helpers import SAMPLES

RESNET = SAMPLES / "resnet_small.onnx"
REPO = SAMPLES.parent


def save_external(model: onnx.ModelProto, path: Path, location: str | None = None) -> Path:
    """`model` written to `path` with every tensor of 1 KB or more in `location`."""
    onnx.save(
        model,
        path,
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=location or path.name + ".data",
        size_threshold=1024,
    )
    return path


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())
            if p.is_file()}  # fmt: skip


def weights(model: onnx.ModelProto, folder: Path | None = None) -> dict[str, np.ndarray]:
    return {
        t.name: numpy_helper.to_array(t, base_dir=str(folder) if folder else "")
        for t in model.graph.initializer
    }


@pytest.fixture
def ext_model(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    return save_external(onnx.load(RESNET), src / "resnet.onnx")


def test_external_source_prunes_to_what_the_inline_source_gives(ext_model, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    before = digest(ext_model.parent)
    report = prune_file(ext_model, out / "small.onnx", PruneConfig(ratio=0.5))
    assert digest(ext_model.parent) == before  # the input is only read
    assert sorted(p.name for p in out.iterdir()) == ["small.onnx", "small.onnx.data"]
    assert report.oracle_rel_diff is not None and report.oracle_rel_diff < 1e-4
    written = onnx.load(out / "small.onnx", load_external_data=False)
    assert any(modelio.is_external(t) for t in written.graph.initializer)
    locations = {e.value for t in written.graph.initializer for e in t.external_data
                 if e.key == "location"}  # fmt: skip
    assert locations == {"small.onnx.data"}
    inline, _ = prune(RESNET, PruneConfig(ratio=0.5))
    got = weights(written, out)
    expected = weights(inline)
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)
    feeds = input_feeds(inline, {}, seed=3)
    a = run(str(out / "small.onnx"), feeds)
    b = run(inline.SerializeToString(), feeds)
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6)
    assert report.file_bytes_before == sum(p.stat().st_size for p in ext_model.parent.iterdir())
    assert report.file_bytes_after == sum(p.stat().st_size for p in out.iterdir())


def test_written_offsets_are_page_aligned(ext_model, tmp_path):
    prune_file(ext_model, tmp_path / "small.onnx", PruneConfig(ratio=0.5, validate=False))
    written = onnx.load(tmp_path / "small.onnx", load_external_data=False)
    offsets = [int(e.value) for t in written.graph.initializer for e in t.external_data
               if e.key == "offset"]  # fmt: skip
    assert offsets and all(o % modelio.ALIGN == 0 for o in offsets)


def test_api_prune_of_an_external_model_returns_a_self_contained_model(ext_model):
    pruned, _ = prune(ext_model, PruneConfig(ratio=0.5))
    assert not modelio.has_external_data(pruned)
    onnx.checker.check_model(pruned, full_check=True)


def test_in_memory_model_with_external_references_is_refused(ext_model):
    light = onnx.load(ext_model, load_external_data=False)
    with pytest.raises(BadInputError, match="pass its path"):
        prune(light, PruneConfig(ratio=0.5))


@pytest.mark.parametrize(
    "mode, source_external, files",
    [
        ("auto", True, ["small.onnx", "small.onnx.data"]),
        ("auto", False, ["small.onnx"]),
        ("always", False, ["small.onnx", "small.onnx.data"]),
        ("never", True, ["small.onnx"]),
    ],
)
def test_external_data_modes(tmp_path, ext_model, mode, source_external, files):
    source = ext_model if source_external else RESNET
    out = tmp_path / "out"
    out.mkdir()
    code = main([str(source), "-o", str(out / "small.onnx"), "--external-data", mode, "-q"])
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == files
    feeds = input_feeds(onnx.load(RESNET), {}, seed=0)
    assert run(str(out / "small.onnx"), feeds)  # onnxruntime reads it from its folder


def test_auto_goes_external_above_the_inline_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(modelio, "INLINE_LIMIT", 1000)
    prune_file(RESNET, tmp_path / "small.onnx", PruneConfig(ratio=0.5, validate=False))
    assert (tmp_path / "small.onnx.data").exists()


def test_never_refuses_a_model_over_the_protobuf_limit(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(modelio, "PROTOBUF_LIMIT", 10_000)
    code = main([str(RESNET), "-o", str(tmp_path / "small.onnx"), "--external-data", "never"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    assert "over 2 GB" in err and "--external-data" in err
    assert list(tmp_path.iterdir()) == []


def _with_location(model_path: Path, location: str) -> Path:
    """The model at `model_path` with its first external tensor moved to `location`."""
    model = onnx.load(model_path, load_external_data=False)
    for tensor in model.graph.initializer:
        if modelio.is_external(tensor):
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = location
            break
    path = model_path.with_name("moved.onnx")
    onnx.save(model, path)
    return path


def _refused(path: Path, tmp_path: Path, capsys, *needles: str) -> None:
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    before = digest(path.parent)
    code = main([str(path), "-o", str(out / "small.onnx")])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("onnxprune: error: ") and "\n" not in err
    for needle in needles:
        assert needle in err
    assert list(out.iterdir()) == []
    assert digest(path.parent) == before


def test_absolute_location_is_refused(ext_model, tmp_path, capsys):
    target = str(ext_model.with_name("resnet.onnx.data"))
    _refused(_with_location(ext_model, target), tmp_path, capsys, "absolute path")


@pytest.mark.parametrize("location", ["../resnet.onnx.data", "sub/../../resnet.onnx.data"])
def test_location_leaving_the_folder_is_refused(ext_model, tmp_path, capsys, location):
    outside = tmp_path / "resnet.onnx.data"
    outside.write_bytes(ext_model.with_name("resnet.onnx.data").read_bytes())
    _refused(_with_location(ext_model, location), tmp_path, capsys, "leaves the model's folder")


def test_symlink_leaving_the_folder_is_refused(ext_model, tmp_path, capsys):
    outside = tmp_path / "elsewhere.data"
    outside.write_bytes(ext_model.with_name("resnet.onnx.data").read_bytes())
    (ext_model.parent / "link.data").symlink_to(outside)
    _refused(_with_location(ext_model, "link.data"), tmp_path, capsys, "symbolic link")


def test_missing_data_file_is_refused(ext_model, tmp_path, capsys):
    _refused(_with_location(ext_model, "gone.data"), tmp_path, capsys, "'gone.data' is missing")


def test_short_data_file_is_refused(ext_model, tmp_path, capsys):
    data = ext_model.with_name("resnet.onnx.data")
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    _refused(ext_model, tmp_path, capsys, "is too short")


def test_length_that_disagrees_with_the_dims_is_refused(ext_model, tmp_path, capsys):
    model = onnx.load(ext_model, load_external_data=False)
    tensor = next(t for t in model.graph.initializer if modelio.is_external(t))
    for entry in tensor.external_data:
        if entry.key == "length":
            entry.value = str(10**15)  # an attacker's size: refused, never allocated
    onnx.save(model, ext_model)
    _refused(ext_model, tmp_path, capsys, "does not match its type and dims")


def test_data_file_that_is_a_folder_is_refused(ext_model, tmp_path, capsys):
    (ext_model.parent / "dir.data").mkdir()
    _refused(_with_location(ext_model, "dir.data"), tmp_path, capsys, "not a regular file")


def _limit_file_size(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.parametrize("limit", [4_096, 100_000])
def test_a_full_disk_leaves_no_partial_output(ext_model, tmp_path, limit):
    """The data file (or the model file) cannot be written whole: error, nothing left."""
    out = tmp_path / "out"
    out.mkdir()
    before = digest(ext_model.parent)
    cmd = [sys.executable, "-m", "onnxprune", str(ext_model), "-o", str(out / "s.onnx"),
           "--ratio", "0.25", "--external-data", "always",
           "--report", str(out / "r.json")]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300,
                            preexec_fn=_limit_file_size(limit), check=False)  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("onnxprune: error: cannot write")
    assert "Traceback" not in result.stderr
    assert list(out.iterdir()) == []  # no model, no data file, no staging folder
    assert digest(ext_model.parent) == before


def test_tensor_array_maps_external_data_without_copying(ext_model):
    model = onnx.load(ext_model, load_external_data=False)
    tensor = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    with modelio.external_folder(str(ext_model.parent)):
        value = modelio.tensor_array(tensor)
    assert isinstance(value, np.memmap) and not value.flags.writeable
    expected = numpy_helper.to_array(tensor, base_dir=str(ext_model.parent))
    np.testing.assert_array_equal(value, expected)


def test_external_reads_need_the_models_folder(ext_model):
    model = onnx.load(ext_model, load_external_data=False)
    tensor = next(t for t in model.graph.initializer if modelio.is_external(t))
    with pytest.raises(modelio.OnnxPruneError, match="folder is unknown"):
        modelio.tensor_array(tensor)


def test_sensitivity_and_analyze_read_external_models(ext_model, tmp_path, capsys):
    assert main(["analyze", str(ext_model), "--json", str(tmp_path / "a.json")]) == 0
    assert main(["sensitivity", str(ext_model), "--calib-random", "8", "-q"]) == 0


def test_a_failed_report_write_leaves_no_model_either(ext_model, tmp_path):
    def no_space(path: str, report) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(modelio.OnnxPruneError, match="No space left on device"):
        prune_file(ext_model, out / "s.onnx", PruneConfig(ratio=0.5), "auto",
                   [(str(out / "r.json"), no_space)])  # fmt: skip
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("name", ["resnet_small", "bert_tiny", "csp_yolo_small", "unet_small"])
def test_a_large_single_file_is_read_lazily_with_the_same_result(name, tmp_path, monkeypatch):
    """Above LAZY_MIN_BYTES a single-file model's weights stay in the file: the result
    must be what reading it whole gives, and the output stays one file."""
    source = SAMPLES / f"{name}.onnx"
    config = PruneConfig(ratio=0.5)
    eager = prune_file(source, tmp_path / "eager.onnx", config)
    monkeypatch.setattr(modelio, "LAZY_MIN_BYTES", 0)
    loaded = load_model(source)
    assert loaded.folder == str(SAMPLES) and not loaded.external_source
    assert modelio.has_external_data(loaded.model)
    lazy = prune_file(source, tmp_path / "lazy.onnx", config)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eager.onnx", "lazy.onnx"]
    assert lazy.oracle_rel_diff == eager.oracle_rel_diff
    assert lazy.file_bytes_before == source.stat().st_size
    a, b = onnx.load(tmp_path / "eager.onnx"), onnx.load(tmp_path / "lazy.onnx")
    assert [n.SerializeToString() for n in a.graph.node] == [
        n.SerializeToString() for n in b.graph.node
    ]
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key, value in wa.items():
        np.testing.assert_array_equal(wb[key], value, err_msg=key)


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.95])
def test_a_truncated_large_file_is_a_clean_error(tmp_path, capsys, monkeypatch, keep):
    monkeypatch.setattr(modelio, "LAZY_MIN_BYTES", 0)
    data = RESNET.read_bytes()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: int(len(data) * keep)])
    code = main([str(path), "-o", str(tmp_path / "s.onnx")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "not a readable ONNX model" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.onnx"]


@pytest.mark.parametrize("name", ["resnet_small", "bert_tiny", "paddle_style", "gqa_tiny_dynamo"])
def test_streamed_single_file_parses_to_the_same_model(name, tmp_path):
    """One-file output is framed by hand, tensor by tensor: it must parse to exactly the
    model, whether the weights are in memory or still in the source file."""
    source = SAMPLES / f"{name}.onnx"
    model = onnx.load(source)
    modelio.save_model(model, str(tmp_path / "eager.onnx"), external=False)
    assert onnx.load(tmp_path / "eager.onnx") == onnx.load(source)
    light, _ = modelio.load_lazily(str(source))
    with modelio.external_folder(str(SAMPLES)):
        modelio.save_model(light, str(tmp_path / "lazy.onnx"), external=False)
    assert onnx.load(tmp_path / "lazy.onnx") == onnx.load(source)
    assert (tmp_path / "lazy.onnx").read_bytes() == (tmp_path / "eager.onnx").read_bytes()


@pytest.mark.parametrize("lazy", [False, True])
def test_a_written_file_that_does_not_read_back_is_refused(tmp_path, monkeypatch, lazy):
    """Validation reads the output from disk: a damaged write is caught there, and
    nothing is moved into place."""
    if lazy:
        monkeypatch.setattr(modelio, "LAZY_MIN_BYTES", 0)
    real = pipeline.save_model

    def damaged(model, path, external):
        written = real(model, path, external)
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) - 100)
        return written

    monkeypatch.setattr(pipeline, "save_model", damaged)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ValidationError):
        prune_file(RESNET, out / "s.onnx", PruneConfig(ratio=0.5))
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("mode", ["auto", "never"])
def test_constant_node_tensors_in_external_data(tmp_path, mode):
    """Paddle-style weights in Constant nodes, saved as external data (onnx's
    convert_attribute): they are read at load, so the checker, the analysis and a
    one-file output see them as values; the one-file output needs no data file."""
    src = tmp_path / "src"
    src.mkdir()
    model = onnx.load(SAMPLES / "paddle_style.onnx")
    onnx.save(model, src / "p.onnx", save_as_external_data=True, location="p.data",
              size_threshold=0, convert_attribute=True)  # fmt: skip
    out = tmp_path / "out"
    out.mkdir()
    report = prune_file(src / "p.onnx", out / "s.onnx", PruneConfig(ratio=0.5), mode)
    assert report.oracle_rel_diff is not None and report.oracle_rel_diff < 1e-4
    if mode == "never":
        moved = tmp_path / "moved.onnx"
        (out / "s.onnx").rename(moved)  # nothing beside it: it must hold every weight
        onnx.checker.check_model(onnx.load(moved), full_check=True)
