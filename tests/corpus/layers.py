"""Layers a user's own library would define (deliberately not registered with Keras).

Loading a model that uses them needs ``--custom-objects`` naming a file that imports them,
which is what the corpus does.
"""

from __future__ import annotations

import keras
from keras import ops


class MultiHeadObjectAttention(keras.layers.Layer):
    """OCR object attention split into heads, written with dynamic-batch reshapes.

    Inputs ``[query [B,H,W,D], key [B,K,D], value [B,K,D]]``; the heads are split with
    ``reshape(x, [B, -1, heads, d])`` where ``B`` is the runtime batch, the way many
    repositories write it, and scores are per head (rank 4).
    """

    def __init__(self, heads: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.heads = heads

    def _split(self, x, batch):
        depth = x.shape[-1] // self.heads
        x = ops.reshape(x, (batch, -1, self.heads, depth))
        return ops.transpose(x, (0, 2, 1, 3))  # [B, heads, N, d]

    def call(self, inputs):
        query, key, value = inputs
        batch = ops.shape(query)[0]
        height, width = ops.shape(query)[1], ops.shape(query)[2]
        q = self._split(query, batch)
        k = self._split(key, batch)
        v = self._split(value, batch)
        scale = (query.shape[-1] // self.heads) ** -0.5
        scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) / (scale ** -1)
        context = ops.matmul(ops.softmax(scores, axis=-1), v)  # [B, heads, N, d]
        context = ops.transpose(context, (0, 2, 1, 3))
        return ops.reshape(context, (batch, height, width, value.shape[-1]))

    def compute_output_shape(self, input_shapes):
        query, _, value = input_shapes
        return (*query[:3], value[-1])

    def get_config(self):
        return {**super().get_config(), "heads": self.heads}


class RegionGather(keras.layers.Layer):
    """Spatial gather: softmax over pixels of the soft regions, times the pixel features.

    Inputs ``[pixels [B,H,W,M], regions [B,H,W,K]]``; output ``[B,K,M]``; works with a
    dynamic input size.
    """

    def call(self, inputs):
        pixels, regions = inputs
        batch = ops.shape(pixels)[0]
        pixels = ops.reshape(pixels, (batch, -1, pixels.shape[-1]))
        regions = ops.reshape(regions, (batch, -1, regions.shape[-1]))
        weights = ops.softmax(ops.transpose(regions, (0, 2, 1)), axis=-1)
        return ops.matmul(weights, pixels)

    def compute_output_shape(self, input_shapes):
        pixels, regions = input_shapes
        return (pixels[0], regions[-1], pixels[-1])
