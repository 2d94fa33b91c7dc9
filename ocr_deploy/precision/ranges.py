"""Activation statistics accumulated batch by batch, and the ranges computed from them.

Memory does not depend on the number of samples: per tensor, a running minimum and maximum
(pass 1) and, for the histogram methods, a fixed-width histogram of ``|x|`` over
``[0, max |x|]`` (pass 2, once the final range is known, so the streamed histogram equals
the histogram of all the data at once). From the histogram:

- ``entropy``: the clipping threshold that minimises the KL divergence between the
  reference distribution and its ``num_quantized_bins``-level quantisation (the method of
  TensorRT's entropy calibrator). The first bin's count is replaced by the second's before
  the search, as NVIDIA's pytorch-quantization does: after a ReLU most values are exactly
  zero, and that spike (zero is exactly representable anyway) would otherwise dominate the
  divergence and pull the threshold down to a few levels' width;
- ``percentile``: the upper edge of the bin where the cumulative share of ``|x|`` reaches
  the percentile.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class TensorStats:
    """Running statistics of one tensor."""

    minimum: float = np.inf
    maximum: float = -np.inf
    histogram: np.ndarray | None = None  # counts of |x| over [0, absmax], pass 2

    @property
    def absmax(self) -> float:
        return max(abs(self.minimum), abs(self.maximum))

    def update_range(self, values: np.ndarray) -> None:
        """Pass 1: fold ``values`` into the minimum and maximum."""
        if values.size:
            self.minimum = min(self.minimum, float(values.min()))
            self.maximum = max(self.maximum, float(values.max()))

    def update_histogram(self, values: np.ndarray, bins: int) -> None:
        """Pass 2: add ``values`` to the histogram of ``|x|`` (needs the final range)."""
        if self.histogram is None:
            self.histogram = np.zeros(bins, dtype=np.int64)
        self.histogram += abs_histogram(values, self.absmax, bins)


CHUNK = 1 << 20  # elements per step: bounds the temporaries of a large tensor


def abs_histogram(values: np.ndarray, absmax: float, bins: int) -> np.ndarray:
    """Counts of ``|values|`` in ``bins`` equal bins over ``[0, absmax]`` (last bin closed)."""
    counts = np.zeros(bins, dtype=np.int64)
    flat = values.reshape(-1)
    if absmax <= 0:
        counts[0] = flat.size
        return counts
    scale = np.float32(bins / absmax)
    for begin in range(0, flat.size, CHUNK):
        scaled = np.abs(flat[begin:begin + CHUNK], dtype=np.float32)
        scaled *= scale
        index = scaled.astype(np.intp)
        np.minimum(index, bins - 1, out=index)
        counts += np.bincount(index, minlength=bins)
    return counts


def percentile_threshold(histogram: np.ndarray, absmax: float, percentile: float) -> float:
    """The upper edge of the bin where the share of ``|x|`` reaches ``percentile`` %."""
    total = histogram.sum()
    if total == 0 or absmax <= 0:
        return 0.0
    cumulative = np.cumsum(histogram) / total
    index = int(np.searchsorted(cumulative, percentile / 100.0))
    return min(absmax, (index + 1) * absmax / len(histogram))


def entropy_threshold(histogram: np.ndarray, absmax: float, quantized_bins: int) -> float:
    """The clipping threshold of ``|x|`` with the least KL divergence after quantisation."""
    bins = len(histogram)
    if histogram.sum() == 0 or absmax <= 0 or bins <= quantized_bins:
        return absmax
    counts = histogram.astype(np.float64)
    counts[0] = counts[1]  # the spike of exact zeros must not decide the range
    tail = np.concatenate([np.cumsum(counts[::-1])[::-1][1:], [0.0]])  # sum beyond bin i
    best, best_bins = np.inf, bins
    for kept in range(quantized_bins, bins + 1):
        divergence = _divergence(counts[:kept], tail[kept - 1], quantized_bins)
        if divergence < best:
            best, best_bins = divergence, kept
    return best_bins * absmax / bins


def _divergence(kept: np.ndarray, outliers: float, quantized_bins: int) -> float:
    """KL(P || Q): P is ``kept`` with the outliers folded into its last bin; Q is ``kept``
    merged into ``quantized_bins`` levels and spread back over its non-empty bins."""
    reference = kept.copy()
    reference[-1] += outliers
    occupied = kept > 0
    starts = (np.arange(quantized_bins) * len(kept)) // quantized_bins
    widths = np.diff(np.append(starts, len(kept)))
    level_sums = np.add.reduceat(kept, starts)
    level_counts = np.add.reduceat(occupied.astype(np.float64), starts)
    per_bin = np.divide(level_sums, level_counts, out=np.zeros_like(level_sums),
                        where=level_counts > 0)
    candidate = np.repeat(per_bin, widths) * occupied
    p = reference / reference.sum()
    q_total = candidate.sum()
    if q_total == 0:
        return np.inf
    q = candidate / q_total
    mask = p > 0
    if np.any(q[mask] == 0):  # a reference bin with no quantised mass: smooth it
        q = np.where(mask & (q == 0), 1e-10, q)
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))
