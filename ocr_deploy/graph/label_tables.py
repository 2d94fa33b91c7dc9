"""Sampling tables of the runtime's post-processing, for the end-to-end graph.

Constants for a fixed image size, taken from the runtime itself
(``postprocess.bilinear_axis``, ``postprocess.nearest_index``); graph nodes over the image
size for dynamic sizes, with the same operations in the same order (float64 for ONNX
Runtime gives the same tables; TensorRT has no float64 and computes them in float32).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from onnx import TensorProto, helper

from ocr_deploy.contract.postprocess import bilinear_axis, nearest_index
from ocr_deploy.graph.emit import Emitter


@dataclass
class Axis:
    """Bilinear sampling of one axis: tensor names of the source rows ``low`` and ``high``
    (int64 ``[out]``), the weight of ``high`` and its complement ``1 - weight`` (float32);
    ``values``: the numpy tables when the size is fixed."""

    low: str
    high: str
    weight: str
    rest: str
    values: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None


@dataclass
class Cells:
    """The output pixels that sample from each source row (or column) ``r``: ``pixels``
    ``[size, per_cell]`` int64 (the first pixels of ``r`` in order, the last one repeated to
    fill), and ``covered`` ``[size]`` bool (some pixel samples from ``r``)."""

    pixels: str
    covered: str
    per_cell: int


def bilinear_table(emit: Emitter, size: int, out, dtype) -> Axis:
    """``bilinear_axis(size, out)`` for an int ``out``, or computed for a tensor ``out``."""
    if isinstance(out, int):
        low, high, weight = bilinear_axis(size, out)
        return Axis(emit.const(low, np.int64, "low"), emit.const(high, np.int64, "high"),
                    emit.const(weight, np.float32, "weight"),
                    emit.const(1 - weight, np.float32, "rest"), (low, high, weight))
    real = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    steps = emit.op("Cast", [_range(emit, out)], "axis_steps", to=real)
    ratio = emit.op("Div", [emit.const(size, dtype),
                            emit.op("Cast", [out], "axis_out", to=real)], "axis_ratio")
    centre = emit.op("Mul", [emit.op("Add", [steps, emit.const(0.5, dtype)]), ratio])
    position = emit.op("Sub", [centre, emit.const(0.5, dtype)], "axis_position")
    position = emit.op("Min", [emit.op("Max", [position, emit.const(0.0, dtype)]),
                               emit.const(size - 1, dtype)], "axis_clipped")
    floor = emit.op("Floor", [position], "axis_floor")
    low = emit.op("Cast", [floor], "axis_low", to=TensorProto.INT64)
    high = emit.op("Min", [emit.op("Add", [low, emit.const(1, np.int64)]),
                           emit.const(size - 1, np.int64)], "axis_high")
    weight = emit.op("Cast", [emit.op("Sub", [position, floor])], "axis_weight",
                     to=TensorProto.FLOAT)
    rest = emit.op("Sub", [emit.const(1.0, np.float32), weight], "axis_rest")
    return Axis(low, high, weight, rest)


def nearest_table(emit: Emitter, size: int, out) -> str:
    """``nearest_index(size, out)`` as int64 ``[out]`` (integer arithmetic: exact)."""
    if isinstance(out, int):
        return emit.const(nearest_index(size, out), np.int64, "nearest")
    steps = _range(emit, out)
    centre = emit.op("Add", [emit.op("Mul", [steps, emit.const(2, np.int64)]),
                             emit.const(1, np.int64)], "nearest_centre")
    index = emit.op("Div", [emit.op("Mul", [centre, emit.const(size, np.int64)]),
                            emit.op("Mul", [out, emit.const(2, np.int64)])], "nearest_index")
    return emit.op("Min", [index, emit.const(size - 1, np.int64)], "nearest")


def cell_table(emit: Emitter, axis: Axis, size: int, out, largest: int) -> Cells:
    """Which output pixels have ``low == r``, for each source row ``r`` of ``axis``
    (``out`` output pixels, at most ``largest`` when dynamic)."""
    if axis.values is not None:
        low = axis.values[0]
        first = np.searchsorted(low, np.arange(size))
        count = np.bincount(low, minlength=size)
        per_cell = int(count.max())
        covered = count > 0
        pixels = np.clip(first[:, None] + np.minimum(np.arange(per_cell)[None, :],
                                                      np.maximum(count - 1, 0)[:, None]),
                         0, out - 1)
        return Cells(emit.const(pixels, np.int64, "cell_pixels"),
                     emit.const(covered, np.bool_, "cell_covered"), per_cell)
    # at most ceil(largest / size) pixels per row, plus the clamped half rows at each edge
    per_cell = math.ceil(1.5 * largest / size) + 2
    rows = emit.const(np.arange(size)[:, None], np.int64, "cell_rows")
    low = emit.op("Unsqueeze", [axis.low, emit.const([0], np.int64)], "cell_low")  # [1,out]
    axes = emit.const([1], np.int64)
    first = emit.op("ReduceSum", [emit.op("Cast", [emit.op("Less", [low, rows])],
                                          to=TensorProto.INT64), axes], "cell_first",
                    keepdims=1)
    count = emit.op("ReduceSum", [emit.op("Cast", [emit.op("Equal", [low, rows])],
                                          to=TensorProto.INT64), axes], "cell_count",
                    keepdims=1)  # [size,1]
    last = emit.op("Max", [emit.op("Sub", [count, emit.const(1, np.int64)]),
                           emit.const(0, np.int64)], "cell_last")
    offsets = emit.op("Min", [emit.const(np.arange(per_cell)[None, :], np.int64), last])
    pixels = emit.op("Add", [first, offsets], "cell_pixel")
    top = emit.op("Sub", [out, emit.const(1, np.int64)], "cell_top")
    pixels = emit.op("Min", [emit.op("Max", [pixels, emit.const(0, np.int64)]), top],
                     "cell_pixels")
    covered = emit.op("Greater", [emit.op("Squeeze", [count, axes]),
                                  emit.const(0, np.int64)], "cell_covered")
    return Cells(pixels, covered, per_cell)


def _range(emit: Emitter, out: str) -> str:
    return emit.op("Range", [emit.const(0, np.int64), out, emit.const(1, np.int64)], "steps")
