"""Numeric parity between a reference (TensorFlow) and a candidate (ONNX Runtime).

Comparison is data: ``compare`` turns two dicts of arrays into a ``ParityReport`` with the
statistics that decide pass/fail, so a report can be printed, saved as JSON and judged.
Logits pass when ``max_abs_err <= atol + rtol * scale``, where ``scale`` is the largest
reference magnitude (the logit scale). Probabilities (a model ending in a softmax) are
judged the same way on their own scale (at most 1). Labels pass when they agree on every
pixel except ties (``ocr_deploy.agreement``): pixels whose two best reference scores are
closer than that same tolerance.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ocr_deploy.agreement import label_agreement

SCORE_KINDS = ("logits", "probabilities")  # per-class scores: their argmax is the label
DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-4
DEFAULT_MIN_AGREEMENT = 1.0


@dataclass
class OutputParity:
    """Error statistics of one output."""

    name: str
    kind: str  # "logits", "probabilities", "aux_logits" or "labels"
    max_abs_err: float = 0.0
    max_rel_err: float = 0.0  # max_abs_err / scale
    scale: float = 0.0  # max |reference|
    cosine: float = 1.0
    label_agreement: float = 1.0  # fraction of pixels with the same argmax / label
    label_agreement_excl_ties: float = 1.0
    tie_pixels: int = 0
    passed: bool = True
    reason: str = ""


@dataclass
class ParityReport:
    """Per-output parity plus the tolerances it was judged with."""

    atol: float
    rtol: float
    min_agreement: float
    samples: int
    outputs: list[OutputParity] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outputs)

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
        lines.append(f"{self.samples} samples; pass: max abs <= {self.atol:g} + {self.rtol:g} "
                     f"x scale, label agreement >= {100 * self.min_agreement:g}% (ties aside)")
        return "\n".join(lines)


def compare(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray],
            kinds: dict[str, str], atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL,
            min_agreement: float = DEFAULT_MIN_AGREEMENT) -> ParityReport:
    """Compare same-layout outputs. ``kinds`` maps each name to its kind ("logits",
    "probabilities", "aux_logits" or "labels")."""
    samples = len(next(iter(reference.values())))
    report = ParityReport(atol, rtol, min_agreement, samples)
    logits_ref = next((reference[n] for n, k in kinds.items() if k in SCORE_KINDS), None)
    for name, kind in kinds.items():
        ref, cand = reference[name], candidate[name]
        if ref.shape != cand.shape:
            report.outputs.append(OutputParity(name, kind, passed=False,
                                               reason=f"shape {cand.shape} != {ref.shape}"))
        elif kind == "labels":
            report.outputs.append(_compare_labels(name, ref, cand, logits_ref, report))
        else:
            report.outputs.append(_compare_logits(name, kind, ref, cand, report))
    return report


def _tolerance(report: ParityReport, scale: float) -> float:
    return report.atol + report.rtol * scale


def _compare_logits(name, kind, ref, cand, report: ParityReport) -> OutputParity:
    ref64, cand64 = ref.astype(np.float64), cand.astype(np.float64)
    if not np.all(np.isfinite(cand64)):
        return OutputParity(name, kind, passed=False, reason="non-finite values")
    err = np.abs(ref64 - cand64)
    scale = float(np.abs(ref64).max())
    max_abs = float(err.max())
    norms = np.linalg.norm(ref64) * np.linalg.norm(cand64)
    cosine = float((ref64 * cand64).sum() / norms) if norms > 0 else 1.0
    result = OutputParity(name, kind, max_abs, max_abs / scale if scale else 0.0, scale, cosine)
    tol = _tolerance(report, scale)
    if kind in SCORE_KINDS:
        _judge_labels(result, ref64, np.argmax(ref64, -1) == np.argmax(cand64, -1), tol,
                      report.min_agreement)
    if max_abs > tol:
        result.passed = False
        result.reason = f"max abs error {max_abs:.3g} > tolerance {tol:.3g}"
    return result


def _compare_labels(name, ref, cand, logits_ref, report: ParityReport) -> OutputParity:
    result = OutputParity(name, "labels")
    same = ref == cand
    if logits_ref is None:
        result.label_agreement = result.label_agreement_excl_ties = float(same.mean())
        if result.label_agreement < report.min_agreement:
            result.passed, result.reason = False, "labels differ"
        return result
    logits64 = logits_ref.astype(np.float64)
    _judge_labels(result, logits64, same, _tolerance(report, float(np.abs(logits64).max())),
                  report.min_agreement)
    return result


def _judge_labels(result: OutputParity, logits: np.ndarray, same: np.ndarray, tol: float,
                  min_agreement: float) -> None:
    """Fill the agreement figures; a pixel is a tie when its top-2 logits are within tol."""
    agreement = label_agreement(logits, same, tol)
    result.label_agreement = agreement.agreement
    result.tie_pixels = agreement.tie_pixels
    result.label_agreement_excl_ties = agreement.agreement_excl_ties
    if result.label_agreement_excl_ties < min_agreement:
        result.passed = False
        result.reason = (f"label agreement {100 * result.label_agreement_excl_ties:.4f}% "
                         f"< {100 * min_agreement:g}%")
