"""Confusion matrix and mean IoU on hand-made cases with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ocr_deploy.metrics import confusion_matrix, mean_iou


def test_confusion_matrix_rows_are_targets():
    target = np.array([0, 0, 1, 1, 2])
    pred = np.array([0, 1, 1, 1, 0])
    np.testing.assert_array_equal(confusion_matrix(pred, target, 3),
                                  [[1, 1, 0], [0, 2, 0], [1, 0, 0]])


def test_perfect_prediction():
    target = np.array([[0, 1], [2, 2]])
    miou, per_class = mean_iou(target, target, 3)
    assert miou == 1.0
    np.testing.assert_array_equal(per_class, [1.0, 1.0, 1.0])


def test_known_ious():
    # class 0: TP 1, FP 1, FN 1 -> 1/3; class 1: TP 2, FP 1, FN 0 -> 2/3; class 2: 0/1
    target = np.array([0, 0, 1, 1, 2])
    pred = np.array([0, 1, 1, 1, 0])
    miou, per_class = mean_iou(pred, target, 3)
    np.testing.assert_allclose(per_class, [1 / 3, 2 / 3, 0.0])
    assert miou == pytest.approx(1 / 3)


def test_absent_class_is_nan_and_left_out_of_the_mean():
    target = np.array([[0, 0], [1, 1]])
    pred = np.array([[0, 1], [1, 1]])
    miou, per_class = mean_iou(pred, target, 4)  # classes 2 and 3 appear nowhere
    np.testing.assert_allclose(per_class[:2], [0.5, 2 / 3])
    assert np.isnan(per_class[2:]).all()
    assert miou == pytest.approx((0.5 + 2 / 3) / 2)


def test_class_only_predicted_counts_as_zero():
    target = np.zeros(4, int)
    pred = np.array([0, 0, 0, 1])
    miou, per_class = mean_iou(pred, target, 2)
    np.testing.assert_allclose(per_class, [0.75, 0.0])
    assert miou == pytest.approx(0.375)


def test_pooled_over_a_batch():
    target = np.array([[[0, 1]], [[1, 1]]])  # [N,H,W]
    pred = np.array([[[0, 0]], [[1, 1]]])
    _, per_class = mean_iou(pred, target, 2)
    np.testing.assert_allclose(per_class, [0.5, 2 / 3])


def test_no_pixels_gives_nan():
    miou, per_class = mean_iou(np.zeros(0, int), np.zeros(0, int), 2)
    assert math.isnan(miou) and np.isnan(per_class).all()


@pytest.mark.parametrize(("pred", "target"), [
    (np.zeros(3, int), np.zeros(4, int)),  # shapes differ
    (np.array([0, 3]), np.array([0, 1])),  # pred out of range
    (np.array([0, 1]), np.array([-1, 1])),  # target out of range
])
def test_bad_inputs_raise(pred, target):
    with pytest.raises(ValueError):
        confusion_matrix(pred, target, 3)
