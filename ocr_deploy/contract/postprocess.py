"""From model outputs back to each image's size.

Scores (logits) are resized bilinearly (half-pixel centres) and *then* reduced with argmax:
that keeps the class boundaries sub-pixel accurate, where nearest-resizing a label map makes
blocky edges. A model that only outputs labels is resized with nearest neighbour.
"""

from __future__ import annotations

import numpy as np

ROWS_PER_BLOCK = 128  # output rows resized at once: bounds memory on large images
PIXELS_PER_BLOCK = 1 << 16  # boundary pixels blended at once
DENSE_ABOVE = 0.25  # fraction of boundary pixels above which every pixel is blended
SCORE_KINDS = ("logits", "probabilities")  # per-class scores (probabilities: after a softmax)


def scores_output(meta) -> str | None:
    """The name of the per-class scores output (logits, or probabilities for a model that
    ends in a softmax), or None for a labels-only model."""
    for kind in SCORE_KINDS:
        name = meta.output_of_kind(kind)
        if name is not None:
            return name
    return None


def label_dtype(num_classes: int) -> np.dtype:
    """uint8 when the classes fit (PNG-friendly), else int32."""
    return np.dtype(np.uint8 if 0 < num_classes <= 256 else np.int32)


def scores_hwk(output: np.ndarray, index: int, layout: str) -> np.ndarray:
    """Image ``index`` of a logits output as an ``[h,w,K]`` view."""
    return output[index].transpose(1, 2, 0) if layout == "NCHW" else output[index]


def resize_scores(scores: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of ``[h,w,K]`` scores to ``[height,width,K]`` float32."""
    if scores.shape[:2] == (height, width):
        return np.ascontiguousarray(scores, np.float32)
    rows = bilinear_axis(scores.shape[0], height)
    cols = bilinear_axis(scores.shape[1], width)
    return _resize_rows(scores, rows, cols, 0, height)


def labels_from_scores(scores: np.ndarray, height: int, width: int,
                       dtype=np.uint8) -> np.ndarray:
    """``argmax`` over ``[h,w,K]`` scores resized bilinearly to ``height x width``.

    Where the four source pixels an output pixel blends share one class, the blend has that
    class too (a convex combination keeps the inequalities), so only pixels near class
    boundaries are blended; the result equals ``resize_scores(...).argmax(-1)`` up to float
    rounding at exact ties.
    """
    if scores.shape[:2] == (height, width):
        return scores.argmax(axis=-1).astype(dtype)
    rows, cols = bilinear_axis(scores.shape[0], height), bilinear_axis(scores.shape[1], width)
    (top, bottom, _), (left, right, _) = rows, cols
    coarse = scores.argmax(axis=-1).astype(dtype)
    labels = coarse[top][:, left]
    mixed = labels != coarse[top][:, right]
    for corner in (coarse[bottom][:, left], coarse[bottom][:, right]):
        mixed |= labels != corner
    if mixed.mean() > DENSE_ABOVE:  # boundaries everywhere: blending whole rows is faster
        for start in range(0, height, ROWS_PER_BLOCK):
            stop = min(start + ROWS_PER_BLOCK, height)
            labels[start:stop] = _resize_rows(scores, rows, cols, start, stop).argmax(axis=-1)
    else:
        _blend_pixels(scores, rows, cols, labels, *np.nonzero(mixed))
    return labels


def labels_from_outputs(outputs: dict[str, np.ndarray], meta) -> np.ndarray:
    """Class indices ``[N,h,w]`` at the model's output resolution: the ``labels`` output
    when the graph has one, else the argmax of the logits."""
    labels_name = meta.output_of_kind("labels")
    if labels_name in outputs:
        return outputs[labels_name].astype(np.int32)
    name = scores_output(meta)
    axis = 1 if meta.outputs[name].get("layout") == "NCHW" else -1
    return outputs[name].argmax(axis=axis).astype(np.int32)


def resize_labels(labels: np.ndarray, height: int, width: int, dtype=np.uint8) -> np.ndarray:
    """Nearest-neighbour resize of a ``[h,w]`` label map (half-pixel centres)."""
    if labels.shape == (height, width):
        return labels.astype(dtype)
    rows = nearest_index(labels.shape[0], height)
    cols = nearest_index(labels.shape[1], width)
    return labels[rows[:, None], cols[None, :]].astype(dtype)


def bilinear_axis(size: int, out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices (low, high) and float32 weights of ``high`` for bilinear sampling of
    one axis from ``size`` to ``out`` with half-pixel centres (clamped at the edges)."""
    position = np.clip((np.arange(out) + 0.5) * (size / out) - 0.5, 0, size - 1)
    low = np.floor(position).astype(np.intp)
    high = np.minimum(low + 1, size - 1)
    return low, high, (position - low).astype(np.float32)


def _resize_rows(scores: np.ndarray, rows, cols, start: int, stop: int) -> np.ndarray:
    low, high, weight = (a[start:stop] for a in rows)
    weight = weight[:, None, None]
    block = scores[low] * (1 - weight) + scores[high] * weight  # [rows, w, K]
    left, right, cweight = cols
    cweight = cweight[None, :, None]
    return block[:, left] * (1 - cweight) + block[:, right] * cweight


def _blend_pixels(scores: np.ndarray, rows, cols, labels: np.ndarray, ys: np.ndarray,
                  xs: np.ndarray) -> None:
    """Set ``labels[ys, xs]`` to the argmax of the bilinear blend at those pixels, with the
    same operations in the same order as ``_resize_rows`` (rows, then columns)."""
    (top, bottom, row_weight), (left, right, col_weight) = rows, cols
    for start in range(0, ys.size, PIXELS_PER_BLOCK):
        y, x = ys[start:start + PIXELS_PER_BLOCK], xs[start:start + PIXELS_PER_BLOCK]
        wy, wx = row_weight[y, None], col_weight[x, None]
        at_left = scores[top[y], left[x]] * (1 - wy) + scores[bottom[y], left[x]] * wy
        at_right = scores[top[y], right[x]] * (1 - wy) + scores[bottom[y], right[x]] * wy
        labels[y, x] = (at_left * (1 - wx) + at_right * wx).argmax(axis=-1)


def nearest_index(size: int, out: int) -> np.ndarray:
    """Source index of each output pixel's centre, floor((i + 0.5) * size / out), exactly."""
    return np.minimum((2 * np.arange(out) + 1) * size // (2 * out), size - 1)
