"""Output files written under temporary names beside their final places and moved
into place only when all are complete, so a failure leaves nothing behind; and the
checks that an output path can be written at all."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence

from .errors import BadInputError, OnnxPruneError


class Staging:
    """Files written under temporary names in their final folders, moved into place
    together by `commit()`; `discard()` (or leaving the block) removes what is left.

    `path(final)` gives where to write `final` now. A file the writer adds beside it
    (the model's `.data`) is moved too when its name is `final` plus a suffix.
    """

    def __init__(self) -> None:
        self._dirs: dict[str, str] = {}
        self._finals: list[str] = []

    def path(self, final: str) -> str:
        folder = os.path.dirname(os.path.abspath(final))
        if folder not in self._dirs:
            try:
                self._dirs[folder] = tempfile.mkdtemp(prefix=".onnxprune-", dir=folder)
            except OSError as exc:
                raise OnnxPruneError(f"cannot write {final}: {exc.strerror or exc}") from exc
        self._finals.append(os.path.abspath(final))
        return os.path.join(self._dirs[folder], os.path.basename(final))

    def commit(self) -> None:
        """Move every staged file into place; data files before the files that name them."""
        moves = []
        for folder, stage in self._dirs.items():
            for name in os.listdir(stage):
                moves.append((os.path.join(stage, name), os.path.join(folder, name)))
        moves.sort(key=lambda m: m[1] in self._finals)  # companions (.data) first
        try:
            for src, dst in moves:
                os.chmod(src, _new_file_mode())
                os.replace(src, dst)
        except OSError as exc:
            raise OnnxPruneError(f"cannot write {dst}: {exc.strerror or exc}") from exc

    def discard(self) -> None:
        for stage in self._dirs.values():
            shutil.rmtree(stage, ignore_errors=True)
        self._dirs.clear()

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, *exc) -> None:
        self.discard()


def _new_file_mode() -> int:
    """The mode open() gives a new file: 0o666 minus the umask (mkstemp uses 0o600)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def same_path(a: str, b: str) -> bool:
    """Whether two paths name the same file (spelled alike, or linked)."""
    if os.path.abspath(a) == os.path.abspath(b):
        return True
    return os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b)


def check_writable(path: str, flag: str, inputs: Sequence[str] = ()) -> None:
    """BadInputError unless `path` (given as `flag`) can be written without touching
    `inputs`: its folder exists and is writable, it is no folder and no input file."""
    for other in inputs:
        if other and same_path(path, other):
            raise BadInputError(f"{flag} {path} is the input file; choose another path")
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise BadInputError(f"cannot write {path}: {folder} is a file, not a folder")
    if not os.path.isdir(folder):
        raise BadInputError(f"cannot write {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise BadInputError(f"cannot write {path}: folder {folder} is not writable")
    if os.path.isdir(path):
        raise BadInputError(f"cannot write {path}: it is a folder")


def write_files(files: list[tuple[str, Callable[[str], None]]]) -> None:
    """Write each (path, write(temporary path)) and move them all into place only when
    every one is complete: a failure leaves none of them, and no temporary file."""
    with Staging() as staging:
        for path, write in files:
            try:
                write(staging.path(path))
            except OSError as exc:
                raise OnnxPruneError(f"cannot write {path}: {exc.strerror or exc}") from exc
        staging.commit()
