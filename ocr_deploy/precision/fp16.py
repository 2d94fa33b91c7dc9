"""FP16 as a mixed-precision graph: FP16 weights and Cast nodes, FP32 inputs and outputs.

What TensorRT 11 requires (strongly typed networks) and 10.x accepts; runs on ONNX
Runtime CPU too. Ops prone to overflow or precision loss in FP16 stay in FP32.
"""

from __future__ import annotations

import onnx

# Softmax and the reductions behind it overflow or lose mass in FP16; the rest of the
# list is ONNX Runtime's default block list (ops without FP16 kernels).
OVERFLOW_PRONE = ["Softmax", "Exp", "Pow", "ReduceSum", "ReduceMean", "ReduceL2", "Log"]


def convert_fp16(model: onnx.ModelProto, keep_fp32: list[str] | None = None,
                 block_ops: list[str] | None = None) -> onnx.ModelProto:
    """An FP16 copy of ``model``; ``keep_fp32`` node names and ``block_ops`` stay FP32."""
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    from ocr_deploy.graph.index import toposort

    blocked = sorted(set(DEFAULT_OP_BLOCK_LIST) | set(block_ops or OVERFLOW_PRONE))
    converted = convert_float_to_float16(model, keep_io_types=True, op_block_list=blocked,
                                         node_block_list=list(keep_fp32 or []))
    toposort(converted)  # the converter may append the input Casts after their readers
    return converted
