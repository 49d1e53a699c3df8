"""Attention heads and MLP neurons in encoder graphs written the way exporters write
them: heads are removed as units, literal head counts are rewritten, and the pruned
model equals the original with the removed heads' channels masked."""

from __future__ import annotations

import numpy as np

from onnxprune import PruneConfig

from ..helpers import assert_exact
from ._models import build, header, initializer, kept_channels

HIDDEN, HEADS, DIM, SEQ = 16, 4, 4, 5

LAYER = """
      [q_proj] q0 = MatMul (x, wq)
      q1 = Add (q0, bq)
      [k_proj] k0 = MatMul (x, wk)
      k1 = Add (k0, bk)
      [v_proj] v0 = MatMul (x, wv)
      v1 = Add (v0, bv)
      [q_split] q2 = Reshape (q1, split_shape)
      [k_split] k2 = Reshape (k1, split_shape)
      [v_split] v2 = Reshape (v1, split_shape)
      q = Transpose <perm=[0,2,1,3]> (q2)
      kt = Transpose <perm=[0,2,3,1]> (k2)
      v = Transpose <perm=[0,2,1,3]> (v2)
      s0 = MatMul (q, kt)
      s1 = Div (s0, scale)
      s2 = Add (s1, mask)
      p = Softmax <axis=-1> (s2)
      o0 = MatMul (p, v)
      o1 = Transpose <perm=[0,2,1,3]> (o0)
      [merge] o2 = Reshape (o1, merge_shape)
      [o_proj] o3 = MatMul (o2, wo)
      o4 = Add (o3, bo)
      r1 = Add (x, o4)
      n1 = LayerNormalization <axis=-1> (r1, ln1_g, ln1_b)
      [fc1] h0 = MatMul (n1, w1)
      h1 = Add (h0, b1)
      g0 = Div (h1, sqrt2)
      g1 = Erf (g0)
      g2 = Add (g1, one)
      g3 = Mul (h1, g2)
      g4 = Mul (g3, half)
      [fc2] h2 = MatMul (g4, w2)
      h3 = Add (h2, b2)
      r2 = Add (n1, h3)
      y = LayerNormalization <axis=-1> (r2, ln2_g, ln2_b)
"""

WEIGHTS = (
    f"float[{HIDDEN},{HIDDEN}] wq, float[{HIDDEN}] bq, float[{HIDDEN},{HIDDEN}] wk, "
    f"float[{HIDDEN}] bk, float[{HIDDEN},{HIDDEN}] wv, float[{HIDDEN}] bv, "
    f"int64[4] split_shape, int64[3] merge_shape, float[1] scale, float[1,1,1,{SEQ}] mask, "
    f"float[{HIDDEN},{HIDDEN}] wo, float[{HIDDEN}] bo, float[{HIDDEN}] ln1_g, "
    f"float[{HIDDEN}] ln1_b, float[{HIDDEN},32] w1, float[32] b1, float[1] sqrt2, "
    f"float[1] one, float[1] half, float[32,{HIDDEN}] w2, float[{HIDDEN}] b2, "
    f"float[{HIDDEN}] ln2_g, float[{HIDDEN}] ln2_b"
)


def _encoder(**values):
    text = f"""
    {header(17)}
    encoder (float[1,{SEQ},{HIDDEN}] x) => (float[1,{SEQ},{HIDDEN}] y)
    <{WEIGHTS}>
    {{{LAYER}}}
    """
    fixed = dict(
        split_shape=np.array([1, SEQ, HEADS, DIM], np.int64),
        merge_shape=np.array([1, SEQ, HIDDEN], np.int64),
        scale=np.array([2.0], np.float32),
        mask=np.zeros((1, 1, 1, SEQ), np.float32),
        sqrt2=np.array([np.sqrt(2.0)], np.float32),
        one=np.array([1.0], np.float32),
        half=np.array([0.5], np.float32),
    )
    return build(text, **(fixed | values))


def test_heads_and_neurons_are_pruned_exactly():
    pruned, report, plan = assert_exact(_encoder(), PruneConfig(ratio=0.5))
    kept_q = kept_channels(plan, "q_proj")
    assert len(kept_q) == 8
    heads = sorted(set((kept_q // DIM).tolist()))
    assert len(heads) == 2  # two whole heads
    assert sorted(kept_q.tolist()) == [h * DIM + d for h in heads for d in range(DIM)]
    for proj in ("k_proj", "v_proj"):
        assert kept_channels(plan, proj).tolist() == kept_q.tolist()
    assert list(initializer(pruned, "split_shape")) == [1, SEQ, 2, DIM]
    assert list(initializer(pruned, "merge_shape")) == [1, SEQ, 8]
    assert initializer(pruned, "wo").shape == (8, HIDDEN)
    assert initializer(pruned, "w1").shape == (HIDDEN, 16)  # MLP neurons halved
    kinds = {g.kind for g in report.groups if g.kept < g.channels}
    assert kinds == {"heads", "channels"}
    hidden = [g for g in report.groups if any("o_proj" in m for m in g.members)][0]
    assert hidden.kept == hidden.channels  # the residual stream is never pruned by default
    assert hidden.n_frozen == hidden.channels and hidden.frozen


def test_head_ratio_is_separate_from_ratio():
    _, report, plan = assert_exact(_encoder(), PruneConfig(ratio=0.5, head_ratio=0.25))
    assert len(kept_channels(plan, "q_proj")) == 3 * DIM
    assert len(kept_channels(plan, "fc1")) == 16


def test_heads_stay_whole_without_head_pruning():
    _, report, plan = assert_exact(_encoder(), PruneConfig(ratio=0.5, prune_heads=False))
    assert len(kept_channels(plan, "q_proj")) == HIDDEN
    assert len(kept_channels(plan, "fc1")) == 16


def test_layer_norm_freezes_the_hidden_size_by_default():
    model = _encoder()
    # feed the residual stream from a projection so only LayerNorm can freeze it
    model.graph.node[0].input[0] = "x_in"
    model.graph.node[2].input[0] = "x_in"
    model.graph.node[4].input[0] = "x_in"
    model.graph.node.insert(0, _node("MatMul", ["x", "w_in"], ["x_in"], "in_proj"))
    for node in model.graph.node:
        if node.op_type == "Add" and node.input[0] == "x":
            node.input[0] = "x_in"
    _add_weight(model, "w_in", np.eye(HIDDEN, dtype=np.float32))
    _, report, _ = assert_exact(model, PruneConfig(ratio=0.5))
    hidden = [g for g in report.groups if any("in_proj" in m for m in g.members)][0]
    assert hidden.kept == hidden.channels
    assert hidden.frozen == [
        "LayerNormalization '" + _ln_label(model) + "': "
        "LayerNormalization statistics span these channels"
    ]


def _node(op, inputs, outputs, name):
    from onnx import helper

    return helper.make_node(op, inputs, outputs, name=name)


def _add_weight(model, name, value):
    from onnx import numpy_helper

    model.graph.initializer.append(numpy_helper.from_array(value, name))


def _ln_label(model) -> str:
    for i, node in enumerate(model.graph.node):
        if node.op_type == "LayerNormalization":
            return node.name or f"LayerNormalization#{i}"
    raise AssertionError("no LayerNormalization")


def _classifier():
    """in_proj -> encoder layer -> head MatMul: the hidden size reaches no graph output."""
    model = _encoder()
    for node in model.graph.node:
        node.input[:] = ["x_in" if n == "x" else n for n in node.input]
        node.output[:] = ["y_hidden" if n == "y" else n for n in node.output]
    model.graph.node.insert(0, _node("MatMul", ["x", "w_in"], ["x_in"], "in_proj"))
    model.graph.node.append(_node("MatMul", ["y_hidden", "w_head"], ["y"], "head"))
    _add_weight(
        model, "w_in", np.random.default_rng(1).standard_normal((HIDDEN, HIDDEN)).astype(np.float32)
    )
    _add_weight(
        model, "w_head", np.random.default_rng(2).standard_normal((HIDDEN, 3)).astype(np.float32)
    )
    model.graph.output[0].type.tensor_type.shape.dim[2].dim_value = 3
    return model


def test_prune_hidden_prunes_the_residual_stream_approximately():
    from onnxprune import prune

    model = _classifier()
    _, exact_report, _ = assert_exact(model, PruneConfig(ratio=0.5))
    stream = [g for g in exact_report.groups if any("in_proj" in m for m in g.members)][0]
    assert stream.kept == stream.channels == HIDDEN
    pruned, report = prune(model, PruneConfig(ratio=0.5, prune_hidden=True))
    stream = [g for g in report.groups if any("in_proj" in m for m in g.members)][0]
    assert stream.kept == HIDDEN // 2 and stream.approximate
    assert initializer(pruned, "w_head").shape == (HIDDEN // 2, 3)
    assert initializer(pruned, "ln1_g").shape == (HIDDEN // 2,)
    assert [o.shape for o in report.outputs] == [[1, SEQ, 3]]
    assert "approximate" in report.to_text()
