"""How much of an INT8 build really runs in integer kernels, by multiply-accumulates.

Every Conv / MatMul / Gemm of the FP32 model is counted (MACs at batch 1, from ONNX shape
inference) and followed into the graph that will run, as the backend says (its
``Backend.coverage``):

- with the optimised graph that runs (ONNX Runtime saves it): a layer is integer when the
  node that now produces its output (or the output of its Q node or of an activation folded
  into it) is one of the backend's integer kernels (QLinearConv, ...);
- without one (TensorRT, whose layer choices are not ONNX): a layer whose activation and
  weight inputs all come from DequantizeLinear runs in INT8 (the backend fuses Q/DQ into
  the layer).

Layers that are not integer are listed with the reason: kept in higher precision (by
default, by the accuracy budget, by request), no integer kernel for the pattern, or not
quantised by the placement.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import onnx

from ocr_deploy.graph.index import GraphIndex
from ocr_deploy.precision.shapes import static_shapes

COMPUTE_OPS = ("Conv", "MatMul", "Gemm")
KEPT_REASONS = {"attention": "kept in higher precision by default (attention core)",
                "classifier": "kept in higher precision by default (classifier)",
                "sensitivity_search": "kept in higher precision by the accuracy budget "
                                      "(sensitivity search)",
                "requested": "kept in higher precision on request (--keep-fp32)"}


@dataclass
class Layer:
    """One Conv/MatMul/Gemm: its cost and where it runs."""

    name: str
    op_type: str
    macs: int
    kernel: str
    integer: bool
    reason: str | None = None


def layer_macs(model: onnx.ModelProto) -> dict[str, tuple[str, int]]:
    """``name -> (op type, MACs at batch 1)`` of every Conv, MatMul and Gemm."""
    shapes = static_shapes(model)
    found = {}
    for node in model.graph.node:
        if node.op_type not in COMPUTE_OPS:
            continue
        out = shapes.get(node.output[0])
        inputs = [shapes.get(name) for name in node.input[:2]]
        macs = 0
        if out and all(inputs):
            if node.op_type == "Conv":  # out elements x (C_in / group) x kernel area
                macs = int(np.prod(out)) * int(np.prod(inputs[1][1:]))
            elif node.op_type == "Gemm":
                transposed = any(a.name == "transA" and a.i for a in node.attribute)
                macs = int(np.prod(out)) * inputs[0][0 if transposed else -1]
            else:
                macs = int(np.prod(out)) * inputs[0][-1]
        found[node.name] = (node.op_type, macs)
    return found


def integer_coverage(fp32_model: onnx.ModelProto, qdq_model: onnx.ModelProto,
                     kept: dict[str, list[str]], runtime_model: onnx.ModelProto | None = None,
                     integer_kernels: tuple[str, ...] = (), folded: tuple[str, ...] = ()
                     ) -> dict:
    """The coverage report: integer share of MACs and the layers that are not integer.

    ``kept`` maps a reason key to node names. ``runtime_model`` is the optimised graph
    that will run, whose ``integer_kernels`` compute in integers (``folded``: activations
    fused into the Q node after a layer), or None to judge from the Q/DQ graph.
    """
    costs = layer_macs(fp32_model)
    reasons = {name: KEPT_REASONS.get(key, f"kept in higher precision ({key})")
               for key, names in kept.items() for name in names}
    index = GraphIndex(qdq_model)
    nodes = {n.name: n for n in qdq_model.graph.node}
    runtime_producers = None if runtime_model is None else GraphIndex(runtime_model).producer
    layers = []
    for name, (op_type, macs) in costs.items():
        quantized = _quantized_inputs(index, nodes.get(name))
        if runtime_producers is None:
            kernel = "INT8 (Q/DQ inputs)" if quantized else op_type
            integer = quantized
        else:
            kernel = _runtime_kernel(index, nodes.get(name), runtime_producers, folded)
            integer = kernel in integer_kernels
        reason = None
        if not integer:
            reason = reasons.get(name) or (
                f"no integer kernel for this pattern ({kernel})"
                if quantized else "not quantised by the placement")
        layers.append(Layer(name, op_type, macs, kernel, integer, reason))
    total = sum(layer.macs for layer in layers)
    integer_macs = sum(layer.macs for layer in layers if layer.integer)
    not_integer = sorted((layer for layer in layers if not layer.integer),
                         key=lambda layer: -layer.macs)
    return {
        "integer_mac_share": round(integer_macs / total, 4) if total else 0.0,
        "integer_macs": integer_macs, "total_macs": total,
        "integer_layers": sum(layer.integer for layer in layers), "layers": len(layers),
        "judged_from": "the optimised graph that runs" if runtime_model is not None else
                       "the Q/DQ graph (the backend fuses Q/DQ-wrapped layers; its own "
                       "layer choices are not read here)",
        "not_integer": [{**asdict(layer), "mac_share": round(layer.macs / total, 4)
                         if total else 0.0} for layer in not_integer],
    }


def _quantized_inputs(index: GraphIndex, node) -> bool:
    """Whether every activation and weight input of ``node`` comes from a DQ node."""
    data_inputs = [i for i in node.input[:2] if i] if node is not None else []
    return bool(data_inputs) and all(
        getattr(index.producer.get(i), "op_type", "") == "DequantizeLinear"
        for i in data_inputs)


def _runtime_kernel(index: GraphIndex, node, runtime_producers: dict,
                    folded: tuple[str, ...]) -> str:
    """The kernel that now computes ``node``, found through its output tensors (its own,
    its Q node's, or a folded activation's)."""
    if node is None:
        return "missing"
    candidates = [node.output[0]]
    for consumer in index.consumers.get(node.output[0], []):
        if consumer.op_type == "QuantizeLinear" or consumer.op_type in folded:
            candidates.append(consumer.output[0])
            candidates += [c.output[0] for c in index.consumers.get(consumer.output[0], [])
                           if c.op_type == "QuantizeLinear"]
    for tensor in candidates:
        if tensor in runtime_producers:
            return runtime_producers[tensor].op_type
    return "fused away (unknown)"
