"""``--plot``: latency against batch size, one line per artifact (matplotlib, Agg)."""

from __future__ import annotations

import io
from pathlib import Path

from ocr_deploy.bench.stats import MODES
from ocr_deploy.errors import BadInputError
from ocr_deploy.files import write_bytes_atomic


def plot_report(report: dict, path: Path) -> Path:
    """Draw compute-only and pipeline median latency (band: min to p90) per batch size."""
    try:
        import matplotlib
    except ImportError as exc:
        raise BadInputError(None, "matplotlib for --plot", "it is not installed",
                            "pip install matplotlib, or drop --plot") from exc
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    modes = [m for m in MODES
             if any(m in b for r in report["results"] for b in r["batches"])]
    figure, axes = plt.subplots(1, len(modes), figsize=(5.5 * len(modes), 4.2), squeeze=False)
    for axis, mode in zip(axes[0], modes, strict=True):
        for result in report["results"]:
            entries = [b for b in result["batches"] if mode in b]
            batches = [b["batch"] for b in entries]
            median = [b[mode]["median_ms"] for b in entries]
            line, = axis.plot(batches, median, marker="o",
                              label=_label(result))
            axis.fill_between(batches, [b[mode]["min_ms"] for b in entries],
                              [b[mode]["p90_ms"] for b in entries], color=line.get_color(),
                              alpha=0.2)
        axis.set_title("compute only" if mode == "compute" else "pipeline (pre/post-processing)")
        axis.set_xlabel("batch size")
        axis.set_ylabel("latency per batch (ms, median; band min-p90)")
        axis.set_xticks(sorted({b["batch"] for r in report["results"] for b in r["batches"]}))
        axis.grid(alpha=0.3)
        axis.legend(fontsize="small")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    write_bytes_atomic(Path(path), buffer.getvalue())
    return Path(path)


def _label(result: dict) -> str:
    """``name [e2e] HxW (backend, device)``: the image size tells rows of one model apart."""
    e2e = " e2e" if result.get("end_to_end_artifact") else ""
    size = "x".join(map(str, result.get("image_size", [])))
    return f"{result['name']}{e2e} {size} ({result['backend']}, {result['device']})"
