"""Fuzz: broken and hostile variants of the sample models through the command line.

Every mutant of tests/fuzz_mutants.py (truncations, seeded byte flips, wrong tensor
dims and types, dangling inputs, cycles, duplicate outputs, absurd attributes, wrong
opsets, external data escaping its folder, declared sizes of terabytes) is run through
`onnxprune.cli.main` in one worker process limited to MEMORY_LIMIT of address space, so
an allocation sized by what a file declares fails loudly instead of filling the machine.
Each run must end in one of two ways:

- a clean refusal: exit 2 (bad input) or 1 (validation), one `onnxprune: error:` line
  on stderr, never an internal error or a traceback, and nothing in the output folder
  (no model, no `.onnxprune-*` staging folder);
- success, when the mutation is harmless: the written model passes onnx.checker and
  runs in onnxruntime.

Either way the input folder is byte-identical afterwards. A few mutants also run as
`python -m onnxprune` under the same limit, to see the real stderr and exit code.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from onnxprune.validate import input_feeds, run

from . import fuzz_mutants as fm
from .fuzz_hostile import external_mutants, huge_mutants
from .fuzz_mutants import MODEL, Mutant

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
MEMORY_LIMIT = 3 << 30
OUTPUT = "pruned.onnx"


def all_mutants() -> list[Mutant]:
    graph = fm.tensor_mutants() + fm.structure_mutants() + fm.attribute_mutants()
    mutants = fm.truncations() + fm.byte_flips() + graph + fm.unvalidated(graph)
    mutants += external_mutants() + huge_mutants()
    ids = [m.id for m in mutants]
    assert len(ids) == len(set(ids)), "mutant ids must be unique"
    return mutants


MUTANTS = all_mutants()
BY_ID = {m.id: m for m in MUTANTS}


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _place(root: Path, m: Mutant) -> Path:
    """root/<id>/in holds the mutant's files, root/<id>/out receives the output; files
    meant to be reached from outside the input folder go in root/<id>."""
    folder = root / m.id
    (folder / "in").mkdir(parents=True)
    (folder / "out").mkdir()
    for name, data in m.files.items():
        (folder / "in" / name).write_bytes(data)
    for name, target in m.links.items():
        os.symlink(target, folder / "in" / name)
    for name, data in m.outside.items():
        (folder / name).write_bytes(data)
    return folder


def _argv(folder: Path, m: Mutant) -> list[str]:
    return [str(folder / "in" / MODEL), "-o", str(folder / "out" / OUTPUT), "-q", *m.args]


def _run_worker(jobs: list[dict], scratch: Path) -> dict[str, dict]:
    """Run `jobs` in tests.fuzz_worker; a crash of the worker is the outcome of the job
    it was in, and the worker restarts after it."""
    outcomes: dict[str, dict] = {}
    pending = jobs
    attempt = 0
    while pending:
        attempt += 1
        jobs_path, results_path = scratch / f"jobs{attempt}.json", scratch / f"out{attempt}.jsonl"
        jobs_path.write_text(json.dumps(pending))
        command = [sys.executable, "-m", "tests.fuzz_worker", str(jobs_path), str(results_path)]
        try:
            proc = subprocess.run(
                command,
                cwd=REPO,
                env=ENV,
                preexec_fn=_limit_memory,
                capture_output=True,
                text=True,
                timeout=600,
            )
            ended = f"worker died: exit {proc.returncode}: {proc.stderr.strip()[-400:]}"
        except subprocess.TimeoutExpired:
            ended = "worker killed after 600 s"
        started = None
        for line in results_path.read_text().splitlines() if results_path.exists() else []:
            record = json.loads(line)
            if record.get("started"):
                started = record["id"]
            else:
                outcomes[record["id"]] = record
                started = None
        if started is None and not any(j["id"] not in outcomes for j in pending):
            break
        culprit = started or next(j["id"] for j in pending if j["id"] not in outcomes)
        outcomes[culprit] = {"id": culprit, "rc": ended, "out": "", "err": "", "seconds": 0}
        pending = [j for j in pending if j["id"] not in outcomes]
    return outcomes


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> tuple[Path, dict[str, dict]]:
    root = tmp_path_factory.mktemp("fuzz")
    jobs = [{"id": m.id, "argv": _argv(_place(root, m), m)} for m in MUTANTS]
    scratch = root / "_worker"
    scratch.mkdir()
    return root, _run_worker(jobs, scratch)


def _files(folder: Path) -> dict[str, object]:
    """Every entry under `folder`: a file's bytes, a link's target."""
    state: dict[str, object] = {}
    for path in sorted(folder.rglob("*")):
        name = str(path.relative_to(folder))
        if path.is_symlink():
            state[name] = ("link", os.readlink(path))
        elif path.is_file():
            state[name] = path.read_bytes()
    return state


def _check_inputs_untouched(folder: Path, m: Mutant) -> None:
    expected = {**m.files, **{k: ("link", v) for k, v in m.links.items()}}
    assert _files(folder / "in") == expected, "the input folder changed"
    for name, data in m.outside.items():
        assert (folder / name).read_bytes() == data, f"{name} beside the input changed"


def _check_written_model(folder: Path, m: Mutant) -> None:
    """The output is a valid model that runs; with --no-validate, as far as the input
    was (onnxprune does not promise to repair a model it was told not to check)."""
    written = sorted(os.listdir(folder / "out"))
    assert written in ([OUTPUT], [OUTPUT, OUTPUT + ".data"]), written
    path = str(folder / "out" / OUTPUT)
    source = str(folder / "in" / MODEL)
    validated = "--no-validate" not in m.args
    if validated or _passes(onnx.checker.check_model, source, full_check=True):
        onnx.checker.check_model(path, full_check=True)
    if m.huge:
        return  # running it would allocate what it declares
    if validated or _passes(_run, source):
        assert _run(path)


def _run(path: str) -> dict:
    model = onnx.load(path, load_external_data=False)
    return run(path, input_feeds(model, {}, seed=3))


def _passes(fn, *args, **kwargs) -> bool:
    try:
        fn(*args, **kwargs)
    except Exception:
        return False
    return True


def check_outcome(folder: Path, m: Mutant, rc, err: str) -> None:
    """The promise for any input: a clean refusal or a valid model, the input intact."""
    assert rc in (0, 1, 2), f"{rc}\n{err}"
    assert "Traceback" not in err and "internal error" not in err, err
    _check_inputs_untouched(folder, m)
    if m.expect is not None:
        assert rc == m.expect, f"exit {rc}, expected {m.expect}: {err.strip()}"
    if rc == 0:
        assert all(line.startswith("onnxprune: warning: ") for line in err.splitlines()), err
        _check_written_model(folder, m)
        return
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("onnxprune: error: "), err
    assert m.says in lines[0], f"expected {m.says!r} in: {lines[0]}"
    assert os.listdir(folder / "out") == [], "a failed run left files in the output folder"


@pytest.mark.parametrize("mid", list(BY_ID))
def test_mutant_is_refused_cleanly_or_pruned_validly(outcomes, mid):
    root, results = outcomes
    result = results[mid]
    check_outcome(root / mid, BY_ID[mid], result["rc"], result["err"])
    assert result["out"] == ""


# -- a handful as the real command ---------------------------------------------------------

REAL = [
    "trunc-se_net-1000",
    "flip-struct-32-se_net",  # a name that is not UTF-8
    "dangling-data-input",
    "cycle-pair",
    "conv-group-0",  # onnxruntime's kernel refuses it at run time
    "conv-group-0-nv",
    "ext-symlink-folder",
    "huge-input-spatial",
    "huge-initializer-dims",
    "huge-expand",
    "huge-constant-of-shape",
]


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory) -> tuple[Path, dict[str, subprocess.CompletedProcess]]:
    """The REAL mutants as `python -m onnxprune`, two at a time, under the memory limit."""
    root = tmp_path_factory.mktemp("fuzz_real")
    procs = {}
    results = {}
    for mid in REAL:
        m = BY_ID[mid]
        command = [sys.executable, "-m", "onnxprune", *_argv(_place(root, m), m)]
        procs[mid] = subprocess.Popen(
            command,
            cwd=root,
            env=ENV,
            preexec_fn=_limit_memory,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        if len(procs) - len(results) >= 2:
            _collect(procs, results)
    while len(results) < len(procs):
        _collect(procs, results)
    return root, results


def _collect(procs: dict, results: dict) -> None:
    mid = next(k for k in procs if k not in results)
    out, err = procs[mid].communicate(timeout=300)
    results[mid] = (procs[mid].returncode, out, err)


@pytest.mark.parametrize("mid", REAL)
def test_real_command_exit_code_and_stderr(real_runs, mid):
    root, results = real_runs
    rc, out, err = results[mid]
    m = BY_ID[mid]
    assert rc in (1, 2), f"exit {rc} (a negative code is a signal: killed)\n{err}"
    check_outcome(root / mid, m, rc, err)
    assert out == ""
