"""Label agreement with ties set aside (NumPy only: no TensorFlow, usable by every stage).

A pixel is a *tie* when the two best reference scores are within ``2 * tol`` of each other:
with both sides off by at most ``tol``, its argmax may legitimately go either way, so a
disagreement there says nothing about the model. Export parity (``export.parity``) counts
ties this way; a build's agreement check can import the same functions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Agreement:
    """How many pixels agree, overall and outside ties."""

    agreement: float  # fraction of all pixels with equal labels
    agreement_excl_ties: float  # the same among pixels that are not ties
    tie_pixels: int  # disagreeing pixels that are ties


def top2_gap(scores: np.ndarray, axis: int = -1) -> np.ndarray:
    """Per pixel, the gap between the two best ``scores`` over ``axis`` (inf with one class)."""
    if scores.shape[axis] < 2:
        return np.full(np.delete(scores.shape, axis % scores.ndim), np.inf)
    top2 = np.sort(np.moveaxis(scores, axis, -1), axis=-1)[..., -2:].astype(np.float64)
    return top2[..., 1] - top2[..., 0]


def tie_mask(scores: np.ndarray, tol: float, axis: int = -1) -> np.ndarray:
    """Boolean map of the pixels whose two best ``scores`` (over ``axis``) are within
    ``2 * tol``; all False when there is one class."""
    return top2_gap(scores, axis) <= 2 * tol


def label_agreement(reference_scores: np.ndarray, same: np.ndarray, tol: float,
                    axis: int = -1) -> Agreement:
    """Agreement of labels (``same``: where the candidate's label equals the reference's),
    with ties judged on ``reference_scores`` at tolerance ``tol``."""
    ties = tie_mask(reference_scores, tol, axis)
    decided = ~ties
    return Agreement(float(same.mean()) if same.size else 1.0,
                     float(same[decided].mean()) if decided.any() else 1.0,
                     int((ties & ~same).sum()))
