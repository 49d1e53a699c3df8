"""Calibration benchmark: magnitude vs data-aware pruning vs refit, on a trained digits CNN.

Usage (from anywhere; needs torch and ``pip install scikit-learn``)::

    python tools/bench_calibration.py
    python tools/bench_calibration.py --budgets 0.3 --calib-size 512 --json /tmp/calib.json
    python tools/bench_calibration.py --sensitivity-ratios 0.125 0.25 0.375 0.5 0.625 0.75 0.875
    python tools/bench_calibration.py -v --save-dir /tmp/digits   # + sensitivities, files

What it does:

* data: scikit-learn's handwritten digits (1797 8x8 images, shipped inside the
  package), scaled to [0, 1], a seeded split of 1200 training / 597 test images;
  calibration data is the first ``--calib-size`` images of the shuffled training set,
  never the test set;
* model: a small plain-torch CNN (conv 32 -> conv 64 -> pool -> conv 64 -> pool ->
  Linear 128 -> Linear 10, BN + ReLU), trained deterministically on the CPU, exported
  with ``torch.onnx.export(dynamo=False, opset 17)`` with a dynamic batch axis;
* for every MAC budget (fraction of MACs kept), one ``onnxprune.prune(...,
  validate=True)`` call per variant:

  - ``l2 uniform r=R``: uniform L2 magnitude, R searched so the MACs kept just reach
    the budget, no refit; ``+lsq``: the same ratio with a least-squares refit;
  - ``l2 budget``: L2 choice within groups, per-group ratios from ``target_macs``
    (measured sensitivity), no refit: where the budget goes, without data-aware scores;
  - ``<criterion> uniform r=R``: data-aware choice (activation, wanda) at the uniform
    ratio, no refit: the criterion alone;
  - ``<criterion> budget``: data-aware choice under ``target_macs``, no refit;
    ``+bias``: bias compensation; ``+lsq <ridge>``: least-squares refit per ridge;

  Every variant gets the calibration data (for the l2 variants without refit it only
  serves the calibration-set error figure).
* prints the original's test accuracy and, per variant, test accuracy (the pruned
  ONNX model in onnxruntime on the 597 test images), MACs and parameters kept,
  onnxprune's calibration-set relative output error, how the readers were refit and
  the channels each group kept.

A benchmark, not a test: it always exits 0 unless the arguments are unusable.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

TOOLS = Path(__file__).resolve().parent
ROOT = TOOLS.parent
sys.path.insert(0, str(ROOT))
import onnxprune  # noqa: E402

SEED = 0
N_TRAIN = 1200
INPUT_NAME = "image"
TARGET_DROP = 0.01
"""The issue's target: test accuracy within 1 point of the original."""


@dataclass
class Digits:
    """The split: images N x 1 x 8 x 8 in [0, 1] (float32), labels int64."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_digits(seed: int = SEED) -> Digits:
    """scikit-learn's digits, shuffled with ``seed``: 1200 training, 597 test images."""
    from sklearn.datasets import load_digits as sk_load_digits

    data = sk_load_digits()
    x = (data.images / 16.0).astype(np.float32)[:, None]
    y = data.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    train, test = order[:N_TRAIN], order[N_TRAIN:]
    return Digits(x[train], y[train], x[test], y[test])


class DigitsCNN(nn.Module):
    """8x8 -> conv 32 -> conv 64 -> pool -> conv 64 -> pool -> 256 -> 128 -> 10."""

    def __init__(self) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

        self.features = nn.Sequential(
            *block(1, 32),
            *block(32, 64),
            nn.MaxPool2d(2),
            *block(64, 64),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * 2 * 2, 128), nn.ReLU(), nn.Linear(128, 10)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of N x 1 x 8 x 8 images."""
        return self.classifier(self.features(x))


def train(data: Digits, epochs: int, seed: int = SEED) -> nn.Module:
    """Train DigitsCNN deterministically (seeded init and batches, CPU); eval mode."""
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    model = DigitsCNN()
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    steps = epochs * -(-len(x) // 32)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(32):
            # a one-pixel random shift: a cheap augmentation for 8x8 digits
            dx, dy = torch.randint(-1, 2, (2,), generator=gen).tolist()
            batch = torch.roll(x[idx], shifts=(dy, dx), dims=(2, 3))
            loss = nn.functional.cross_entropy(model(batch), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


def export(model: nn.Module, path: Path) -> None:
    """ONNX export (TorchScript exporter, opset 17, dynamic batch axis)."""
    dummy = torch.zeros(1, 1, 8, 8)
    torch.onnx.export(
        model,
        (dummy,),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=[INPUT_NAME],
        output_names=["logits"],
        dynamic_axes={INPUT_NAME: {0: "batch"}, "logits": {0: "batch"}},
    )


def accuracy(model: onnx.ModelProto | Path, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of the ONNX model in onnxruntime (CPU) on (x, y)."""
    source = str(model) if isinstance(model, Path) else model.SerializeToString()
    sess = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    logits = sess.run(None, {INPUT_NAME: x})[0]
    return float((logits.argmax(axis=1) == y).mean())


def uniform_ratio(path: Path, budget: float) -> float:
    """The smallest uniform L2 ratio whose pruned model keeps at most ``budget`` of the
    MACs (bisection; MACs kept fall in steps as the ratio grows)."""
    low, high = 0.0, 0.99

    def kept(ratio: float) -> float:
        _, report = onnxprune.prune(path, onnxprune.PruneConfig(ratio=ratio, validate=False))
        return report.macs_after / report.macs_before

    if kept(high) > budget:
        return high
    for _ in range(20):
        mid = (low + high) / 2
        if kept(mid) <= budget:
            high = mid
        else:
            low = mid
    return high


def short_name(label: str) -> str:
    """'/features/features.3/Conv (Conv)' -> 'features.3' (the torch module's name)."""
    path = label.split(" (")[0].strip("/").split("/")
    return path[-2] if len(path) > 1 else path[0]


def group_kept(report) -> str:
    """Channels kept per pruned or prunable group: 'name kept/channels' each."""
    parts = []
    for g in report.groups:
        if g.n_frozen == g.channels:
            continue
        parts.append(f"{short_name(g.members[0]) if g.members else g.id} {g.kept}/{g.channels}")
    return " ".join(parts)


def run_variant(path: Path, name: str, config, data: Digits, budget: float) -> dict:
    """One prune call (validated) and its figures; an error is reported, not raised."""
    row = {"budget_macs": budget, "variant": name, "criterion": config.criterion}
    row.update({"reconstruct": config.reconstruct, "ridge": config.ridge})
    start = time.perf_counter()
    try:
        model, report = onnxprune.prune(path, config)
    except Exception as exc:  # noqa: BLE001 - a benchmark reports and goes on
        row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
        return row
    methods = [r["method"] for r in report.refits]
    row.update(
        {
            "seconds": time.perf_counter() - start,
            "test_accuracy": accuracy(model, data.x_test, data.y_test),
            "macs_kept": report.macs_after / report.macs_before,
            "params_kept": report.params_after / report.params_before,
            "calib_rel_error": report.calib_rel_error,
            "refits": {m: methods.count(m) for m in ("lsq", "bias", "none") if m in methods},
            "refit_notes": [r["why"] for r in report.refits if r["why"]],
            "groups": group_kept(report),
            "group_detail": [
                {"id": g.id, "members": g.members, "channels": g.channels, "kept": g.kept}
                for g in report.groups
            ],
            "budget_ratios": (report.budget or {}).get("ratios"),
            "sensitivity": (report.budget or {}).get("sensitivity"),
        }
    )
    return row


def variants(path: Path, budget: float, calib: dict, args) -> list[tuple[str, object]]:
    """(name, PruneConfig) of every variant at one MAC budget."""
    ratio = uniform_ratio(path, budget)
    base = onnxprune.PruneConfig(
        calib=calib,
        calib_batch=args.calib_batch,
        reconstruct="none",
        sensitivity_ratios=tuple(args.sensitivity_ratios),
    )
    uniform = replace(base, ratio=ratio)
    ridge = args.ridges[len(args.ridges) // 2]
    chosen = [
        (f"l2 uniform r={ratio:.3f}", uniform),
        (
            f"l2 uniform r={ratio:.3f} +lsq {ridge:g}",
            replace(uniform, reconstruct="lsq", ridge=ridge),
        ),
        ("l2 budget", replace(base, target_macs=budget)),
    ]
    for criterion in args.criteria:
        aware = replace(base, criterion=criterion, target_macs=budget)
        chosen.append((f"{criterion} uniform r={ratio:.3f}", replace(uniform, criterion=criterion)))
        chosen.append((f"{criterion} budget", aware))
        chosen.append((f"{criterion} budget +bias", replace(aware, reconstruct="bias")))
        for ridge in args.ridges:
            lsq = replace(aware, reconstruct="lsq", ridge=ridge)
            chosen.append((f"{criterion} budget +lsq {ridge:g}", lsq))
    return chosen


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--budgets",
        type=float,
        nargs="+",
        default=[0.5, 0.3],
        help="fractions of MACs kept (default 0.5 0.3: 50%% and 70%% removed)",
    )
    p.add_argument(
        "--criteria",
        nargs="+",
        default=["activation", "wanda"],
        choices=["activation", "wanda"],
        help="data-aware criteria",
    )
    p.add_argument(
        "--ridges",
        type=float,
        nargs="+",
        default=[0.01, 0.1, 1.0],
        help="ridge values of the lsq refit (the middle one also for l2+lsq)",
    )
    p.add_argument("--calib-size", type=int, default=256, help="training images used (default 256)")
    p.add_argument("--calib-batch", type=int, default=64, help="samples per onnxruntime run")
    p.add_argument(
        "--sensitivity-ratios",
        type=float,
        nargs="+",
        default=[0.25, 0.5, 0.75],
        help="ratios at which each group's sensitivity is measured",
    )
    p.add_argument("--epochs", type=int, default=15, help="training epochs (default 15)")
    p.add_argument(
        "--save-dir",
        type=Path,
        help="keep the original model (digits_cnn.onnx) and calibration data (calib.npz) here",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="also print sensitivities")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the figures as JSON")
    args = p.parse_args(argv)
    if not 0 < args.calib_size <= N_TRAIN or args.epochs < 1:
        p.error(f"--calib-size must be in 1..{N_TRAIN} and --epochs at least 1")
    if args.save_dir and not args.save_dir.is_dir():
        p.error(f"--save-dir {args.save_dir}: no such folder")
    if not all(0 < b <= 1 for b in args.budgets):
        p.error("--budgets must be in (0, 1]")
    return args


def print_table(rows: list[dict], original: float) -> None:
    """One line per variant, grouped by budget."""
    print(f"\noriginal test accuracy {original:.4f} (target: within {TARGET_DROP * 100:g} point)")
    head = (
        f"{'MACs budget':>11} {'variant':34} {'test acc':>8} {'drop':>6} {'MACs':>5} "
        f"{'params':>6} {'calib err':>9} {'refit':>14}  channels kept per group"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        start = f"{r['budget_macs']:11.2f} {r['variant']:34}"
        if "error" in r:
            print(f"{start} {r['error']}")
            continue
        drop = original - r["test_accuracy"]
        flag = "" if drop <= TARGET_DROP + 1e-9 else " !"
        err = "-" if r["calib_rel_error"] is None else f"{r['calib_rel_error']:.3g}"
        refit = " ".join(f"{n} {m}" for m, n in r["refits"].items()) or "-"
        print(
            f"{start} {r['test_accuracy']:8.4f} {drop * 100:+5.1f}{flag:1s} {r['macs_kept']:5.3f} "
            f"{r['params_kept']:6.3f} {err:>9} {refit:>14}  {r['groups']}"
        )
    print("drop: points of test accuracy lost; '!' = more than the target. MACs, params:")
    print("fraction kept. calib err: relative squared output error on the calibration set.")


def print_sensitivity(rows: list[dict]) -> None:
    """Per-group output deviation measured for the budget, once per distinct setting."""
    seen = set()
    for r in rows:
        key = (r["criterion"], r["reconstruct"], r["ridge"])
        if not r.get("sensitivity") or key in seen:
            continue
        seen.add(key)
        print(f"\nsensitivity ({r['criterion']}, refit {r['reconstruct']}, ridge {r['ridge']:g}):")
        print("  group           ratio: calibration-set relative output error (MACs saved alone)")
        for g in r["sensitivity"]:
            cells = "  ".join(
                f"{ratio:g}: {dev:.3g} ({saved / 1e3:.0f}k)"
                for ratio, dev, saved in zip(
                    g["ratios"], g["deviation"], g["macs_saved"], strict=True
                )
            )
            print(f"  {short_name(g['members'][0]):15} {cells}")


def main(argv: list[str] | None = None) -> int:
    """Train, export, prune every variant, print the table; return an exit code."""
    args = parse_args(argv)
    data = load_digits()
    start = time.perf_counter()
    net = train(data, args.epochs)
    train_s = time.perf_counter() - start
    calib = {INPUT_NAME: data.x_train[: args.calib_size]}
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench_calibration-") as folder:
        path = (args.save_dir or Path(folder)) / "digits_cnn.onnx"
        export(net, path)
        if args.save_dir:
            np.savez(args.save_dir / "calib.npz", **calib)
        original = accuracy(path, data.x_test, data.y_test)
        print(
            f"trained DigitsCNN in {train_s:.1f}s ({args.epochs} epochs); ONNX test accuracy "
            f"{original:.4f} on {len(data.y_test)} images; calibration: {args.calib_size} "
            "training images",
            file=sys.stderr,
        )
        for budget in args.budgets:
            for name, config in variants(path, budget, calib, args):
                print(f"  budget {budget:g}: {name} ...", file=sys.stderr, flush=True)
                rows.append(run_variant(path, name, config, data, budget))
    print_table(rows, original)
    if args.verbose:
        print_sensitivity(rows)
    if args.json:
        settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        figures = {"original_test_accuracy": original, "train_seconds": train_s}
        payload = {**figures, "settings": settings, "rows": rows}
        args.json.write_text(json.dumps(payload, indent=2, default=float) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
