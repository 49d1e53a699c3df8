"""Benchmark onnxprune: prune time against plain load + save, size and onnxruntime latency.

Usage (from anywhere)::

    python tools/bench_prune.py                                 # samples + ResNet-50
    python tools/bench_prune.py --skip-resnet50 --repeat 2 --runs 20
    python tools/bench_prune.py --models 'resnet*' se_net --json /tmp/bench.json

For every model (``sample_models/*.onnx`` and a full-size ResNet-50 exported to a
temporary folder with ``tools/export_samples.py``; also at ``round_to=8``):

* prune time: the job as a user runs it, ``prune(path, validate=False)`` then
  ``onnx.save``, against ``onnx.load`` + ``onnx.save`` of the same file: one
  untimed warm-up each, then N timed rounds, interleaved; medians and their ratio
  (the issue's target: <= 3x for ResNet-50). Python start-up and imports excluded.
* parameters and MACs before/after, from the prune report;
* onnxruntime latency (CPU, 2 intra-op threads, 1 inter-op, spinning off) of the
  original and of each pruned variant on one random input: a warm-up, then rounds
  of one run each, the order rotated every round; median, p10-p90 (ms), the
  after/before ratio of medians and the median of the per-round ratios (paired).

A benchmark, not a test: it always exits 0 unless the arguments are unusable.
"""

from __future__ import annotations

import argparse
import fnmatch
import gc
import glob
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

TOOLS = Path(__file__).resolve().parent
ROOT = TOOLS.parent
sys.path.insert(0, str(ROOT))
import onnxprune  # noqa: E402

INTRA_THREADS = 2
INTER_THREADS = 1
WARMUP_RUNS = 5
TARGET_RATIO = 3.0
RESNET50 = "resnet50"
RESNET50_ROUND_TO = (1, 8)
SPINNING = "0"  # session.intra_op.allow_spinning, see make_session
PROVIDERS = ["CPUExecutionProvider"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ratio", type=float, default=0.5, help="prune ratio (default 0.5)")
    p.add_argument(
        "--models",
        nargs="+",
        metavar="GLOB",
        help="sample names or globs (matched against file stems, or paths to .onnx files); "
        "'resnet50' matches the exported ResNet-50 (default: all)",
    )
    p.add_argument("--skip-resnet50", action="store_true", help="do not export ResNet-50")
    p.add_argument("--repeat", type=int, default=5, help="timed prune runs (median; default 5)")
    p.add_argument("--runs", type=int, default=50, help="latency runs per model (>= 20)")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the figures as JSON")
    args = p.parse_args(argv)
    if args.repeat < 1 or args.runs < 20:
        p.error("--repeat must be at least 1 and --runs at least 20")
    return args


def select_models(patterns: list[str] | None) -> tuple[list[tuple[str, Path]], bool]:
    """(name, path) of the chosen models, and whether ResNet-50 is chosen."""
    samples = sorted((ROOT / "sample_models").glob("*.onnx"))
    if not patterns:
        return [(p.stem, p) for p in samples], True
    chosen: dict[str, Path] = {}
    for pattern in patterns:
        if pattern.endswith(".onnx") or "/" in pattern:
            for found in sorted(glob.glob(pattern)):
                chosen.setdefault(Path(found).stem, Path(found))
            continue
        for path in samples:
            if fnmatch.fnmatch(path.stem, pattern):
                chosen.setdefault(path.stem, path)
    want_resnet = any(fnmatch.fnmatch(RESNET50, p) for p in patterns)
    return list(chosen.items()), want_resnet


def export_resnet50(folder: Path) -> Path | None:
    """Export ResNet-50 into ``folder`` with tools/export_samples.py; None if torch is missing."""
    try:
        sys.path.insert(0, str(TOOLS))
        import export_samples
    except (ImportError, OSError) as exc:
        print(f"ResNet-50 skipped: torch is not importable ({exc}); pip install torch==2.13.0")
        return None
    path = folder / f"{RESNET50}.onnx"
    if not export_samples.export_resnet50(path):
        print("warning: exported ResNet-50 differs from torch above tolerance")
    return path


def rotated(names: list[str], i: int) -> list[str]:
    """``names`` rotated by ``i``: round-robin order that changes who follows whom."""
    k = i % len(names)
    return names[k:] + names[:k]


def time_interleaved(jobs: dict[str, Callable[[], object]], repeat: int) -> dict[str, list[float]]:
    """Run every job once untimed, then ``repeat`` rounds of all jobs in turn; seconds each."""
    for job in jobs.values():
        job()
    times: dict[str, list[float]] = {name: [] for name in jobs}
    for i in range(repeat):
        for name in rotated(list(jobs), i):
            gc.collect()
            start = time.perf_counter()
            jobs[name]()
            times[name].append(time.perf_counter() - start)
    return times


def bench_prune(path: Path, out: Path, ratio: float, round_to: int, repeat: int) -> dict:
    """Median prune+save time and load+save time of ``path``; report figures of the last run."""
    config = onnxprune.PruneConfig(ratio=ratio, validate=False, round_to=round_to)
    copy = out.with_suffix(".copy.onnx")
    reports: list = []
    saves: list[float] = []

    def prune_job() -> None:
        model, report = onnxprune.prune(str(path), config)
        start = time.perf_counter()
        onnx.save(model, str(out))
        saves.append(time.perf_counter() - start)
        reports.append(report)

    def io_job() -> None:
        onnx.save(onnx.load(str(path)), str(copy))

    times = time_interleaved({"prune": prune_job, "io": io_job}, repeat)
    copy.unlink(missing_ok=True)
    report = reports[-1]
    phases = {k: float(np.median([r.seconds[k] for r in reports[1:]])) for k in report.seconds}
    phases["save"] = float(np.median(saves[1:]))
    prune_s, io_s = float(np.median(times["prune"])), float(np.median(times["io"]))
    return {
        **{"prune_s": prune_s, "load_save_s": io_s, "time_ratio": prune_s / io_s},
        "phases_s": phases,
        "params_before": report.params_before,
        "params_after": report.params_after,
        "macs_before": report.macs_before,
        "macs_after": report.macs_after,
    }


def random_feeds(model: onnx.ModelProto, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs with the model's input shapes (symbolic dimensions set to 1)."""
    rng = np.random.default_rng(seed)
    initializers = {t.name for t in model.graph.initializer}
    feeds = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        tensor = value.type.tensor_type
        shape = [d.dim_value if d.dim_value > 0 else 1 for d in tensor.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)
        if np.issubdtype(dtype, np.floating):
            feeds[value.name] = rng.standard_normal(shape).astype(dtype)
        else:
            feeds[value.name] = rng.integers(0, 2, shape).astype(dtype)
    return feeds


def make_session(path: Path) -> ort.InferenceSession:
    """A CPU session with the benchmark's thread settings."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = INTRA_THREADS
    options.inter_op_num_threads = INTER_THREADS
    # Idle worker threads of one session would otherwise spin on the CPUs the next
    # session's run needs (interleaved runs measured up to 2x slower, order-dependent).
    options.add_session_config_entry("session.intra_op.allow_spinning", SPINNING)
    return ort.InferenceSession(str(path), options, providers=PROVIDERS)


def bench_latency(paths: dict[str, Path], feeds: dict, runs: int) -> tuple[dict, set[str]]:
    """Round-robin latency (ms) of every model in ``paths``; also the providers used."""
    sessions = {name: make_session(path) for name, path in paths.items()}
    for sess in sessions.values():
        for _ in range(WARMUP_RUNS):
            sess.run(None, feeds)
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for i in range(runs):
        for name in rotated(list(sessions), i):
            start = time.perf_counter()
            sessions[name].run(None, feeds)
            times[name].append((time.perf_counter() - start) * 1e3)
    stats = {
        name: {
            "median_ms": float(np.median(t)),
            "p10_ms": float(np.percentile(t, 10)),
            "p90_ms": float(np.percentile(t, 90)),
            "runs_ms": [round(v, 3) for v in t],
        }
        for name, t in times.items()
    }
    providers = {p for sess in sessions.values() for p in sess.get_providers()}
    return stats, providers


def bench_model(name: str, path: Path, variants, args, tmp: Path) -> tuple[list[dict], set[str]]:
    """All figures of one model: one row per round_to variant."""
    rows, pruned = [], {}
    for round_to in variants:
        row = {"model": name, "round_to": round_to, "ratio": args.ratio}
        out = tmp / f"{name}.r{round_to}.pruned.onnx"
        try:
            row.update(bench_prune(path, out, args.ratio, round_to, args.repeat))
            pruned[round_to] = out
        except Exception as exc:  # noqa: BLE001 - a benchmark reports and goes on
            row["error"] = f"prune: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
        rows.append(row)
    if not pruned:
        return rows, set()
    try:
        feeds = random_feeds(onnx.load(str(path), load_external_data=False))
        paths = {"before": path, **{f"r{k}": v for k, v in pruned.items()}}
        stats, providers = bench_latency(paths, feeds, args.runs)
    except Exception as exc:  # noqa: BLE001
        for row in rows:
            row.setdefault("error", f"onnxruntime: {type(exc).__name__}: {exc}"[:160])
        return rows, set()
    for row in rows:
        if row["round_to"] in pruned:
            before, after = stats["before"], stats[f"r{row['round_to']}"]
            row["latency_before"], row["latency_after"] = before, after
            row["latency_ratio"] = after["median_ms"] / before["median_ms"]
            paired = np.divide(after["runs_ms"], before["runs_ms"])
            row["latency_ratio_paired"] = float(np.median(paired))
    return rows, providers


def cpu_name() -> str:
    """The CPU model name from /proc/cpuinfo, else platform.processor()."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    first = [line.split(":", 1) for line in text.split("\n\n")[0].splitlines() if ":" in line]
    info = {key.strip(): value.strip() for key, value in first}
    isa = [f for f in ("avx512f", "avx2") if f in info.get("flags", "").split()]
    name = info.get("model name", "unknown")
    return f"{name} ({', '.join(isa) or 'no avx2'})"


def machine_info(args, providers: set[str]) -> dict:
    """What the figures were measured on."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": affinity,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "onnx": onnx.__version__,
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
        "onnxprune": onnxprune.__version__,
        "intra_op_threads": INTRA_THREADS,
        "inter_op_threads": INTER_THREADS,
        "intra_op_allow_spinning": SPINNING,
        "providers_used": sorted(providers),
        "providers_available": ort.get_available_providers(),
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "ratio": args.ratio,
        "repeat": args.repeat,
        "latency_runs": args.runs,
        "latency_warmup": WARMUP_RUNS,
    }


def print_header(info: dict) -> None:
    """The machine and settings, one fact a line."""
    blas = info["OPENBLAS_CORETYPE"]
    print("onnxprune benchmark")
    print(
        f"  cpu         {info['cpu']}; cpu_count {info['cpu_count']}, usable {info['cpus_usable']}"
    )
    print(
        f"  versions    {info['platform']}, python {info['python']}, onnx {info['onnx']}, "
        f"onnxruntime {info['onnxruntime']}, numpy {info['numpy']}, onnxprune {info['onnxprune']}"
    )
    print(
        f"  ort         intra_op {info['intra_op_threads']}, inter_op "
        f"{info['inter_op_threads']}, allow_spinning {info['intra_op_allow_spinning']}, "
        f"providers used {', '.join(info['providers_used'])} "
        f"(available {', '.join(info['providers_available'])})"
    )
    print(f"  env         OPENBLAS_CORETYPE={blas if blas is not None else '(not set)'}")
    print(
        f"  settings    ratio {info['ratio']}, prune timing median of {info['repeat']} "
        f"(after 1 warm-up), latency median of {info['latency_runs']} "
        f"(after {info['latency_warmup']} warm-up)"
    )


def _mega(n: int) -> str:
    return f"{n / 1e6:.3f}M" if n < 1e7 else f"{n / 1e6:.1f}M"


def _lat(stats: dict) -> str:
    return f"{stats['median_ms']:7.2f} [{stats['p10_ms']:.2f}-{stats['p90_ms']:.2f}]"


def print_tables(rows: list[dict]) -> None:
    """Prune time table, then size and latency table."""
    print(
        f"\nPrune time (prune+save vs load+save, seconds; target ratio <= {TARGET_RATIO:g}x "
        "for ResNet-50)"
    )
    print(
        f"{'model':28s} {'round':>5s} {'prune+save':>10s} {'load+save':>9s} {'ratio':>7s}  "
        "phases (median s)"
    )
    for r in rows:
        head = f"{r['model']:28s} {r['round_to']:5d}"
        if "prune_s" not in r:
            print(f"{head} {r['error']}")
            continue
        flag = " !" if r["model"] == RESNET50 and r["time_ratio"] > TARGET_RATIO else ""
        phases = " ".join(f"{k} {v:.3f}" for k, v in r["phases_s"].items())
        print(
            f"{head} {r['prune_s']:10.3f} {r['load_save_s']:9.3f} "
            f"{r['time_ratio']:6.2f}x{flag:2s} {phases}"
        )
    print(
        "\nSize and onnxruntime latency (ms: median [p10-p90]; ratios are after/before;"
        " paired: median of per-round after/before)"
    )
    print(
        f"{'model':28s} {'round':>5s} {'params':>17s} {'ratio':>5s} {'MACs':>17s} {'ratio':>5s} "
        f"{'latency before':>22s} {'latency after':>22s} {'ratio':>5s} {'paired':>6s}"
    )
    for r in rows:
        head = f"{r['model']:28s} {r['round_to']:5d}"
        if "latency_ratio" not in r:
            print(f"{head} {r.get('error', 'no latency')}")
            continue
        params = f"{_mega(r['params_before'])}->{_mega(r['params_after'])}"
        macs = f"{_mega(r['macs_before'])}->{_mega(r['macs_after'])}"
        print(
            f"{head} {params:>17s} {r['params_after'] / r['params_before']:5.2f} "
            f"{macs:>17s} {r['macs_after'] / max(r['macs_before'], 1):5.2f} "
            f"{_lat(r['latency_before']):>22s} {_lat(r['latency_after']):>22s} "
            f"{r['latency_ratio']:5.2f} {r['latency_ratio_paired']:6.2f}"
        )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return a process exit code."""
    args = parse_args(argv)
    models, want_resnet = select_models(args.models)
    rows: list[dict] = []
    providers: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="bench_prune-") as folder:
        tmp = Path(folder)
        jobs = [(name, path, (1,)) for name, path in models]
        if want_resnet and not args.skip_resnet50:
            resnet = export_resnet50(tmp)
            if resnet is not None:
                jobs.append((RESNET50, resnet, RESNET50_ROUND_TO))
        if not jobs:
            print("no models selected")
            return 2
        for name, path, variants in jobs:
            print(f"benchmarking {name} ...", file=sys.stderr, flush=True)
            model_rows, used = bench_model(name, path, variants, args, tmp)
            rows += model_rows
            providers |= used
    info = machine_info(args, providers)
    print()
    print_header(info)
    print_tables(rows)
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "rows": rows}, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
