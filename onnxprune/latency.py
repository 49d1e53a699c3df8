"""onnxruntime CPU latency, measured so that two models can be compared fairly.

Every session runs on the CPUExecutionProvider with a stated number of intra-op threads
(default 2), one inter-op thread and spinning off: idle workers of one session would
otherwise spin on the cores the next session's run needs. Each session is warmed up,
then the models run in turn, the order alternating every round (A B, B A, ...), so
background load falls on all of them alike. A comparison gives the ratio of medians and
the median of the per-round ratios (paired), which tolerates drifting load better.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from . import validate
from .progress import progress

PROVIDER = "CPUExecutionProvider"
DEFAULT_THREADS = 2
DEFAULT_RUNS = 30
DEFAULT_WARMUP = 3

Feeds = dict[str, np.ndarray]
ModelSource = bytes | str | os.PathLike


@dataclass
class Timing:
    """Wall-clock times of one model's timed runs, in milliseconds."""

    runs_ms: list[float]

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.runs_ms, q)) if self.runs_ms else float("nan")

    @property
    def median_ms(self) -> float:
        return self.percentile(50)

    def summary(self) -> dict:
        """Median, quartiles and p10/p90 (ms), and the number of runs."""
        return {
            "median_ms": self.median_ms,
            "q1_ms": self.percentile(25),
            "q3_ms": self.percentile(75),
            "p10_ms": self.percentile(10),
            "p90_ms": self.percentile(90),
            "runs": len(self.runs_ms),
        }

    def text(self) -> str:
        return (
            f"median {self.median_ms:.3f} ms, IQR {self.percentile(25):.3f}-"
            f"{self.percentile(75):.3f}, p10-p90 {self.percentile(10):.3f}-"
            f"{self.percentile(90):.3f} ms ({len(self.runs_ms)} runs)"
        )


@dataclass
class Comparison:
    """Model B against model A, timed interleaved."""

    a: Timing
    b: Timing
    threads: int
    warmup: int

    @property
    def ratio(self) -> float:
        """Median of B over median of A."""
        return self.b.median_ms / self.a.median_ms

    @property
    def paired_ratio(self) -> float:
        """Median of the per-round ratios B/A (each round runs both, back to back)."""
        return float(np.median(np.divide(self.b.runs_ms, self.a.runs_ms)))

    def summary(self) -> dict:
        return {
            "provider": PROVIDER,
            "threads": self.threads,
            "warmup": self.warmup,
            "before": self.a.summary(),
            "after": self.b.summary(),
            "ratio": self.ratio,
            "paired_ratio": self.paired_ratio,
        }


def session(model: ModelSource, threads: int = DEFAULT_THREADS, optimize: bool = True):
    """An onnxruntime CPU session of a serialised model (or a path), `threads` intra-op,
    set up for timing (see validate.session)."""
    return validate.session(model, optimize, threads, timing=True)


def time_interleaved(
    calls: Sequence[Callable[[], object]],
    runs: int,
    warmup: int = DEFAULT_WARMUP,
    desc: str | None = None,
) -> list[Timing]:
    """Warm each call up, then `runs` rounds of every call once, the order reversed on
    odd rounds and rotated every other round (A B, B A, B A, A B for two); the times of
    each call. `desc`: a progress bar."""
    for call in calls:
        for _ in range(warmup):
            call()
    times: list[list[float]] = [[] for _ in calls]
    order = list(range(len(calls)))
    for i in progress(range(runs), desc, total=runs) if desc else range(runs):
        k = (i // 2) % len(order)  # rotate every other round, reverse in between
        turn = order[k:] + order[:k]
        for j in reversed(turn) if i % 2 else turn:
            start = time.perf_counter()
            calls[j]()
            times[j].append((time.perf_counter() - start) * 1e3)
    return [Timing(t) for t in times]


def runner(model: ModelSource, feeds: Feeds, threads: int = DEFAULT_THREADS):
    """A no-argument function that runs `model` once on `feeds`."""
    sess = session(model, threads)
    names = [o.name for o in sess.get_outputs()]
    return lambda: sess.run(names, feeds)


def measure(
    model: ModelSource,
    feeds: Feeds,
    runs: int = DEFAULT_RUNS,
    warmup: int = DEFAULT_WARMUP,
    threads: int = DEFAULT_THREADS,
) -> Timing:
    """Latency of one model: `warmup` untimed runs, then `runs` timed ones."""
    return time_interleaved([runner(model, feeds, threads)], runs, warmup)[0]


def compare(
    a: ModelSource,
    b: ModelSource,
    feeds: Feeds,
    runs: int = DEFAULT_RUNS,
    warmup: int = DEFAULT_WARMUP,
    threads: int = DEFAULT_THREADS,
    feeds_b: Feeds | None = None,
    desc: str | None = None,
) -> Comparison:
    """B against A on the same inputs (or `feeds_b` for B), runs interleaved A B, B A, ..."""
    calls = [runner(a, feeds, threads), runner(b, feeds if feeds_b is None else feeds_b, threads)]
    ta, tb = time_interleaved(calls, runs, warmup, desc)
    return Comparison(ta, tb, threads, warmup)


def before_after(original: bytes, pruned: bytes, feeds: Feeds, runs: int = DEFAULT_RUNS) -> dict:
    """The report's latency figures: the pruned model against the original, paired."""
    return compare(original, pruned, feeds, runs, desc="latency before/after").summary()
