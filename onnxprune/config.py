"""PruneConfig: every knob of a pruning run in one place."""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field

from .errors import BadInputError

CRITERIA = ("l2", "l1", "bn_gamma", "activation", "wanda", "energy")
DATA_AWARE = ("activation", "wanda", "energy")
RECONSTRUCT = ("auto", "lsq", "bias", "none")


@dataclass
class PruneConfig:
    """What to prune and how.

    ratio: fraction of the channels removed in every prunable group (0 <= ratio < 1).
    global_ranking: rank all channels of all groups together instead of per group.
    criterion: "l2" (default) or "l1" weight norm of the producers, or "bn_gamma"
        (|gamma| of the BatchNormalization nodes in the group; l2 where a group has none).
    round_to: kept counts are multiples of this where the group allows (1 = no rounding);
        "auto": prune() picks the multiple from latency measured on this machine
        (onnxprune/rounding.py).
    latency: also measure onnxruntime CPU latency before and after (paired runs), for
        the report; always done with round_to="auto".
    min_channels: never keep fewer than this many channels in a group (at least 1).
    exclude: node or initializer name globs whose channels are never pruned.
    validate: run checker, shape inference and onnxruntime on the result.
    input_shapes: concrete shapes for model inputs with symbolic dimensions.
    seed: seed of the random validation inputs.
    prune_heads: remove whole attention heads where a Reshape splits a projection into
        [heads, head_dim] (each head is one unit); off: such channels are frozen.
    head_ratio: fraction of heads removed in head groups (default: `ratio`).
    prune_hidden: also prune the hidden size through LayerNormalization (approximate:
        the normalisation statistics change); never on by default.
    calib: calibration data: an .npz path, a folder of .npy files, or {input: array}
        (first axis = samples). calib_random: that many random samples instead.
    calib_batch: samples per onnxruntime run while collecting statistics.
    calib_mask: an input (attention mask) whose zeros mark padding tokens; statistics
        leave those rows out.
    reconstruct: refit the readers of removed channels on the calibration data: "lsq"
        (ridge least squares, falling back to bias compensation where there are too
        few samples), "bias" (bias compensation), "none"; "auto" = lsq with calibration
        data, none without.
    ridge: strength of the least-squares refit's pull toward the original weights,
        relative to the mean input variance.
    target_macs / target_params: fraction of MACs / parameters to keep; instead of one
        ratio, each group gets the ratio that meets the budget with the least output
        deviation on the calibration data (measured at sensitivity_ratios).
    group_ratios: a ratio per group id (what a budget chose; overrides ratio).
    name_ratios: {name glob: ratio}: a group whose producer nodes or their initializers
        match a glob (node name or initializer name; the first glob in order wins) is
        pruned at that ratio instead of `ratio` / `head_ratio`; a budget leaves it there.
    """

    @property
    def has_calibration(self) -> bool:
        return self.calib is not None or self.calib_random > 0

    @property
    def refit(self) -> str:
        """The reconstruction actually used: lsq, bias or none."""
        if self.reconstruct == "auto":
            return "lsq" if self.has_calibration else "none"
        return self.reconstruct

    @property
    def heads_ratio(self) -> float:
        return self.ratio if self.head_ratio is None else self.head_ratio

    ratio: float = 0.5
    global_ranking: bool = False
    criterion: str = "l2"
    round_to: int | str = 1
    min_channels: int = 1
    exclude: list[str] = field(default_factory=list)
    validate: bool = True
    input_shapes: dict[str, list[int]] = field(default_factory=dict)
    seed: int = 0
    prune_heads: bool = True
    head_ratio: float | None = None
    prune_hidden: bool = False
    calib: str | dict | None = None
    calib_random: int = 0
    calib_batch: int = 8
    calib_mask: str | None = None
    reconstruct: str = "auto"
    ridge: float = 0.1
    target_macs: float | None = None
    target_params: float | None = None
    sensitivity_ratios: tuple[float, ...] = (0.25, 0.5, 0.75)
    group_ratios: dict[int, float] = field(default_factory=dict)
    name_ratios: dict[str, float] = field(default_factory=dict)
    latency: bool = False
    round_down: bool = False
    """Round kept counts down to round_to instead of to the nearest multiple (what
    round_to="auto" does: it never keeps a partial block)."""

    def check(self) -> PruneConfig:
        """Raise BadInputError naming the first unusable field; return self."""
        if not 0.0 <= self.ratio < 1.0:
            raise BadInputError(f"--ratio must be in [0, 1), got {self.ratio}")
        if self.head_ratio is not None and not 0.0 <= self.head_ratio < 1.0:
            raise BadInputError(f"--head-ratio must be in [0, 1), got {self.head_ratio}")
        for pattern, value in self.name_ratios.items():
            if not 0.0 <= value < 1.0:
                raise BadInputError(f"the ratio for {pattern!r} must be in [0, 1), got {value}")
        if self.criterion not in CRITERIA:
            raise BadInputError(
                f"unknown criterion {self.criterion!r}; choose one of {', '.join(CRITERIA)}"
            )
        if self.calib_random < 0:
            raise BadInputError(f"--calib-random must be at least 1, got {self.calib_random}")
        if self.calib is not None and self.calib_random:
            raise BadInputError("give --calib or --calib-random, not both")
        if self.criterion in DATA_AWARE and not self.has_calibration:
            raise BadInputError(
                f"--criterion {self.criterion} needs calibration data (--calib or --calib-random)"
            )
        if self.reconstruct not in RECONSTRUCT:
            raise BadInputError(f"--reconstruct must be one of {', '.join(RECONSTRUCT)}")
        if self.refit != "none" and not self.has_calibration:
            raise BadInputError(f"--reconstruct {self.reconstruct} needs calibration data")
        if self.ridge < 0 or self.calib_batch < 1:
            raise BadInputError("--ridge must be >= 0 and the calibration batch >= 1")
        for name in ("target_macs", "target_params"):
            value = getattr(self, name)
            if value is not None and not 0.0 < value <= 1.0:
                raise BadInputError(f"--{name.replace('_', '-')} must be in (0, 1], got {value}")
        if self.target_macs is not None and self.target_params is not None:
            raise BadInputError("give --target-macs or --target-params, not both")
        if (self.target_macs or self.target_params) and not self.has_calibration:
            raise BadInputError("a MAC or parameter budget needs calibration data (--calib)")
        if not all(0.0 < r < 1.0 for r in self.sensitivity_ratios):
            raise BadInputError("sensitivity ratios must be in (0, 1)")
        if self.round_to != "auto" and not _positive_int(self.round_to):
            raise BadInputError(f"--round-to must be a positive integer or auto: {self.round_to!r}")
        if self.min_channels < 1:
            raise BadInputError(f"--min-channels must be at least 1, got {self.min_channels}")
        for name, dims in self.input_shapes.items():
            if any(d < 1 for d in dims):
                raise BadInputError(f"--input-shape {name}: every dimension must be >= 1")
        return self


def _positive_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1
