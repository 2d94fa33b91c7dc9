"""The parameter-free OCR blocks as registered, serialisable Keras 3 layers.

The learned parts of the OCR head (the 1x1/3x3 conv-BN-ReLU stacks) are ordinary Keras
layers in the functional graph; the two blocks below are what OCRNet adds on top of them.
Import this module before loading a model that uses them (the exporter does).
"""

from __future__ import annotations

import keras
from keras import ops

PACKAGE = "ocr_deploy"


@keras.saving.register_keras_serializable(package=PACKAGE)
class SpatialGather(keras.layers.Layer):
    """Object region representations (OCRNet step 4).

    Inputs ``[pixels [B,H,W,M], soft_regions [B,H,W,K]]``; output ``[B,K,1,M]``: for each
    class k, the pixel features averaged with weights softmax over pixels of region k.
    The trailing ``1`` lets 1x1 convolutions act on the K region vectors.
    """

    def call(self, inputs):
        pixels, regions = inputs
        channels = ops.shape(pixels)[-1]
        classes = ops.shape(regions)[-1]
        pixels = ops.reshape(pixels, (-1, ops.shape(pixels)[1] * ops.shape(pixels)[2], channels))
        regions = ops.reshape(regions, (-1, ops.shape(regions)[1] * ops.shape(regions)[2], classes))
        weights = ops.softmax(ops.transpose(regions, (0, 2, 1)), axis=-1)  # over pixels
        gathered = ops.matmul(weights, pixels)  # [B,K,M]
        return ops.expand_dims(gathered, axis=2)

    def compute_output_shape(self, input_shapes):
        pixels, regions = input_shapes
        return (pixels[0], regions[-1], 1, pixels[-1])


@keras.saving.register_keras_serializable(package=PACKAGE)
class ObjectAttention(keras.layers.Layer):
    """The attention core of OCRNet (step 5): pixels attend to object regions.

    Inputs ``[query [B,H,W,D], key [B,K,1,D], value [B,K,1,D]]``; output ``[B,H,W,D]``
    = softmax(scale * Q K^T over K) V with ``scale = D ** -0.5`` applied after the first
    MatMul, as in the HRNet-OCR reference.
    """

    def call(self, inputs):
        query, key, value = inputs
        height, width, depth = ops.shape(query)[1], ops.shape(query)[2], ops.shape(query)[3]
        q = ops.reshape(query, (-1, height * width, depth))
        k = ops.squeeze(key, axis=2)
        v = ops.squeeze(value, axis=2)
        scale = float(query.shape[-1]) ** -0.5
        sim = ops.softmax(ops.matmul(q, ops.transpose(k, (0, 2, 1))) * scale, axis=-1)
        context = ops.matmul(sim, v)
        return ops.reshape(context, (-1, height, width, ops.shape(value)[-1]))

    def compute_output_shape(self, input_shapes):
        query, _, value = input_shapes
        return (*query[:3], value[-1])
