"""Hand-built ONNX artifacts for the C ABI tests, for what the exported fixtures lack: more
than 256 classes (uint16 labels) and a greyscale input. One 3x3 convolution from the
image to K logits, with ``ocr_deploy.*`` metadata as ocr-export writes it."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def handmade_onnx(path: Path, classes: int, channels: int, size: int = 16) -> Path:
    """An NHWC model ``image [N,size,size,channels] -> logits [N,size,size,classes]``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from ocr_deploy.metadata import ExportMetadata, write_metadata

    weights = np.random.default_rng(classes).normal(0, 0.05, (classes, channels, 3, 3))
    nodes = [helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2]),
             helper.make_node("Conv", ["nchw", "w"], ["scores"], pads=[1, 1, 1, 1]),
             helper.make_node("Transpose", ["scores"], ["logits"], perm=[0, 2, 3, 1])]
    graph = helper.make_graph(
        nodes, "handmade",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", size, size,
                                                                    channels])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", size, size,
                                                                     classes])],
        [numpy_helper.from_array(weights.astype(np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    mean, std = [127.5] * channels, [64.0] * channels
    write_metadata(model, ExportMetadata(
        input_height=size, input_width=size, input_channels=channels, num_classes=classes,
        normalization={"mean": mean, "std": std, "in_graph": False},
        outputs={"logits": {"kind": "logits", "layout": "NHWC", "stride": 1}}))
    onnx.save(model, str(path))
    return path
