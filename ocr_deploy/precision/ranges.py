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

import functools
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


CHUNK = 1 << 16  # elements per step: the temporaries stay in cache


def abs_histogram(values: np.ndarray, absmax: float, bins: int) -> np.ndarray:
    """Counts of ``|values|`` in ``bins`` equal bins over ``[0, absmax]`` (last bin closed):
    ``|x|`` falls in bin ``min(int(|x| * float32(bins / absmax)), bins - 1)``, float32."""
    flat = values.reshape(-1)
    counts = np.zeros(bins, dtype=np.int64)
    if absmax <= 0:
        counts[0] = flat.size
        return counts
    scale, top = np.float32(bins / absmax), np.float32(bins - 1)
    size = min(CHUNK, flat.size)
    scaled, index = np.empty(size, np.float32), np.empty(size, np.intp)
    for begin in range(0, flat.size, CHUNK):
        step = min(CHUNK, flat.size - begin)
        work, bin_of = scaled[:step], index[:step]
        np.abs(flat[begin:begin + step], out=work)
        np.multiply(work, scale, out=work)
        np.minimum(work, top, out=work)  # clipping before the cast gives the same bin
        bin_of[:] = work  # truncation toward zero
        counts += np.bincount(bin_of, minlength=bins)
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
    """The clipping threshold of ``|x|`` with the least KL divergence after quantisation.

    Every candidate's divergence is first estimated in closed form (``_estimates``, prefix
    sums); only the candidates within ``2 * ESTIMATE_ERROR`` of the least estimate are
    computed exactly (``_divergence``), in order, so the result is the first exact minimum
    over all candidates, as a plain scan would find it."""
    bins = len(histogram)
    if histogram.sum() == 0 or absmax <= 0 or bins <= quantized_bins:
        return absmax
    counts = histogram.astype(np.float64)
    counts[0] = counts[1]  # the spike of exact zeros must not decide the range
    if counts.sum() == 0:  # every candidate's divergence is infinite
        return bins * absmax / bins
    tail = np.concatenate([np.cumsum(counts[::-1])[::-1][1:], [0.0]])  # sum beyond bin i
    candidates = np.arange(quantized_bins, bins + 1)
    estimates = _estimates(counts, quantized_bins)
    near = ~(estimates > np.min(estimates) + 2 * ESTIMATE_ERROR)  # NaN counts as near
    best, best_bins = np.inf, bins
    for kept in candidates[near]:
        divergence = _divergence(counts[:kept], tail[kept - 1], quantized_bins)
        if divergence < best:
            best, best_bins = divergence, int(kept)
    return best_bins * absmax / bins


# Bound on |estimate - _divergence| with margin: both sum <= 2048 terms of total magnitude
# <= 2 * 37 (probabilities summing to 1 times logs of counts below 2**53), so each is within
# ~1e-11 of the true value; ties closer than this are settled by the exact computation.
ESTIMATE_ERROR = 1e-9


def _estimates(counts: np.ndarray, quantized_bins: int) -> np.ndarray:
    """``_divergence`` of every candidate (keeping ``quantized_bins`` ... all bins), in closed
    form. With ``c`` the counts, ``T`` their
    total and ``P(n)`` the sum of the first ``n``, keeping ``L`` bins gives ``p_i = c_i / T``
    (bin ``L-1`` also holds the outliers) and ``q_i = m_j / P(L)`` on the non-empty bins of
    level ``j`` (``m_j``: the mean count over them), so the first ``L-1`` bins contribute
    ``(sum c log c - P(L-1) log T - sum_j A_j log m_j + P(L-1) log P(L)) / T``, ``A_j``
    being the counts of level ``j`` before bin ``L-1``; bin ``L-1`` is added on its own."""
    total = counts.sum()
    candidates = np.arange(quantized_bins, len(counts) + 1)
    prefix = np.concatenate([[0.0], np.cumsum(counts)])
    occupied = np.concatenate([[0.0], np.cumsum(counts > 0)])
    plogp = np.concatenate([[0.0], np.cumsum(counts * np.log(np.maximum(counts, 1)))])
    edges = _level_edges(len(counts), quantized_bins)
    at = prefix[edges]
    level_sums = at[:, 1:] - at[:, :-1]
    on = occupied[edges]
    level_counts = np.maximum(on[:, 1:] - on[:, :-1], 1)  # empty levels have no mass
    log_means = np.log(np.maximum(level_sums, 1) / level_counts)
    last = counts[candidates - 1]
    level_sums[:, -1] -= last  # the last level's counts before bin L-1
    head, mass = prefix[candidates - 1], np.maximum(prefix[candidates], 1)
    body = (plogp[candidates - 1] - head * np.log(total)
            - np.einsum("ij,ij->i", level_sums, log_means) + head * np.log(mass)) / total
    p_last = (total - head) / total  # bin L-1 holds itself and everything beyond
    q_last = np.where(last > 0, np.exp(log_means[:, -1]) / mass, 1e-10)
    estimate = body + p_last * np.log(np.maximum(p_last, 1e-300) / q_last)
    return np.where(prefix[candidates] > 0, estimate, np.inf)


@functools.lru_cache(maxsize=4)
def _level_edges(bins: int, quantized_bins: int) -> np.ndarray:
    """Row ``L - quantized_bins``: where each of the levels of ``L`` kept bins starts, then
    ``L`` (the same for every tensor)."""
    kept = np.arange(quantized_bins, bins + 1)[:, None]
    return np.arange(quantized_bins + 1) * kept // quantized_bins


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
