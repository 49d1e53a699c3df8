"""Property: on any valid CNN built from the supported ops, pruning is exact or refused.

Hypothesis draws graphs (tests/graph_strategies.py) and pruning options. Pruning must
either return a model that passes the full onnx.checker, runs in onnxruntime (as
written and optimised) with the original's output shapes, and computes exactly what the
original computes with the removed channels masked (the plan's oracle); or stop with an
OnnxPruneError that is not a validation failure, in one line. Anything else fails.

The runs are derandomized so CI sees the same examples every time; a failure prints
the graph (ONNX text), the config and a @reproduce_failure blob. To hunt for new
failures, run with ONNXPRUNE_PROPERTY_EXAMPLES=2000 ONNXPRUNE_PROPERTY_RANDOM=1.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile

import numpy as np
import onnx
import onnx.printer
from hypothesis import HealthCheck, event, given, note, settings

from onnxprune import OnnxPruneError, PruneConfig, ValidationError, make_plan, prune
from onnxprune.cli import main
from onnxprune.pipeline import calibration
from onnxprune.validate import input_feeds, run

from .graph_strategies import cnn_cases

EXAMPLES = int(os.environ.get("ONNXPRUNE_PROPERTY_EXAMPLES", "200"))
RANDOM = os.environ.get("ONNXPRUNE_PROPERTY_RANDOM") == "1"
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not RANDOM,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
RTOL = 1e-4  # of the output's largest magnitude, as the pipeline's own oracle check


def _describe(model: onnx.ModelProto, config: PruneConfig) -> None:
    note(onnx.printer.to_text(model.graph))
    note(repr(config))


def _refusal(exc: OnnxPruneError) -> None:
    """A refusal is fine when it is deliberate: one clear line, not a failed check."""
    message = str(exc)
    assert not isinstance(exc, ValidationError), f"pruned model is invalid: {message}"
    assert message.strip() and "\n" not in message, repr(message)
    event(f"refused: {type(exc).__name__}: {message[:70]}")


def _assert_close(got: np.ndarray, ref: np.ndarray, what: str) -> None:
    assert got.shape == ref.shape, f"{what}: shape {got.shape}, expected {ref.shape}"
    ref64 = ref.astype(np.float64)
    scale = max(float(np.abs(ref64).max()) if ref.size else 0.0, 1e-6)
    diff = float(np.abs(got.astype(np.float64) - ref64).max()) if ref.size else 0.0
    assert diff <= RTOL * scale, f"{what}: max |diff| {diff:.3g} vs scale {scale:.3g}"


@SETTINGS
@given(case=cnn_cases())
def test_pruning_a_random_cnn_is_exact_or_a_clear_refusal(case):
    model, config = case
    _describe(model, config)
    original = model.SerializeToString()
    try:
        pruned, report = prune(model, config)
    except OnnxPruneError as exc:
        _refusal(exc)
        return
    assert model.SerializeToString() == original, "prune() modified its input"
    onnx.checker.check_model(pruned, full_check=True)
    plan = make_plan(model, config, calibration(model, config))
    feeds = input_feeds(model, config.input_shapes, seed=7)
    reference = run(original, feeds)
    masked = plan.masked_original(model).SerializeToString()
    for optimize in (False, True):  # each against the same kernels: fused ones round apart
        expected = run(masked, feeds, optimize=optimize)
        got = run(pruned.SerializeToString(), feeds, optimize=optimize)
        assert list(got) == list(reference)
        for name, ref in reference.items():
            assert got[name].shape == ref.shape, name
            _assert_close(got[name], expected[name], f"{name} (optimize={optimize})")
    assert all(g.kept <= g.channels for g in report.groups)
    assert report.params_after <= report.params_before
    removed = sum(g.channels - g.kept for g in report.groups)
    event("pruned something" if removed else "pruned nothing")


def _cli_args(config: PruneConfig) -> list[str]:
    args = [f"--ratio={config.ratio}", f"--criterion={config.criterion}",
            f"--round-to={config.round_to}", f"--min-channels={config.min_channels}"]  # fmt: skip
    if config.global_ranking:
        args.append("--global")
    if config.calib_random:
        args += [f"--calib-random={config.calib_random}", "--reconstruct=none"]
    args += [f"--exclude={pattern}" for pattern in config.exclude]
    for name, dims in config.input_shapes.items():
        args.append(f"--input-shape={name}:{'x'.join(map(str, dims))}")
    return args


@settings(SETTINGS, max_examples=max(EXAMPLES // 4, 1))
@given(case=cnn_cases())
def test_the_command_writes_a_valid_model_or_nothing(case):
    """Through the command line: exit 0 and a checked model, or a one-line error and no
    file; the input file is left as it was."""
    model, config = case
    _describe(model, config)
    with tempfile.TemporaryDirectory() as folder:
        source, target = os.path.join(folder, "in.onnx"), os.path.join(folder, "out.onnx")
        onnx.save(model, source)
        before = open(source, "rb").read()
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([source, "-o", target, "-q", *_cli_args(config)])
        assert open(source, "rb").read() == before
        leftovers = sorted(set(os.listdir(folder)) - {"in.onnx", "out.onnx"})
        assert not leftovers, leftovers
        if code == 0:
            written = onnx.load(target)
            onnx.checker.check_model(written, full_check=True)
            feeds = input_feeds(model, config.input_shapes, seed=3)
            reference = run(before, feeds)
            got = run(written.SerializeToString(), feeds)
            assert {k: v.shape for k, v in got.items()} == {
                k: v.shape for k, v in reference.items()
            }
            return
        lines = err.getvalue().strip().splitlines()
        assert code == 2 and not os.path.exists(target), (code, err.getvalue())
        assert len(lines) == 1 and lines[0].startswith("onnxprune: error: "), lines
