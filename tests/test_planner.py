"""What the planner promises: how many channels each group loses, and which ones."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from onnxprune import PruneConfig, make_plan, prune
from onnxprune.validate import input_feeds, run

from .helpers import assert_exact, initializer_shape, parse
from .model_util import header, rows_of, top_l2, weight


def conv_chain(widths: list[int], k: int = 1) -> onnx.ModelProto:
    """x -> conv1 -> Relu -> conv2 -> Relu ... -> head (4 channels, frozen at the output).

    Conv i is named `conv{i}` with weight `w{i}`; its output has widths[i-1] channels.
    """
    cin, inits, nodes, prev = 3, [], [], "x"
    pads = (k - 1) // 2
    for i, width in enumerate([*widths, 4], start=1):
        inits.append(f"float[{width},{cin},{k},{k}] w{i} = {{0.0}}")
        inits.append(f"float[{width}] b{i} = {{0.0}}")
        out = "y" if i == len(widths) + 1 else f"h{i}"
        nodes.append(
            f"[conv{i}] {out} = Conv <pads=[{pads},{pads},{pads},{pads}]> ({prev}, w{i}, b{i})"
        )
        if out != "y":
            nodes.append(f"r{i} = Relu ({out})")
            prev = f"r{i}"
        cin = width
    return parse(
        header(17)
        + f"""
        g (float[1,3,6,6] x) => (float[1,4,6,6] y)
        <{", ".join(inits)}>
        {{
          {chr(10).join(nodes)}
        }}
        """
    )


def set_weight(model: onnx.ModelProto, name: str, value: np.ndarray) -> None:
    for t in model.graph.initializer:
        if t.name == name:
            t.CopyFrom(numpy_helper.from_array(value.astype(np.float32), name))
            return
    raise KeyError(name)


def kept_counts(model: onnx.ModelProto, config: PruneConfig) -> list[int]:
    _, report, _ = assert_exact(model, config)
    return [g.kept for g in report.groups]


# -- ratio ------------------------------------------------------------------------------


@pytest.mark.parametrize("ratio", [0.1, 0.25, 0.5, 0.7])
def test_ratio_removes_floor_of_ratio_times_channels_per_group(ratio):
    widths = [7, 10, 16]
    model = conv_chain(widths)
    expected = [n - math.floor(ratio * n) for n in widths] + [4]
    assert kept_counts(model, PruneConfig(ratio=ratio)) == expected


def test_ratio_zero_changes_nothing():
    model = conv_chain([8, 12], k=3)
    pruned, report = prune(model, PruneConfig(ratio=0.0))
    assert report.params_after == report.params_before
    assert all(g.kept == g.channels for g in report.groups)
    for t in model.graph.initializer:
        assert np.array_equal(weight(pruned, t.name), numpy_helper.to_array(t)), t.name
    feeds = input_feeds(model, {}, seed=5)
    before = run(model.SerializeToString(), feeds)
    after = run(pruned.SerializeToString(), feeds)
    assert all(np.array_equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("width", [8, 100])
def test_never_fewer_than_one_channel(width):
    model = conv_chain([width])
    pruned, report, _ = assert_exact(model, PruneConfig(ratio=0.99))
    assert report.groups[0].kept == 1
    w1 = weight(model, "w1")
    assert rows_of(w1, weight(pruned, "w1")) == top_l2(w1, 1)


# -- round_to and min_channels ----------------------------------------------------------


def test_round_to_gives_multiples_of_eight_where_the_group_allows():
    model = conv_chain([32, 20, 6])
    # 32 at 0.3: drop 9 -> 23 -> 24; 20: drop 6 -> 14 -> 16; 6: 8 is more than it has
    assert kept_counts(model, PruneConfig(ratio=0.3, round_to=8)) == [24, 16, 6, 4]
    assert kept_counts(model, PruneConfig(ratio=0.3)) == [23, 14, 5, 4]


def test_round_to_rounds_to_the_nearest_multiple_not_up():
    """24 at 0.3 keeps 17: rounding up would keep all 24 and prune nothing; the nearest
    multiple of 8 is 16. 40 at 0.3 keeps 28, halfway: the larger multiple wins."""
    model = conv_chain([24, 40, 6])
    assert kept_counts(model, PruneConfig(ratio=0.3, round_to=8))[:2] == [16, 32]
    pruned, _, _ = assert_exact(model, PruneConfig(ratio=0.3, round_to=8))


def test_round_down_never_keeps_a_partial_block():
    """--round-down (and auto) keep the largest multiple not above the ratio's count:
    32 at 0.3 keeps 23 -> 16, 40 keeps 28 -> 24; 6 has no multiple of 8 and keeps 5."""
    model = conv_chain([32, 40, 6])
    config = PruneConfig(ratio=0.3, round_to=8, round_down=True)
    assert kept_counts(model, config)[:3] == [16, 24, 6]
    assert_exact(model, config)


def test_round_to_counts_every_group_of_a_grouped_conv():
    model = parse(
        header(17)
        + """
        g (float[1,3,6,6] x) => (float[1,4,6,6] y)
        <float[32,3,1,1] w1 = {0.0}, float[32,8,3,3] wg = {0.0}, float[4,32,1,1] w3 = {0.0}>
        {
          h1 = Conv (x, w1)
          r1 = Relu (h1)
          h2 = Conv <group=4, pads=[1,1,1,1]> (r1, wg)
          r2 = Relu (h2)
          y = Conv (r2, w3)
        }
        """
    )
    # 0.7 of 32 is 22: 5 per group of 8 -> 3 kept each = 12 -> rounded up to 4 each = 16
    assert kept_counts(model, PruneConfig(ratio=0.7)) == [12, 12, 4]
    pruned, report, _ = assert_exact(model, PruneConfig(ratio=0.7, round_to=8))
    assert [g.kept for g in report.groups] == [16, 16, 4]
    assert initializer_shape(pruned, "wg") == [16, 4, 3, 3]


def test_min_channels_bounds_the_kept_count():
    model = conv_chain([16, 4])
    assert kept_counts(model, PruneConfig(ratio=0.75, min_channels=6)) == [6, 4, 4]
    assert kept_counts(model, PruneConfig(ratio=0.75, min_channels=1)) == [4, 1, 4]


# -- global ranking ---------------------------------------------------------------------


def test_global_ranking_divides_scores_by_the_group_mean():
    model = conv_chain([8, 8])
    # every row of a weight has one magnitude, so its l2 score is exactly that value
    big = np.array([1, 2, 3, 4, 5, 6, 7, 8], float) * 100.0  # mean 450
    small = np.array([1, 1, 1, 1, 1, 1, 1, 20], float)  # mean 3.375
    set_weight(model, "w1", np.ones((8, 3, 1, 1)) * big[:, None, None, None])
    set_weight(model, "w2", np.ones((8, 8, 1, 1)) * small[:, None, None, None])
    config = PruneConfig(ratio=0.5, global_ranking=True)
    pruned, report, _ = assert_exact(model, config)
    # normalised: big/450 = 0.22, 0.44, ...; small/3.375 = 0.30 (x7), 5.9. The 8 lowest
    # of the 16 are 0.22 of the big group and the seven 0.30 of the small group.
    assert rows_of(weight(model, "w1"), weight(pruned, "w1")) == [1, 2, 3, 4, 5, 6, 7]
    assert initializer_shape(pruned, "w2") == [1, 7, 1, 1]
    assert [g.kept for g in report.groups] == [7, 1, 4]
    # per-group ranking ignores scale altogether: half of each group
    assert kept_counts(model, PruneConfig(ratio=0.5)) == [4, 4, 4]


def test_global_ranking_shares_tied_scores_in_proportion():
    model = conv_chain([8, 16])
    set_weight(model, "w1", np.ones((8, 3, 1, 1)))
    set_weight(model, "w2", np.ones((16, 8, 1, 1)))
    _, report, _ = assert_exact(model, PruneConfig(ratio=0.5, global_ranking=True))
    assert [g.kept for g in report.groups] == [4, 8, 4]


# -- every tensor keeps a channel, without breaking the planned counts ------------------


def test_frozen_channels_beside_a_grouped_conv_are_kept():
    """Half of a weight's channels feed a grouped Conv, the other half a graph output."""
    model = parse(
        header(17)
        + """
        g (float[1,3,6,6] x) => (float[1,4,6,6] y, float[1,8,6,6] z)
        <float[16,3,1,1] wa = {0.0}, float[8,4,3,3] wg = {0.0}, float[4,8,1,1] w3 = {0.0},
         int64[1] s0 = {0}, int64[1] s8 = {8}, int64[1] s16 = {16}, int64[1] ax = {1}>
        {
          a = Conv (x, wa)
          r = Relu (a)
          p = Slice (r, s0, s8, ax)
          z = Slice (r, s8, s16, ax)
          h = Conv <group=2, pads=[1,1,1,1]> (p, wg)
          y = Conv (h, w3)
        }
        """
    )
    pruned, report, _ = assert_exact(model, PruneConfig(ratio=0.5))
    kept = rows_of(weight(model, "wa"), weight(pruned, "wa"))
    assert kept[-8:] == list(range(8, 16))  # all of z
    assert np.bincount(np.array(kept[:-8]) // 4, minlength=2).tolist() == [2, 2]
    assert initializer_shape(pruned, "wg") == [4, 2, 3, 3]
    assert report.groups[0].kept == 12


def test_a_weight_whose_channels_all_score_lowest_keeps_one_by_a_trade():
    """wb's four channels are the four weakest of their group; it keeps its best one,
    and the group still keeps exactly the planned count (a multiple of round_to)."""
    model = parse(
        header(17)
        + """
        g (float[1,3,6,6] x) => (float[1,4,6,6] y, float[1,4,6,6] y2)
        <float[16,3,1,1] wa = {0.0}, float[4,3,1,1] wb = {0.0},
         float[4,4,1,1] wc = {0.0}, float[4,16,1,1] wd = {0.0},
         int64[1] s0 = {0}, int64[1] s4 = {4}, int64[1] ax = {1}>
        {
          a = Conv (x, wa)
          r = Relu (a)
          p = Slice (r, s0, s4, ax)
          b = Conv (x, wb)
          s = Add (p, b)
          y = Conv (s, wc)
          y2 = Conv (r, wd)
        }
        """
    )
    wa, wb = weight(model, "wa").copy(), weight(model, "wb")
    wa[:4] *= 1e-3
    set_weight(model, "wa", wa)
    set_weight(model, "wb", wb * 1e-3)
    pruned, report, _ = assert_exact(model, PruneConfig(ratio=0.5, round_to=4))
    assert report.groups[0].kept == 8
    assert initializer_shape(pruned, "wb") == [1, 3, 1, 1]
    kept = rows_of(weight(model, "wa"), weight(pruned, "wa"))
    assert len(kept) == 8 and sum(k < 4 for k in kept) == 1


def test_a_grouped_conv_over_a_concat_keeps_the_one_channel_branch():
    """Blocks [a0..a3] [a4..a6 b0]: b0 is the weakest, but dropping it empties wb."""
    model = parse(
        header(17)
        + """
        g (float[1,3,6,6] x) => (float[1,4,6,6] y)
        <float[7,3,1,1] wa = {0.0}, float[1,3,1,1] wb = {0.0},
         float[8,4,3,3] wg = {0.0}, float[4,8,1,1] w3 = {0.0}>
        {
          a = Conv (x, wa)
          b = Conv (x, wb)
          c = Concat <axis=1> (a, b)
          h = Conv <group=2, pads=[1,1,1,1]> (c, wg)
          y = Conv (h, w3)
        }
        """,
        wb=np.full((1, 3, 1, 1), 1e-3, np.float32),
    )
    pruned, _, _ = assert_exact(model, PruneConfig(ratio=0.5))
    assert initializer_shape(pruned, "wb") == [1, 3, 1, 1]
    assert initializer_shape(pruned, "wa") == [3, 3, 1, 1]
    kept_a = rows_of(weight(model, "wa"), weight(pruned, "wa"))
    assert np.bincount(np.array(kept_a) // 4, minlength=2).tolist() == [2, 1]
    assert initializer_shape(pruned, "wg") == [4, 2, 3, 3]


# -- criteria ---------------------------------------------------------------------------


def _crafted_rows() -> np.ndarray:
    """Rows whose l1 and l2 orders differ: [1,1,1,1] beats [3,0,0,0] in l1 only."""
    rows = np.array([[1, 1, 1, 1], [3, 0, 0, 0], [0.1, 0.1, 0, 0], [5, 5, 5, 5]], np.float32)
    return rows.reshape(4, 1, 2, 2)


@pytest.mark.parametrize("criterion, kept", [("l2", [1, 3]), ("l1", [0, 3])])
def test_l1_and_l2_choose_differently(criterion, kept):
    model = parse(
        header(17)
        + """
        g (float[1,1,6,6] x) => (float[1,2,5,5] y)
        <float[4,1,2,2] w1 = {0.0}, float[2,4,1,1] w2 = {0.0}>
        {
          h = Conv (x, w1)
          r = Relu (h)
          y = Conv (r, w2)
        }
        """,
        w1=_crafted_rows(),
    )
    pruned, _, _ = assert_exact(model, PruneConfig(ratio=0.5, criterion=criterion))
    assert rows_of(weight(model, "w1"), weight(pruned, "w1")) == kept


def test_bn_gamma_removes_the_smallest_abs_gamma():
    gamma = np.array([0.9, -0.05, 2.0, 0.01, -1.5, 0.3, 0.02, -0.4], np.float32)
    model = parse(
        header(17)
        + """
        g (float[1,3,6,6] x) => (float[1,4,6,6] y)
        <float[8,3,3,3] w1 = {0.0}, float[8] gamma = {0.0}, float[8] beta = {0.0},
         float[8] mean = {0.0}, float[8] var = {0.0}, float[4,8,1,1] w2 = {0.0}>
        {
          h = Conv <pads=[1,1,1,1]> (x, w1)
          n = BatchNormalization (h, gamma, beta, mean, var)
          r = Relu (n)
          y = Conv (r, w2)
        }
        """,
        gamma=gamma,
    )
    pruned, _, _ = assert_exact(model, PruneConfig(ratio=0.5, criterion="bn_gamma"))
    assert weight(pruned, "gamma").tolist() == gamma[[0, 2, 4, 7]].tolist()
    assert rows_of(weight(model, "w1"), weight(pruned, "w1")) == [0, 2, 4, 7]
    assert top_l2(weight(model, "w1"), 4) != [0, 2, 4, 7]  # l2 would choose otherwise


# -- exclude ----------------------------------------------------------------------------


def test_exclude_by_node_name_keeps_what_the_node_reads_and_makes():
    model = conv_chain([8, 8, 8])
    pruned, report, _ = assert_exact(model, PruneConfig(ratio=0.5, exclude=["conv2"]))
    assert [g.kept for g in report.groups] == [8, 8, 4, 4]
    assert report.groups[0].frozen == ["excluded by --exclude 'conv2'"]
    assert initializer_shape(pruned, "w2") == [8, 8, 1, 1]
    assert initializer_shape(pruned, "w3") == [4, 8, 1, 1]
    assert report.warnings == []


def test_exclude_by_initializer_name_keeps_its_channels():
    model = conv_chain([8, 8])
    pruned, report, _ = assert_exact(model, PruneConfig(ratio=0.5, exclude=["w1"]))
    assert [g.kept for g in report.groups] == [8, 4, 4]
    assert report.groups[0].frozen == ["excluded by --exclude 'w1'"]
    assert initializer_shape(pruned, "w1") == [8, 3, 1, 1]
    assert initializer_shape(pruned, "w2") == [4, 8, 1, 1]
    assert report.warnings == []


def test_exclude_by_a_norm_parameter_name_keeps_its_channels():
    model = parse(
        header(17)
        + """
        g (float[1,3,6,6] x) => (float[1,4,6,6] y)
        <float[8,3,3,3] w1 = {0.0}, float[8] gamma = {0.0}, float[8] beta = {0.0},
         float[8] mean = {0.0}, float[8] var = {0.0}, float[4,8,1,1] w2 = {0.0}>
        {
          h = Conv <pads=[1,1,1,1]> (x, w1)
          n = BatchNormalization (h, gamma, beta, mean, var)
          y = Conv (n, w2)
        }
        """
    )
    pruned, report, _ = assert_exact(model, PruneConfig(ratio=0.5, exclude=["gamma"]))
    assert report.warnings == []
    assert initializer_shape(pruned, "gamma") == [8]
    assert initializer_shape(pruned, "w1") == [8, 3, 3, 3]
    assert report.groups[0].frozen == ["excluded by --exclude 'gamma'"]


def test_exclude_matching_nothing_warns():
    model = conv_chain([8])
    _, report, _ = assert_exact(model, PruneConfig(ratio=0.5, exclude=["nothing_*"]))
    assert report.warnings == ["--exclude 'nothing_*' matches no node or initializer name"]
    assert [g.kept for g in report.groups] == [4, 4]


# -- shared weights ---------------------------------------------------------------------


def test_weight_shared_by_two_convs_prunes_consistently():
    model = parse(
        header(17)
        + """
        g (float[1,3,6,6] x, float[1,3,6,6] x2) => (float[1,4,6,6] y, float[1,4,6,6] y2)
        <float[8,3,3,3] w1 = {0.0}, float[8] b1 = {0.0},
         float[4,8,1,1] wa = {0.0}, float[4,8,1,1] wb = {0.0}>
        {
          h = Conv <pads=[1,1,1,1]> (x, w1, b1)
          h2 = Conv <pads=[1,1,1,1]> (x2, w1, b1)
          r = Relu (h)
          r2 = Relu (h2)
          y = Conv (r, wa)
          y2 = Conv (r2, wb)
        }
        """
    )
    pruned, report, plan = assert_exact(model, PruneConfig(ratio=0.5))
    assert len(pruned.graph.initializer) == len(model.graph.initializer)  # no copies
    assert [n.input[1] for n in pruned.graph.node if n.op_type == "Conv"][:2] == ["w1", "w1"]
    kept = rows_of(weight(model, "w1"), weight(pruned, "w1"))
    assert kept == top_l2(weight(model, "w1"), 4)
    assert np.array_equal(weight(pruned, "wa"), weight(model, "wa")[:, kept])
    assert np.array_equal(weight(pruned, "wb"), weight(model, "wb")[:, kept])
    assert report.groups[0].channels == 8 and report.groups[0].kept == 4
    assert len(plan.groups) == 3  # one for the shared weight, one per head


def test_make_plan_agrees_with_prune():
    model = conv_chain([8, 12])
    config = PruneConfig(ratio=0.5)
    plan = make_plan(model, config)
    _, report = prune(model, config)
    assert [int(plan.keep_slot[g.classes].sum()) for g in plan.groups] == [
        g.kept for g in report.groups
    ]
