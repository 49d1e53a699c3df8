"""Runs fuzz jobs through `onnxprune.cli.main` in one process (started by test_fuzz.py
under a memory limit): `python -m tests.fuzz_worker JOBS.json RESULTS.jsonl`.

Each job is {"id", "argv"}; for each, a line {"id", "started": true} is written before
the run and {"id", "rc", "out", "err", "seconds"} after it, both flushed, so the parent
can tell which job a crash (a signal, the memory limit's kill) happened in and restart
after it. `rc` is the exit code, or a string when main did not return one: "hang"
(over JOB_SECONDS) or "escaped: <exception>".
"""

from __future__ import annotations

import io
import json
import signal
import sys
import time
from contextlib import redirect_stderr, redirect_stdout

JOB_SECONDS = 60


class _Hang(BaseException):
    """Raised by the alarm: main() catches Exception, not this."""


def _alarm(signum, frame):
    raise _Hang


def run_jobs(jobs_path: str, results_path: str) -> None:
    from onnxprune.cli import main

    with open(jobs_path, encoding="utf-8") as f:
        jobs = json.load(f)
    signal.signal(signal.SIGALRM, _alarm)
    with open(results_path, "a", encoding="utf-8") as results:
        for job in jobs:
            results.write(json.dumps({"id": job["id"], "started": True}) + "\n")
            results.flush()
            out, err = io.StringIO(), io.StringIO()
            start = time.perf_counter()
            signal.alarm(JOB_SECONDS)
            try:
                with redirect_stdout(out), redirect_stderr(err):
                    rc = main(job["argv"])
            except _Hang:
                rc = "hang"
            except BaseException as exc:  # noqa: BLE001 - reported, not hidden
                rc = f"escaped: {type(exc).__name__}: {exc}"
            finally:
                signal.alarm(0)
            record = {
                "id": job["id"],
                "rc": rc,
                "out": out.getvalue(),
                "err": err.getvalue(),
                "seconds": time.perf_counter() - start,
            }
            results.write(json.dumps(record) + "\n")
            results.flush()


if __name__ == "__main__":
    run_jobs(sys.argv[1], sys.argv[2])
