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


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + line
        raise BadInputError(message)


def _shape(text: str) -> tuple[str, list[int]]:
    name, sep, dims = text.rpartition(":")
    try:
        values = [int(d) for d in dims.lower().split("x")]
    except ValueError:
        values = []
    if not sep or not name or not values:
        raise argparse.ArgumentTypeError(f"expected NAME:D1xD2x..., got {text!r}")
    return name, values


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
        type=int,
        default=1,
        metavar="N",
        help="keep channel counts that are multiples of N where possible",
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
    if os.path.abspath(model) == os.path.abspath(output) or (
        os.path.exists(output) and os.path.samefile(model, output)
    ):
        raise BadInputError(f"output {output} is the input file; choose another path")
    for path in filter(None, [output, args.report]):
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise BadInputError(f"cannot write {path}: folder {folder} does not exist")
        if not os.access(folder, os.W_OK):
            raise BadInputError(f"cannot write {path}: folder {folder} is not writable")
        if os.path.isdir(path):
            raise BadInputError(f"cannot write {path}: it is a folder")


def write_atomic(path: str, write: Callable[[str], None]) -> None:
    """Write through a temporary file in the same folder, then rename over `path`."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".onnxprune-", suffix=".tmp", dir=folder)
        os.close(fd)
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise OnnxPruneError(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        if tmp is not None and os.path.exists(tmp):
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
    ).check()
    model, report = prune(args.model, config)
    write_atomic(args.output, lambda tmp: onnx.save(model, tmp))
    if args.report:
        write_atomic(args.report, _write_text(report.to_json()))
    if not args.quiet:
        print(report.to_text(verbose=args.verbose))
        print(f"wrote {args.output}")
    else:
        for warning in report.warnings:
            print(f"onnxprune: warning: {warning}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: returns the exit code (0 ok, 1 failure, 2 bad input)."""
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        return run(build_parser().parse_args(argv))
    except OnnxPruneError as exc:
        print(f"onnxprune: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("onnxprune: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if debug:
            raise
        print(
            f"onnxprune: internal error: {type(exc).__name__}: {exc} "
            "(rerun with --debug for a traceback)",
            file=sys.stderr,
        )
        return 1
