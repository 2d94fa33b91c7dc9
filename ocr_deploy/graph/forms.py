"""Rewrite one matched attention core into a chosen form.

- ``decomposed``: ``MatMul(Q', K^T) -> Softmax -> MatMul(P, V)`` with the scale moved
  before the first MatMul (TensorRT's fusable pattern): folded into the query branch's
  weights when exact (see ``fold``), else a Mul/Div on Q. K^T stays what the exporter made
  of the small key tensor ([B,K,D] or [B,D,K,1] -> [B,D,K]); Q is never transposed.
- ``attention``: one ONNX ``Attention`` node (opset 23): 3-D inputs with one head, or the
  4-D per-head tensors as they are; the scale becomes its ``scale`` attribute. The model
  must already be at opset >= 23. ``four_d`` (TensorRT, whose Attention takes only 4-D
  Q/K/V with the heads in the shape): 3-D inputs get a head axis of 1 (``Unsqueeze``) and
  the output loses it again (``Squeeze``), the same values.

Each function edits ``model`` in place and returns a JSON-ready record of what it did.
Callers remove dead nodes and re-sort the graph afterwards.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from ocr_deploy.errors import GraphError
from ocr_deploy.graph.find import AttentionCore
from ocr_deploy.graph.fold import apply_fold, plan_fold
from ocr_deploy.graph.index import GraphIndex, add_constant, unique_name

ATTENTION_OPSET = 23


def to_decomposed(model, core: AttentionCore) -> dict:
    """Move the core's scale before the first MatMul (exactly, when it can be folded)."""
    index = GraphIndex(model)
    if core.scale_node is None:
        return {"scale_moved_to": None, "exact": True, "key_t": _key_t_source(index, core),
                "note": "no scale after the first MatMul: already the fusable pattern"}
    nodes = _nodes(index, core)
    plan = plan_fold(index, core.query, core.scale)
    if isinstance(plan, str):
        scale_node = nodes["scale"]
        scaled = unique_name(model, f"{core.query}_scaled")
        constant = index.constant(core.scale_constant)  # uniform: one scalar of its value
        scalar = add_constant(model, f"{core.scale_constant}_scalar",
                              np.asarray(constant.flat[0], constant.dtype))
        mul = helper.make_node(scale_node.op_type, [core.query, scalar], [scaled],
                               name=unique_name(model, f"{core.first_matmul}/scale_query"))
        model.graph.node.append(mul)
        nodes["first"].input[0] = scaled
        record = {"scale_moved_to": f"{scale_node.op_type} '{mul.name}' on the query before "
                                    f"the first MatMul", "exact": False,
                  "not_folded_because": plan, "new_nodes": [mul.name]}
    else:
        constants = apply_fold(model, index, plan, core.scale)
        record = {"scale_moved_to": f"folded into {plan.target} (its weights and biases)",
                  "exact": True, "new_constants": constants}
    nodes["softmax"].input[0] = nodes["first"].output[0]
    model.graph.node.remove(nodes["scale"])
    record["removed_nodes"] = [core.scale_node]
    record["key_t"] = _key_t_source(index, core)
    return record


def to_attention(model, core: AttentionCore, four_d: bool = False) -> dict:
    """Replace the core's four nodes by one ``Attention`` node (opset >= 23); ``four_d``:
    3-D inputs made 4-D with one head (see the module docstring)."""
    index = GraphIndex(model)
    if index.opset < ATTENTION_OPSET:
        raise GraphError(None, f"opset {ATTENTION_OPSET} or later for the Attention op",
                         f"opset {index.opset}", f"export with --opset {ATTENTION_OPSET}, or "
                         "use --attention decomposed")
    nodes = _nodes(index, core)
    new_nodes = []
    source = index.producer.get(core.key_t)
    perm = next((list(a.ints) for a in source.attribute if a.name == "perm"), None) \
        if source is not None and source.op_type == "Transpose" else None
    rank = len(core.shapes.get("query") or [0, 0, 0])
    swap = [0, 2, 1] if rank == 3 else [0, 1, 3, 2]
    if perm == swap:
        key = source.input[0]
        key_note = f"the input of Transpose '{index.label(source)}' (K before K^T)"
    else:
        key = unique_name(model, f"{core.key_t}_key")
        transpose = helper.make_node("Transpose", [core.key_t], [key], perm=swap,
                                     name=unique_name(model, f"{core.first_matmul}/key"))
        model.graph.node.append(transpose)
        new_nodes.append(transpose.name)
        key_note = f"Transpose '{transpose.name}' of the small K^T"
    scale = 1.0 if core.scale is None else core.scale
    name = unique_name(model, f"{core.softmax.rsplit('/', 1)[0]}/Attention")
    inputs, output, heads = [core.query, key, core.value], core.output, {}
    if rank == 3 and four_d:
        axis = add_constant(model, f"{name}/head_axis", np.asarray([1], np.int64))
        inputs = [_with_node(model, new_nodes, "Unsqueeze", [x, axis], f"{name}/{role}_4d")
                  for x, role in zip(inputs, ("query", "key", "value"), strict=True)]
        output = unique_name(model, f"{name}/context_4d")
    elif rank == 3:
        heads = {"q_num_heads": 1, "kv_num_heads": 1}  # 4-D: in the shape
    attention = helper.make_node("Attention", inputs, [output], name=name, scale=scale,
                                 **heads)
    model.graph.node.append(attention)
    new_nodes.append(attention.name)
    if output != core.output:
        model.graph.node.append(helper.make_node("Squeeze", [output, axis], [core.output],
                                                 name=unique_name(model, f"{name}/context")))
        new_nodes.append(model.graph.node[-1].name)
    removed = [n for n in ("first", "scale", "softmax", "second") if nodes[n] is not None]
    for role in removed:
        model.graph.node.remove(nodes[role])
    heads_note = "4-D as they are" if rank == 4 else "3-D made 4-D with one head " \
        "(Unsqueeze, Squeeze after)" if four_d else "3-D with q_num_heads=kv_num_heads=1"
    return {"scale_moved_to": f"the scale attribute of Attention '{attention.name}'",
            "exact": True, "key": key_note, "inputs": heads_note, "new_nodes": new_nodes,
            "removed_nodes": [index.label(nodes[role]) for role in removed]}


def _with_node(model, new_nodes: list, op: str, inputs: list, name: str) -> str:
    """Append an ``op`` node named after ``name``; returns its output."""
    output = unique_name(model, name)
    model.graph.node.append(helper.make_node(op, inputs, [output],
                                             name=unique_name(model, name)))
    new_nodes.append(model.graph.node[-1].name)
    return output


def upgrade_opset(model, opset: int = ATTENTION_OPSET):
    """Convert ``model`` to ``opset`` with the ONNX version converter (IR version raised)."""
    from onnx import version_converter

    converted = version_converter.convert_version(model, opset)
    needed = helper.find_min_ir_version_for(list(converted.opset_import))
    converted.ir_version = max(converted.ir_version, needed)
    onnx.checker.check_model(converted)
    return converted


def _key_t_source(index: GraphIndex, core: AttentionCore) -> str:
    """Where K^T comes from: the exporter's op on the small key tensor (none is added)."""
    source = index.producer.get(core.key_t)
    if source is None:
        return "a graph input (unchanged)"
    return (f"{source.op_type} '{index.label(source)}' of the key tensor "
            f"{index.shape(source.input[0])} (unchanged; Q is used as is)")


def _nodes(index: GraphIndex, core: AttentionCore) -> dict:
    by_name = {index.label(node): node for node in index.graph.node}
    return {"first": by_name[core.first_matmul], "softmax": by_name[core.softmax],
            "second": by_name[core.second_matmul],
            "scale": by_name[core.scale_node] if core.scale_node else None}
