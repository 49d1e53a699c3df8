"""`onnxprune analyze model.onnx [--json FILE|-]`: the channel groups, what each
controls (MACs, parameters) and its score spread, and every frozen channel with the
node and the reason; nothing is pruned or written (except the --json file)."""

from __future__ import annotations

import argparse
import sys

from .analysis_report import analyze
from .cli import add_channel_arguments
from .config import PruneConfig
from .staging import check_writable, write_files


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="input .onnx file (never modified)")
    p.add_argument("--json", metavar="FILE", help="write the analysis as JSON ('-': stdout)")
    add_channel_arguments(p)
    p.add_argument("--calib", metavar="DATA", help="calibration data (data-aware criteria only)")
    p.add_argument("--calib-random", type=int, default=0, metavar="N")


def run(args: argparse.Namespace, shapes: dict) -> int:
    if args.json and args.json != "-":
        check_writable(args.json, "--json", [args.model])
    config = PruneConfig(
        criterion=args.criterion,
        exclude=args.exclude,
        prune_heads=args.prune_heads,
        prune_hidden=args.prune_hidden,
        input_shapes=shapes,
        calib=args.calib,
        calib_random=args.calib_random,
        reconstruct="none",
        validate=False,
    )
    report = analyze(args.model, config)
    if args.json == "-":
        print(report.to_json())
    else:
        if args.json:
            write_files([(args.json, _write(report.to_json()))])
        if not args.quiet:
            print(report.to_text(verbose=args.verbose))
    if args.quiet or args.json == "-":
        for warning in report.warnings:
            print(f"onnxprune: warning: {warning}", file=sys.stderr)
    return 0


def _write(text: str):
    def write(path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text + "\n")

    return write
