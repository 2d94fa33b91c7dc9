"""Q/DQ placement per backend and the INT8 coverage report, on a hand-built ONNX model.

ONNX Runtime's placement must make its CPU optimiser run integer kernels (asserted on the
op types of the optimised graph); TensorRT's puts Q/DQ on Conv/MatMul inputs only."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx_models import residual_segnet, small_segnet, small_segnet_metadata, write_inputs

from ocr_deploy.backends.onnxruntime.placement import (
    FOLDED_ACTIVATIONS,
    INTEGER_KERNELS,
)
from ocr_deploy.backends.onnxruntime.placement import placement as onnxruntime_placement
from ocr_deploy.backends.tensorrt.placement import placement as tensorrt_placement
from ocr_deploy.contract.metadata import INPUT_NAME
from ocr_deploy.precision.calibrate import CalibrationSettings, calibrate
from ocr_deploy.precision.calibration_data import load_samples
from ocr_deploy.precision.coverage import integer_coverage, layer_macs
from ocr_deploy.precision.qdq import quantize_int8

KEPT = {"classifier": ["classifier"]}


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    inputs = write_inputs(folder, 16)
    model = small_segnet()
    ranges = calibrate(model.SerializeToString(), load_samples(folder, small_segnet_metadata()),
                       CalibrationSettings("minmax"), folder / "cache", quiet=True)
    return model, ranges, inputs


def _optimised(model: onnx.ModelProto, tmp_path) -> onnx.ModelProto:
    """What the ONNX Runtime build backend saves (extended level, CPU)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return onnx.load(str(tmp_path / "optimised.onnx"))


def _run(model: onnx.ModelProto, inputs: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {INPUT_NAME: inputs})[0]


def test_onnxruntime_placement_runs_integer_kernels(calibrated, tmp_path):
    model, ranges, inputs = calibrated
    placement = onnxruntime_placement("x86_64", {"avx512_vnni"})
    quantized = quantize_int8(model, ranges, placement, KEPT["classifier"])
    optimised = _optimised(quantized, tmp_path)
    ops = [n.op_type for n in optimised.graph.node]
    assert ops.count("QLinearConv") == 3  # conv1..3; the classifier is kept
    assert {"QLinearAdd", "QLinearConcat"} <= set(ops)
    assert "Relu" not in ops and ops.count("Conv") + ops.count("FusedConv") == 1
    agreement = (_run(quantized, inputs).argmax(1) == _run(model, inputs).argmax(1)).mean()
    assert agreement > 0.9

    report = integer_coverage(model, quantized, KEPT, optimised, INTEGER_KERNELS,
                              FOLDED_ACTIVATIONS)
    macs = layer_macs(model)
    assert macs["conv1"] == ("Conv", 16 * 16 * 8 * 3 * 9)
    assert report["total_macs"] == sum(m for _, m in macs.values())
    assert report["integer_macs"] == report["total_macs"] - macs["classifier"][1]
    assert report["integer_layers"] == 3 and report["layers"] == 4
    (left,) = report["not_integer"]
    assert left["name"] == "classifier" and "classifier" in left["reason"]


@pytest.mark.parametrize("strongly_typed", [True, False])
def test_tensorrt_placement_quantises_conv_inputs_only(calibrated, strongly_typed):
    model, ranges, inputs = calibrated
    placement = tensorrt_placement(strongly_typed)
    quantized = quantize_int8(model, ranges, placement, KEPT["classifier"])
    producers = {out: n for n in quantized.graph.node for out in n.output}
    for node in quantized.graph.node:  # (the residual Add shares conv2's input: DQ'd too)
        fed_by_dq = [producers[i].op_type == "DequantizeLinear" for i in node.input[:2]
                     if i in producers]
        if node.op_type == "Conv" and node.name != "classifier":
            assert all(fed_by_dq) and len(fed_by_dq) == 2
        elif node.op_type in ("Concat", "MaxPool", "Resize") or node.name == "classifier":
            assert not any(fed_by_dq), node.name
    quant_inputs = [n.input[0] for n in quantized.graph.node if n.op_type == "QuantizeLinear"]
    assert not any(producers[t].op_type == "Conv" for t in quant_inputs if t in producers)
    zero_points = [t for t in quantized.graph.initializer if "zero_point" in t.name]
    assert zero_points and all(t.data_type == onnx.TensorProto.INT8 for t in zero_points)
    dq_scales = {n.input[1] for n in quantized.graph.node if n.op_type == "DequantizeLinear"}
    scales = {t.name: t.data_type for t in quantized.graph.initializer if t.name in dq_scales}
    opset = next(o.version for o in quantized.opset_import if o.domain in ("", "ai.onnx"))
    if strongly_typed:  # R3: on top of the FP16 graph, so what is not INT8 runs FP16
        assert placement.float_type == "fp16" and opset >= 19
        assert set(scales.values()) == {onnx.TensorProto.FLOAT16}
        classifier = next(n for n in quantized.graph.node if n.name == "classifier")
        weights = {t.name: t.data_type for t in quantized.graph.initializer}
        assert weights[classifier.input[1]] == onnx.TensorProto.FLOAT16
    else:  # weakly typed (10.x builder flags): TensorRT picks the float precision itself
        assert placement.float_type == "fp32" and opset == 17
        assert set(scales.values()) == {onnx.TensorProto.FLOAT}
    onnx.checker.check_model(quantized, full_check=True)
    agreement = (_run(quantized, inputs).argmax(1) == _run(model, inputs).argmax(1)).mean()
    assert agreement > 0.9
    report = integer_coverage(model, quantized, KEPT)
    assert report["integer_layers"] == 3 and report["judged_from"].startswith("the Q/DQ graph")


def test_excluded_and_unquantised_layers_get_their_reason(calibrated, tmp_path):
    model, ranges, _ = calibrated
    kept = {"requested": ["conv2"], **KEPT}
    quantized = quantize_int8(model, ranges, onnxruntime_placement("x86_64", {"avx2"}),
                              kept["requested"] + kept["classifier"])
    report = integer_coverage(model, quantized, kept, _optimised(quantized, tmp_path),
                              INTEGER_KERNELS, FOLDED_ACTIVATIONS)
    reasons = {layer["name"]: layer["reason"] for layer in report["not_integer"]}
    assert "--keep-fp32" in reasons["conv2"] and "classifier" in reasons["classifier"]
    fp32 = integer_coverage(model, model, {}, _optimised(model, tmp_path), INTEGER_KERNELS,
                            FOLDED_ACTIVATIONS)
    assert fp32["integer_mac_share"] == 0.0
    assert {layer["reason"] for layer in fp32["not_integer"]} == {
        "not quantised by the placement"}


@pytest.mark.parametrize("machine, flags, activation, reduce_range", [
    ("x86_64", {"avx2", "avx512_vnni"}, "uint8", False),
    ("x86_64", {"avx2"}, "uint8", True),
    ("aarch64", set(), "int8", False),
])
def test_onnxruntime_activation_type_follows_the_cpu(machine, flags, activation, reduce_range):
    placement = onnxruntime_placement(machine, flags)
    assert placement.activation_type == activation and placement.reduce_range == reduce_range
    assert placement.quantize_outputs and "Concat" in placement.op_types
    assert not tensorrt_placement().quantize_outputs
    assert tensorrt_placement().activation_symmetric


def test_default_exclusions_belong_to_the_placement():
    from ocr_deploy.precision.qdq import default_exclusions

    model = small_segnet()
    assert default_exclusions(model, tensorrt_placement()) == {"attention": [],
                                                               "classifier": ["classifier"]}
    assert default_exclusions(model, onnxruntime_placement("x86_64", {"avx512_vnni"})) == {
        "attention": []}


@pytest.fixture(scope="module")
def residual_calibrated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("residual")
    inputs = write_inputs(folder, 8, seed=1)
    model = residual_segnet()
    ranges = calibrate(model.SerializeToString(), load_samples(folder, small_segnet_metadata()),
                       CalibrationSettings("minmax"), folder / "cache", quiet=True)
    return model, ranges, inputs


def _read_through_dq(model: onnx.ModelProto) -> dict[str, list[bool]]:
    """Per node: whether each input is read through a DequantizeLinear."""
    producers = {out: n for n in model.graph.node for out in n.output}
    return {n.name: [getattr(producers.get(i), "op_type", "") == "DequantizeLinear"
                     for i in n.input] for n in model.graph.node}


def _without_rules(placement):
    from dataclasses import asdict

    from ocr_deploy.precision.placement import Placement

    return Placement(**{**asdict(placement), "rules": ()})


@pytest.mark.parametrize("strongly_typed", [True, False])
def test_tensorrt_residual_rule_quantises_the_skip_input_of_adds_after_a_conv(
        residual_calibrated, strongly_typed):
    """NVIDIA's residual-Add rule: the skip input of an Add that follows a quantised Conv,
    for that Add only; Adds with no convolution branch, of a constant, or after a
    convolution kept in float are left alone."""
    model, ranges, inputs = residual_calibrated
    placement, record = tensorrt_placement(strongly_typed), {}
    kept = ["kept", "classifier"]
    quantized = quantize_int8(model, ranges, placement, kept, record=record)
    assert record["residual_add"] == ["up", "left_out"]
    assert record["op_inputs"] == [INPUT_NAME, "s", "p"]  # stem, body/left/right, down
    dq = _read_through_dq(quantized)
    assert dq["fuse"] == [True, False] and dq["pair"] == [True, False]
    for name in ("joined", "bias", "body_bias", "kept_add", "kept", "classifier", "upsample"):
        assert not any(dq[name]), name
    plain = quantize_int8(model, ranges, _without_rules(placement), kept)
    before = _read_through_dq(plain)
    assert before["fuse"] == [False, False] and before["pair"] == [False, False]
    assert {name: flags for name, flags in dq.items() if name in before
            and name not in ("fuse", "pair")} == {
        name: flags for name, flags in before.items() if name not in ("fuse", "pair")}
    assert dq["plain"] == [False, True]  # "s" is read through conv body's DQ: ONNX Runtime's
    count = [sum(n.op_type == "QuantizeLinear" for n in m.graph.node) for m in (plain, quantized)]
    assert count[1] == count[0] + 2  # one Q/DQ pair per skip input, nothing else
    if strongly_typed:
        dq_scales = {n.input[1] for n in quantized.graph.node if n.op_type == "DequantizeLinear"}
        assert {t.data_type for t in quantized.graph.initializer if t.name in dq_scales} == {
            onnx.TensorProto.FLOAT16}
    onnx.checker.check_model(quantized, full_check=True)
    agreement = (_run(quantized, inputs).argmax(1) == _run(model, inputs).argmax(1)).mean()
    assert agreement > 0.9


def test_tensorrt_residual_rule_scale_is_the_calibrated_range(residual_calibrated):
    model, ranges, _ = residual_calibrated
    quantized = quantize_int8(model, ranges, tensorrt_placement(False), ["kept", "classifier"])
    scales = {t.name: onnx.numpy_helper.to_array(t) for t in quantized.graph.initializer}
    q = next(n for n in quantized.graph.node if n.op_type == "QuantizeLinear"
             and n.input[0] == "up")
    assert scales[q.input[1]] == pytest.approx(ranges.ranges["up"].bounds(True)[1] / 127)
    assert scales[q.input[2]] == 0


def test_tensorrt_residual_rule_records_a_skip_input_already_quantised(calibrated):
    """small_segnet's residual Add reads conv2's input as its skip input: already read
    through conv2's DequantizeLinear, so the rule lists it and adds nothing."""
    model, ranges, _ = calibrated
    record = {}
    quantized = quantize_int8(model, ranges, tensorrt_placement(), KEPT["classifier"],
                              record=record)
    plain = quantize_int8(model, ranges, _without_rules(tensorrt_placement()),
                          KEPT["classifier"])
    assert record["residual_add"] == ["conv1_relu"]
    assert [n.op_type for n in quantized.graph.node] == [n.op_type for n in plain.graph.node]


def test_onnxruntime_placement_has_no_extra_rules(residual_calibrated):
    model, ranges, _ = residual_calibrated
    record = {}
    quantize_int8(model, ranges, onnxruntime_placement("x86_64", {"avx512_vnni"}), [],
                  record=record)
    assert list(record) == ["op_inputs"] and "up" in record["op_inputs"]  # Add is quantised
