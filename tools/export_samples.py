"""Export the small sample nets of ``tools/sample_nets.py`` to ONNX and verify them.

Usage (from the repo root)::

    python tools/export_samples.py                     # all samples -> sample_models/
    python tools/export_samples.py --only se_net       # one sample
    python tools/export_samples.py --resnet50 /tmp/resnet50.onnx   # benchmark model only

Each small net is exported with the TorchScript exporter (``dynamo=False``,
opset 17, eval mode, so BatchNorm is folded into the preceding Conv), input
``input``, output ``output``.  Two variants are added: ``resnet_small_unfused_bn``
(``TrainingMode.PRESERVE`` keeps BatchNormalization nodes) and
``mobilenetv2_small_dynamo`` (default dynamo exporter; skipped with a message if
it fails, e.g. when ``onnxscript`` is missing).  Every file is checked with
``onnx.checker`` and run in onnxruntime against the torch output.
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
import warnings
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sample_nets import SMALL_NETS, build, example_input  # noqa: E402

OPSET = 17
TOLERANCE = 1e-3
Exporter = Callable[[torch.nn.Module, torch.Tensor, Path], None]


def export_torchscript(
    model: torch.nn.Module,
    x: torch.Tensor,
    path: Path,
    training: torch.onnx.TrainingMode = torch.onnx.TrainingMode.EVAL,
) -> None:
    """Export with the TorchScript-based exporter (opset 17, static shapes)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (x,),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=["input"],
            output_names=["output"],
            training=training,
            do_constant_folding=True,
        )


def export_unfused_bn(model: torch.nn.Module, x: torch.Tensor, path: Path) -> None:
    """TorchScript export with ``TrainingMode.PRESERVE`` (BatchNormalization kept)."""
    export_torchscript(model, x, path, torch.onnx.TrainingMode.PRESERVE)


def export_dynamo(model: torch.nn.Module, x: torch.Tensor, path: Path) -> None:
    """Export with the default (dynamo / torch.export) exporter, weights inline."""
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    log = io.StringIO()
    with warnings.catch_warnings(), redirect_stdout(log), redirect_stderr(log):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            (x,),
            input_names=["input"],
            output_names=["output"],
            external_data=False,
        )
    if program is None:
        raise RuntimeError("dynamo exporter returned no ONNXProgram")
    program.save(str(path), external_data=False)
    strip_stack_traces(path)


def strip_stack_traces(path: Path) -> None:
    """Drop per-node stack-trace metadata (absolute paths) so the file is reproducible."""
    model = onnx.load(str(path))
    for node in model.graph.node:
        keep = [p for p in node.metadata_props if p.key != "pkg.torch.onnx.stack_trace"]
        del node.metadata_props[:]
        node.metadata_props.extend(keep)
    onnx.save(model, str(path))


def plain_export(model: torch.nn.Module, x: torch.Tensor, path: Path) -> None:
    """Default TorchScript eval-mode export."""
    export_torchscript(model, x, path)


# output name -> (net name, exporter, optional: skip with a message on failure)
JOBS: dict[str, tuple[str, Exporter, bool]] = {
    **{name: (name, plain_export, False) for name in SMALL_NETS},
    "resnet_small_unfused_bn": ("resnet_small", export_unfused_bn, False),
    "mobilenetv2_small_dynamo": ("mobilenetv2_small", export_dynamo, True),
}


def verify(path: Path, model: torch.nn.Module, x: torch.Tensor) -> float:
    """Check ``path`` with onnx.checker, run it in onnxruntime; return max |ort - torch|."""
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: x.numpy()}
    got = sess.run(None, feed)[0]
    with torch.no_grad():
        want = model(x).numpy()
    if got.shape != want.shape:
        raise RuntimeError(f"{path.name}: shape {got.shape} != torch {want.shape}")
    return float(np.max(np.abs(got - want)))


def run_job(out_name: str, out_dir: Path) -> bool:
    """Export and verify one sample; return False if it failed."""
    net_name, exporter, optional = JOBS[out_name]
    model, shape = build(net_name)
    x = example_input(shape)
    path = out_dir / f"{out_name}.onnx"
    try:
        exporter(model, x, path)
    except Exception as exc:  # noqa: BLE001 - report any exporter failure
        path.unlink(missing_ok=True)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        status = "SKIPPED" if optional else "FAILED"
        print(f"{out_name:28s} {status}: export error {type(exc).__name__}: {first}")
        return optional
    diff = verify(path, model, x)
    ok = diff <= TOLERANCE
    size_kb = path.stat().st_size / 1024
    print(
        f"{out_name:28s} {size_kb:8.1f} KB  max|ort-torch| = {diff:.2e}"
        f"{'' if ok else '  (ABOVE TOLERANCE)'}"
    )
    return ok


def export_resnet50(path: Path) -> bool:
    """Export the full-size ResNet-50 benchmark model to ``path`` and verify it."""
    model, shape = build("resnet50")
    x = example_input(shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    export_torchscript(model, x, path)
    diff = verify(path, model, x)
    size_mb = path.stat().st_size / 2**20
    print(f"resnet50 -> {path}  {size_mb:.1f} MB  max|ort-torch| = {diff:.2e}")
    return diff <= TOLERANCE


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("sample_models"), help="output directory")
    parser.add_argument(
        "--resnet50",
        type=Path,
        metavar="PATH",
        help="export the full-size ResNet-50 to PATH (small samples are then "
        "skipped unless --only is also given)",
    )
    parser.add_argument(
        "--only", choices=sorted(JOBS), metavar="NAME", help=f"one of: {', '.join(JOBS)}"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns a process exit code."""
    args = parse_args(argv)
    ok = True
    if args.resnet50 is not None:
        ok = export_resnet50(args.resnet50)
        if args.only is None:
            return 0 if ok else 1
    args.out.mkdir(parents=True, exist_ok=True)
    names = [args.only] if args.only else list(JOBS)
    for name in names:
        ok = run_job(name, args.out) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
