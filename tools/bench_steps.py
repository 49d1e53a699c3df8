"""One measured step of tools/bench_prune.py, run in a fresh process.

``tools/bench_prune.py`` starts ``python tools/bench_steps.py STEP ... --result FILE``
once per measurement, so the child's peak resident memory (``ru_maxrss``, which the
parent reads with ``os.wait4``) is that step's peak. Every step first imports what
every other step imports (onnx, onnxruntime, numpy, onnxprune), records the resident
memory after the imports (the baseline), then starts its clock. Steps:

* ``floor SRC DST``: ``onnx.load`` + ``onnx.save`` of SRC; a model stored with external
  data is saved back with external data (one ``DST.data`` file).
* ``prune SRC DST --round-to N|auto --ratio R [--validate] [--via cli|api]``: prune and
  write. ``cli`` (default) runs ``onnxprune.cli.main`` in-process with ``--report``
  (and ``--external-data auto`` when the CLI has it); ``api`` calls
  ``onnxprune.prune_file`` when it exists, else ``onnxprune.prune`` + ``onnx.save``.
* ``latency MODEL... --runs N --budget S``: onnxruntime latency of every model (CPU, 2
  intra-op threads, spinning off) on one random input, round-robin.

``--profile FILE`` also writes the step's cProfile statistics (read them with
``python -m pstats FILE``). The result FILE gets one JSON object: ``seconds`` of the timed work,
``baseline_rss_kb`` (resident after the imports), ``peak_rss_kb`` (VmHWM, see
``rss_kb``) and the step's own figures, or ``error``.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import resource
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import onnxprune  # noqa: E402
from onnxprune import cli  # noqa: E402

INTRA_THREADS = 2
INTER_THREADS = 1
WARMUP_RUNS = 3
MIN_RUNS = 10
SPINNING = "0"  # session.intra_op.allow_spinning, see make_session
PROVIDERS = ["CPUExecutionProvider"]


def rss_kb(field: str = "VmHWM") -> int:
    """This process's peak (VmHWM) or current (VmRSS) resident memory in KiB.

    Not ``ru_maxrss``: on Linux that starts from the parent's peak (exec keeps the
    largest RSS seen, and subprocess forks with vfork), so a child started by a big
    parent reports the parent's figure. VmHWM belongs to this program's image alone.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def save(model: onnx.ModelProto, dst: str, external: bool) -> None:
    """``onnx.save``; with external data into one ``<dst>.data`` file when ``external``."""
    if not external:
        onnx.save(model, dst)
        return
    onnx.save(
        model,
        dst,
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=f"{Path(dst).name}.data",
        size_threshold=1024,
    )


def cli_accepts(*extra: str) -> bool:
    """True if the installed onnxprune CLI parses ``model -o out`` plus ``extra``."""
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            cli.build_parser().parse_args(["m.onnx", "-o", "o.onnx", *extra])
    except (onnxprune.BadInputError, SystemExit, Exception):  # noqa: BLE001
        return False
    return True


def step_floor(args: argparse.Namespace) -> dict:
    """Load and save the model as onnx does it."""
    start = time.perf_counter()
    save(onnx.load(args.src), args.dst, args.external)
    return {"seconds": time.perf_counter() - start}


def round_value(text: str) -> int | str:
    """``--round-to`` as the API wants it: an int, or a word such as ``auto``."""
    return int(text) if text.lstrip("-").isdigit() else text


def step_prune(args: argparse.Namespace) -> dict:
    """Prune and write, through the CLI or the API; figures from the report."""
    report_path = f"{args.dst}.report.json"
    start = time.perf_counter()
    if args.via == "cli":
        argv = [
            args.src,
            "-o",
            args.dst,
            "--ratio",
            str(args.ratio),
            "--round-to",
            args.round_to,
            "--report",
            report_path,
            "-q",
        ]
        if not args.validate:
            argv.append("--no-validate")
        if cli_accepts("--external-data", "auto"):
            argv += ["--external-data", "auto"]
        code = cli.main(argv)
        seconds = time.perf_counter() - start
        if code != 0:
            return {"seconds": seconds, "error": f"onnxprune exit code {code}"}
        report = json.loads(Path(report_path).read_text())
        via = "cli"
    else:
        config = onnxprune.PruneConfig(
            ratio=args.ratio, validate=args.validate, round_to=round_value(args.round_to)
        )
        if hasattr(onnxprune, "prune_file"):
            result = onnxprune.prune_file(args.src, args.dst, config, external_data="auto")
            rep = result[1] if isinstance(result, tuple) else result
            via = "api prune_file"
        else:
            model, rep = onnxprune.prune(args.src, config)
            save(model, args.dst, args.external)
            via = "api prune + onnx.save"
        seconds = time.perf_counter() - start
        report = rep.to_dict()
    out_bytes = sum(
        p.stat().st_size
        for p in Path(args.dst).parent.glob(Path(args.dst).name + "*")
        if not p.name.endswith(".report.json")
    )
    return {
        "seconds": seconds,
        "via": via,
        "phases_s": report.get("seconds", {}),
        "params_before": report["params_before"],
        "params_after": report["params_after"],
        "macs_before": report["macs_before"],
        "macs_after": report["macs_after"],
        "output_bytes": out_bytes,
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


def make_session(path: str) -> ort.InferenceSession:
    """A CPU session with the benchmark's thread settings."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = INTRA_THREADS
    options.inter_op_num_threads = INTER_THREADS
    # Idle worker threads of one session would otherwise spin on the CPUs the next
    # session's run needs (interleaved runs measured up to 2x slower, order-dependent).
    options.add_session_config_entry("session.intra_op.allow_spinning", SPINNING)
    return ort.InferenceSession(path, options, providers=PROVIDERS)


def rotated(names: list[str], i: int) -> list[str]:
    """``names`` rotated by ``i``: round-robin order that changes who follows whom."""
    k = i % len(names)
    return names[k:] + names[:k]


def warm_up(sessions: dict, feeds: dict, runs: int) -> float:
    """Run every session ``runs`` times; seconds one round of all sessions took (mean)."""
    start = time.perf_counter()
    for sess in sessions.values():
        for _ in range(runs):
            sess.run(None, feeds)
    return (time.perf_counter() - start) / max(runs, 1)


def round_robin(sessions: dict, feeds: dict, runs: int) -> dict[str, dict]:
    """``runs`` rounds of one run per session, order rotated each round; ms statistics."""
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for i in range(runs):
        for name in rotated(list(sessions), i):
            start = time.perf_counter()
            sessions[name].run(None, feeds)
            times[name].append((time.perf_counter() - start) * 1e3)
    return {
        name: {
            "median_ms": float(np.median(t)),
            "p10_ms": float(np.percentile(t, 10)),
            "p90_ms": float(np.percentile(t, 90)),
            "runs_ms": [round(v, 3) for v in t],
        }
        for name, t in times.items()
    }


def step_latency(args: argparse.Namespace) -> dict:
    """Round-robin latency (ms) of every model; runs capped so they fit ``--budget`` s."""
    feeds = random_feeds(onnx.load(args.models[0], load_external_data=False))
    sessions = {path: make_session(path) for path in args.models}
    start = time.perf_counter()
    per_round = warm_up(sessions, feeds, WARMUP_RUNS)
    runs = max(MIN_RUNS, min(args.runs, int(args.budget / max(per_round, 1e-9))))
    stats = round_robin(sessions, feeds, runs)
    providers = sorted({p for sess in sessions.values() for p in sess.get_providers()})
    return {
        "seconds": time.perf_counter() - start,
        "runs": runs,
        "latency": stats,
        "providers": providers,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments of one step."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--result", required=True, help="where to write the JSON result")
    p.add_argument("--profile", metavar="FILE", help="also write cProfile stats of the step")
    steps = p.add_subparsers(dest="step", required=True)
    floor = steps.add_parser("floor")
    floor.add_argument("src")
    floor.add_argument("dst")
    floor.add_argument("--external", action="store_true", help="save with external data")
    prune = steps.add_parser("prune")
    prune.add_argument("src")
    prune.add_argument("dst")
    prune.add_argument("--ratio", type=float, default=0.5)
    prune.add_argument("--round-to", default="1")
    prune.add_argument("--validate", action="store_true")
    prune.add_argument("--via", choices=("cli", "api"), default="cli")
    prune.add_argument("--external", action="store_true", help="api: save with external data")
    latency = steps.add_parser("latency")
    latency.add_argument("models", nargs="+")
    latency.add_argument("--runs", type=int, default=50)
    latency.add_argument("--budget", type=float, default=60.0)
    return p.parse_args(argv)


STEPS = {"floor": step_floor, "prune": step_prune, "latency": step_latency}


def main(argv: list[str] | None = None) -> int:
    """Run one step; the result (or the error) goes to ``--result``; exit 0 unless it failed."""
    args = parse_args(argv)
    baseline = rss_kb("VmRSS")
    profiler = cProfile.Profile() if args.profile else None
    try:
        if profiler is not None:
            profiler.enable()
        result = STEPS[args.step](args)
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)
    except Exception as exc:  # noqa: BLE001 - the parent reports it
        traceback.print_exc()
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        result = {"error": f"{type(exc).__name__}: {first}"}
    result.update(baseline_rss_kb=baseline, peak_rss_kb=rss_kb())
    Path(args.result).write_text(json.dumps(result))
    return 1 if "error" in result else 0


if __name__ == "__main__":
    raise SystemExit(main())
