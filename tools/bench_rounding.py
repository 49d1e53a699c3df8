"""Benchmark channel rounding: MobileNetV2 and EfficientNet-B0 at ratio 0.3, round_to 1, 8
and auto, MACs and onnxruntime latency as fractions of the original.

Usage (from anywhere; needs torch, ``pip install ".[tools]"``)::

    python tools/bench_rounding.py                       # both nets, 200 rounds
    python tools/bench_rounding.py --nets mobilenetv2 --runs 100 --out /tmp/rounding

Both nets are written here in plain torch (torchvision does not import beside the CPU
torch), with random weights and random BatchNorm statistics, exported at 1x3x224x224
(opset 17, TorchScript exporter, BatchNorm folded) into ``--out`` (a temporary folder by
default; the files are large, never commit them). Each is pruned with L2 magnitude at
``--ratio`` for every rounding; then the original and the pruned models are timed in
onnxruntime (CPU, 2 intra-op threads, spinning off) interleaved, round after round, and
each pruned model's latency is the median over rounds of its time / the original's
time in the same round (paired), beside the ratio of medians.

The issue's target: at ratio 0.3, ``--round-to auto`` at least as fast as Torch-Pruning's
models rounded to 8, which run at 0.56-0.62 of the original's latency (FIELD_NOTES).
Torch-Pruning 1.6.1 (the ``tools`` extra) prunes the same torch nets (L2, uniform ratio,
round_to 8) and its exports are timed in the same interleaved rounds (``--no-peer``
leaves it out).
A benchmark, not a test: figures are noisy on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

TOOLS = Path(__file__).resolve().parent
ROOT = TOOLS.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(TOOLS))
from sample_nets import randomize_batchnorm  # noqa: E402

import onnxprune  # noqa: E402
from onnxprune import latency  # noqa: E402
from onnxprune.apply import count_params  # noqa: E402
from onnxprune.report import layer_costs  # noqa: E402
from onnxprune.validate import input_feeds  # noqa: E402

ROUNDINGS = (1, 8, "auto")
INPUT = (1, 3, 224, 224)


def conv_bn_act(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act=None):
    """Conv (no bias) -> BatchNorm -> activation (ReLU6 unless given; nn.Identity for none)."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        act if act is not None else nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise, 1x1 linear projection."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers = [conv_bn_act(cin, hidden, 1)] if expand != 1 else []
        layers += [
            conv_bn_act(hidden, hidden, 3, stride, groups=hidden),
            conv_bn_act(hidden, cout, 1, act=nn.Identity()),
        ]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.residual else self.block(x)


class MobileNetV2(nn.Module):
    """torchvision's MobileNetV2 (width 1.0, 1000 classes), 3.5 M parameters."""

    SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                (6, 160, 3, 2), (6, 320, 1, 1)]  # fmt: skip

    def __init__(self) -> None:
        super().__init__()
        layers, cin = [conv_bn_act(3, 32, 3, 2)], 32
        for t, c, n, s in self.SETTINGS:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(conv_bn_act(cin, 1280, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(1280, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean((2, 3)))


class SqueezeExcite(nn.Module):
    """EfficientNet's squeeze-excitation: pool, 1x1 reduce, SiLU, 1x1 expand, sigmoid gate."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeeze, 1)
        self.expand = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = nn.functional.silu(self.reduce(x.mean((2, 3), keepdim=True)))
        return x * torch.sigmoid(self.expand(s))


class MBConv(nn.Module):
    """EfficientNet block: 1x1 expand, kxk depthwise, squeeze-excitation, 1x1 projection."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers = [conv_bn_act(cin, hidden, 1, act=nn.SiLU())] if expand != 1 else []
        layers += [
            conv_bn_act(hidden, hidden, k, stride, groups=hidden, act=nn.SiLU()),
            SqueezeExcite(hidden, max(1, cin // 4)),
            conv_bn_act(hidden, cout, 1, act=nn.Identity()),
        ]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.residual else self.block(x)


class EfficientNetB0(nn.Module):
    """torchvision's EfficientNet-B0 (1000 classes), 5.3 M parameters."""

    # expand, kernel, stride, in, out, layers
    SETTINGS = [(1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2),
                (6, 3, 2, 40, 80, 3), (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4),
                (6, 3, 1, 192, 320, 1)]  # fmt: skip

    def __init__(self) -> None:
        super().__init__()
        layers = [conv_bn_act(3, 32, 3, 2, act=nn.SiLU())]
        for t, k, s, cin, cout, n in self.SETTINGS:
            for i in range(n):
                layers.append(MBConv(cin if i == 0 else cout, cout, k, s if i == 0 else 1, t))
        layers.append(conv_bn_act(320, 1280, 1, act=nn.SiLU()))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(1280, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean((2, 3)))


NETS = {"mobilenetv2": MobileNetV2, "efficientnet_b0": EfficientNetB0}


def build(name: str) -> nn.Module:
    """Net `name` with seeded random weights and BatchNorm statistics, in eval mode."""
    torch.manual_seed(0)
    model = NETS[name]()
    randomize_batchnorm(model)
    return model.eval()


def export(name: str, folder: Path, model: nn.Module | None = None, suffix: str = "") -> Path:
    """Export net `name` (built here unless given) to folder/name{suffix}.onnx."""
    model = model if model is not None else build(name)
    path = folder / f"{name}{suffix}.onnx"
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(INPUT),), str(path), dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["output"])  # fmt: skip
    return path


def prune_variants(path: Path, ratio: float) -> tuple[dict[str, Path], list[dict]]:
    """Prune `path` at `ratio` with every rounding; the pruned files and their figures."""
    files, rows = {"original": path}, []
    for rounding in ROUNDINGS:
        config = onnxprune.PruneConfig(ratio=ratio, round_to=rounding)
        start = time.perf_counter()
        model, report = onnxprune.prune(str(path), config)
        seconds = time.perf_counter() - start
        out = path.with_name(f"{path.stem}.r{rounding}.onnx")
        onnx.save(model, str(out))
        files[f"r{rounding}"] = out
        row = {
            "round_to": rounding,
            "macs": report.macs_after / report.macs_before,
            "params": report.params_after / report.params_before,
            "oracle_rel_diff": report.oracle_rel_diff,
            "prune_s": seconds,
        }
        if report.rounding:
            row["chosen"] = report.rounding["chosen"]
            row["probe"] = report.rounding
            row["probe_s"] = report.seconds.get("latency probe")
        rows.append(row)
    return files, rows


def torch_pruning_variant(name: str, folder: Path, ratio: float, original: Path):
    """The peer, side by side: Torch-Pruning 1.6 (L2 magnitude, uniform `ratio`,
    round_to 8, classifier kept) on the same torch net, exported the same way."""
    import torch_pruning as tp  # the `tools` extra

    model = build(name)
    example = torch.randn(INPUT)
    keep = [m for m in model.modules() if isinstance(m, nn.Linear)]
    pruner = tp.pruner.MagnitudePruner(
        model,
        example,
        importance=tp.importance.MagnitudeImportance(p=2),
        pruning_ratio=ratio,
        round_to=8,
        ignored_layers=keep,
    )
    start = time.perf_counter()
    pruner.step()
    seconds = time.perf_counter() - start
    path = export(name, folder, model, suffix=".tp8")
    dims = {"input": list(INPUT)}
    macs = lambda p: sum(c.macs for c in layer_costs(onnx.load(str(p)), dims))  # noqa: E731
    params = lambda p: count_params(onnx.load(str(p)))  # noqa: E731
    row = {
        "round_to": "tp8",
        "macs": macs(path) / macs(original),
        "params": params(path) / params(original),
        "oracle_rel_diff": None,
        "prune_s": seconds,
    }
    return path, row


def time_all(files: dict[str, Path], runs: int, threads: int) -> dict[str, dict]:
    """Every model's timing and, for the pruned ones, the paired ratio to the original."""
    feeds = input_feeds(onnx.load(str(files["original"])), {}, seed=0)
    names = list(files)
    calls = [latency.runner(str(files[n]), feeds, threads) for n in names]
    timings = dict(zip(names, latency.time_interleaved(calls, runs, warmup=5), strict=True))
    base = timings["original"]
    out = {}
    for name, t in timings.items():
        out[name] = {**t.summary(), "ratio": t.median_ms / base.median_ms}
        out[name]["paired"] = float(np.median(np.divide(t.runs_ms, base.runs_ms)))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nets", nargs="+", choices=list(NETS), default=list(NETS))
    p.add_argument("--ratio", type=float, default=0.3)
    p.add_argument("--runs", type=int, default=200, help="interleaved timing rounds")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, help="folder for the exported and pruned models")
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--no-peer", action="store_true", help="leave out Torch-Pruning (round_to 8)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_rounding-") as tmp:
        folder = args.out or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        results = {}
        for name in args.nets:
            print(f"{name}: export, prune ...", file=sys.stderr, flush=True)
            original = export(name, folder)
            files, rows = prune_variants(original, args.ratio)
            if not args.no_peer:
                files["rtp8"], row = torch_pruning_variant(name, folder, args.ratio, original)
                rows.append(row)
            print(f"{name}: timing {args.runs} rounds ...", file=sys.stderr, flush=True)
            timings = time_all(files, args.runs, args.threads)
            results[name] = {"rows": rows, "latency": timings}
    print_table(results, args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


def print_table(results: dict, args) -> None:
    import onnxruntime as ort

    print(
        f"ratio {args.ratio}, onnxruntime {ort.__version__} CPU, {args.threads} threads, "
        f"{args.runs} interleaved rounds; latency = pruned / original (paired: median "
        "of per-round ratios)"
    )
    print(f"{'net':16} {'round_to':>9} {'MACs':>6} {'params':>7} {'latency':>8} {'paired':>7} "
          f"{'median ms':>10} {'oracle':>8}")  # fmt: skip
    for name, res in results.items():
        lat = res["latency"]
        print(f"{name:16} {'original':>9} {1:6.3f} {1:7.3f} {1:8.3f} {1:7.3f} "
              f"{lat['original']['median_ms']:10.2f}")  # fmt: skip
        for row in res["rows"]:
            t = lat[f"r{row['round_to']}"]
            label = str(row["round_to"]) + (f"->{row['chosen']}" if "chosen" in row else "")
            label = "TP, 8" if row["round_to"] == "tp8" else label
            print(
                f"{name:16} {label:>9} {row['macs']:6.3f} {row['params']:7.3f} "
                f"{t['ratio']:8.3f} {t['paired']:7.3f} {t['median_ms']:10.2f} "
                + (f"{row['oracle_rel_diff']:8.1e}" if row["oracle_rel_diff"] is not None else "")
            )
        for row in res["rows"]:
            if "probe" in row:
                figures = ", ".join(
                    f"{c['multiple']}: {c['predicted_ms']:.2f} ms"
                    for c in row["probe"]["candidates"]
                )
                print(f"  auto probe ({row['probe_s']:.1f} s): {figures}")


if __name__ == "__main__":
    raise SystemExit(main())
