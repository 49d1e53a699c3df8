"""The `onnxprune` command: prune a model file, print the report, exit 0/1/2.

Exit codes: 0 success; 1 the pruned model failed validation or an internal error;
2 bad input (file, arguments, or a model onnxruntime cannot run).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence

from . import __version__
from .config import CRITERIA, PruneConfig
from .config_file import read_config, to_toml
from .errors import BadInputError, OnnxPruneError
from .modelio import EXTERNAL_MODES
from .pipeline import prune_file
from .progress import set_quiet
from .staging import check_writable, same_path


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


def add_common_arguments(p: argparse.ArgumentParser, verbose: str | None) -> None:
    """The flags every command shares: --input-shape, -q/-v (`verbose` says what -v
    adds; None: the command has no -v), --debug."""
    p.add_argument(
        "--input-shape",
        action="append",
        type=_shape,
        default=[],
        metavar="NAME:1x3x224x224",
        help="shape for an input with symbolic dims (repeatable)",
    )
    talk = p.add_mutually_exclusive_group()
    talk.add_argument("-q", "--quiet", action="store_true", help="print errors and warnings only")
    if verbose:
        talk.add_argument("-v", "--verbose", action="store_true", help=verbose)
    p.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")


PRUNE_HELP = "remove channels and write a smaller model (the default command)"


def _commands_help() -> str:
    """The command list of `onnxprune --help`: each command's first docstring line."""
    lines = ["commands:", f"  {'prune':<13}{PRUNE_HELP}"]
    for name, command in COMMANDS.items():
        doc = (command.__doc__ or "").strip().splitlines()
        lines.append(f"  {name:<13}{doc[0] if doc else ''}".rstrip())
    lines.append("\n`onnxprune COMMAND --help` shows a command's options; prune's follow.")
    return "\n".join(lines)


def _round_to(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        message = f"expected a positive integer or auto, got {text!r}"
        raise argparse.ArgumentTypeError(message) from None


def add_channel_arguments(p: argparse.ArgumentParser) -> None:
    """The flags that decide what is prunable and how channels rank (prune, analyze)."""
    p.add_argument(
        "--criterion",
        choices=CRITERIA,
        default="l2",
        help="channel importance (default l2 norm of producer weights)",
    )
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="node or initializer name glob whose channels are kept (repeatable)",
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


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="onnxprune",
        usage="%(prog)s [prune] model -o OUTPUT [options]\n"
        f"       %(prog)s {{{','.join(COMMANDS)}}} ...",
        description="Structured channel pruning of ONNX models, checked in onnxruntime.\n\n"
        + _commands_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
        "--global",
        dest="global_ranking",
        action="store_true",
        help="rank channels of all groups together (scores normalised per group)",
    )
    add_channel_arguments(p)
    p.add_argument(
        "--round-to",
        type=_round_to,
        default=1,
        metavar="N|auto",
        help="round kept channel counts to the nearest multiple of N where possible; auto: "
        "the multiple onnxruntime runs fastest on this machine, rounding down (measured; "
        "implies --latency)",
    )
    p.add_argument(
        "--round-down",
        action="store_true",
        help="round kept counts down to --round-to N, never up (removes a little more "
        "than --ratio; what auto does)",
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
        "--no-validate",
        dest="validate",
        action="store_false",
        help="skip the checker and onnxruntime comparison",
    )
    p.add_argument(
        "--external-data",
        choices=EXTERNAL_MODES,
        default="auto",
        help="write weights to OUTPUT.data beside the model: auto (when the input had "
        "external data or the weights exceed 1 GiB), always, never (one file, at most 2 GB)",
    )
    p.add_argument(
        "--report",
        metavar="FILE",
        help="also write the report: an HTML page for .html/.htm, else JSON",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the validation inputs")
    p.add_argument(
        "--config",
        metavar="FILE.toml",
        help="a pruning recipe: the flags' values, and [ratios] per name glob "
        "(flags given here override it)",
    )
    p.add_argument(
        "--save-config", metavar="FILE.toml", help="also write the effective recipe to FILE"
    )
    p.set_defaults(name_ratios={}, sensitivity_ratios=PruneConfig().sensitivity_ratios)
    add_common_arguments(p, verbose="list every group and layer")
    p.add_argument("--version", action="version", version=f"onnxprune {__version__}")
    return p


def parse_prune_args(argv: Sequence[str]) -> argparse.Namespace:
    """The prune arguments; a --config file's values are the defaults flags override
    (repeatable flags, --exclude and --input-shape, add to the file's lists)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.config:
        values = read_config(args.config)
        shapes = values.pop("input_shapes", None)
        if shapes is not None:
            values["input_shape"] = list(shapes.items())
        parser.set_defaults(**values)
        args = parser.parse_args(argv)
    return args


def _check_paths(args: argparse.Namespace) -> None:
    model, output = args.model, args.output
    if not os.path.exists(model):
        raise BadInputError(f"{model}: no such file")
    if not os.path.isfile(model):
        raise BadInputError(f"{model}: not a file")
    if same_path(output, model):
        raise BadInputError(f"output {output} is the input file; choose another path")
    if args.report and same_path(args.report, model):
        raise BadInputError(f"--report {args.report} is the input file; choose another path")
    if args.report and same_path(args.report, output):
        raise BadInputError(f"--report {args.report} is also the output model; choose another")
    for path in filter(None, [output, args.report]):
        check_writable(path, "output")


def _report_writer(args: argparse.Namespace):
    """Writes the --report file: an HTML page for .html/.htm, else JSON."""

    def write(path: str, report) -> None:
        if args.report.lower().endswith((".html", ".htm")):
            from .report_html import render_html

            names = (os.path.basename(args.model), os.path.basename(args.output))
            sizes = (report.file_bytes_before, report.file_bytes_after)
            text = render_html(report, *names, file_sizes=sizes)
        else:
            text = report.to_json()
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)

    return write


def _recipe_writer(config: PruneConfig, final_path: str) -> Callable[[str, object], None]:
    """Writes the recipe (paths in it relative to where it will end up, not the staging)."""
    text = to_toml(config, os.path.dirname(os.path.abspath(final_path)))

    def write(path: str, report: object) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)

    return write


def _check_save_config(args: argparse.Namespace) -> None:
    path = args.save_config
    if not path:
        return
    others = [(args.model, "the input file"), (args.output, "the output model"),
              (args.report, "the --report file"), (args.config, "the --config file")]  # fmt: skip
    for other, what in others:
        if other and same_path(path, other):
            raise BadInputError(f"--save-config {path} is {what}; choose another path")
    check_writable(path, "--save-config")


def run(args: argparse.Namespace) -> int:
    _check_paths(args)
    _check_save_config(args)
    config = PruneConfig(
        ratio=args.ratio,
        global_ranking=args.global_ranking,
        criterion=args.criterion,
        round_to=args.round_to,
        round_down=args.round_down,
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
        name_ratios=args.name_ratios,
        sensitivity_ratios=args.sensitivity_ratios,
        latency=args.latency,
    ).check()
    set_quiet(args.quiet)
    companions = [(args.report, _report_writer(args))] if args.report else []
    if args.save_config:
        companions.append((args.save_config, _recipe_writer(config, args.save_config)))
    report = prune_file(args.model, args.output, config, args.external_data, companions)
    if not args.quiet:
        print(report.to_text(verbose=args.verbose))
        print(f"wrote {args.output}")
    else:
        for warning in report.warnings:
            print(f"onnxprune: warning: {warning}", file=sys.stderr)
    return 0


def _command(name: str, help_line: str, verbose: str | None) -> Callable[[list[str]], int]:
    """The entry of `onnxprune NAME`: its module `cmd_NAME` adds its arguments and runs;
    `help_line` is its line in `onnxprune --help`, `verbose` what its -v adds."""

    def command(argv: list[str]) -> int:
        module = importlib.import_module(f".cmd_{name}", __package__)
        p = _Parser(prog=f"onnxprune {name}", description=module.__doc__)
        module.add_arguments(p)
        add_common_arguments(p, verbose=verbose)
        args = p.parse_args(argv)
        set_quiet(args.quiet)
        return module.run(args, dict(args.input_shape))

    command.__doc__ = help_line
    return command


COMMANDS = {
    "analyze": _command(
        "analyze",
        "list the channel groups, what each controls, and what is frozen and why (no writes)",
        verbose="list fully frozen groups too",
    ),
    "bench": _command(
        "bench", "time one model in onnxruntime, or two side by side (paired)", verbose=None
    ),
    "sensitivity": _command(
        "sensitivity",
        "how far each group moves the outputs when pruned alone (needs calibration data)",
        verbose="list every member of each group",
    ),
}


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
        return run(parse_prune_args(argv))
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
