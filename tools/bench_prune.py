"""Benchmark onnxprune: prune time and peak memory against plain load + save, MACs, latency.

Usage (from anywhere)::

    python tools/bench_prune.py                                 # samples + ResNet-50
    python tools/bench_prune.py --models resnet50 mobilenetv2 vit_b16 bert_base \\
        --out /tmp/bigbench_models --json /tmp/bench.json
    python tools/bench_prune.py --models bert_large --out /tmp/bigbench_models --repeat 1
    python tools/bench_prune.py --models 'resnet*' se_net --skip-resnet50 --runs 20

Models: ``sample_models/*.onnx`` (matched by stem) and the full-size models of
``tools/big_models.py`` (resnet50, mobilenetv2, vit_b16, bert_base, bert_large, bert_xl;
random weights), exported into ``--out`` unless already there (needs torch). bert_large holds
1.34 GB of weights as ONNX external data, bert_xl 2.5 GB (over protobuf's 2 GB limit).

Every measurement runs in a fresh process (``tools/bench_steps.py``), so its peak
resident memory (VmHWM, not ``ru_maxrss``: see bench_steps.rss_kb) is that step's own;
the clock covers the work only (no interpreter start-up or imports). Per model: one
untimed load + save (warms the page cache), then ``--repeat`` rounds, the order
rotated each round, of

* the floor: ``onnx.load`` + ``onnx.save`` of the same file (external data saved back as
  external data);
* prune at ``--ratio`` and write, once per rounding (1, 8, and ``auto`` when the
  installed CLI accepts ``--round-to auto``), via the CLI in-process (``--via cli``,
  with ``--report``; ``--external-data auto`` when the CLI has it) or the API
  (``--via api``: ``prune_file`` when it exists, else ``prune`` + ``onnx.save``);
  validation off unless ``--validate``.

Reported: median seconds of prune and floor and their ratio (the issue's target: at
most 2x), the largest peak RSS in MiB and ``xW`` = (peak - resident memory after the
imports) / weight bytes W, MACs before/after from the prune report, and onnxruntime
latency (CPU, 2 intra-op threads, spinning off; one process holding the original and
every pruned variant; round-robin; runs capped by ``--latency-budget``): medians and
the median of per-round after/before ratios (paired). A step that fails, runs past
``--timeout`` or grows past ``--mem-limit-gb`` is killed and reported with its time
and peak. A benchmark, not a test: it exits 0 unless the arguments are unusable.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

TOOLS = Path(__file__).resolve().parent
ROOT = TOOLS.parent
sys.path.insert(0, str(TOOLS))
import bench_steps  # noqa: E402  (puts the repository root on sys.path)
from bench_steps import (  # noqa: E402,F401  (re-exported for bench_minilm*)
    INTER_THREADS,
    INTRA_THREADS,
    SPINNING,
    make_session,
    random_feeds,
    rotated,
)

import onnxprune  # noqa: E402

WARMUP_RUNS = 5  # latency warm-up of bench_latency (bench_minilm*)
TARGET_RATIO = 2.0
BIG_MODELS = ("resnet50", "mobilenetv2", "vit_b16", "bert_base", "bert_large", "bert_xl")
DEFAULT_OUT = Path(tempfile.gettempdir()) / "onnxprune_bench_models"
POLL_SECONDS = 0.05


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ratio", type=float, default=0.5, help="prune ratio (default 0.5)")
    p.add_argument(
        "--models",
        nargs="+",
        metavar="GLOB",
        help="sample names, big model names (" + ", ".join(BIG_MODELS) + ") or globs, or "
        "paths to .onnx files (default: all samples and resnet50)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"folder of the big models (exported there if missing; default {DEFAULT_OUT})",
    )
    p.add_argument("--skip-resnet50", action="store_true", help="leave out resnet50")
    p.add_argument(
        "--round-to",
        nargs="+",
        metavar="N",
        help="roundings of the big models "
        "(default: 1 8, and auto if the CLI accepts it); samples use 1",
    )
    p.add_argument("--repeat", type=int, default=3, help="timed rounds (median; default 3)")
    p.add_argument("--runs", type=int, default=50, help="latency rounds at most (default 50)")
    p.add_argument(
        "--latency-budget",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds of latency rounds per model, at least 10 rounds",
    )
    p.add_argument("--no-latency", action="store_true", help="skip the onnxruntime latency")
    p.add_argument("--validate", action="store_true", help="prune with validation on")
    p.add_argument("--via", choices=("cli", "api"), default="cli", help="how to prune")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per step")
    p.add_argument("--mem-limit-gb", type=float, default=14.0, help="kill a step above this RSS")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the figures as JSON")
    args = p.parse_args(argv)
    if args.repeat < 1 or args.runs < bench_steps.MIN_RUNS:
        p.error(f"--repeat must be at least 1 and --runs at least {bench_steps.MIN_RUNS}")
    return args


def select_models(patterns: list[str] | None) -> tuple[list[tuple[str, Path]], list[str]]:
    """(name, path) of the chosen sample or given files, and the chosen big model names."""
    samples = sorted((ROOT / "sample_models").glob("*.onnx"))
    if not patterns:
        return [(p.stem, p) for p in samples], ["resnet50"]
    chosen: dict[str, Path] = {}
    for pattern in patterns:
        if pattern.endswith(".onnx") or "/" in pattern:
            chosen.setdefault(Path(pattern).stem, Path(pattern))
            continue
        for path in samples:
            if fnmatch.fnmatch(path.stem, pattern):
                chosen.setdefault(path.stem, path)
    big = [n for n in BIG_MODELS if any(fnmatch.fnmatch(n, p) for p in patterns)]
    return list(chosen.items()), big


def ensure_big_model(name: str, out: Path) -> Path | None:
    """``out/name.onnx``, exported by tools/big_models.py in a child process if missing."""
    path = out / f"{name}.onnx"
    if path.exists():
        return path
    print(f"exporting {name} into {out} ...", file=sys.stderr, flush=True)
    cmd = [sys.executable, str(TOOLS / "big_models.py"), "--out", str(out), "--only", name]
    done = subprocess.run(cmd, check=False)
    if done.returncode != 0 or not path.exists():
        print(f"{name} skipped: export failed (exit {done.returncode})", file=sys.stderr)
        return None
    return path


def model_facts(path: Path) -> tuple[int, bool]:
    """Weight bytes W (initializers, inline or external) and whether any is external."""
    proto = onnx.load(str(path), load_external_data=False)
    total, external = 0, False
    for t in proto.graph.initializer:
        itemsize = onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
        total += int(np.prod(t.dims, dtype=np.int64)) * itemsize
        external |= t.data_location == onnx.TensorProto.EXTERNAL
    return total, external


def rss_kb_of(pid: int) -> int:
    """Current resident memory of a process in KiB (0 if it is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def run_step(step: list[str], args: argparse.Namespace, work: Path) -> dict:
    """Run ``bench_steps.py STEP...`` in a fresh process; its result plus peak RSS (KiB)."""
    result, log = work / "step.json", work / "step.log"
    result.unlink(missing_ok=True)
    cmd = [sys.executable, str(TOOLS / "bench_steps.py"), "--result", str(result), *step]
    limit_kb, killed, peak = int(args.mem_limit_gb * 2**20), "", 0
    start = time.perf_counter()
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, stdout=err, stderr=err)
        while True:
            pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            elapsed = time.perf_counter() - start
            rss = rss_kb_of(proc.pid)
            peak = max(peak, rss)
            if not killed and (rss > limit_kb or elapsed > args.timeout):
                killed = (
                    f"killed at RSS {rss / 1024:.0f} MiB"
                    if rss > limit_kb
                    else f"killed after {elapsed:.0f} s timeout"
                )
                proc.kill()
            time.sleep(POLL_SECONDS)
    proc.returncode = os.waitstatus_to_exitcode(status)
    found = json.loads(result.read_text()) if result.exists() else {}
    found["wall_s"] = time.perf_counter() - start
    # The child's own VmHWM; when it died without a result, the largest RSS polled here.
    # usage.ru_maxrss would include this parent's peak (see bench_steps.rss_kb).
    found.setdefault("peak_rss_kb", peak)
    if killed:
        found["error"] = f"{killed} ({found['wall_s']:.0f} s)"
    elif "error" not in found and proc.returncode != 0:
        tail = [line for line in log.read_text().splitlines() if line.strip()][-1:]
        found["error"] = f"exit {proc.returncode}: {' '.join(tail)[:200]}"
    if "error" in found and "onnxprune exit" in found["error"]:
        tail = [line for line in log.read_text().splitlines() if "onnxprune:" in line][-1:]
        found["error"] += f": {' '.join(tail)[:200]}"
    return found


def roundings(args: argparse.Namespace, big: bool) -> list[str]:
    """The --round-to values to measure for a model."""
    if args.round_to:
        return list(args.round_to)
    if not big:
        return ["1"]
    auto = bench_steps.cli_accepts("--round-to", "auto")
    return ["1", "8", *(["auto"] if auto else [])]


def prune_step(src: Path, dst: Path, rounding: str, args, external: bool) -> list[str]:
    """The bench_steps.py arguments that prune ``src`` into ``dst``."""
    step = [
        "prune",
        str(src),
        str(dst),
        "--ratio",
        str(args.ratio),
        "--round-to",
        rounding,
        "--via",
        args.via,
    ]
    return step + (["--validate"] if args.validate else []) + (["--external"] * external)


def summary(results: list[dict]) -> dict:
    """Median seconds, largest peak and median baseline of the repeated results of a step."""
    good = [r for r in results if "error" not in r]
    if not good:
        last = results[-1]
        return {
            "error": last["error"],
            "wall_s": last["wall_s"],
            "peak_rss_kb": max(r["peak_rss_kb"] for r in results),
        }
    return {
        "seconds": float(np.median([r["seconds"] for r in good])),
        "peak_rss_kb": max(r["peak_rss_kb"] for r in good),
        "baseline_rss_kb": float(np.median([r["baseline_rss_kb"] for r in good])),
        "last": good[-1],
    }


def bench_model(name: str, path: Path, args, work: Path, big: bool) -> list[dict]:
    """All figures of one model: one row per rounding."""
    weights, external = model_facts(path)
    copy = work / f"{name}.copy.onnx"
    floor = ["floor", str(path), str(copy)] + (["--external"] if external else [])
    steps = {"floor": floor}
    outs = {}
    for rounding in roundings(args, big):
        outs[rounding] = work / f"{name}.r{rounding}.onnx"
        steps[rounding] = prune_step(path, outs[rounding], rounding, args, external)
    print(f"benchmarking {name} (W {weights / 2**20:.0f} MiB) ...", file=sys.stderr, flush=True)
    run_step(floor, args, work)  # warm-up: page cache
    results: dict[str, list[dict]] = {key: [] for key in steps}
    for i in range(args.repeat):
        for key in rotated(list(steps), i):
            results[key].append(run_step(steps[key], args, work))
            r = results[key][-1]
            said = r.get("error") or f"{r['seconds']:.2f} s"
            print(f"  {key:6s} {said}, peak {r['peak_rss_kb'] / 1024:.0f} MiB", file=sys.stderr)
    floor_sum = summary(results.pop("floor"))
    rows = []
    for rounding, res in results.items():
        row = {
            "model": name,
            "round_to": rounding,
            "ratio": args.ratio,
            "weight_bytes": weights,
            "external_data": external,
            "floor": floor_sum,
            "prune": summary(res),
        }
        rows.append(row)
    if not args.no_latency:
        add_latency(rows, path, outs, args, work)
    for suffix in ("", ".data"):
        Path(f"{copy}{suffix}").unlink(missing_ok=True)
    return rows


def add_latency(rows: list[dict], path: Path, outs: dict, args, work: Path) -> None:
    """Latency of the original and every pruned variant that was written, in one process."""
    pruned = {r["round_to"]: outs[r["round_to"]] for r in rows if "error" not in r["prune"]}
    if not pruned:
        return
    step = [
        "latency",
        str(path),
        *map(str, pruned.values()),
        "--runs",
        str(args.runs),
        "--budget",
        str(args.latency_budget),
    ]
    found = run_step(step, args, work)
    for row in rows:
        if "error" in found:
            row["latency_error"] = found["error"]
            continue
        if row["round_to"] not in pruned:
            continue
        before = found["latency"][str(path)]
        after = found["latency"][str(pruned[row["round_to"]])]
        row["latency_before"], row["latency_after"] = before, after
        row["latency_ratio"] = after["median_ms"] / before["median_ms"]
        row["latency_ratio_paired"] = float(
            np.median(np.divide(after["runs_ms"], before["runs_ms"]))
        )
        row["latency_runs"], row["providers"] = found["runs"], found["providers"]


def bench_latency(paths: dict[str, Path], feeds: dict, runs: int) -> tuple[dict, set[str]]:
    """In-process round-robin latency (ms) of every model in ``paths``; also the providers."""
    sessions = {name: make_session(str(path)) for name, path in paths.items()}
    bench_steps.warm_up(sessions, feeds, WARMUP_RUNS)
    stats = bench_steps.round_robin(sessions, feeds, runs)
    return stats, {p for sess in sessions.values() for p in sess.get_providers()}


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


def machine_info(args) -> dict:
    """What the figures were measured on, and how."""
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
        "has_prune_file": hasattr(onnxprune, "prune_file"),
        "cli_external_data": bench_steps.cli_accepts("--external-data", "auto"),
        "intra_op_threads": INTRA_THREADS,
        "inter_op_threads": INTER_THREADS,
        "intra_op_allow_spinning": SPINNING,
        "ratio": args.ratio,
        "repeat": args.repeat,
        "via": args.via,
        "validate": args.validate,
        "latency_runs_max": args.runs,
        "latency_budget_s": args.latency_budget,
    }


def print_header(info: dict) -> None:
    """The machine and settings, one fact a line."""
    print("onnxprune benchmark")
    print(f"  cpu       {info['cpu']}; cpu_count {info['cpu_count']}, usable {info['cpus_usable']}")
    print(
        f"  versions  {info['platform']}, python {info['python']}, onnx {info['onnx']}, "
        f"onnxruntime {info['onnxruntime']}, numpy {info['numpy']}, "
        f"onnxprune {info['onnxprune']}"
    )
    print(
        f"  prune     ratio {info['ratio']} via {info['via']}, validate {info['validate']}, "
        f"prune_file {info['has_prune_file']}, --external-data "
        f"{info['cli_external_data']}; median of {info['repeat']} fresh processes"
    )
    print(
        f"  ort       CPU, intra_op {info['intra_op_threads']}, inter_op "
        f"{info['inter_op_threads']}, allow_spinning {info['intra_op_allow_spinning']}; "
        f"at most {info['latency_runs_max']} rounds or {info['latency_budget_s']:g} s"
    )


def _mib(kb: float) -> str:
    return f"{kb / 1024:.0f}"


def _xw(step: dict, weights: int) -> str:
    base = step.get("baseline_rss_kb", 0)
    return f"{(step['peak_rss_kb'] - base) * 1024 / weights:.2f}" if weights else "-"


def _macs(prune: dict) -> str:
    last = prune["last"]
    before, after = last["macs_before"] / 1e9, last["macs_after"] / 1e9
    return f"{before:.2f}->{after:.2f} ({after / before if before else 0:.2f})"


def _latency(row: dict) -> str:
    if "latency_ratio" not in row:
        return row.get("latency_error", "-")[:40]
    b, a = row["latency_before"]["median_ms"], row["latency_after"]["median_ms"]
    return f"{b:8.2f} {a:8.2f} {row['latency_ratio']:5.2f} {row['latency_ratio_paired']:6.2f}"


def print_table(rows: list[dict]) -> None:
    """One line per model and rounding; then the prune phases."""
    print(
        f"\nseconds: medians; peak: largest RSS (MiB) of the step's process; xW: (peak - RSS "
        f"after imports) / weight bytes; GMACs before->after (kept); latency ms medians, "
        f"ratio after/before and paired; target prune/floor <= {TARGET_RATIO:g}x"
    )
    print(
        f"{'model':22s} {'W MiB':>6s} {'round':>5s} {'prune s':>8s} {'floor s':>8s} "
        f"{'ratio':>6s} {'peak':>6s} {'xW':>5s} {'floor':>6s} {'xW':>5s} "
        f"{'GMACs':>21s} {'lat bef':>8s} {'lat aft':>8s} {'ratio':>5s} {'paired':>6s}"
    )
    for r in rows:
        w, floor, prune = r["weight_bytes"], r["floor"], r["prune"]
        head = f"{r['model']:22s} {w / 2**20:6.0f} {r['round_to']:>5s}"
        floor_s = f"{floor['seconds']:8.2f}" if "seconds" in floor else f"{'fail':>8s}"
        floor_mem = f"{_mib(floor['peak_rss_kb']):>6s} {_xw(floor, w):>5s}"
        if "error" in prune:
            print(
                f"{head} {'FAILED':>8s} {floor_s} {'':6s} {_mib(prune['peak_rss_kb']):>6s} "
                f"{'':5s} {floor_mem}  {prune['error']}"
            )
            continue
        ratio = prune["seconds"] / floor["seconds"] if "seconds" in floor else float("nan")
        print(
            f"{head} {prune['seconds']:8.2f} {floor_s} {ratio:5.2f}x "
            f"{_mib(prune['peak_rss_kb']):>6s} {_xw(prune, w):>5s} {floor_mem} "
            f"{_macs(prune):>21s} {_latency(r)}"
        )
    print("\nprune phases (seconds, last run)")
    for r in rows:
        if "last" in r["prune"]:
            phases = r["prune"]["last"].get("phases_s", {})
            said = " ".join(f"{k} {v:.2f}" for k, v in phases.items())
            print(f"  {r['model']:22s} {r['round_to']:>5s}  {said}")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return a process exit code."""
    args = parse_args(argv)
    models, big = select_models(args.models)
    if args.skip_resnet50 and "resnet50" in big:
        big.remove("resnet50")
    jobs = [(name, path, False) for name, path in models]
    args.out.mkdir(parents=True, exist_ok=True)
    for name in big:
        path = ensure_big_model(name, args.out)
        if path is not None:
            jobs.append((name, path, True))
    if not jobs:
        print("no models selected")
        return 2
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench_prune-") as folder:
        for name, path, is_big in jobs:
            rows += bench_model(name, path, args, Path(folder), is_big)
    info = machine_info(args)
    print()
    print_header(info)
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "rows": rows}, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
