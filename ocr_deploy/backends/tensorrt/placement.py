"""Where TensorRT wants Q/DQ nodes, by NVIDIA's published recommendations (each rule's
source is in docs/backends.md, "INT8 placement for TensorRT"); symmetric INT8 activations
(TensorRT takes zero point 0 only), no bias quantisation:

- ``op_inputs``: every input of Conv and MatMul (the weighted ops), never their outputs —
  TensorRT fuses the rest around them.
- ``residual_add``: the skip input of an ``Add`` that follows a convolution (a Conv, with
  only a constant scale or bias, a BatchNormalization or a Relu between, each read once).
  TensorRT fuses such an Add into the convolution's INT8 kernel only when both inputs are
  INT8; with the skip input left in float the Add runs alone in FP16/FP32
  (NVIDIA/TensorRT#1992). Where both inputs come from convolutions, the later one is fused
  and the other is the skip input.

Not rules here, because TensorRT does it itself or it does not arise in our graphs:
MaxPool, Concat and other data-movement ops commute with Q/DQ and TensorRT moves a Q
placed after them to their inputs (and a DQ before them to their outputs), so a Concat or
MaxPool feeding a quantised Conv runs in INT8 without Q/DQ of its own.

Kept in higher precision by default: OCRNet's softmax-weighted products (spatial gather and
attention core) and the final classifier; a convolution kept in higher precision gets no
residual Q/DQ either (nothing to fuse into).

A strongly typed network (TensorRT 11, and 10.x here by default) runs every layer in the
type the ONNX gives it, so layers outside Q/DQ would run FP32 and INT8 could lose to
``--fp16``: the Q/DQ graph is made on top of the FP16 graph (``float_type`` "fp16": FP16
scales, so DequantizeLinear outputs FP16; the TensorRT 11 migration guide's AutoCast +
Q/DQ recipe). With ``--trt-builder-flags`` (10.x, weakly typed) TensorRT chooses the
precision of those layers itself under its FP16 flag, so the graph stays FP32 there.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx

from ocr_deploy.graph.index import GraphIndex
from ocr_deploy.precision.placement import Placement

WEIGHTED_OPS = ("Conv", "MatMul")
# ops TensorRT fuses between a convolution and the Add that follows it (NVIDIA Model
# Optimizer's fusible Conv paths: Conv [-> a constant Mul or Add, as a decomposed
# BatchNormalization] [-> BatchNormalization] [-> Relu])
FUSED_AFTER_CONV = ("BatchNormalization", "Relu")
CONSTANT_AFTER_CONV = ("Mul", "Add")


@dataclass(frozen=True)
class TensorRTPlacement(Placement):
    """TensorRT's placement: ``op_types`` inputs plus the residual-Add rule."""

    def extra_inputs(self, model: onnx.ModelProto, exclude: list[str]
                     ) -> dict[str, list[tuple[str, int]]]:
        return {"residual_add": residual_add_inputs(model, exclude)}


def placement(strongly_typed: bool = True) -> Placement:
    """The TensorRT placement, for a strongly or a weakly typed network."""
    return TensorRTPlacement(
        name="tensorrt", op_types=WEIGHTED_OPS, activation_type="int8",
        activation_symmetric=True, quantize_outputs=False, quantize_bias=False,
        reduce_range=False, float_type="fp16" if strongly_typed else "fp32",
        rules=("op_inputs", "residual_add"),
        reason="NVIDIA's Q/DQ placement recommendations: Q/DQ on Conv/MatMul inputs and on "
               "the skip input of an Add after a convolution (fused into its INT8 kernel); "
               "symmetric INT8 activations, as TensorRT requires; "
               + ("FP16 outside Q/DQ (a strongly typed network keeps the ONNX's types)"
                  if strongly_typed else "FP32 graph, TensorRT picks FP16 under its builder "
                  "flags"))


def residual_add_inputs(model: onnx.ModelProto, exclude: list[str]) -> list[tuple[str, int]]:
    """``(Add node name, input index)`` of the skip input of every two-input Add that
    follows a quantised convolution (not in ``exclude``); Adds of a constant, or with no
    convolution branch, are left alone."""
    index = GraphIndex(model)
    position = {id(node): i for i, node in enumerate(model.graph.node)}
    found = []
    for node in model.graph.node:
        if node.op_type != "Add" or len(node.input) != 2 or not node.name \
                or any(index.constant(name) is not None for name in node.input):
            continue
        convs = [_fused_convolution(index, name, exclude) for name in node.input]
        branches = [i for i, conv in enumerate(convs) if conv is not None]
        if not branches:
            continue
        fused = max(branches, key=lambda i: position[id(convs[i])])  # the later convolution
        found.append((node.name, 1 - fused))
    return found


def _fused_convolution(index: GraphIndex, tensor: str, exclude: list[str]):
    """The quantised Conv whose output reaches ``tensor`` through ops TensorRT fuses into
    it (each intermediate tensor read once), or None."""
    node = index.producer.get(tensor)
    while node is not None and (node.op_type in FUSED_AFTER_CONV or (
            node.op_type in CONSTANT_AFTER_CONV and len(node.input) == 2
            and index.constant(node.input[1]) is not None)):
        if index.only_consumer(node.output[0]) is None:
            return None
        node = index.producer.get(node.input[0])
    if node is None or node.op_type != "Conv" or node.name in exclude \
            or index.only_consumer(node.output[0]) is None \
            or index.constant(node.input[0]) is not None:
        return None
    return node
