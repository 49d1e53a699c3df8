"""Export the small transformers of ``tools/transformer_nets.py`` to ONNX and verify them.

Usage (from the repo root)::

    python tools/export_transformers.py                    # all -> sample_models/
    python tools/export_transformers.py --only gpt_tiny    # one model, both exporters

Each model is written twice: ``<name>.onnx`` by the TorchScript exporter
(``dynamo=False``, opset 17, ``dynamic_axes``) and ``<name>_dynamo.onnx`` by the
default dynamo exporter (default opset, ``dynamic_shapes``, per-node stack traces
removed).  Batch and sequence axes are dynamic (``vit_tiny``: batch only).  Every
file is checked with ``onnx.checker`` (full) and run in onnxruntime at batch 1 and 3
and sequence length 7 and 12 against torch.  A dynamo failure is reported and
skipped; the exit code is 0 only if every ``dynamo=False`` export verifies.
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
import warnings
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from export_samples import strip_stack_traces  # noqa: E402
from transformer_nets import SPECS, TransformerSpec  # noqa: E402

OPSET = 17
TOLERANCE = 1e-4
EXAMPLE_BATCH, EXAMPLE_SEQ = 2, 8
CHECK_BATCHES, CHECK_SEQS = (1, 3), (7, 12)


def export_torchscript(model: torch.nn.Module, spec: TransformerSpec, path: Path) -> None:
    """TorchScript exporter, opset 17, dynamic batch/sequence via ``dynamic_axes``."""
    feed = spec.make_inputs(EXAMPLE_BATCH, EXAMPLE_SEQ, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            tuple(feed.values()),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=list(feed),
            output_names=[spec.output],
            dynamic_axes={**spec.input_axes, spec.output: spec.output_axes},
            do_constant_folding=True,
        )


def dynamic_shapes(spec: TransformerSpec) -> dict[str, dict[int, torch.export.Dim]]:
    """``spec.input_axes`` as torch.export dims; inputs sharing an axis name share a Dim."""
    dims = {"batch": torch.export.Dim("batch"), "seq": torch.export.Dim("seq", max=spec.max_seq)}
    return {
        name: {axis: dims[label] for axis, label in axes.items()}
        for name, axes in spec.input_axes.items()
    }


def export_dynamo(model: torch.nn.Module, spec: TransformerSpec, path: Path) -> None:
    """Default dynamo exporter (default opset), weights inline, stack traces stripped."""
    feed = spec.make_inputs(EXAMPLE_BATCH, EXAMPLE_SEQ, 0)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    log = io.StringIO()
    with warnings.catch_warnings(), redirect_stdout(log), redirect_stderr(log):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            tuple(feed.values()),
            input_names=list(feed),
            output_names=[spec.output],
            dynamic_shapes=dynamic_shapes(spec),
            external_data=False,
        )
    if program is None:
        raise RuntimeError("dynamo exporter returned no ONNXProgram")
    program.save(str(path), external_data=False)
    strip_stack_traces(path)


def verify(path: Path, model: torch.nn.Module, spec: TransformerSpec) -> float:
    """Full onnx.checker, then ORT vs torch at 2 batches x 2 lengths; return max |diff|."""
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    seqs = CHECK_SEQS if spec.has_seq else CHECK_SEQS[:1]
    worst = 0.0
    for batch in CHECK_BATCHES:
        for seq in seqs:
            feed = spec.make_inputs(batch, seq, batch * 100 + seq)
            got = sess.run(None, {k: v.numpy() for k, v in feed.items()})[0]
            with torch.no_grad():
                want = model(*feed.values()).numpy()
            if got.shape != want.shape:
                raise RuntimeError(f"batch {batch} seq {seq}: shape {got.shape} != {want.shape}")
            worst = max(worst, float(np.max(np.abs(got - want))))
    return worst


def run_job(name: str, dynamo: bool, out_dir: Path) -> bool:
    """Export and verify one file; return False only for a failed ``dynamo=False`` export."""
    spec = SPECS[name]
    model = spec.build()
    out_name = f"{name}_dynamo" if dynamo else name
    path = out_dir / f"{out_name}.onnx"
    try:
        (export_dynamo if dynamo else export_torchscript)(model, spec, path)
        diff = verify(path, model, spec)
        if diff > TOLERANCE:
            raise RuntimeError(f"max |ort - torch| = {diff:.2e} > {TOLERANCE:.0e}")
    except Exception as exc:  # noqa: BLE001 - report any exporter or verification failure
        path.unlink(missing_ok=True)
        lines = str(exc).strip().splitlines()
        status = "SKIPPED" if dynamo else "FAILED"
        print(f"{out_name:18s} {status}: {type(exc).__name__}: {lines[0] if lines else ''}")
        return dynamo
    size_kb = path.stat().st_size / 1024
    print(f"{out_name:18s} {size_kb:7.1f} KB  max|ort-torch| = {diff:.2e}")
    return True


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns a process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("sample_models"), help="output directory")
    parser.add_argument("--only", choices=sorted(SPECS), help="export one model only")
    parser.add_argument("--no-dynamo", action="store_true", help="skip the dynamo exporter")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    ok = True
    for name in [args.only] if args.only else list(SPECS):
        ok = run_job(name, False, args.out) and ok
        if not args.no_dynamo:
            run_job(name, True, args.out)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
