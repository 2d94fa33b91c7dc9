"""Pillow's BILINEAR resize of uint8 images, as ONNX nodes, bit for bit.

The runtime resizes camera images with Pillow (``Image.resize(..., BILINEAR)``): a separable
triangle filter whose support widens with the shrink factor (an antialiasing filter when
shrinking, plain bilinear with half-pixel centres when enlarging), computed in fixed point:
22-bit integer coefficients, rounding to uint8 after the horizontal pass and again after
the vertical one (Pillow's ``Resample.c``). ONNX ``Resize`` computes something else (its
``antialias=1`` uses other coefficients, and TensorRT has no antialias at all), so the
graph does what Pillow does: for each pass, one ``Gather`` of the source rows per filter
tap, an integer multiply-add with the coefficients, ``+ 2**21``, ``// 2**22``. Every step
is exact in int32, so the result equals Pillow's to the bit. (Pillow also clips to 0..255,
for filters with negative lobes; the triangle's coefficients are positive and sum to at
most ``2**22 + taps / 2``, so a bilinear pass never leaves that range.)

The coefficients are constants for a fixed image size (``pillow_taps``: Pillow's double
arithmetic, operation for operation) and computed in the graph from the image's shape for
dynamic sizes: in float64 for ONNX Runtime (bit-identical again) or float32 for TensorRT,
which has no float64 (a coefficient may then differ by one unit in 2**22, moving a pixel
by at most one grey level, rarely). Work is planar (``[N,C,H,W]``): gathering whole rows
is fast where gathering the 3-byte pixels of an ``[N,H,W,C]`` image one by one is not; the
horizontal pass runs on the transposed image (``[N,C,W,H]``). The two transposes that get
there are separated by a ``Gather`` of the channels, which also puts them in the model's
colour order: ONNX Runtime would otherwise merge the two into one NHWC->NCWH transpose,
which it runs 30-50x slower than both together (55 ms against 1-2 ms at 1024x2048).
For ONNX Runtime the image stays uint8 through the transposes and each pass casts its input
to int32 once; for TensorRT it is int32 from the start.
"""

from __future__ import annotations

import math

import numpy as np
from onnx import TensorProto, helper

from ocr_deploy.graph.emit import Emitter

PRECISION_BITS = 22  # Pillow: 32 - 8 - 2
_HALF, _UNIT = 1 << (PRECISION_BITS - 1), 1 << PRECISION_BITS


def filter_size(size: int, out: int) -> int:
    """The most source pixels one output pixel reads (Pillow's ``ksize``)."""
    return math.ceil(max(size / out, 1.0)) * 2 + 1


def pillow_taps(size: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """Source index ``[out, taps]`` (int64) and fixed-point coefficient ``[out, taps]``
    (int32) of each output pixel when Pillow resizes one axis from ``size`` to ``out``:
    ``precompute_coeffs`` + ``normalize_coeffs_8bpc`` in the same float64 operations and
    order. Taps past a pixel's support have coefficient 0 (index clamped)."""
    scale = size / out
    support = max(scale, 1.0)  # BILINEAR support 1.0, widened when shrinking
    center = (np.arange(out) + 0.5) * scale
    first = np.maximum(np.floor(center - support + 0.5), 0).astype(np.int64)
    count = np.minimum(np.floor(center + support + 0.5).astype(np.int64), size) - first
    taps = int(count.max())
    position = first[:, None] + np.arange(taps)[None, :]
    distance = np.abs((position.astype(np.float64) - center[:, None] + 0.5) * (1.0 / support))
    weight = np.where((distance < 1.0) & (np.arange(taps)[None, :] < count[:, None]),
                      1.0 - distance, 0.0)
    total = np.zeros(out)
    for tap in range(taps):  # Pillow sums in tap order
        total = total + weight[:, tap]
    coeffs = np.floor(0.5 + (weight / total[:, None]) * _UNIT).astype(np.int32)
    return np.minimum(position, size - 1), coeffs


def resize_image(emit: Emitter, image: str, size: tuple, out: tuple[int, int],
                 largest: tuple[int, int], channels: list[int], table_dtype,
                 uint8_layout: bool) -> str:
    """``[N,H,W,C]`` uint8 (or float32 0..255) ``image`` -> planar ``[N,C,out_h,out_w]``
    (uint8 or int32 values 0..255) with its channels taken in the order ``channels``,
    resized as Pillow does.

    ``size``: ``(H, W)`` as ints (fixed) or as int64 scalar tensors (dynamic, at most
    ``largest``). ``table_dtype``: float64 or float32 for computed coefficients.
    ``uint8_layout``: transposes run on uint8 and each pass casts its input to int32 once
    (ONNX Runtime), else everything is int32 from the start (TensorRT).
    """
    def int32(x: str) -> str:
        return emit.op("Cast", [x], "pass_int32", to=TensorProto.INT32) if uint8_layout else x

    if not uint8_layout:
        image = emit.op("Cast", [image], "image_int32", to=TensorProto.INT32)
    planar = emit.op("Transpose", [image], "planar", perm=[0, 3, 1, 2])
    (height, width), (out_h, out_w) = size, out
    horizontal = not (isinstance(width, int) and width == out_w)
    if horizontal or channels != sorted(channels):
        planar = emit.op("Gather", [planar, emit.const(channels, np.int64)], "model_order",
                         axis=1)
    if horizontal:
        columns = int32(emit.op("Transpose", [planar], "columns", perm=[0, 1, 3, 2]))
        columns = _pass(emit, columns, _taps(emit, width, out_w, largest[1], table_dtype),
                        "horizontal")
        if uint8_layout:
            columns = emit.op("Cast", [columns], "horizontal_uint8", to=TensorProto.UINT8)
        planar = emit.op("Transpose", [columns], "rows", perm=[0, 1, 3, 2])
    if not (isinstance(height, int) and height == out_h):
        planar = _pass(emit, int32(planar), _taps(emit, height, out_h, largest[0],
                                                  table_dtype), "vertical")
    return planar


def _pass(emit: Emitter, x: str, taps: list[tuple[str, str]], hint: str) -> str:
    """One Pillow pass along axis 2 of int32 ``x``: the sum of gathered rows times their
    coefficients, rounded and shifted as Pillow does."""
    total = None
    for index, coeff in taps:
        term = emit.op("Mul", [emit.op("Gather", [x, index], f"{hint}_rows", axis=2), coeff],
                       f"{hint}_term")
        total = term if total is None else emit.op("Add", [total, term], f"{hint}_sum")
    total = emit.op("Add", [total, emit.const(_HALF, np.int32)], f"{hint}_rounded")
    return emit.op("Div", [total, emit.const(_UNIT, np.int32)], f"{hint}_shifted")


def _taps(emit: Emitter, size, out: int, largest: int, dtype) -> list[tuple[str, str]]:
    """(index ``[out]``, coefficient ``[out, 1]``) per tap: constants for an int ``size``,
    computed from the tensor ``size`` otherwise."""
    if isinstance(size, int):
        index, coeffs = pillow_taps(size, out)
        return [(emit.const(index[:, t], hint="taps_index"),
                 emit.const(coeffs[:, t:t + 1], hint="taps_coeff"))
                for t in range(index.shape[1])]
    index, coeffs = _computed_taps(emit, size, out, filter_size(largest, out), dtype)
    return [(emit.op("Gather", [index, emit.const(t, np.int64)], "tap_index", axis=1),
             emit.op("Gather", [coeffs, emit.const([t], np.int64)], "tap_coeff", axis=1))
            for t in range(filter_size(largest, out))]


def _computed_taps(emit: Emitter, size: str, out: int, taps: int, dtype) -> tuple[str, str]:
    """``pillow_taps`` as graph nodes over the int64 scalar ``size`` (see the module doc)."""
    def c(value):
        return emit.const(value, dtype, "taps_const")

    real = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    extent = emit.op("Cast", [size], "taps_size", to=real)
    scale = emit.op("Div", [extent, c(out)], "taps_scale")
    support = emit.op("Max", [scale, c(1.0)], "taps_support")
    center = emit.op("Mul", [c((np.arange(out) + 0.5)[:, None]), scale], "taps_center")
    low = emit.op("Add", [emit.op("Sub", [center, support]), c(0.5)], "taps_low")
    first = emit.op("Max", [emit.op("Floor", [low]), c(0.0)], "taps_first")
    high = emit.op("Floor", [emit.op("Add", [emit.op("Add", [center, support]), c(0.5)])])
    count = emit.op("Sub", [emit.op("Min", [high, extent]), first], "taps_count")
    steps = c(np.arange(taps)[None, :])
    position = emit.op("Add", [first, steps], "taps_position")  # [out, taps], integral
    offset = emit.op("Add", [emit.op("Sub", [position, center]), c(0.5)], "taps_offset")
    inverse = emit.op("Div", [c(1.0), support], "taps_inverse")
    distance = emit.op("Abs", [emit.op("Mul", [offset, inverse])], "taps_distance")
    inside = emit.op("And", [emit.op("Less", [distance, c(1.0)]),
                             emit.op("Less", [steps, count])], "taps_inside")
    weight = emit.op("Where", [inside, emit.op("Sub", [c(1.0), distance]), c(0.0)],
                     "taps_weight")
    total = None
    for tap in range(taps):  # in tap order, as Pillow sums
        column = emit.op("Gather", [weight, emit.const([tap], np.int64)], "taps_column",
                         axis=1)
        total = column if total is None else emit.op("Add", [total, column], "taps_total")
    scaled = emit.op("Mul", [emit.op("Div", [weight, total]), c(float(_UNIT))])
    coeffs = emit.op("Cast", [emit.op("Floor", [emit.op("Add", [c(0.5), scaled])])],
                     "taps_coeffs", to=TensorProto.INT32)
    last = emit.op("Sub", [extent, c(1.0)], "taps_last")
    index = emit.op("Cast", [emit.op("Min", [position, last])], "taps_index",
                    to=TensorProto.INT64)
    return index, coeffs
