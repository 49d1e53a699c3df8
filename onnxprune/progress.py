"""Progress bars for long work: shown only when stderr is a terminal and not quiet."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_quiet = False


def set_quiet(quiet: bool) -> None:
    """Silence (or allow) progress bars for the rest of the run (the CLI's -q)."""
    global _quiet
    _quiet = quiet


def enabled() -> bool:
    """Whether a bar would show: stderr is a terminal and the run is not quiet."""
    return not _quiet and sys.stderr.isatty()


def progress(iterable: Iterable[T], desc: str, total: int | None = None) -> Iterator[T]:
    """`iterable`, with a tqdm bar on stderr when `enabled()`; plainly otherwise."""
    if not enabled():
        yield from iterable
        return
    from tqdm import tqdm

    yield from tqdm(iterable, desc=desc, total=total, leave=False, file=sys.stderr)


@contextlib.contextmanager
def steps(desc: str, total: int) -> Iterator[Callable[[], None]]:
    """A bar of `total` steps; the block calls what it is given once per finished step."""
    if not enabled():
        yield lambda: None
        return
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, leave=False, file=sys.stderr)
    try:
        yield lambda: bar.update(1) and None
    finally:
        bar.close()
