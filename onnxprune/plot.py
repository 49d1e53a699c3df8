"""PNG plots (matplotlib, an optional dependency: pip install onnxprune[plot])."""

from __future__ import annotations

from .errors import OnnxPruneError


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise OnnxPruneError("plotting needs matplotlib: pip install 'onnxprune[plot]'") from exc
    return plt


def sensitivity_plot(sensitivities: list, path: str, title: str) -> None:
    """Deviation against ratio, one line per group (log scale), written to `path`."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for s in sorted(sensitivities, key=lambda s: -max(s.deviation or [0])):
        label = f"{s.id}: {s.members[0][-28:]}" + (" [heads]" if s.kind == "heads" else "")
        ax.plot(s.ratios, [max(d, 1e-16) for d in s.deviation], marker="o", label=label)
    positive = [d for s in sensitivities for d in s.deviation if d > 0]
    ax.set_yscale("log")
    if positive:
        ax.set_ylim(bottom=min(positive) / 3, top=max(positive) * 3)
    ax.set_xlabel("fraction of the group's channels removed")
    ax.set_ylabel("relative squared output error (calibration data)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    if len(sensitivities) <= 24:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
