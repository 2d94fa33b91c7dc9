"""Where TensorRT wants Q/DQ nodes: on the inputs of Conv and MatMul only, symmetric INT8
activations, no output or bias quantisation — TensorRT's recommended placement (it fuses
the rest). Kept in higher precision by default: OCRNet's softmax-weighted products (spatial
gather and attention core) and the final classifier.

A strongly typed network (TensorRT 11, and 10.x here by default) runs every layer in the
type the ONNX gives it, so layers outside Q/DQ would run FP32 and INT8 could lose to
``--fp16``: the Q/DQ graph is made on top of the FP16 graph (``float_type`` "fp16": FP16
scales, so DequantizeLinear outputs FP16; the TensorRT 11 migration guide's AutoCast +
Q/DQ recipe). With ``--trt-builder-flags`` (10.x, weakly typed) TensorRT chooses the
precision of those layers itself under its FP16 flag, so the graph stays FP32 there.
"""

from __future__ import annotations

from ocr_deploy.precision.placement import Placement


def placement(strongly_typed: bool = True) -> Placement:
    """The TensorRT placement, for a strongly or a weakly typed network."""
    return Placement(
        name="tensorrt", op_types=("Conv", "MatMul"), activation_type="int8",
        activation_symmetric=True, quantize_outputs=False, quantize_bias=False,
        reduce_range=False, float_type="fp16" if strongly_typed else "fp32",
        reason="TensorRT's recommended placement: Q/DQ on Conv/MatMul inputs, TensorRT fuses "
               "the rest; symmetric INT8 activations, as TensorRT requires; "
               + ("FP16 outside Q/DQ (a strongly typed network keeps the ONNX's types)"
                  if strongly_typed else "FP32 graph, TensorRT picks FP16 under its builder "
                  "flags"))
