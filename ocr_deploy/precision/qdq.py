"""INT8 as explicit Q/DQ nodes, placed as the target backend wants them (its
``precision.placement.Placement``), from streamed calibration ranges.

Per-channel symmetric INT8 weights; activations from the calibrated ranges. Softmax is
never quantised. By default the softmax-weighted products of the OCR head (spatial gather
and the attention core) are excluded from quantisation, and for TensorRT the final
classifier too (``Placement.kept_by_default``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from ocr_deploy.files import private_tempdir
from ocr_deploy.graph.index import (
    GraphIndex,
    add_constant,
    opset_of,
    remove_dead,
    toposort,
    unique_name,
)
from ocr_deploy.onnxruntime_env import quantizer_output_redirected
from ocr_deploy.precision.calibrate import CalibrationResult, TensorRange
from ocr_deploy.precision.placement import Placement


def default_exclusions(model: onnx.ModelProto, placement: Placement) -> dict[str, list[str]]:
    """Nodes the placement keeps in higher precision by default, by reason."""
    finders = {"attention": attention_matmuls, "classifier": classifier_convs}
    return {reason: finders[reason](model) for reason in placement.kept_by_default}


LAYOUT_OPS = ("Transpose", "Reshape", "Squeeze", "Unsqueeze", "Mul", "Identity")


def attention_matmuls(model: onnx.ModelProto) -> list[str]:
    """MatMuls next to a Softmax (through layout ops and the scale): OCRNet's spatial
    gather and both MatMuls of the attention core."""
    index = GraphIndex(model)

    def from_softmax(tensor: str) -> bool:
        node = index.producer.get(tensor)
        while node is not None and node.op_type in LAYOUT_OPS:
            node = index.producer.get(node.input[0])
        return node is not None and node.op_type == "Softmax"

    def into_softmax(tensor: str) -> bool:
        pending = list(index.consumers.get(tensor, []))
        while pending:
            node = pending.pop()
            if node.op_type == "Softmax":
                return True
            if node.op_type in LAYOUT_OPS:
                pending.extend(index.consumers.get(node.output[0], []))
        return False

    return [n.name for n in model.graph.node if n.op_type == "MatMul"
            and (any(from_softmax(t) for t in n.input) or into_softmax(n.output[0]))]


def classifier_convs(model: onnx.ModelProto) -> list[str]:
    """The last Conv before each logits output (through Resize/Transpose/Identity)."""
    producer = GraphIndex(model).producer
    found = []
    for output in model.graph.output:
        node = producer.get(output.name)
        while node is not None and node.op_type != "Conv":
            node = producer.get(node.input[0]) if node.input else None
        if node is not None and node.name not in found:
            found.append(node.name)
    return found


FP16_QDQ_OPSET = 19  # the first opset whose DequantizeLinear takes FP16 scales


def quantize_int8(model: onnx.ModelProto, calibration: CalibrationResult, placement: Placement,
                  exclude: list[str], keep_fp32: list[str] | tuple = (),
                  record: dict | None = None) -> onnx.ModelProto:
    """A Q/DQ INT8 copy of ``model`` with ``placement``; ``exclude`` is not quantised.

    The inputs of ``placement.op_types`` are quantised, then the inputs the placement's own
    rules name (``Placement.extra_inputs``); ``record``, when given, is filled with the
    activation tensors each rule quantised (``{"op_inputs": [...], rule: [...]}``; a tensor
    another rule already quantised is listed under both).

    With ``placement.float_type`` "fp16" the Q/DQ graph is then made FP16 outside the
    integer layers (FP16 scales, so DequantizeLinear outputs FP16; opset raised to 19 for
    them): what ``precision.fp16`` keeps in FP32 stays FP32, and so do ``keep_fp32``.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import TensorData, TensorsData, save_tensors_data

    activation = QuantType.QUInt8 if placement.activation_type == "uint8" else QuantType.QInt8
    ranges = {}
    for name, tensor_range in calibration.ranges.items():
        low, high = tensor_range.bounds(placement.activation_symmetric)
        ranges[name] = TensorData(lowest=np.float32(low), highest=np.float32(high))
    excluded_outputs = [] if placement.quantize_outputs else list(placement.op_types)
    with private_tempdir("ocr-qdq-") as tmp, quantizer_output_redirected():
        cache = Path(tmp) / "ranges.json"
        save_tensors_data(TensorsData(CalibrationMethod.MinMax, ranges), cache)
        out = Path(tmp) / "int8.onnx"
        quantize_static(
            model, out, calibration_data_reader=None, quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(placement.op_types), per_channel=True,
            reduce_range=placement.reduce_range, activation_type=activation,
            weight_type=QuantType.QInt8, nodes_to_exclude=list(exclude),
            calibrate_method=CalibrationMethod.MinMax, calibration_cache_path=cache,
            extra_options={"ActivationSymmetric": placement.activation_symmetric,
                           "WeightSymmetric": True, "QuantizeBias": placement.quantize_bias,
                           "OpTypesToExcludeOutputQuantization": excluded_outputs})
        quantized = onnx.load(str(out))
    found = {"op_inputs": _op_inputs(quantized, placement.op_types)}
    for rule, inputs in placement.extra_inputs(model, list(exclude)).items():
        found[rule] = _quantize_inputs(quantized, inputs, calibration.ranges)
    if record is not None:
        record.clear()
        record.update(found)
    if placement.quantize_outputs:
        _float_outputs(quantized, exclude, placement.folded_activations)
    if placement.float_type == "fp16":
        return _on_fp16(quantized, list(keep_fp32))
    return quantized


def _op_inputs(model: onnx.ModelProto, op_types: tuple[str, ...]) -> list[str]:
    """The activation tensors quantised at the inputs of ``op_types`` (weights aside)."""
    index = GraphIndex(model)
    found = []
    for node in model.graph.node:
        if node.op_type not in op_types:
            continue
        for name in node.input:
            dq = index.producer.get(name)
            q = index.producer.get(dq.input[0]) if dq is not None and \
                dq.op_type == "DequantizeLinear" else None
            if q is not None and q.op_type == "QuantizeLinear" and q.input[0] not in \
                    index.initializers and q.input[0] not in found:
                found.append(q.input[0])
    return found


def _quantize_inputs(model: onnx.ModelProto, inputs: list[tuple[str, int]],
                     ranges: dict[str, TensorRange]) -> list[str]:
    """Put a symmetric INT8 Q/DQ pair (scale from the calibrated range, zero point 0) on
    each ``(node name, input index)`` of the quantised ``model`` not already read through a
    DequantizeLinear, for that reader only; the tensors quantised, in order (already
    quantised ones included, those without a calibrated range left out)."""
    from onnx import helper

    nodes = {n.name: n for n in model.graph.node}
    producer = {out: n for n in model.graph.node for out in n.output}
    done = []
    for name, slot in inputs:
        node = nodes.get(name)
        if node is None or slot >= len(node.input):
            continue
        tensor = node.input[slot]
        feeder = producer.get(tensor)
        if feeder is not None and feeder.op_type == "DequantizeLinear":
            q = producer.get(feeder.input[0])
            done.append(q.input[0] if q is not None else tensor)
            continue
        if tensor not in ranges:
            continue
        magnitude = ranges[tensor].bounds(symmetric=True)[1]
        scale = add_constant(model, f"{tensor}_rule_scale",
                             np.array(magnitude / 127 if magnitude > 0 else 1.0, np.float32))
        zero = add_constant(model, f"{tensor}_rule_zero_point", np.array(0, np.int8))
        quantized = unique_name(model, f"{tensor}_rule_quantized")
        model.graph.node.append(helper.make_node(
            "QuantizeLinear", [tensor, scale, zero], [quantized],
            name=unique_name(model, f"{tensor}_rule_QuantizeLinear")))
        restored = unique_name(model, f"{tensor}_rule_dequantized")
        model.graph.node.append(helper.make_node(
            "DequantizeLinear", [quantized, scale, zero], [restored],
            name=unique_name(model, f"{tensor}_rule_DequantizeLinear")))
        node.input[slot] = restored
        done.append(tensor)
    if done:
        toposort(model)
    return done


def _on_fp16(model: onnx.ModelProto, keep_fp32: list[str]) -> onnx.ModelProto:
    from ocr_deploy.graph.forms import upgrade_opset
    from ocr_deploy.precision.fp16 import convert_fp16

    if opset_of(model) < FP16_QDQ_OPSET:
        model = upgrade_opset(model, FP16_QDQ_OPSET)
    return convert_fp16(model, keep_fp32=keep_fp32)


def _float_outputs(model: onnx.ModelProto, exclude: list[str],
                   folded: tuple[str, ...]) -> None:
    """Make excluded nodes really run in float where outputs are quantised.

    Around a node the quantiser skipped, its neighbours' Q/DQ nodes can still wrap it
    (``DQ -> node -> [Relu] -> Q``), and ONNX Runtime then fuses it into an integer kernel,
    quantising its weights itself. Removing the Q/DQ pairs on the excluded node's output
    (and on a Relu/Clip right after it) leaves it in float; its consumers read the float
    tensor directly.
    """
    index = GraphIndex(model)
    by_name = {n.name: n for n in model.graph.node}
    for name in exclude:
        node = by_name.get(name)
        pending = list(node.output) if node is not None else []
        while pending:
            tensor = pending.pop()
            for consumer in index.consumers.get(tensor, []):
                if consumer.op_type in folded:
                    pending.append(consumer.output[0])
                    continue
                dequantizers = index.consumers.get(consumer.output[0], [])
                if consumer.op_type == "QuantizeLinear" and not any(
                        dq.op_type != "DequantizeLinear" or dq.output[0] in index.graph_outputs
                        for dq in dequantizers):
                    for dq in dequantizers:  # readers take the float tensor; Q/DQ go dead
                        for reader in index.consumers.get(dq.output[0], []):
                            reader.input[:] = [tensor if i == dq.output[0] else i
                                               for i in reader.input]
    remove_dead(model)
