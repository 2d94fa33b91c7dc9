"""Latency statistics of repeated runs, and when they vary too much to be trusted."""

from __future__ import annotations

import numpy as np

UNSTABLE = 0.05  # coefficient of variation or (p90 - median) / median above this: warn
# what is timed: the backend's run on a prepared batch; predict() with pre/post-processing
MODES = ("compute", "pipeline")


def latency_stats(seconds: list[float], batch: int) -> dict:
    """min/mean/median/p90/p95/p99/max/std in ms, throughput in images/s (batch / mean),
    the coefficient of variation ``cv``, ``spread`` = (p90 - median) / median, and
    ``unstable`` when either exceeds ``UNSTABLE``."""
    ms = np.asarray(seconds, np.float64) * 1000.0
    p50, p90, p95, p99 = np.percentile(ms, [50, 90, 95, 99])
    mean = float(ms.mean())
    cv = float(ms.std() / mean) if mean > 0 else 0.0
    spread = float((p90 - p50) / p50) if p50 > 0 else 0.0
    return {"iterations": len(ms), "min_ms": _r(ms.min()), "mean_ms": _r(mean),
            "median_ms": _r(p50), "p90_ms": _r(p90), "p95_ms": _r(p95), "p99_ms": _r(p99),
            "max_ms": _r(ms.max()), "std_ms": _r(ms.std()),
            "images_per_s": _r(batch * 1000.0 / mean) if mean > 0 else None,
            "cv": round(cv, 4), "spread": round(spread, 4),
            "unstable": bool(cv > UNSTABLE or spread > UNSTABLE)}


def variability_warning(name: str, batch: int, mode: str, stats: dict) -> str | None:
    """A one-line warning when ``stats`` are unstable, else None."""
    if not stats["unstable"]:
        return None
    return (f"{name}, batch {batch}, {mode}: runs vary more than {100 * UNSTABLE:.0f} % "
            f"(cv {100 * stats['cv']:.1f} %, p90 {100 * stats['spread']:.1f} % above the median)")


def _r(value: float) -> float:
    return round(float(value), 4)
