"""Small hand-built segmentation cores for the end-to-end graph's tests (``onnx.helper``,
random weights), saved with their metadata; TensorFlow plays no part."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ocr_deploy.contract.metadata import INPUT_NAME, ExportMetadata, write_metadata

SIZE = (12, 16)  # (H, W): not square, so that a swapped axis shows
MEAN, STD = [120.0, 110.0, 100.0], [60.0, 55.0, 50.0]


def segnet(layout: str = "NCHW", classes: int = 4, size: tuple[int, int] = SIZE,
           channels: int = 3, stride: int = 1, labels: str = "none", pad_first: bool = True,
           normalize: bool = True, color_order: str = "RGB", shared_input: bool = False,
           seed: int = 0) -> onnx.ModelProto:
    """``image`` (``layout``) -> 3x3 conv (padded or not) -> 3x3 conv with ``stride`` ->
    1x1 classifier -> ``logits``; ``labels``: "none", "also" (an in-graph argmax too) or
    "only" (labels-only). ``shared_input``: the input also feeds a second branch (nothing
    can fold). Metadata (mean/std when ``normalize``) is written into the model."""
    rng = np.random.default_rng(seed)
    height, width = size
    weights, nodes = [], []

    def const(name: str, value) -> str:
        weights.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    x = INPUT_NAME
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", [x], ["nchw"], perm=[0, 3, 1, 2]))
        x = "nchw"
    pads = [1, 1, 1, 1] if pad_first else [0, 0, 0, 0]
    w1 = rng.normal(0, 0.02, (8, channels, 3, 3))
    nodes.append(helper.make_node("Conv", [x, const("w1", w1), const("b1", rng.normal(0, .1, 8))],
                                  ["c1"], pads=pads))
    if shared_input:
        side = const("side", rng.normal(0, 0.01, (1, 1, 1, 1)))
        nodes.append(helper.make_node("Mul", [x, side], ["side_branch"]))
    nodes.append(helper.make_node("Relu", ["c1"], ["r1"]))
    w2 = rng.normal(0, 0.3, (8, 8, 3, 3))
    nodes.append(helper.make_node("Conv", ["r1", const("w2", w2), const("b2", np.zeros(8))],
                                  ["c2"], pads=[1, 1, 1, 1], strides=[stride, stride]))
    nodes.append(helper.make_node("Relu", ["c2"], ["r2"]))
    w3 = rng.normal(0, 1.0, (classes, 8, 1, 1))
    nodes.append(helper.make_node("Conv", ["r2", const("w3", w3),
                                           const("b3", rng.normal(0, .1, classes))], ["c3"]))
    if shared_input:
        nodes.append(helper.make_node("ReduceMean", ["side_branch"], ["side_mean"],
                                      keepdims=1))
        nodes.append(helper.make_node("Add", ["c3", "side_mean"], ["c3s"]))
    logits_out = "c3s" if shared_input else "c3"
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", [logits_out], ["logits"], perm=[0, 2, 3, 1]))
    else:
        nodes.append(helper.make_node("Identity", [logits_out], ["logits"]))
    out_h = (height - (0 if pad_first else 2) - 1) // stride + 1
    out_w = (width - (0 if pad_first else 2) - 1) // stride + 1
    logits_shape = ["batch", out_h, out_w, classes] if layout == "NHWC" else \
        ["batch", classes, out_h, out_w]
    outputs, specs = [], {}
    if labels != "only":
        outputs.append(helper.make_tensor_value_info("logits", TensorProto.FLOAT, logits_shape))
        specs["logits"] = {"kind": "logits", "layout": layout, "stride": stride}
    if labels != "none":
        nodes.append(helper.make_node("ArgMax", ["logits"], ["argmax"],
                                      axis=3 if layout == "NHWC" else 1, keepdims=0))
        nodes.append(helper.make_node("Cast", ["argmax"], ["labels"], to=TensorProto.INT32))
        outputs.append(helper.make_tensor_value_info("labels", TensorProto.INT32,
                                                     ["batch", out_h, out_w]))
        specs["labels"] = {"kind": "labels", "layout": "NHW", "stride": stride}
    for index, node in enumerate(nodes):  # named, as exports are (INT8 coverage reads them)
        node.name = f"{node.op_type.lower()}_{index}"
    input_shape = ["batch", height, width, channels] if layout == "NHWC" else \
        ["batch", channels, height, width]
    graph = helper.make_graph(nodes, "segnet", [helper.make_tensor_value_info(
        INPUT_NAME, TensorProto.FLOAT, input_shape)], outputs, weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    norm = {"mean": MEAN[:channels], "std": STD[:channels], "in_graph": False} if normalize \
        else {"mean": [0.0] * channels, "std": [1.0] * channels, "in_graph": False}
    write_metadata(model, ExportMetadata(
        input_layout=layout, input_height=height, input_width=width, input_channels=channels,
        color_order=color_order, normalization=norm, num_classes=classes, outputs=specs))
    onnx.checker.check_model(model, full_check=True)
    return model


def save(model: onnx.ModelProto, folder: Path, name: str) -> Path:
    path = Path(folder) / f"{name}.onnx"
    onnx.save(model, str(path))
    return path
