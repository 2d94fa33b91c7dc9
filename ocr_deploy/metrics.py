"""Segmentation metrics in NumPy: confusion matrix and (mean) intersection over union."""

from __future__ import annotations

import numpy as np


def confusion_matrix(pred: np.ndarray, target: np.ndarray, num_classes: int,
                     ignore_index: int | None = None) -> np.ndarray:
    """Pixel counts: ``matrix[t, p]`` = how many pixels of class ``t`` were predicted ``p``.

    ``pred`` and ``target`` are integer label maps of the same shape (any rank), with values
    in ``[0, num_classes)``; pixels whose target is ``ignore_index`` (e.g. 255, Cityscapes'
    "void") are left out. A mismatch or an out-of-range value raises ``ValueError``.
    Returns a ``[num_classes, num_classes]`` int64 array.
    """
    pred = np.asarray(pred)
    target = np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {pred.shape} differs from target shape {target.shape}")
    pred = pred.ravel().astype(np.int64)
    target = target.ravel().astype(np.int64)
    if ignore_index is not None:
        keep = target != ignore_index
        pred, target = pred[keep], target[keep]
    for name, values in (("pred", pred), ("target", target)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name} has values outside [0, {num_classes}): "
                             f"{values.min()}..{values.max()}")
    counts = np.bincount(target * num_classes + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def mean_iou(pred: np.ndarray, target: np.ndarray, num_classes: int,
             ignore_index: int | None = None) -> tuple[float, np.ndarray]:
    """Mean IoU over all pixels of ``pred`` against ``target`` (pooled, not per image),
    leaving out pixels whose target is ``ignore_index``.

    Returns ``(miou, per_class_iou)``. The IoU of class c is TP / (TP + FP + FN). A class
    absent from both ``pred`` and ``target`` has no IoU: its entry is NaN and it is left
    out of the mean (``miou`` is NaN only if every class is absent, i.e. no pixels).
    """
    return iou_from_confusion(confusion_matrix(pred, target, num_classes, ignore_index))


def iou_from_confusion(matrix: np.ndarray) -> tuple[float, np.ndarray]:
    """``(miou, per_class_iou)`` of a confusion matrix (``confusion_matrix``; matrices of
    several batches add up), with absent classes left out as ``mean_iou`` says."""
    matrix = np.asarray(matrix, np.float64)
    true_positive = np.diag(matrix)
    union = matrix.sum(axis=0) + matrix.sum(axis=1) - true_positive
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(union > 0, true_positive / union, np.nan)
    present = ~np.isnan(per_class)
    miou = float(per_class[present].mean()) if present.any() else float("nan")
    return miou, per_class
