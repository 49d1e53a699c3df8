"""The masking oracle: the original model with removed channels zeroed where read.

Pruning is exact when the pruned model computes what this masked model computes.
The masks sit only before the nodes that consume channels (a Conv's or Gemm's input),
so a handler that passes channels through an op wrongly shows up as a difference.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .graph import light_inference


def _types(model: onnx.ModelProto) -> dict[str, tuple[int, int]]:
    """(rank, element type) of every tensor shape inference can reach (inferred on a
    copy without the weights)."""
    g = (light_inference(model, None, value_info=True) or model).graph
    found = {t.name: (len(t.dims), t.data_type) for t in model.graph.initializer}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        tt = vi.type.tensor_type
        if tt.HasField("shape"):
            found[vi.name] = (len(tt.shape.dim), tt.elem_type)
    return found


def masked_model(
    original: onnx.ModelProto,
    masks: list[tuple[int, int, int, np.ndarray]],
    ranks: dict[str, int] | None = None,
    in_place: bool = False,
    feeds: dict[str, np.ndarray] | None = None,
):
    """A copy of `original` with input i of node n multiplied by a 0/1 mask along `axis`.

    `masks` holds (node index, input index, axis, keep flag per position), as
    `Plan.reader_masks()` gives them for the same (unpruned) model; `ranks` adds tensor
    ranks that shape inference cannot tell (the analysis knows more). `in_place`: edit
    `original` itself instead of a copy. `feeds`: make the masks graph inputs and put
    their values here instead (so one session runs both the oracle and, fed all-ones
    masks, the original).
    """
    if in_place:
        model = original
    else:
        model = onnx.ModelProto()
        model.CopyFrom(original)
    types = _types(model)
    for name, rank in (ranks or {}).items():
        if name not in types:
            types[name] = (rank, onnx.TensorProto.FLOAT)
    graph = model.graph
    nodes = list(graph.node)
    inserted: dict[int, list[onnx.NodeProto]] = {}
    for k, (node_idx, i, axis, keep) in enumerate(masks):
        if keep.all():
            continue
        node = nodes[node_idx]
        name = node.input[i]
        rank, elem_type = types[name]
        dims = [1] * rank
        dims[axis] = len(keep)
        mask = keep.astype(helper.tensor_dtype_to_np_dtype(elem_type)).reshape(dims)
        mask_name, out_name = f"__oracle_mask{k}", f"__oracle_masked{k}"
        if feeds is None:
            graph.initializer.append(numpy_helper.from_array(mask, mask_name))
        else:
            feeds[mask_name] = mask
            graph.input.append(helper.make_tensor_value_info(mask_name, elem_type, dims))
        inserted.setdefault(node_idx, []).append(
            helper.make_node("Mul", [name, mask_name], [out_name], name=f"__oracle_mul{k}")
        )
        node.input[i] = out_name
    del graph.node[:]
    for idx, node in enumerate(nodes):
        graph.node.extend(inserted.get(idx, []))
        graph.node.append(node)
    return model
