"""Check every ``.onnx`` file in ``sample_models/`` and print a summary table.

For each file: onnx.checker (full), size (must be < 1 MB), one onnxruntime run
on a seeded random input, node count, opset, input/output shapes and an
op-type histogram.  Exit code 1 if any file fails.

Usage (from the repo root): ``python tools/check_samples.py [--dir DIR] [--markdown]``.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

MAX_BYTES = 1 << 20


def dims(value: onnx.ValueInfoProto) -> list[int | str]:
    """Static dims (or symbolic names) of a graph input/output."""
    return [d.dim_value or d.dim_param for d in value.type.tensor_type.shape.dim]


def random_feed(sess: ort.InferenceSession) -> dict[str, np.ndarray]:
    """Seeded inputs: symbolic dims become 2, integer inputs (token ids, masks) are ones."""
    rng = np.random.default_rng(0)
    feed = {}
    for i in sess.get_inputs():
        shape = [d if isinstance(d, int) else 2 for d in i.shape]
        if i.type == "tensor(int64)":
            feed[i.name] = np.ones(shape, dtype=np.int64)
        else:
            feed[i.name] = rng.standard_normal(shape).astype(np.float32)
    return feed


def check_file(path: Path) -> dict[str, object]:
    """Validate and run one model; return its summary row."""
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    size = path.stat().st_size
    if size >= MAX_BYTES:
        raise RuntimeError(f"{path.name} is {size} bytes (>= 1 MB)")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outs = sess.run(None, random_feed(sess))
    if not all(np.all(np.isfinite(o)) for o in outs):
        raise RuntimeError(f"{path.name}: non-finite output")
    ops = Counter(n.op_type for n in model.graph.node)
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    return {
        "file": path.name,
        "kb": size / 1024,
        "nodes": len(model.graph.node),
        "opset": opset,
        "inputs": [dims(v) for v in model.graph.input],
        "outputs": [list(o.shape) for o in outs],
        "ops": ", ".join(f"{op}:{n}" for op, n in sorted(ops.items(), key=lambda t: (-t[1], t[0]))),
    }


def print_table(rows: list[dict[str, object]], markdown: bool) -> None:
    """Print rows as a plain or markdown table."""
    cols = ["file", "kb", "nodes", "opset", "inputs", "outputs", "ops"]
    if markdown:
        print("| " + " | ".join(cols) + " |")
        print("|" + "---|" * len(cols))
        for r in rows:
            cells = [f"{r['kb']:.1f}" if c == "kb" else str(r[c]) for c in cols]
            print("| " + " | ".join(cells) + " |")
        return
    for r in rows:
        print(
            f"{r['file']:30s} {r['kb']:7.1f} KB {r['nodes']:4d} nodes  opset {r['opset']:2d}  "
            f"in {r['inputs']} out {r['outputs']}\n    {r['ops']}"
        )


def main(argv: list[str] | None = None) -> int:
    """Check all sample models; return a process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("sample_models"), help="model folder")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = parser.parse_args(argv)
    rows, failed = [], 0
    for path in sorted(args.dir.glob("*.onnx")):
        try:
            rows.append(check_file(path))
        except Exception as exc:  # noqa: BLE001 - report every broken file
            failed += 1
            print(f"FAIL {path.name}: {type(exc).__name__}: {exc}")
    print_table(rows, args.markdown)
    print(f"{len(rows)} passed, {failed} failed")
    return 1 if failed or not rows else 0


if __name__ == "__main__":
    raise SystemExit(main())
