"""Turn uint8 RGB images into the input an exported model expects, from its metadata.

Pure numpy (no TensorFlow): resize to the model's input size (bilinear, half-pixel
centres as in Keras), normalise unless the graph does it, and lay out NHWC or NCHW.
"""

from __future__ import annotations

import numpy as np

from ocr_deploy.images import resize_bilinear
from ocr_deploy.metadata import ExportMetadata


def to_model_input(images: np.ndarray, meta: ExportMetadata) -> np.ndarray:
    """``[N,H,W,3]`` uint8 images already at the model's size -> float32 model input."""
    x = images.astype(np.float32)
    norm = meta.normalization
    if not norm.get("in_graph", False):
        x = (x - np.float32(norm["mean"])) / np.float32(norm["std"])
    if meta.input_layout == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x)


def resize_to_model(image: np.ndarray, meta: ExportMetadata) -> np.ndarray:
    """Resize one uint8 ``[H,W,3]`` image to the model's input size."""
    return resize_bilinear(image, meta.input_height, meta.input_width)


def labels_from_outputs(outputs: dict[str, np.ndarray], meta: ExportMetadata) -> np.ndarray:
    """Per-pixel class indices ``[N,h,w]`` from a run's outputs (``labels`` or argmax)."""
    labels_name = meta.output_of_kind("labels")
    if labels_name in outputs:
        return outputs[labels_name].astype(np.int32)
    logits = outputs[meta.output_of_kind("logits")]
    axis = 1 if meta.outputs["logits"].get("layout") == "NCHW" else -1
    return logits.argmax(axis=axis).astype(np.int32)
