"""onnxruntime's fused transformer ops (domain com.microsoft), built with onnxruntime's
input and attribute lists: Attention and MultiHeadAttention lose whole heads and their
`num_heads` is rewritten, the Gelu variants pass MLP neurons through,
SkipLayerNormalization freezes the residual stream unless prune_hidden, and a fused op
without a handler freezes what it touches. onnxruntime's CPU provider runs them all, so
the masking oracle applies. (BiasAdd has a handler but no CPU kernel: not tested here.)"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

from onnxprune import PruneConfig, make_plan, prune
from onnxprune.validate import input_feeds, run

from ..helpers import assert_exact
from ._models import group_of, initializer, kept_channels, node

MS = "com.microsoft"
HIDDEN, HEADS, DIM, SEQ, FFN, CLASSES = 16, 4, 4, 5, 32, 3
STRONG_HEADS = [1, 3]
"""Heads whose weights are scaled up, so the l2 criterion keeps exactly these."""
Extra = dict[int, tuple[str, np.ndarray]]
"""Further constant inputs of a fused node: input index -> (name, value)."""


def _tensor(name: str, dims: list[int], elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, dims)


def _model(nodes, weights: dict[str, np.ndarray], inputs=None, outputs=None, shapes=True):
    """A checked model, x [1, SEQ, HIDDEN] -> y [1, SEQ, HIDDEN] unless told otherwise.

    shapes: annotate intermediate shapes with onnxruntime's symbolic shape inference
    (onnx's own does not know the com.microsoft ops), as onnxruntime's tools and its
    optimised-model output write them.
    """
    inputs = inputs or [_tensor("x", [1, SEQ, HIDDEN])]
    outputs = outputs or [_tensor("y", [1, SEQ, HIDDEN])]
    inits = [numpy_helper.from_array(v, k) for k, v in weights.items()]
    graph = helper.make_graph(nodes, "fused", inputs, outputs, inits)
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)]
    model = helper.make_model(graph, opset_imports=opsets, ir_version=8)
    if shapes:
        model = SymbolicShapeInference.infer_shapes(model)
    onnx.checker.check_model(model)
    return model


def _normal(*dims: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(dims).astype(np.float32)


def _head_columns(heads, head_dim: int = DIM) -> list[int]:
    return [h * head_dim + d for h in heads for d in range(head_dim)]


def _strengthen(w: np.ndarray, offset: int = 0, head_dim: int = DIM) -> np.ndarray:
    """Scale the columns of STRONG_HEADS (from `offset`) so they score highest."""
    w = w.copy()
    w[..., [offset + c for c in _head_columns(STRONG_HEADS, head_dim)]] *= 4.0
    return w


def _with_extra(inputs: list[str], weights: dict, extra: Extra | None) -> list[str]:
    for i, (name, value) in sorted((extra or {}).items()):
        inputs = inputs + [""] * (i - len(inputs)) + [name]
        weights[name] = value
    return inputs


def _kept_heads(plan, name: str) -> list[int]:
    """Indices of the heads of fused Attention node `name` that the plan keeps."""
    index = plan.analysis.index
    for heads in plan.analysis.heads:
        for p in plan.analysis.producers:
            if index.nodes[p.node].name == name and np.isin(heads, p.slots).all():
                return np.flatnonzero(plan.kept(heads)).tolist()
    raise KeyError(name)


def _attr(model: onnx.ModelProto, name: str, attr: str):
    for a in node(model, name).attribute:
        if a.name == attr:
            return helper.get_attribute_value(a)
    raise KeyError(attr)


# -- com.microsoft Attention --------------------------------------------------------------


def _attention_model(
    sizes=(HIDDEN, HIDDEN, HIDDEN),
    mask: bool = False,
    explicit: bool = False,
    extra: Extra | None = None,
    shapes: bool = True,
):
    """x -> in_proj -> h; Attention(h) -> o_proj -> + h -> y (h reaches the output).

    mask: a mask_index graph input (int32 [1, SEQ]); explicit: qkv_hidden_sizes given.
    """
    q, k, v = sizes
    w_qkv = _normal(HIDDEN, q + k + v, seed=1)
    for offset, size in ((0, q), (q, k), (q + k, v)):
        w_qkv = _strengthen(w_qkv, offset, size // HEADS)
    weights = {
        "w_in": _normal(HIDDEN, HIDDEN, seed=0),
        "w_qkv": w_qkv,
        "b_qkv": _normal(q + k + v, seed=2),
        "w_o": _normal(v, HIDDEN, seed=3),
    }
    attrs = {"num_heads": HEADS} | ({"qkv_hidden_sizes": list(sizes)} if explicit else {})
    inputs = _with_extra(["h", "w_qkv", "b_qkv"] + (["mask"] if mask else []), weights, extra)
    nodes = [
        helper.make_node("MatMul", ["x", "w_in"], ["h"], name="in_proj"),
        helper.make_node("Attention", inputs, ["a"], name="attn", domain=MS, **attrs),
        helper.make_node("MatMul", ["a", "w_o"], ["o"], name="o_proj"),
        helper.make_node("Add", ["h", "o"], ["y"], name="residual"),
    ]
    graph_inputs = [_tensor("x", [1, SEQ, HIDDEN])]
    if mask:
        graph_inputs.append(_tensor("mask", [1, SEQ], TensorProto.INT32))
    return _model(nodes, weights, inputs=graph_inputs, shapes=shapes)


def _check_attention(model, pruned, plan, sizes=(HIDDEN, HIDDEN, HIDDEN)):
    """STRONG_HEADS remain, in q, k and v alike, and in the output projection's rows."""
    q, k, v = sizes
    assert _kept_heads(plan, "attn") == STRONG_HEADS
    columns = [
        offset + c
        for offset, size in ((0, q), (q, k), (q + k, v))
        for c in _head_columns(STRONG_HEADS, size // HEADS)
    ]
    w, b = initializer(model, "w_qkv"), initializer(model, "b_qkv")
    np.testing.assert_array_equal(initializer(pruned, "w_qkv"), w[:, columns])
    np.testing.assert_array_equal(initializer(pruned, "b_qkv"), b[columns])
    rows = _head_columns(STRONG_HEADS, v // HEADS)
    np.testing.assert_array_equal(initializer(pruned, "w_o"), initializer(model, "w_o")[rows])
    assert _attr(pruned, "attn", "num_heads") == HEADS // 2


@pytest.mark.parametrize("shapes", [True, False], ids=["annotated", "no_value_info"])
def test_attention_loses_whole_heads(shapes):
    model = _attention_model(shapes=shapes)
    pruned, report, plan = assert_exact(model, PruneConfig(ratio=0.5))
    _check_attention(model, pruned, plan)
    assert initializer(pruned, "w_qkv").shape == (HIDDEN, 3 * HIDDEN // 2)
    assert initializer(pruned, "w_in").shape == (HIDDEN, HIDDEN)  # the residual stream
    heads = group_of(report, "attn")
    assert (heads.kind, heads.channels, heads.kept) == ("heads", HEADS, HEADS // 2)
    assert not heads.frozen and not heads.approximate


def test_attention_with_mask_index_loses_whole_heads():
    model = _attention_model(mask=True)
    pruned, _, plan = assert_exact(model, PruneConfig(ratio=0.5))
    _check_attention(model, pruned, plan)
    assert list(node(pruned, "attn").input) == ["h", "w_qkv", "b_qkv", "mask"]


def test_attention_rewrites_explicit_qkv_hidden_sizes():
    sizes = (HIDDEN, HIDDEN, 8)  # value heads of 2 channels, query/key heads of 4
    model = _attention_model(sizes, explicit=True)
    pruned, _, plan = assert_exact(model, PruneConfig(ratio=0.5))
    _check_attention(model, pruned, plan, sizes)
    assert _attr(pruned, "attn", "qkv_hidden_sizes") == [8, 8, 4]
    assert initializer(pruned, "w_qkv").shape == (HIDDEN, 20)
    assert initializer(pruned, "w_o").shape == (4, HIDDEN)


def test_attention_keeps_every_head_with_head_pruning_off():
    model = _attention_model()
    pruned, report, _ = assert_exact(model, PruneConfig(ratio=0.5, prune_heads=False))
    assert _attr(pruned, "attn", "num_heads") == HEADS
    assert initializer(pruned, "w_qkv").shape == (HIDDEN, 3 * HIDDEN)
    heads = group_of(report, "attn")
    assert heads.kept == HEADS
    assert heads.frozen == ["Attention 'attn': head pruning is off (prune_heads=False)"]


def test_attention_present_output_keeps_every_head():
    model = _attention_model()
    node(model, "attn").output.append("present")  # [2, B, heads, S, head_dim]
    model.graph.output.append(_tensor("present", [2, 1, HEADS, SEQ, DIM]))
    pruned, report, _ = assert_exact(model, PruneConfig(ratio=0.5))
    assert _attr(pruned, "attn", "num_heads") == HEADS
    assert group_of(report, "attn").frozen == [
        "Attention 'attn': the present key/value state is used"
    ]


def test_attention_input_of_unknown_rank_is_not_pruned():
    """Without value_info, onnx cannot tell the rank of a MatMul behind FastGelu; the
    heads still go, the channels Attention reads stay."""
    weights = {
        "w_in": _normal(HIDDEN, HIDDEN, seed=0),
        "w_p": _normal(HIDDEN, HIDDEN, seed=5),
        "w_qkv": _strengthen(_strengthen(_strengthen(_normal(HIDDEN, 48, seed=1)), 16), 32),
        "w_o": _normal(HIDDEN, HIDDEN, seed=3),
    }
    nodes = [
        helper.make_node("MatMul", ["x", "w_in"], ["h"], name="in_proj"),
        helper.make_node("FastGelu", ["h"], ["g"], name="gelu", domain=MS),
        helper.make_node("MatMul", ["g", "w_p"], ["p"], name="pre_attn"),
        helper.make_node("Attention", ["p", "w_qkv"], ["a"], name="attn", domain=MS, num_heads=4),
        helper.make_node("MatMul", ["a", "w_o"], ["y"], name="o_proj"),
    ]
    model = _model(nodes, weights, shapes=False)
    pruned, report, plan = assert_exact(model, PruneConfig(ratio=0.5))
    assert _kept_heads(plan, "attn") == STRONG_HEADS
    assert initializer(pruned, "w_qkv").shape == (HIDDEN, 3 * HIDDEN // 2)
    assert initializer(pruned, "w_in").shape == (HIDDEN, HIDDEN // 2)
    assert group_of(report, "pre_attn").frozen == [
        "Attention 'attn': Attention input of unknown rank"
    ]


# -- com.microsoft MultiHeadAttention -----------------------------------------------------


def _mha_model(fused_bias: bool = False, extra: Extra | None = None, outputs: int = 1):
    """x -> in_proj -> h; q/k/v projections -> MultiHeadAttention -> o_proj -> + h -> y.

    fused_bias: the projections have no Add; their biases are MultiHeadAttention's
    input 3, as onnxruntime's optimiser fuses them. outputs: how many of the node's
    outputs (output, present_key, present_value, qk) to name; the rest are unused.
    onnxruntime's symbolic shape inference does not follow qk: left unannotated then.
    """
    weights = {"w_in": _normal(HIDDEN, HIDDEN, seed=0), "w_o": _normal(HIDDEN, HIDDEN, seed=3)}
    nodes = [helper.make_node("MatMul", ["x", "w_in"], ["h"], name="in_proj")]
    for k, p in enumerate("qkv"):
        weights[f"w{p}"] = _strengthen(_normal(HIDDEN, HIDDEN, seed=10 + k))
        out = p if fused_bias else f"{p}0"
        nodes.append(helper.make_node("MatMul", ["h", f"w{p}"], [out], name=f"{p}_proj"))
        if not fused_bias:
            weights[f"b{p}"] = _normal(HIDDEN, seed=20 + k)
            nodes.append(helper.make_node("Add", [out, f"b{p}"], [p], name=f"{p}_bias"))
    inputs = ["q", "k", "v"]
    if fused_bias:
        weights["b_qkv"] = _normal(3 * HIDDEN, seed=20)
        inputs.append("b_qkv")
    inputs = _with_extra(inputs, weights, extra)
    names = ["a", "", "", "qk"][:outputs]
    mha = helper.make_node(
        "MultiHeadAttention", inputs, names, name="mha", domain=MS, num_heads=HEADS
    )
    nodes += [
        mha,
        helper.make_node("MatMul", ["a", "w_o"], ["o"], name="o_proj"),
        helper.make_node("Add", ["h", "o"], ["y"], name="residual"),
    ]
    out = [_tensor("y", [1, SEQ, HIDDEN])]
    if outputs > 3:
        out.append(_tensor("qk", [1, HEADS, SEQ, SEQ]))
    return _model(nodes, weights, outputs=out, shapes=outputs <= 3)


def _check_mha(model, pruned, plan):
    columns = _head_columns(STRONG_HEADS)
    for p in "qkv":
        assert kept_channels(plan, f"{p}_proj").tolist() == columns
        np.testing.assert_array_equal(
            initializer(pruned, f"w{p}"), initializer(model, f"w{p}")[:, columns]
        )
    np.testing.assert_array_equal(initializer(pruned, "w_o"), initializer(model, "w_o")[columns])
    assert _attr(pruned, "mha", "num_heads") == HEADS // 2


KEY_PADDING_MASK = np.array([[1, 1, 1, 1, 0]], np.int32)


@pytest.mark.parametrize(
    "fused_bias, extra",
    [(False, None), (True, None), (False, {4: ("key_mask", KEY_PADDING_MASK)})],
    ids=["add_bias", "fused_bias", "key_padding_mask"],
)
def test_multi_head_attention_loses_whole_heads(fused_bias, extra):
    model = _mha_model(fused_bias, extra)
    pruned, report, plan = assert_exact(model, PruneConfig(ratio=0.5))
    _check_mha(model, pruned, plan)
    columns = _head_columns(STRONG_HEADS)
    if fused_bias:  # q, k and v biases one after another, sliced alike
        qkv = [s * HIDDEN + c for s in range(3) for c in columns]
        np.testing.assert_array_equal(
            initializer(pruned, "b_qkv"), initializer(model, "b_qkv")[qkv]
        )
    else:
        for p in "qkv":
            np.testing.assert_array_equal(
                initializer(pruned, f"b{p}"), initializer(model, f"b{p}")[columns]
            )
    heads = group_of(report, "q_proj")
    assert (heads.kind, heads.channels, heads.kept) == ("heads", HEADS, HEADS // 2)
    assert any("k_proj" in m for m in heads.members) and any("v_proj" in m for m in heads.members)


@pytest.mark.parametrize("op", ["Attention", "MultiHeadAttention"])
def test_per_head_attention_bias_loses_the_removed_heads(op):
    bias = _normal(1, HEADS, SEQ, SEQ, seed=9)
    extra = {5: ("attn_bias", bias)}
    model = _attention_model(extra=extra) if op == "Attention" else _mha_model(extra=extra)
    pruned, _, plan = assert_exact(model, PruneConfig(ratio=0.5))
    (_check_attention if op == "Attention" else _check_mha)(model, pruned, plan)
    np.testing.assert_array_equal(initializer(pruned, "attn_bias"), bias[:, STRONG_HEADS])


@pytest.mark.parametrize("op", ["Attention", "MultiHeadAttention"])
def test_attention_bias_shared_by_all_heads_is_left_alone(op):
    bias = _normal(1, 1, SEQ, SEQ, seed=9)
    extra = {5: ("attn_bias", bias)}
    model = _attention_model(extra=extra) if op == "Attention" else _mha_model(extra=extra)
    pruned, _, plan = assert_exact(model, PruneConfig(ratio=0.5))
    (_check_attention if op == "Attention" else _check_mha)(model, pruned, plan)
    np.testing.assert_array_equal(initializer(pruned, "attn_bias"), bias)


def test_attention_bias_computed_at_run_time_keeps_every_head():
    model = _mha_model(extra={5: ("attn_bias", _normal(1, HEADS, SEQ, SEQ, seed=9))})
    stored = next(t for t in model.graph.initializer if t.name == "attn_bias")
    model.graph.initializer.remove(stored)  # now a graph input: computed at run time
    model.graph.input.append(_tensor("attn_bias", [1, HEADS, SEQ, SEQ]))
    pruned, report, _ = assert_exact(model, PruneConfig(ratio=0.5))
    assert _attr(pruned, "mha", "num_heads") == HEADS
    assert group_of(report, "q_proj").frozen == [
        "MultiHeadAttention 'mha': attention_bias has a slice per head and is computed at run time"
    ]


def test_multi_head_attention_qk_output_keeps_every_head():
    model = _mha_model(outputs=4)
    pruned, report, _ = assert_exact(model, PruneConfig(ratio=0.5))
    assert _attr(pruned, "mha", "num_heads") == HEADS
    heads = group_of(report, "q_proj")
    assert heads.kept == HEADS
    assert heads.frozen == ["MultiHeadAttention 'mha': the qk output (one slice per head) is used"]


# -- FastGelu / BiasGelu / Gelu / QuickGelu between two MatMuls ---------------------------

STRONG_NEURONS = list(range(0, FFN, 2))


def _mlp_model(op: str, bias: bool, shapes: bool = True, **attrs):
    """x -> fc1 (no Add) -> op(h[, b1]) -> fc2 -> y."""
    w1 = _normal(HIDDEN, FFN, seed=1)
    w1[:, STRONG_NEURONS] *= 4.0
    weights = {"w1": w1, "w2": _normal(FFN, HIDDEN, seed=2)}
    inputs = ["h"]
    if bias:
        weights["b1"] = _normal(FFN, seed=3)
        inputs.append("b1")
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"),
        helper.make_node(op, inputs, ["g"], name="act", domain=MS, **attrs),
        helper.make_node("MatMul", ["g", "w2"], ["y"], name="fc2"),
    ]
    return _model(nodes, weights, shapes=shapes)


@pytest.mark.parametrize(
    "op, bias, attrs, shapes",
    [
        ("FastGelu", True, {}, True),
        ("FastGelu", True, {}, False),
        ("FastGelu", False, {}, True),
        ("BiasGelu", True, {}, True),
        ("BiasGelu", True, {}, False),
        ("Gelu", False, {}, True),
        ("QuickGelu", False, {"alpha": 1.702}, True),
    ],
)
def test_fused_gelu_passes_mlp_neurons_through(op, bias, attrs, shapes):
    model = _mlp_model(op, bias, shapes, **attrs)
    pruned, report, plan = assert_exact(model, PruneConfig(ratio=0.5))
    assert kept_channels(plan, "fc1").tolist() == STRONG_NEURONS
    w1, w2 = initializer(model, "w1"), initializer(model, "w2")
    np.testing.assert_array_equal(initializer(pruned, "w1"), w1[:, STRONG_NEURONS])
    np.testing.assert_array_equal(initializer(pruned, "w2"), w2[STRONG_NEURONS])
    if bias:
        b1 = initializer(model, "b1")
        np.testing.assert_array_equal(initializer(pruned, "b1"), b1[STRONG_NEURONS])
    assert node(pruned, "act").op_type == op
    assert group_of(report, "fc1").kept == FFN // 2


# -- SkipLayerNormalization ---------------------------------------------------------------


def _skip_norm_model(op: str = "SkipLayerNormalization", shapes: bool = True):
    """x -> in_proj -> h; fc1 -> FastGelu -> fc2 -> f; op(f, skip=h) -> n -> head -> y.

    The hidden size (in_proj, fc2) reaches no graph output: only the normalisation
    decides whether it can be pruned.
    """
    weights = {
        "w_in": _normal(HIDDEN, HIDDEN, seed=0),
        "w1": _normal(HIDDEN, FFN, seed=1),
        "b1": _normal(FFN, seed=2),
        "w2": _normal(FFN, HIDDEN, seed=3),
        "gamma": np.abs(_normal(HIDDEN, seed=4)) + 0.5,
        "beta": _normal(HIDDEN, seed=5),
        "bias": _normal(HIDDEN, seed=6),
        "w_head": _normal(HIDDEN, CLASSES, seed=7),
    }
    norm_inputs = ["f", "h", "gamma", "beta", "bias"]
    if op == "SkipSimplifiedLayerNormalization":  # input, skip, gamma, bias
        norm_inputs = ["f", "h", "gamma", "bias"]
        del weights["beta"]
    nodes = [
        helper.make_node("MatMul", ["x", "w_in"], ["h"], name="in_proj"),
        helper.make_node("MatMul", ["h", "w1"], ["h1"], name="fc1"),
        helper.make_node("FastGelu", ["h1", "b1"], ["g"], name="gelu", domain=MS),
        helper.make_node("MatMul", ["g", "w2"], ["f"], name="fc2"),
        helper.make_node(op, norm_inputs, ["n"], name="norm", domain=MS, epsilon=1e-5),
        helper.make_node("MatMul", ["n", "w_head"], ["y"], name="head"),
    ]
    out = [_tensor("y", [1, SEQ, CLASSES])]
    return _model(nodes, weights, outputs=out, shapes=shapes)


SKIP_NORMS = ["SkipLayerNormalization", "SkipSimplifiedLayerNormalization"]


@pytest.mark.parametrize("op", SKIP_NORMS)
def test_skip_layer_norm_freezes_the_residual_stream(op):
    model = _skip_norm_model(op)
    pruned, report, _ = assert_exact(model, PruneConfig(ratio=0.5))
    stream = group_of(report, "in_proj")
    assert any("fc2" in m for m in stream.members)
    assert stream.kept == stream.channels == HIDDEN and stream.n_frozen == HIDDEN
    assert stream.frozen == [f"{op} 'norm': {op} statistics span these channels"]
    assert initializer(pruned, "gamma").shape == (HIDDEN,)
    assert initializer(pruned, "w1").shape == (HIDDEN, FFN // 2)  # the MLP still prunes


def _check_hidden_pruned(model, op):
    pruned, report = prune(model, PruneConfig(ratio=0.5, prune_hidden=True))
    stream = group_of(report, "in_proj")
    assert stream.kept == HIDDEN // 2 and not stream.frozen
    assert stream.approximate == [f"{op} 'norm': {op} statistics change with these channels"]
    params = ["gamma", "bias"] + (["beta"] if op == "SkipLayerNormalization" else [])
    for name in params:
        assert initializer(pruned, name).shape == (HIDDEN // 2,)
    assert initializer(pruned, "w_in").shape == (HIDDEN, HIDDEN // 2)
    assert initializer(pruned, "w2").shape == (FFN // 2, HIDDEN // 2)
    assert initializer(pruned, "w_head").shape == (HIDDEN // 2, CLASSES)
    assert "approximate" in report.to_text()
    feeds = input_feeds(model, {}, seed=1)
    before = run(model.SerializeToString(), feeds)["y"]
    after = run(pruned.SerializeToString(), feeds)["y"]
    assert after.shape == before.shape == (1, SEQ, CLASSES)
    assert [o.shape for o in report.outputs] == [[1, SEQ, CLASSES]]


@pytest.mark.parametrize("op", SKIP_NORMS)
def test_skip_layer_norm_prunes_hidden_approximately(op):
    _check_hidden_pruned(_skip_norm_model(op), op)


@pytest.mark.xfail(
    strict=True,
    reason="graph.py infers shapes with onnx's shape inference only, which does not know "
    "the com.microsoft ops: every tensor after one (here fc2's output, behind FastGelu) "
    "has unknown rank, so SkipLayerNormalization freezes with 'input rank is unknown'. "
    "The fused handlers record their own output shapes, but a plain MatMul after them "
    "does not; graph.py could fall back to onnxruntime's symbolic shape inference.",
)
def test_skip_layer_norm_prunes_hidden_without_value_info():
    _check_hidden_pruned(_skip_norm_model(shapes=False), "SkipLayerNormalization")


# -- fused ops without a handler ----------------------------------------------------------


def _gqa_model():
    """q/k/v projections -> GroupQueryAttention (no handler; 2 query heads share one
    key/value head of 8 channels: its CPU kernel wants multiples of 8) -> o_proj -> y."""
    kv = HIDDEN // 2
    weights = {
        "wq": _normal(HIDDEN, HIDDEN, seed=1),
        "wk": _normal(HIDDEN, kv, seed=2),
        "wv": _normal(HIDDEN, kv, seed=3),
        "w_o": _normal(HIDDEN, HIDDEN, seed=4),
        "seqlens_k": np.array([SEQ - 1], np.int32),
        "total_len": np.array(SEQ, np.int32),
    }
    nodes = [helper.make_node("MatMul", ["x", f"w{p}"], [p], name=f"{p}_proj") for p in "qkv"]
    gqa_inputs = ["q", "k", "v", "", "", "seqlens_k", "total_len"]
    nodes += [
        helper.make_node(
            "GroupQueryAttention",
            gqa_inputs,
            ["a"],
            name="gqa",
            domain=MS,
            num_heads=2,
            kv_num_heads=1,
        ),
        helper.make_node("MatMul", ["a", "w_o"], ["y"], name="o_proj"),
    ]
    return _model(nodes, weights)


def test_group_query_attention_is_kept_whole():
    model = _gqa_model()
    pruned, report, _ = assert_exact(model, PruneConfig(ratio=0.5))
    for p in "qkv":
        group = group_of(report, f"{p}_proj")
        assert group.kept == group.channels
        assert group.frozen == [
            "GroupQueryAttention 'gqa': no handler for com.microsoft::GroupQueryAttention (opset 1)"
        ]
        assert initializer(pruned, f"w{p}").shape == initializer(model, f"w{p}").shape
    assert (_attr(pruned, "gqa", "num_heads"), _attr(pruned, "gqa", "kv_num_heads")) == (2, 1)
    assert list(node(pruned, "gqa").input) == list(node(model, "gqa").input)


def test_unknown_custom_domain_op_freezes_what_it_touches():
    """An op onnxruntime cannot run either: analysis and apply only (no validation)."""
    weights = {"w1": _normal(HIDDEN, FFN, seed=1), "w2": _normal(FFN, HIDDEN, seed=2)}
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"),
        helper.make_node("FusedMystery", ["h"], ["g"], name="mystery", domain="acme.ops"),
        helper.make_node("MatMul", ["g", "w2"], ["y"], name="fc2"),
    ]
    graph = helper.make_graph(
        nodes,
        "custom",
        [_tensor("x", [1, SEQ, HIDDEN])],
        [_tensor("y", [1, SEQ, HIDDEN])],
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("acme.ops", 1)]
    model = helper.make_model(graph, opset_imports=opsets, ir_version=8)
    config = PruneConfig(ratio=0.5, validate=False)
    plan = make_plan(model, config)
    assert all(plan.kept(p.slots).all() for p in plan.analysis.producers)
    pruned, report = prune(model, config)
    fc1 = group_of(report, "fc1")
    assert fc1.kept == FFN
    assert fc1.frozen == ["FusedMystery 'mystery': no handler for acme.ops::FusedMystery (opset 1)"]
    assert initializer(pruned, "w1").shape == (HIDDEN, FFN)
    assert initializer(pruned, "w2").shape == (FFN, HIDDEN)
    assert node(pruned, "mystery").domain == "acme.ops"
