"""`onnxprune sensitivity model.onnx --calib data.npz [--plot s.png] [--json s.json]`:
how far each group moves the outputs when pruned alone, so fragile layers show."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict

from .config import CRITERIA, PruneConfig
from .errors import BadInputError
from .pipeline import sensitivity
from .staging import check_writable, write_files


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="input .onnx file (never modified)")
    p.add_argument("--calib", metavar="DATA", help="calibration data (.npz or .npy folder)")
    p.add_argument("--calib-random", type=int, default=0, metavar="N")
    p.add_argument("--calib-batch", type=int, default=8, metavar="B")
    p.add_argument("--ratios", default="0.25,0.5,0.75", help="ratios to try (comma-separated)")
    p.add_argument("--criterion", choices=CRITERIA, default="l2")
    p.add_argument("--reconstruct", choices=("auto", "lsq", "bias", "none"), default="auto")
    p.add_argument("--ridge", type=float, default=0.1)
    p.add_argument("--plot", metavar="FILE.png", help="write the plot here")
    p.add_argument("--json", metavar="FILE.json", help="write the figures here")


def run(args: argparse.Namespace, shapes: dict) -> int:
    try:
        ratios = tuple(float(r) for r in args.ratios.split(","))
    except ValueError as exc:
        raise BadInputError(
            f"--ratios: expected numbers like 0.25,0.5, got {args.ratios!r}"
        ) from exc
    for flag, path in (("--plot", args.plot), ("--json", args.json)):
        if path:
            check_writable(path, flag, [args.model])
    config = PruneConfig(
        calib=args.calib,
        calib_random=args.calib_random,
        calib_batch=args.calib_batch,
        criterion=args.criterion,
        reconstruct=args.reconstruct,
        ridge=args.ridge,
        sensitivity_ratios=ratios,
        input_shapes=shapes,
        validate=False,
    )
    found, macs, params = sensitivity(args.model, config)
    if not args.quiet:
        print(format_table(found, macs, verbose=args.verbose))
    files = []
    if args.plot:
        from .plot import sensitivity_plot

        title = f"sensitivity of {os.path.basename(args.model)}"
        files.append((args.plot, lambda path: sensitivity_plot(found, path, title)))
    if args.json:
        figures = {"macs": macs, "params": params, "groups": [asdict(s) for s in found]}
        files.append((args.json, lambda path: _write_json(path, figures)))
    write_files(files)
    return 0


def _write_json(path: str, figures: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(figures, f, indent=2)


def format_table(found: list, macs: int, verbose: bool = False) -> str:
    """Groups, most fragile first; `verbose` lists every member, not just the first."""
    if not found:
        return "no prunable groups"
    ratios = found[0].ratios
    head = f"{'group':>5} {'kind':>8} {'chan':>5}  " + "".join(
        f"{'dev@' + str(r):>11}" for r in ratios
    )
    lines = [head + f"{'MACs@max':>10}  members"]
    for s in sorted(found, key=lambda s: -s.deviation[-1]):
        devs = "".join(f"{d:>11.3g}" for d in s.deviation)
        share = s.macs_saved[-1] / macs if macs else 0.0
        members = ", ".join(s.members) if verbose else s.members[0]
        lines.append(f"{s.id:>5} {s.kind:>8} {s.channels:>5}  {devs}{share:>10.1%}  {members}")
    lines.append(
        "dev: relative squared output error on the calibration data when only that group is "
        "pruned; MACs@max: share of all MACs it saves at the largest ratio"
    )
    return "\n".join(lines)
