"""Comparing a candidate's outputs with a reference's: the one comparison type of the
project, used by export parity (TensorFlow vs the ONNX in ONNX Runtime) and by the build's
verdict (the FP32 ONNX vs the built artifact in its own backend's runner).

Comparison is data: a ``Comparison`` takes batches of outputs as they come and gives a
``ComparisonReport`` with the statistics that decide pass/fail, to be printed, saved as JSON
and judged. It streams: what it keeps of a batch is counts, running sums (float64 scalars,
computed over float32 blocks of ``BLOCK`` values, never a float64 copy of a map) and the
top-2 gaps of the few pixels that may be ties, never the batch's scores or label maps.

- Scores (logits; probabilities from a model ending in a softmax) are judged on their own
  scale, the largest reference magnitude: they pass when ``max_abs_err <= atol + rtol *
  scale`` (when ``check_values``; a reduced-precision build is judged on its labels only).
- Labels (the argmax of scores, or a labels output) pass when they agree on at least
  ``min_agreement`` of the counted pixels except ties: pixels whose two best reference
  scores are within ``2 * tol``, ``tol = tie_atol + tie_rtol * scale``. With both sides off
  by at most ``tol``, such a pixel's argmax may legitimately go either way, so a
  disagreement there says nothing about the model.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

SCORE_KINDS = ("logits", "probabilities")  # per-class scores: their argmax is the label
LABEL_KINDS = ("labels",)
DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-4
DEFAULT_MIN_AGREEMENT = 1.0
BLOCK = 1 << 20  # values summed in float64 at once
# Gaps are kept for pixels up to this many times the tie threshold the scale seen so far
# gives: the threshold of the final scale, if it grew beyond that, is capped there.
TIE_HEADROOM = 4.0
TIE_RTOL = 1e-3  # reduced-precision judging: about two FP16 ulps of the largest score


def top2_gap(scores: np.ndarray, axis: int = -1) -> np.ndarray:
    """Per pixel, the gap between the two best ``scores`` over ``axis`` (inf with one class)."""
    if scores.shape[axis] < 2:
        return np.full(np.delete(scores.shape, axis % scores.ndim), np.inf, np.float32)
    top2 = np.partition(np.moveaxis(scores, axis, -1), -2, axis=-1)[..., -2:]
    return (top2[..., 1].astype(np.float32) - top2[..., 0]).astype(np.float32)


@dataclass
class OutputComparison:
    """Error statistics of one output."""

    name: str
    kind: str  # "logits", "probabilities", "aux_logits" or "labels"
    max_abs_err: float = 0.0
    max_rel_err: float = 0.0  # max_abs_err / scale
    scale: float = 0.0  # max |reference|
    cosine: float = 1.0
    label_agreement: float = 1.0  # fraction of counted pixels with the same argmax / label
    label_agreement_excl_ties: float = 1.0
    tie_pixels: int = 0  # disagreeing pixels that are ties
    passed: bool = True
    reason: str = ""


@dataclass
class ComparisonReport:
    """Per-output statistics plus the tolerances they were judged with."""

    atol: float
    rtol: float
    min_agreement: float
    samples: int
    outputs: list[OutputComparison] = field(default_factory=list)
    check_values: bool = True
    tie_atol: float = DEFAULT_ATOL
    tie_rtol: float = DEFAULT_RTOL
    tie_tolerance: float = 0.0  # tie_atol + tie_rtol x the reference scores' scale

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outputs)

    def output(self, name: str) -> OutputComparison | None:
        return next((o for o in self.outputs if o.name == name), None)

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}

    def summary(self) -> dict:
        """The figures worth carrying in metadata."""
        return {"passed": self.passed, "samples": self.samples, "atol": self.atol,
                "rtol": self.rtol, **{o.name: {"max_abs_err": o.max_abs_err,
                                               "max_rel_err": o.max_rel_err,
                                               "label_agreement": o.label_agreement}
                                      for o in self.outputs}}

    def table(self) -> str:
        """A short human-readable table."""
        head = (f"{'output':<12}{'max abs':>11}{'max rel':>11}{'cosine':>10}"
                f"{'labels':>10}{'ties':>7}  result")
        lines = [head, "-" * len(head)]
        for o in self.outputs:
            verdict = "ok" if o.passed else f"FAIL: {o.reason}"
            lines.append(f"{o.name:<12}{o.max_abs_err:>11.2e}{o.max_rel_err:>11.2e}"
                         f"{o.cosine:>10.6f}{100 * o.label_agreement:>9.3f}%{o.tie_pixels:>7}"
                         f"  {verdict}")
        values = f"max abs <= {self.atol:g} + {self.rtol:g} x scale, " if self.check_values \
            else ""
        lines.append(f"{self.samples} samples; pass: {values}label agreement >= "
                     f"{100 * self.min_agreement:g}% (ties aside)")
        return "\n".join(lines)


@dataclass
class _Scores:
    """Running statistics of one score output."""

    kind: str
    max_abs: float = 0.0
    scale: float = 0.0
    dot: float = 0.0
    ref_sq: float = 0.0
    cand_sq: float = 0.0
    finite: bool = True


@dataclass
class _Labels:
    """Counts of one label output (or a score output's argmax), batch by batch, with the
    reference's top-2 score gaps of the counted pixels that may turn out to be ties."""

    kind: str
    counted: int = 0
    same: int = 0
    tie_gaps_same: list = field(default_factory=list)  # float32 gaps of agreeing pixels
    tie_gaps_differ: list = field(default_factory=list)
    kept_below: float = math.inf  # every gap at or below this was kept


class Comparison:
    """Reference-vs-candidate statistics accumulated batch by batch.

    ``kinds`` maps output names to kinds. Scores have their classes on the last axis
    (transpose NCHW first). Ties of a labels output are judged on the reference's first
    score output. ``add(..., counted=mask)`` leaves pixels out of label agreement (e.g.
    the validation masks' ignore index).
    """

    def __init__(self, kinds: dict[str, str], atol: float = DEFAULT_ATOL,
                 rtol: float = DEFAULT_RTOL, min_agreement: float = DEFAULT_MIN_AGREEMENT,
                 check_values: bool = True, tie_atol: float | None = None,
                 tie_rtol: float | None = None):
        self.kinds = dict(kinds)
        self.report_base = ComparisonReport(
            atol, rtol, min_agreement, 0, check_values=check_values,
            tie_atol=atol if tie_atol is None else tie_atol,
            tie_rtol=rtol if tie_rtol is None else tie_rtol)
        self.scores = {n: _Scores(k) for n, k in self.kinds.items() if k not in LABEL_KINDS}
        self.labels = {n: _Labels(k) for n, k in self.kinds.items()
                       if k in SCORE_KINDS + LABEL_KINDS}
        self.tie_source = next((n for n, k in self.kinds.items() if k in SCORE_KINDS), None)
        self.mismatch: dict[str, str] = {}
        self.samples = 0

    def add(self, reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray],
            counted: np.ndarray | None = None) -> None:
        """Fold in one batch (every output of ``kinds`` in both dicts)."""
        self.samples += len(next(iter(reference.values())))
        shaped = []
        for name in self.kinds:
            if reference[name].shape != candidate[name].shape:
                self.mismatch.setdefault(name, f"shape {candidate[name].shape} != "
                                         f"{reference[name].shape}")
            else:
                shaped.append(name)
        for name in shaped:  # scores first: the tie threshold needs their scale
            if name in self.scores:
                self._add_scores(self.scores[name], reference[name], candidate[name])
        gap = None
        if self.tie_source is not None and self.tie_source not in self.mismatch:
            gap = top2_gap(reference[self.tie_source])
        for name in shaped:
            kind, ref, cand = self.kinds[name], reference[name], candidate[name]
            if name in self.labels:
                same = ref == cand if kind in LABEL_KINDS else \
                    np.argmax(ref, -1) == np.argmax(cand, -1)
                self.add_labels(name, same, gap, counted)

    def add_labels(self, name: str, same: np.ndarray, gap: np.ndarray | None,
                   counted: np.ndarray | None = None, scale: float | None = None) -> None:
        """Fold in one batch of label agreement facts directly: ``same`` per pixel, the
        reference's top-2 score ``gap`` (None: no ties) and, when no scores are added for
        the tie source, the reference scores' ``scale``."""
        entry = self.labels[name]
        if scale is not None and self.tie_source in self.scores:
            source = self.scores[self.tie_source]
            source.scale = max(source.scale, float(scale))
        same = np.asarray(same, bool)
        if counted is not None:
            same = same[counted]
            gap = None if gap is None else gap[counted]
        entry.counted += int(same.size)
        entry.same += int(np.count_nonzero(same))
        if gap is None:
            return
        cap = 2 * TIE_HEADROOM * self._tie_tolerance()
        entry.kept_below = min(entry.kept_below, cap)
        near = np.asarray(gap) <= cap
        entry.tie_gaps_same.append(np.asarray(gap[near & same], np.float32))
        entry.tie_gaps_differ.append(np.asarray(gap[near & ~same], np.float32))

    def _tie_tolerance(self) -> float:
        base = self.report_base
        scale = self.scores[self.tie_source].scale if self.tie_source in self.scores else 0.0
        return base.tie_atol + base.tie_rtol * scale

    def report(self) -> ComparisonReport:
        """The statistics so far, judged."""
        base = self.report_base
        report = ComparisonReport(**{**asdict(base), "outputs": [], "samples": self.samples})
        tie_tol = self._tie_tolerance()
        report.tie_tolerance = tie_tol
        for name, kind in self.kinds.items():
            result = OutputComparison(name, kind)
            if name in self.mismatch:
                result.passed, result.reason = False, self.mismatch[name]
            else:
                if name in self.scores:
                    self._judge_scores(result, self.scores[name], base)
                if name in self.labels:
                    self._judge_labels(result, self.labels[name], tie_tol, base.min_agreement)
            report.outputs.append(result)
        return report

    @staticmethod
    def _add_scores(stats: _Scores, ref: np.ndarray, cand: np.ndarray) -> None:
        for ref_block, cand_block in _blocks(ref, cand):
            stats.finite &= bool(np.isfinite(cand_block).all())
            if ref_block.size:
                stats.max_abs = max(stats.max_abs, float(np.abs(ref_block - cand_block).max()))
                stats.scale = max(stats.scale, float(np.abs(ref_block).max()))
            stats.dot += float(np.dot(ref_block, cand_block))
            stats.ref_sq += float(np.dot(ref_block, ref_block))
            stats.cand_sq += float(np.dot(cand_block, cand_block))

    @staticmethod
    def _judge_scores(result: OutputComparison, stats: _Scores, base: ComparisonReport) -> None:
        norms = math.sqrt(stats.ref_sq) * math.sqrt(stats.cand_sq)
        result.max_abs_err, result.scale = stats.max_abs, stats.scale
        result.max_rel_err = stats.max_abs / stats.scale if stats.scale else 0.0
        result.cosine = stats.dot / norms if norms > 0 else 1.0
        if not stats.finite:
            result.passed, result.reason = False, "non-finite values"
            return
        tol = base.atol + base.rtol * stats.scale
        if base.check_values and stats.max_abs > tol:
            result.passed = False
            result.reason = f"max abs error {stats.max_abs:.3g} > tolerance {tol:.3g}"

    @staticmethod
    def _judge_labels(result: OutputComparison, entry: _Labels, tie_tol: float,
                      min_agreement: float) -> None:
        threshold = min(2 * tie_tol, entry.kept_below)
        tied_same, ties = (sum(int(np.count_nonzero(g <= threshold)) for g in gaps)
                           for gaps in (entry.tie_gaps_same, entry.tie_gaps_differ))
        decided = entry.counted - tied_same - ties
        result.label_agreement = entry.same / entry.counted if entry.counted else 1.0
        result.label_agreement_excl_ties = (entry.same - tied_same) / decided if decided \
            else 1.0
        result.tie_pixels = ties
        if result.passed and result.label_agreement_excl_ties < min_agreement:
            result.passed = False
            result.reason = (f"label agreement {100 * result.label_agreement_excl_ties:.4f}% "
                             f"< {100 * min_agreement:g}%")


def _blocks(ref: np.ndarray, cand: np.ndarray):
    """Matching flat float64 blocks of at most ``BLOCK`` values of two same-shaped arrays
    (read through views; a strided array is walked along its first axis)."""
    if ref.ndim > 1 and ref.size > BLOCK and not (ref.flags.c_contiguous
                                                 and cand.flags.c_contiguous):
        for index in range(len(ref)):
            yield from _blocks(ref[index], cand[index])
        return
    ref_flat, cand_flat = ref.reshape(-1), cand.reshape(-1)
    for begin in range(0, ref_flat.size, BLOCK):
        yield (ref_flat[begin:begin + BLOCK].astype(np.float64),
               cand_flat[begin:begin + BLOCK].astype(np.float64))


def compare(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray],
            kinds: dict[str, str], atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL,
            min_agreement: float = DEFAULT_MIN_AGREEMENT) -> ComparisonReport:
    """Compare same-layout outputs held in memory at once (one batch)."""
    comparison = Comparison(kinds, atol, rtol, min_agreement)
    comparison.add(reference, candidate)
    return comparison.report()
