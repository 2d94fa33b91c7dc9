"""Small hand-built ONNX models for the layers that have nothing to do with TensorFlow
(calibration, Q/DQ placement, coverage): built with ``onnx.helper``, random weights."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ocr_deploy.contract.metadata import INPUT_NAME, ExportMetadata

SIZE, CLASSES = 16, 4


def small_segnet(seed: int = 0, size: int = SIZE, tied: bool = False) -> onnx.ModelProto:
    """NCHW ``image [N,3,size,size]`` -> ``logits [N,4,size,size]`` through Conv/Relu, a residual
    Add, MaxPool, Resize, Concat and a 1x1 classifier: the op mix of a segmentation net.
    ``tied``: every classifier weight is 1 + ~1e-4, so every pixel's logits differ by far
    less than their size (near ties) and FP16 rounds the weights, and the logits, together."""
    rng = np.random.default_rng(seed)
    weights = []

    def conv(name, x, c_in, c_out, kernel, relu=True):
        w = rng.normal(0, np.sqrt(2 / (c_in * kernel * kernel)), (c_out, c_in, kernel, kernel))
        bias = rng.normal(0, 0.1, c_out)
        if tied and not relu:
            w, bias = 1 + 1e-4 * rng.normal(0, 1, w.shape), np.zeros(c_out)
        weights.append(numpy_helper.from_array(w.astype(np.float32), f"{name}_w"))
        weights.append(numpy_helper.from_array(bias.astype(np.float32), f"{name}_b"))
        pad = kernel // 2
        nodes = [helper.make_node("Conv", [x, f"{name}_w", f"{name}_b"], [f"{name}_out"],
                                  name=name, pads=[pad] * 4)]
        if relu:
            nodes.append(helper.make_node("Relu", [f"{name}_out"], [f"{name}_relu"],
                                          name=f"{name}_relu"))
        return nodes, nodes[-1].output[0]

    nodes = []
    n1, a = conv("conv1", INPUT_NAME, 3, 8, 3)
    n2, b = conv("conv2", a, 8, 8, 3)
    nodes += n1 + n2
    nodes.append(helper.make_node("Add", [a, b], ["residual"], name="residual"))
    nodes.append(helper.make_node("MaxPool", ["residual"], ["pooled"], name="pool",
                                  kernel_shape=[2, 2], strides=[2, 2]))
    n3, c = conv("conv3", "pooled", 8, 16, 3)
    nodes += n3
    weights.append(numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"))
    nodes.append(helper.make_node("Resize", [c, "", "scales"], ["upsampled"], name="up",
                                  mode="linear"))
    nodes.append(helper.make_node("Concat", ["residual", "upsampled"], ["features"],
                                  name="concat", axis=1))
    n4, _ = conv("classifier", "features", 24, CLASSES, 1, relu=False)
    nodes += n4
    nodes.append(helper.make_node("Identity", ["classifier_out"], ["logits"], name="out"))
    return _model(nodes, weights, size, "small_segnet")


def residual_segnet(seed: int = 0, size: int = SIZE) -> onnx.ModelProto:
    """NCHW ``image`` -> ``logits`` through the Add patterns TensorRT's placement rules
    judge (HRNet-like): ``fuse`` adds a convolution (``body``, then a constant bias) to an
    upsampled branch
    (``up``, read by no convolution); ``pair`` adds two convolutions (``right`` is the later);
    ``plain`` adds a shared Relu output; ``bias`` adds a constant; ``kept_add`` follows the
    ``kept`` convolution (to be kept in float); a 1x1 ``classifier`` ends it."""
    rng = np.random.default_rng(seed)
    weights = [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
               numpy_helper.from_array(np.full((1, 8, 1, 1), 0.5, np.float32), "offset")]

    def conv(name, x, c_out=8):
        weights.append(numpy_helper.from_array(
            rng.normal(0, 0.4, (c_out, 8 if x != INPUT_NAME else 3, 3, 3)).astype(np.float32),
            f"{name}_w"))
        return helper.make_node("Conv", [x, f"{name}_w"], [f"{name}_out"], name=name,
                                pads=[1] * 4)

    def add(name, a, b):
        return helper.make_node("Add", [a, b], [name], name=name)

    nodes = [conv("stem", INPUT_NAME), helper.make_node("Relu", ["stem_out"], ["s"], name="relu"),
             helper.make_node("MaxPool", ["s"], ["p"], name="pool", kernel_shape=[2, 2],
                              strides=[2, 2]),
             conv("down", "p"),
             helper.make_node("Resize", ["down_out", "", "scales"], ["up"], name="upsample",
                              mode="nearest"),
             conv("body", "s"), add("body_bias", "body_out", "offset"),
             add("fuse", "up", "body_bias"),
             conv("left", "s"), conv("right", "s"), add("pair", "left_out", "right_out"),
             add("plain", "fuse", "s"), add("joined", "plain", "pair"),
             add("bias", "joined", "offset"),
             conv("kept", "bias"), add("kept_add", "kept_out", "up"),
             conv("classifier", "kept_add", CLASSES)]
    nodes[-1].output[0] = "logits"
    return _model(nodes, weights, size, "residual_segnet")


def small_segnet_metadata(size: int = SIZE) -> ExportMetadata:
    """The metadata that goes with ``small_segnet`` (NCHW, 4 classes, no normalisation)."""
    return ExportMetadata(input_layout="NCHW", input_height=size, input_width=size,
                          num_classes=CLASSES,
                          outputs={"logits": {"kind": "logits", "layout": "NCHW", "stride": 1}})


def write_inputs(folder, count: int, seed: int = 0, size: int = SIZE) -> np.ndarray:
    """``count`` float inputs for ``small_segnet`` as one ``.npy`` file in ``folder``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    inputs = rng.normal(0, 1, (count, 3, size, size)).astype(np.float32)
    np.save(folder / "inputs.npy", inputs)
    return inputs


def small_attention_segnet(seed: int = 0, size: int = SIZE) -> onnx.ModelProto:
    """NCHW ``image`` -> ``logits`` through OCRNet's attention pattern: features transposed
    and reshaped to pixels (``Transpose``, ``Reshape``), ``MatMul`` -> ``Softmax`` ->
    ``MatMul`` over 4 "objects", reshaped back and concatenated with the features."""
    rng = np.random.default_rng(seed)

    def weight(name, *shape):
        return numpy_helper.from_array(rng.normal(0, 0.5, shape).astype(np.float32), name)

    weights = [weight("stem_w", 8, 3, 3, 3), weight("stem_b", 8), weight("keys", 8, 4),
               weight("values", 4, 8), weight("head_w", CLASSES, 16, 1, 1),
               weight("head_b", CLASSES),
               numpy_helper.from_array(np.array([0, size * size, 8], np.int64), "to_pixels"),
               numpy_helper.from_array(np.array([0, size, size, 8], np.int64), "to_map")]
    nodes = [
        helper.make_node("Conv", [INPUT_NAME, "stem_w", "stem_b"], ["stem"], pads=[1] * 4),
        helper.make_node("Relu", ["stem"], ["features"]),
        helper.make_node("Transpose", ["features"], ["nhwc"], perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", ["nhwc", "to_pixels"], ["pixels"]),
        helper.make_node("MatMul", ["pixels", "keys"], ["scores"]),
        helper.make_node("Softmax", ["scores"], ["attention"], axis=-1),
        helper.make_node("MatMul", ["attention", "values"], ["context"]),
        helper.make_node("Reshape", ["context", "to_map"], ["context_nhwc"]),
        helper.make_node("Transpose", ["context_nhwc"], ["context_map"], perm=[0, 3, 1, 2]),
        helper.make_node("Concat", ["features", "context_map"], ["joined"], axis=1),
        helper.make_node("Conv", ["joined", "head_w", "head_b"], ["logits"])]
    return _model(nodes, weights, size, "small_attention_segnet")


def outer_read_chain(size: int = SIZE) -> onnx.ModelProto:
    """``image`` -> three ReLU-like steps -> an ``If`` whose branches add the first step's
    output, read from the outer graph (a subgraph reading an earlier tensor) -> ``logits``."""
    def arm(name):
        return helper.make_graph(
            [helper.make_node("Add", ["first", "third"], [f"{name}_sum"])], name, [],
            [helper.make_tensor_value_info(f"{name}_sum", TensorProto.FLOAT, None)])

    nodes = [helper.make_node("Relu", [INPUT_NAME], ["first"]),
             helper.make_node("Sigmoid", ["first"], ["second"]),
             helper.make_node("Relu", ["second"], ["third"]),
             helper.make_node("If", ["always"], ["joined"], then_branch=arm("then"),
                              else_branch=arm("else")),
             helper.make_node("Conv", ["joined", "head_w"], ["logits"])]
    weights = [numpy_helper.from_array(np.array(True), "always"),
               numpy_helper.from_array(np.ones((CLASSES, 3, 1, 1), np.float32), "head_w")]
    return _model(nodes, weights, size, "outer_read_chain")


def _model(nodes, weights, size: int, name: str) -> onnx.ModelProto:
    """``image [N,3,size,size]`` -> ``logits [N,4,size,size]`` through ``nodes``, checked."""
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                       ["batch", CLASSES, size, size])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.checker.check_model(model, full_check=True)
    return model
