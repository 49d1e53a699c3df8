"""The `onnxprune` command: prune a model file, print the report, exit 0/1/2.

Exit codes: 0 success; 1 the pruned model failed validation or an internal error;
2 bad input (file, arguments, or a model onnxruntime cannot run).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable, Sequence

import onnx

from . import __version__
from .config import CRITERIA, PruneConfig
from .errors import BadInputError, OnnxPruneError
from .pipeline import prune
from .progress import set_quiet


class _Exit(Exception):
    """argparse finished early (--help, --version); main() returns `status`."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + line
        raise BadInputError(message)

    def exit(self, status: int = 0, message: str | None = None) -> None:  # no SystemExit
        if message:
            self._print_message(message, sys.stderr)
        raise _Exit(status)


def _shape(text: str) -> tuple[str, list[int]]:
    name, sep, dims = text.rpartition(":")
    try:
        values = [int(d) for d in dims.lower().split("x")]
    except ValueError:
        values = []
    if not sep or not name or not values:
        raise argparse.ArgumentTypeError(f"expected NAME:D1xD2x..., got {text!r}")
    return name, values


def _round_to(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        message = f"expected a positive integer or auto, got {text!r}"
        raise argparse.ArgumentTypeError(message) from None


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="onnxprune",
        description="Structured channel pruning of ONNX models, checked in onnxruntime.",
    )
    p.add_argument("model", help="input .onnx file (never modified)")
    p.add_argument("-o", "--output", required=True, help="where to write the pruned model")
    p.add_argument(
        "--ratio",
        type=float,
        default=0.5,
        help="fraction of channels removed in each prunable group (default 0.5)",
    )
    p.add_argument(
        "--calib",
        metavar="DATA",
        help="calibration data: .npz or a folder of .npy files named like the model inputs "
        "(first axis = samples)",
    )
    p.add_argument(
        "--calib-random", type=int, default=0, metavar="N", help="N random calibration samples"
    )
    p.add_argument(
        "--calib-batch", type=int, default=8, metavar="B", help="samples per onnxruntime run"
    )
    p.add_argument(
        "--calib-mask",
        metavar="INPUT",
        help="an input (attention mask) whose zeros mark padding: left out of statistics",
    )
    p.add_argument(
        "--reconstruct",
        choices=("auto", "lsq", "bias", "none"),
        default="auto",
        help="refit the readers of removed channels on the calibration data (auto: lsq "
        "when calibration data is given)",
    )
    p.add_argument(
        "--ridge",
        type=float,
        default=0.1,
        help="how strongly the least-squares refit stays near the original weights",
    )
    p.add_argument(
        "--target-macs",
        type=float,
        metavar="F",
        help="keep this fraction of MACs: per-group ratios chosen from measured "
        "sensitivity on the calibration data (instead of --ratio)",
    )
    p.add_argument("--target-params", type=float, metavar="F", help="the same for parameters")
    p.add_argument(
        "--head-ratio",
        type=float,
        default=None,
        metavar="R",
        help="fraction of attention heads removed (default: --ratio)",
    )
    p.add_argument(
        "--no-prune-heads",
        dest="prune_heads",
        action="store_false",
        help="keep attention heads whole (their channels are frozen)",
    )
    p.add_argument(
        "--prune-hidden",
        action="store_true",
        help="also prune the hidden size through LayerNorm (approximate, never by default)",
    )
    p.add_argument(
        "--global",
        dest="global_ranking",
        action="store_true",
        help="rank channels of all groups together (scores normalised per group)",
    )
    p.add_argument(
        "--criterion",
        choices=CRITERIA,
        default="l2",
        help="channel importance (default l2 norm of producer weights)",
    )
    p.add_argument(
        "--round-to",
        type=_round_to,
        default=1,
        metavar="N|auto",
        help="keep channel counts that are multiples of N where possible; auto: the "
        "multiple onnxruntime runs fastest on this machine (measured; implies --latency)",
    )
    p.add_argument(
        "--latency",
        action="store_true",
        help="measure onnxruntime CPU latency before and after (paired runs) for the report",
    )
    p.add_argument(
        "--min-channels",
        type=int,
        default=1,
        metavar="N",
        help="never keep fewer than N channels in a group",
    )
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="node or initializer name glob whose channels are kept (repeatable)",
    )
    p.add_argument(
        "--input-shape",
        action="append",
        type=_shape,
        default=[],
        metavar="NAME:1x3x224x224",
        help="shape for an input with symbolic dims",
    )
    p.add_argument(
        "--no-validate",
        dest="validate",
        action="store_false",
        help="skip the checker and onnxruntime comparison",
    )
    p.add_argument("--report", metavar="FILE.json", help="also write the report as JSON")
    p.add_argument("--seed", type=int, default=0, help="seed of the validation inputs")
    p.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    p.add_argument("-v", "--verbose", action="store_true", help="list every group")
    p.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    p.add_argument("--version", action="version", version=f"onnxprune {__version__}")
    return p


def _check_paths(args: argparse.Namespace) -> None:
    model, output = args.model, args.output
    if not os.path.exists(model):
        raise BadInputError(f"{model}: no such file")
    if not os.path.isfile(model):
        raise BadInputError(f"{model}: not a file")
    if _same_path(output, model):
        raise BadInputError(f"output {output} is the input file; choose another path")
    if args.report and _same_path(args.report, model):
        raise BadInputError(f"--report {args.report} is the input file; choose another path")
    if args.report and _same_path(args.report, output):
        raise BadInputError(f"--report {args.report} is also the output model; choose another")
    for path in filter(None, [output, args.report]):
        folder = os.path.dirname(os.path.abspath(path))
        if os.path.exists(folder) and not os.path.isdir(folder):
            raise BadInputError(f"cannot write {path}: {folder} is a file, not a folder")
        if not os.path.isdir(folder):
            raise BadInputError(f"cannot write {path}: folder {folder} does not exist")
        if not os.access(folder, os.W_OK):
            raise BadInputError(f"cannot write {path}: folder {folder} is not writable")
        if os.path.isdir(path):
            raise BadInputError(f"cannot write {path}: it is a folder")


def _same_path(a: str, b: str) -> bool:
    if os.path.abspath(a) == os.path.abspath(b):
        return True
    return os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b)


def _new_file_mode() -> int:
    """The mode open() would give a new file: 0o666 minus the umask (mkstemp uses 0o600)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def write_atomic(files: Sequence[tuple[str, Callable[[str], None]]]) -> None:
    """Write each (path, write) through a temporary file in its folder; rename them all
    only once every one is complete, so a failure leaves none of them behind."""
    temps: list[str] = []
    path = files[0][0] if files else ""
    try:
        for path, write in files:
            folder = os.path.dirname(os.path.abspath(path))
            fd, tmp = tempfile.mkstemp(prefix=".onnxprune-", suffix=".tmp", dir=folder)
            temps.append(tmp)
            os.close(fd)
            os.chmod(tmp, _new_file_mode())
            write(tmp)
        for (path, _), tmp in zip(files, temps, strict=True):
            os.replace(tmp, path)
    except OSError as exc:
        raise OnnxPruneError(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        for tmp in temps:
            if os.path.exists(tmp):
                os.unlink(tmp)


def _write_text(text: str) -> Callable[[str], None]:
    def write(path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)

    return write


def run(args: argparse.Namespace) -> int:
    _check_paths(args)
    config = PruneConfig(
        ratio=args.ratio,
        global_ranking=args.global_ranking,
        criterion=args.criterion,
        round_to=args.round_to,
        min_channels=args.min_channels,
        exclude=args.exclude,
        validate=args.validate,
        input_shapes=dict(args.input_shape),
        seed=args.seed,
        prune_heads=args.prune_heads,
        head_ratio=args.head_ratio,
        prune_hidden=args.prune_hidden,
        calib=args.calib,
        calib_random=args.calib_random,
        calib_batch=args.calib_batch,
        calib_mask=args.calib_mask,
        reconstruct=args.reconstruct,
        ridge=args.ridge,
        target_macs=args.target_macs,
        target_params=args.target_params,
        latency=args.latency,
    ).check()
    set_quiet(args.quiet)
    model, report = prune(args.model, config)
    files = [(args.output, lambda tmp: onnx.save(model, tmp))]
    if args.report:
        files.append((args.report, _write_text(report.to_json())))
    write_atomic(files)
    if not args.quiet:
        print(report.to_text(verbose=args.verbose))
        print(f"wrote {args.output}")
    else:
        for warning in report.warnings:
            print(f"onnxprune: warning: {warning}", file=sys.stderr)
    return 0


def _sensitivity(argv: list[str]) -> int:
    from . import cmd_sensitivity

    p = _Parser(prog="onnxprune sensitivity", description=cmd_sensitivity.__doc__)
    cmd_sensitivity.add_arguments(p)
    p.add_argument("--input-shape", action="append", type=_shape, default=[],
                   metavar="NAME:1x3x224x224")  # fmt: skip
    p.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    args = p.parse_args(argv)
    return cmd_sensitivity.run(args, dict(args.input_shape))


def _bench(argv: list[str]) -> int:
    from . import cmd_bench

    p = _Parser(prog="onnxprune bench", description=cmd_bench.__doc__)
    cmd_bench.add_arguments(p)
    p.add_argument("--input-shape", action="append", type=_shape, default=[],
                   metavar="NAME:1x3x224x224")  # fmt: skip
    p.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    args = p.parse_args(argv)
    set_quiet(args.quiet)
    return cmd_bench.run(args, dict(args.input_shape))


COMMANDS = {"sensitivity": _sensitivity, "bench": _bench}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: returns the exit code (0 ok, 1 failure, 2 bad input).

    `onnxprune [prune] model.onnx -o out.onnx ...` prunes; `onnxprune sensitivity ...`
    measures each group's sensitivity; `onnxprune bench a.onnx [b.onnx]` times models."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        if argv and argv[0] in COMMANDS:
            return COMMANDS[argv[0]](argv[1:])
        if argv and argv[0] == "prune":
            argv = argv[1:]
        return run(build_parser().parse_args(argv))
    except _Exit as exc:
        return exc.status
    except OnnxPruneError as exc:
        print(f"onnxprune: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("onnxprune: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if debug:
            raise
        first = (str(exc).strip().splitlines() or [""])[0]
        print(
            f"onnxprune: internal error: {type(exc).__name__}: {first} "
            "(rerun with --debug for a traceback)",
            file=sys.stderr,
        )
        return 1
