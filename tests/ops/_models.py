"""Small ONNX-text models for the op handler tests.

`build(text)` reads weights declared in the graph's `<...>` list without values (the
onnx parser records those as value_info, not initializers, so `tests.helpers.parse`
does not see them): each becomes an initializer of seeded random data, or the array
passed by keyword. `sandwich(body)` places `body` between two convs.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx.parser
from onnx import helper, numpy_helper

from onnxprune.report import GroupReport


def header(opset: int = 13, **domains: int) -> str:
    """The `<ir_version, opset_import>` line, with the lowest IR version for the opsets."""
    ids = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in domains.items()]
    ir = max(helper.find_min_ir_version_for(ids, ignore_unknown=True), 8)
    imports = ", ".join(f'"{o.domain}" : {o.version}' for o in ids)
    return f"<ir_version: {ir}, opset_import: [{imports}]>"


def build(text: str, seed: int = 0, **weights: np.ndarray) -> onnx.ModelProto:
    """A checked model from ONNX text; `<float[...] w>` declarations become initializers.

    Float weights are standard normal (names starting with "var" get |x| + 0.5, for
    BatchNormalization variances); other types must be passed by keyword.
    """
    model = onnx.parser.parse_model(text)
    graph = model.graph
    produced = {o for node in graph.node for o in node.output} | {i.name for i in graph.input}
    rng = np.random.default_rng(seed)
    kept_info = []
    for vi in graph.value_info:
        if vi.name in produced:
            kept_info.append(vi)
            continue
        tensor_type = vi.type.tensor_type
        dims = tuple(d.dim_value for d in tensor_type.shape.dim)
        dtype = helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)
        if vi.name in weights:
            value = np.asarray(weights[vi.name], dtype=dtype)
        elif np.issubdtype(dtype, np.floating):
            value = rng.standard_normal(dims).astype(dtype)
            if vi.name.startswith("var"):
                value = np.abs(value) + 0.5
        else:
            raise ValueError(f"pass a value for the {dtype} weight '{vi.name}'")
        graph.initializer.append(numpy_helper.from_array(value.reshape(dims), vi.name))
    del graph.value_info[:]
    graph.value_info.extend(kept_info)
    onnx.checker.check_model(model, full_check=True)
    return model


def sandwich(
    body: str,
    *,
    opset: int = 13,
    weights: str = "",
    hw: int = 8,
    width: int = 8,
    out: str | None = None,
    more_outputs: str = "",
    tail: str = "[conv2] y = Conv (b, w2)",
    seed: int = 0,
    **values: np.ndarray,
) -> onnx.ModelProto:
    """x [1,3,hw,hw] -> conv1 (8 channels, bias b1) -> `a`; `body`: a -> b; `tail`: b -> y.

    The default tail is conv2 with w2 [4, width, 1, 1]. `weights` declares the extra
    initializers the body and tail use (", float[8,1,1] s"); `out` is y's type and
    `more_outputs` declares further graph outputs (", int64[1,8,4,4] idx").
    """
    out = out or f"float[1,4,{hw},{hw}]"
    if "w2" in tail:
        weights = f", float[4,{width},1,1] w2{weights}"
    text = f"""
    {header(opset)}
    sandwich (float[1,3,{hw},{hw}] x) => ({out} y{more_outputs})
    <float[8,3,3,3] w1, float[8] b1{weights}>
    {{
      [conv1] a = Conv <pads=[1,1,1,1]> (x, w1, b1)
      {body}
      {tail}
    }}
    """
    return build(text, seed, **values)


def group_of(report, member: str) -> GroupReport:
    """The group whose member labels mention `member` (a node name)."""
    found = [g for g in report.groups if any(member in m for m in g.members)]
    assert len(found) == 1, (member, report.groups)
    return found[0]


def initializer(model: onnx.ModelProto, name: str) -> np.ndarray:
    for t in model.graph.initializer:
        if t.name == name:
            return numpy_helper.to_array(t)
    raise KeyError(name)


def node(model: onnx.ModelProto, name: str) -> onnx.NodeProto:
    for n in model.graph.node:
        if n.name == name:
            return n
    raise KeyError(name)


def kept_channels(plan, node_name: str) -> np.ndarray:
    """Indices of the output channels of producer `node_name` that the plan keeps."""
    index = plan.analysis.index
    for p in plan.analysis.producers:
        if index.nodes[p.node].name == node_name:
            return np.flatnonzero(plan.kept(p.slots))
    raise KeyError(node_name)
