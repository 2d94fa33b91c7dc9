"""From the core's outputs to labels at the image's size, in the end-to-end graph.

What the runtime's post-processing does (``contract.postprocess``): scores are resized
bilinearly (half-pixel centres) and then reduced with an argmax; a labels-only model's map
is resized nearest. Two forms compute the scores' labels:

- ``dense``: ``Resize`` of the whole score map to the image size, then the argmax.
- ``boundary``: what the runtime does on the CPU. Where the four source pixels an output
  pixel blends share one class, the blend has that class too, so only the output pixels of
  *mixed cells* (source pixels ``(r, c)`` whose 2x2 neighbourhood ``r..r+1, c..c+1`` holds
  more than one class) are blended: the coarse argmax, its nearest upsampling (through
  each output pixel's top-left source pixel), ``NonZero`` of the mixed cells, a ``Gather``
  of their four corner score vectors, the blend of every pixel of those cells with the
  runtime's weights in the runtime's order (rows, then columns), the argmax and one
  ``ScatterND``; the scores are read as rows ``[N*h*w, K]``, gathered by flat index.
  For a fixed size (constant tables) the result equals the runtime's labels
  bit for bit wherever the runtime also blends boundary pixels only; on maps with
  boundaries everywhere the runtime blends every pixel, and a pixel of a one-class cell
  can then come out otherwise at an exact tie. The blocks of pixels per cell are padded by
  repeating a cell's last pixel, which writes the same value twice.

Argmax forms: ``argmax`` (ONNX ``ArgMax``, int64, then a cast) and ``compare``: a chain of
``Greater``/``Where``/``Max`` over the K class planes (the first maximum wins, as numpy's
``argmax``), for TensorRT, which turns ``ArgMax`` into a TopK layer that users report slow
on segmentation maps (onnx/onnx-tensorrt #669, #671, #792).
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from ocr_deploy.graph.emit import Emitter
from ocr_deploy.graph.label_tables import bilinear_table, cell_table, nearest_table

LABEL_FORMS = ("dense", "boundary")
ARGMAX_FORMS = ("argmax", "compare")


def cast_labels(emit: Emitter, index: str, dtype: int, uint8_compute: bool = True) -> str:
    """Integer class indices ``index`` as ONNX type ``dtype``. Without ``uint8_compute``
    (TensorRT converts uint8 only to and from float32/float16) a uint8 result goes through
    float32 first: exact, as every class id (< 2**24) is an integer float32 holds exactly."""
    if dtype == TensorProto.UINT8 and not uint8_compute:
        index = emit.op("Cast", [index], "labels_float", to=TensorProto.FLOAT)
    return emit.op("Cast", [index], "labels_cast", to=dtype)


def argmax(emit: Emitter, scores: str, axis: int, classes: int, form: str, dtype: int,
           uint8_compute: bool = True) -> str:
    """Class index over ``axis`` of ``scores`` (that axis removed), as ONNX type ``dtype``
    (``uint8_compute``: see ``cast_labels``)."""
    if form == "argmax":
        index = emit.op("ArgMax", [scores], "argmax", axis=axis, keepdims=0)
        return cast_labels(emit, index, dtype, uint8_compute)
    planes = [scores] if classes == 1 else emit.op(
        "Split", [scores, emit.const([1] * classes, np.int64)], "class", outputs=classes,
        axis=axis)
    best, index = planes[0], emit.op("Cast", [emit.op("Less", [planes[0], planes[0]])],
                                     "first_class", to=TensorProto.INT32)  # zeros
    for k, plane in enumerate(planes[1:], 1):
        better = emit.op("Greater", [plane, best], "better")
        index = emit.op("Where", [better, emit.const(k, np.int32), index], "best_class")
        best = emit.op("Max", [best, plane], "best_score")
    index = emit.op("Squeeze", [index, emit.const([axis], np.int64)], "class_index")
    return cast_labels(emit, index, dtype, uint8_compute)


def dense_labels(emit: Emitter, scores: str, layout: str, out: tuple, classes: int,
                 argmax_form: str, dtype: int, want_scores: bool, resize_layout: str,
                 uint8_compute: bool = True) -> tuple[str, str | None]:
    """Labels ``[N,H,W]`` (and NHWC float32 scores at the image size when ``want_scores``)
    from ``scores`` in ``layout``, resized as ``resize_layout``; ``out``: ``(H, W)`` ints or
    int64 scalar tensors."""
    if layout != resize_layout:
        scores = emit.op("Transpose", [scores], "scores_layout",
                         perm=[0, 3, 1, 2] if resize_layout == "NCHW" else [0, 2, 3, 1])
    batch = emit.op("Slice", [emit.op("Shape", [scores], "scores_shape"),
                              emit.const([0], np.int64), emit.const([1], np.int64)], "batch")
    height, width = (_vector(emit, side) for side in out)
    classes_dim = emit.const([classes], np.int64)
    dims = [batch, classes_dim, height, width] if resize_layout == "NCHW" else \
        [batch, height, width, classes_dim]
    sizes = emit.op("Concat", dims, "scores_size", axis=0)
    resized = emit.op("Resize", [scores, "", "", sizes], "scores_resized", mode="linear",
                      coordinate_transformation_mode="half_pixel")
    axis = 1 if resize_layout == "NCHW" else 3
    labels = argmax(emit, resized, axis, classes, argmax_form, dtype, uint8_compute)
    if not want_scores:
        return labels, None
    if resize_layout == "NCHW":
        resized = emit.op("Transpose", [resized], "scores_nhwc", perm=[0, 2, 3, 1])
    return labels, resized


def boundary_labels(emit: Emitter, scores: str, coarse_size: tuple[int, int], out: tuple,
                    largest: tuple[int, int], classes: int, argmax_form: str, dtype: int,
                    table_dtype, uint8_compute: bool = True, nonzero_bool: bool = True
                    ) -> str:
    """Labels ``[N,H,W]`` from NHWC ``scores`` ``[N,h,w,K]``, blending only the pixels of
    mixed cells (see the module docstring). The class codes are uint8 where that fits and
    the target computes on uint8 (``uint8_compute``), else int32, converted to ``dtype`` at
    the output; ``nonzero_bool``: NonZero takes the bool mask (else a float32 one)."""
    (size_h, size_w), (out_h, out_w) = coarse_size, out
    small = classes <= 255 and uint8_compute
    code_type = TensorProto.UINT8 if small else TensorProto.INT32
    code_np = np.uint8 if small else np.int32
    rows_of = emit.op("Reshape", [scores, emit.const([-1, classes], np.int64)], "score_rows")
    coarse = argmax(emit, rows_of, 1, classes, argmax_form, code_type)  # [N*h*w]
    grid = emit.op("Slice", [emit.op("Shape", [scores], "scores_shape"),
                             emit.const([0], np.int64), emit.const([3], np.int64)], "grid")
    coarse = emit.op("Reshape", [coarse, grid], "coarse")  # [N,h,w]
    below = emit.const(np.minimum(np.arange(size_h) + 1, size_h - 1), np.int64, "below")
    beside = emit.const(np.minimum(np.arange(size_w) + 1, size_w - 1), np.int64, "beside")
    down = emit.op("Gather", [coarse, below], "down", axis=1)
    neighbours = (down, emit.op("Gather", [coarse, beside], "right", axis=2),
                  emit.op("Gather", [down, beside], "diagonal", axis=2))
    same = None
    for neighbour in neighbours:
        equal = emit.op("Equal", [coarse, neighbour], "same_class")
        same = equal if same is None else emit.op("And", [same, equal], "one_class")
    code = emit.op("Where", [same, coarse, emit.const(classes, code_np, "mixed_code")],
                   "cell_code")
    rows = bilinear_table(emit, size_h, out_h, table_dtype)
    cols = bilinear_table(emit, size_w, out_w, table_dtype)
    # columns first: gathering single elements is slow, whole rows are fast
    labels = emit.op("Gather", [emit.op("Gather", [code, cols.low], "code_columns", axis=2),
                                rows.low], "code_pixels", axis=1)  # [N,H,W]
    row_cells = cell_table(emit, rows, size_h, out_h, largest[0])
    col_cells = cell_table(emit, cols, size_w, out_w, largest[1])
    covered = emit.op("And", [emit.op("Unsqueeze", [row_cells.covered,
                                                    emit.const([1], np.int64)]),
                              col_cells.covered], "covered")  # [h,w]
    todo = emit.op("And", [emit.op("Not", [same], "mixed"), covered], "todo")
    if not nonzero_bool:
        todo = emit.op("Cast", [todo], "todo_float", to=TensorProto.FLOAT)
    found = emit.op("Transpose", [emit.op("NonZero", [todo], "mixed_cells")], "cells",
                    perm=[1, 0])  # [M,3]: image, row, column
    image, row, col = emit.op("Split", [found, emit.const([1, 1, 1], np.int64)], "cell",
                              outputs=3, axis=1)  # [M,1] each
    axis1 = emit.const([1], np.int64)
    row_vec, col_vec = (emit.op("Squeeze", [t, axis1], "cell_index") for t in (row, col))
    row2 = emit.op("Unsqueeze", [emit.op("Gather", [below, row_vec]), axis1], "cell_below")
    col2 = emit.op("Unsqueeze", [emit.op("Gather", [beside, col_vec]), axis1], "cell_beside")

    def corner(r: str, c: str) -> str:  # [M,1,K]: row (image * h + r) * w + c of the scores
        index = emit.op("Add", [emit.op("Mul", [emit.op("Add", [emit.op(
            "Mul", [image, emit.const(size_h, np.int64)]), r]), emit.const(size_w, np.int64)]),
            c], "corner_index")
        return emit.op("Gather", [rows_of, index], "corner", axis=0)

    pixel_rows = emit.op("Gather", [row_cells.pixels, row_vec], "pixel_rows")  # [M,BY]
    pixel_cols = emit.op("Gather", [col_cells.pixels, col_vec], "pixel_cols")  # [M,BX]
    last = emit.const([-1], np.int64)

    def weights(table: str, pixels: str, axes: str) -> str:
        return emit.op("Unsqueeze", [emit.op("Gather", [table, pixels]), axes], "pixel_weight")

    wy, wy_rest = (weights(t, pixel_rows, last) for t in (rows.weight, rows.rest))  # [M,BY,1]
    col_axes = emit.const([1, 3], np.int64)
    wx, wx_rest = (weights(t, pixel_cols, col_axes) for t in (cols.weight, cols.rest))

    def blend(first: str, second: str, rest: str, weight: str) -> str:
        return emit.op("Add", [emit.op("Mul", [first, rest]), emit.op("Mul", [second, weight])],
                       "blend")

    at_left = blend(corner(row, col), corner(row2, col), wy_rest, wy)  # [M,BY,K]
    at_right = blend(corner(row, col2), corner(row2, col2), wy_rest, wy)
    axis2 = emit.const([2], np.int64)
    blended = blend(emit.op("Unsqueeze", [at_left, axis2]),
                    emit.op("Unsqueeze", [at_right, axis2]), wx_rest, wx)  # [M,BY,BX,K]
    values = argmax(emit, blended, 3, classes, argmax_form, code_type)  # [M,BY,BX]
    shape = emit.op("Shape", [values], "blocks")
    coordinates = [emit.op("Unsqueeze", [emit.op("Expand", [
        emit.op("Unsqueeze", [t, axes]), shape]), last], "coordinate")
        for t, axes in ((image, axis2), (pixel_rows, axis2), (pixel_cols, axis1))]
    indices = emit.op("Concat", coordinates, "pixel_index", axis=-1)  # [M,BY,BX,3]
    labels = emit.op("ScatterND", [labels, indices, values], "labels_blended")
    if code_type != dtype:
        labels = cast_labels(emit, labels, dtype, uint8_compute)
    return labels


def nearest_labels(emit: Emitter, labels: str, coarse_size: tuple[int, int], out: tuple,
                   dtype: int, uint8_compute: bool = True) -> str:
    """A ``[N,h,w]`` label map resized nearest to ``out`` as ``postprocess.resize_labels``:
    cast first where the target gathers uint8 (ONNX Runtime: a quarter of the bytes moved),
    else gathered in the core's integer type and cast at the output."""
    if uint8_compute:
        labels = cast_labels(emit, labels, dtype)
    rows = nearest_table(emit, coarse_size[0], out[0])
    cols = nearest_table(emit, coarse_size[1], out[1])
    labels = emit.op("Gather", [emit.op("Gather", [labels, cols], "label_columns", axis=2),
                                rows], "labels_nearest", axis=1)
    return labels if uint8_compute else cast_labels(emit, labels, dtype, uint8_compute)


def _vector(emit: Emitter, side) -> str:
    if isinstance(side, int):
        return emit.const([side], np.int64, "side")
    return emit.op("Unsqueeze", [side, emit.const([0], np.int64)], "side")
