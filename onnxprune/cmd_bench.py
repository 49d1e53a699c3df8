"""`onnxprune bench model.onnx [other.onnx]`: onnxruntime CPU latency of one model
(median and spread), or of two side by side with the ratio of the second to the first.
Two models run interleaved (A B, B A, ...) on the same random inputs, so background load
falls on both alike; the paired ratio is the median of the per-round ratios."""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
import onnx
from google.protobuf.message import DecodeError

from . import latency
from .errors import BadInputError, first_line
from .staging import check_writable, write_files
from .validate import input_dims, input_feeds


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("models", nargs="+", metavar="MODEL", help="one or two .onnx files")
    p.add_argument("--runs", type=int, default=50, help="timed runs per model (default 50)")
    p.add_argument("--warmup", type=int, default=5, help="untimed runs first (default 5)")
    p.add_argument(
        "--threads",
        type=int,
        default=latency.DEFAULT_THREADS,
        help=f"onnxruntime intra-op threads (default {latency.DEFAULT_THREADS})",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")


def run(args: argparse.Namespace, shapes: dict) -> int:
    if len(args.models) > 2:
        raise BadInputError(f"bench takes one or two models, got {len(args.models)}")
    if args.runs < 1 or args.warmup < 0 or args.threads < 1:
        raise BadInputError("--runs and --threads must be at least 1, --warmup at least 0")
    if args.json:
        check_writable(args.json, "--json", args.models)
    models = [_load(path) for path in args.models]
    inputs = [_inputs(model, shapes) for model in models]
    if len(models) == 2 and inputs[0] != inputs[1]:
        a, b = (os.path.basename(p) for p in args.models)
        raise BadInputError(
            f"{a} and {b} take different inputs ({a}: {_describe(inputs[0])}; "
            f"{b}: {_describe(inputs[1])}); a paired comparison needs the same inputs"
        )
    feeds = input_feeds(models[0], shapes, args.seed)
    calls = [_runner(path, feeds, args.threads) for path in args.models]
    try:
        timings = latency.time_interleaved(calls, args.runs, args.warmup, desc="bench")
    except Exception as exc:
        raise BadInputError(f"onnxruntime cannot run the model: {first_line(exc, 300)}") from exc
    result = _result(args, inputs[0], timings)
    if not args.quiet:
        print(format_result(result))
    if args.json:
        write_files([(args.json, lambda path: _write_json(path, result))])
    return 0


def _write_json(path: str, result: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)


def _load(path: str) -> onnx.ModelProto:
    """The graph of `path` (external weights left on disk: onnxruntime reads them)."""
    if not os.path.exists(path):
        raise BadInputError(f"{path}: no such file")
    if not os.path.isfile(path):
        raise BadInputError(f"{path}: not a file")
    try:
        model = onnx.load(path, load_external_data=False)
    except (DecodeError, RuntimeError, ValueError, OSError) as exc:
        raise BadInputError(f"{path}: not a readable ONNX model ({first_line(exc, 300)})") from exc
    if not model.graph.node:
        raise BadInputError(f"{path}: not an ONNX model (no graph nodes)")
    return model


def _inputs(model: onnx.ModelProto, shapes: dict) -> dict[str, tuple[str, list[int]]]:
    """Each input's element type and concrete shape."""
    types = {vi.name: vi.type.tensor_type.elem_type for vi in model.graph.input}
    return {
        name: (str(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(types[name]))), dims)
        for name, dims in input_dims(model, shapes).items()
    }


def _describe(inputs: dict) -> str:
    return ", ".join(
        f"{name} {dtype} {'x'.join(map(str, dims))}" for name, (dtype, dims) in inputs.items()
    )


def _runner(path: str, feeds: dict, threads: int):
    try:
        return latency.runner(path, feeds, threads)
    except Exception as exc:
        raise BadInputError(f"{path}: onnxruntime cannot load it: {first_line(exc, 300)}") from exc


def _result(args: argparse.Namespace, inputs: dict, timings: list) -> dict:
    import onnxruntime as ort

    result = {
        "provider": latency.PROVIDER,
        "onnxruntime": ort.__version__,
        "threads": args.threads,
        "warmup": args.warmup,
        "runs": args.runs,
        "inputs": {name: {"dtype": t, "shape": dims} for name, (t, dims) in inputs.items()},
        "models": [
            {"path": path, **t.summary()} for path, t in zip(args.models, timings, strict=True)
        ],
    }
    if len(timings) == 2:
        pair = latency.Comparison(timings[0], timings[1], args.threads, args.warmup)
        result["ratio"] = pair.ratio
        result["paired_ratio"] = pair.paired_ratio
    return result


def format_result(r: dict) -> str:
    """The human form of bench's figures."""
    shapes = ", ".join(
        f"{name} {i['dtype']} {'x'.join(map(str, i['shape']))}" for name, i in r["inputs"].items()
    )
    order = ", interleaved" if len(r["models"]) == 2 else ""
    lines = [
        f"onnxruntime {r['onnxruntime']}, {r['provider']}, {r['threads']} intra-op threads "
        f"(1 inter-op, spinning off); {r['warmup']} warm-up + {r['runs']} timed runs each{order}",
        f"inputs: {shapes} (random, seed fixed)",
    ]
    for tag, m in zip("AB", r["models"], strict=False):
        lines.append(
            f"{tag}  {m['path']}: median {m['median_ms']:.3f} ms, IQR {m['q1_ms']:.3f}-"
            f"{m['q3_ms']:.3f}, p10-p90 {m['p10_ms']:.3f}-{m['p90_ms']:.3f} ms"
        )
    if "ratio" in r:
        lines.append(
            f"B/A: {r['ratio']:.3f} (ratio of medians), {r['paired_ratio']:.3f} "
            "(paired: median of the per-round ratios)"
        )
    return "\n".join(lines)
