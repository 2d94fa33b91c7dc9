"""When INT8 misses the accuracy budget: find the fewest layers to keep in higher precision.

1. Sensitivity: for each quantised layer alone, build INT8 with that layer kept in FP32
   and measure how much of the budget shortfall it recovers.
2. Search: order layers by recovered shortfall and binary-search the shortest prefix of
   that order whose INT8 model meets the budget. This assumes that keeping more layers
   never hurts; the result is always a measured model that meets the budget, but it is
   the fewest layers only under that assumption.
Every build reuses the cached calibration ranges, so a candidate costs one quantisation
and one validation pass, not a recalibration.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ocr_deploy.verification.accuracy import Accuracy, Budget


@dataclass
class SearchResult:
    """Layers kept in higher precision and the evidence for them."""

    kept: list[str]
    accuracy: Accuracy
    met_budget: bool
    sensitivity: dict[str, float] = field(default_factory=dict)  # layer -> shortfall left
    evaluations: int = 0

    def to_dict(self) -> dict:
        ranked = sorted(self.sensitivity.items(), key=lambda item: item[1])
        return {"kept_in_higher_precision": self.kept, "met_budget": self.met_budget,
                "accuracy": self.accuracy.to_dict(), "evaluations": self.evaluations,
                "most_sensitive": [{"layer": k, "shortfall_when_kept": round(v, 6)}
                                   for k, v in ranked[:10]]}


def search(candidates: list[str], evaluate: Callable[[list[str]], Accuracy], budget: Budget,
           progress: Callable[[str], None] = lambda _: None) -> SearchResult:
    """Find a short list of ``candidates`` whose exclusion from INT8 meets ``budget``.

    ``evaluate(kept)`` builds INT8 with ``kept`` in higher precision and measures it.
    """
    sensitivity: dict[str, float] = {}
    for index, layer in enumerate(candidates, 1):
        sensitivity[layer] = evaluate([layer]).shortfall(budget)
        progress(f"sensitivity {index}/{len(candidates)}: {layer} -> shortfall "
                 f"{sensitivity[layer]:.4f}")
    order = sorted(candidates, key=lambda layer: sensitivity[layer])
    evaluations = len(candidates)
    results: dict[int, Accuracy] = {}

    def measure(count: int) -> Accuracy:
        nonlocal evaluations
        if count not in results:
            results[count] = evaluate(order[:count])
            evaluations += 1
            progress(f"keeping {count} layer(s): agreement {results[count].agreement:.4f}, "
                     f"mIoU drop {results[count].miou_drop}")
        return results[count]

    low, high = 1, len(order)
    if not measure(high).meets(budget):
        return SearchResult(order, results[high], False, sensitivity, evaluations)
    while low < high:  # smallest prefix that meets the budget, assuming monotonic
        middle = (low + high) // 2
        if measure(middle).meets(budget):
            high = middle
        else:
            low = middle + 1
    return SearchResult(order[:low], measure(low), True, sensitivity, evaluations)
