"""The ``ocr-bench`` report: its JSON layout and the side-by-side table.

JSON layout (``schema`` = ``"ocr-bench/1"``)::

    schema      "ocr-bench/1"
    created     ISO 8601 time (UTC)
    machine     {platform, processor, cpu_count, python, numpy, onnxruntime}
    settings    {batches, warmup, iterations (null with duration_s), duration_s,
                 image_size ([H, W] or null: each model's input size), pipeline, end_to_end
                 (pipeline's old name, deprecated), threads, seed}
    results     one per artifact, in the order given:
      artifact, name, kind ("onnx" | "engine" | "keras"), backend ("onnxruntime" |
      "tensorrt" | "tensorflow"), device ("cpu" | "cuda"), providers (ONNX Runtime's, else
      null), precision, input_size [h, w], image_size [H, W], end_to_end_artifact (true:
      pre- and post-processing in its graph; its compute and pipeline rows are the same
      call), outputs (what was fetched), open_s (seconds to load),
      batches     one per batch size: {batch, compute: STATS, pipeline: STATS (absent with
                  --compute-only), end_to_end: the same STATS as pipeline (its old name,
                  deprecated)}
      memory      {peak_rss_mib, rss_before_mib, rss_peak_scope ("since reset": this
                   artifact's peak, Linux; "process lifetime"), gpu_used_mib (GPU runs: memory
                   in use on the device after the runs, all processes; else null)}
      warnings    variability warnings of this artifact
    warnings    all warnings

    STATS = {iterations, min_ms, mean_ms, median_ms, p90_ms, p95_ms, p99_ms, max_ms, std_ms,
             images_per_s (batch / mean), cv (std / mean), spread ((p90 - median) / median),
             unstable (cv or spread above 5 %)}
"""

from __future__ import annotations

from ocr_deploy.bench.stats import MODES, UNSTABLE, variability_warning
from ocr_deploy.warning_channel import folded, line

SCHEMA = "ocr-bench/1"
STATS_KEYS = ("iterations", "min_ms", "mean_ms", "median_ms", "p90_ms", "p95_ms", "p99_ms",
              "max_ms", "std_ms", "images_per_s", "cv", "spread", "unstable")


def format_table(report: dict) -> str:
    """All artifacts side by side, grouped by batch size; '!' marks unstable timings."""
    header = ["batch", "artifact", "backend", "device", "image", "compute ms", "p90", "p99",
              "img/s", "pipeline ms", "p90", "p99", "img/s", "peak MiB"]
    rows = []
    batches = sorted({b["batch"] for r in report["results"] for b in r["batches"]})
    for batch in batches:
        for result in report["results"]:
            entry = next((b for b in result["batches"] if b["batch"] == batch), None)
            if entry is None:
                continue
            name = result["name"] + (" (e2e)" if result.get("end_to_end_artifact") else "")
            row = [str(batch), name, result["backend"], result["device"],
                   "x".join(map(str, result["image_size"]))]
            for mode in MODES:
                stats = entry.get(mode)
                if stats is None:
                    row += ["-"] * 4
                    continue
                mark = "!" if stats["unstable"] else ""
                row += [f"{stats['median_ms']:.2f}{mark}", f"{stats['p90_ms']:.2f}",
                        f"{stats['p99_ms']:.2f}", f"{stats['images_per_s']:.1f}"]
            row.append(f"{result['memory']['peak_rss_mib']:.0f}")
            rows.append(row)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(w) if i >= 5 or i == 0 else cell.ljust(w)
                       for i, (cell, w) in enumerate(zip(line, widths, strict=True)))
             for line in [header, *rows]]
    lines.insert(1, "-" * len(lines[0]))
    notes = ["median latency per batch in ms; img/s = batch / mean latency; "
             "'!' = runs vary more than 5 %; pipeline: predict() with pre- and "
             "post-processing (called end-to-end before), on images of the image size"]
    if any(r.get("end_to_end_artifact") for r in report["results"]):
        notes.append("(e2e): an end-to-end artifact, pre- and post-processing in its graph: "
                     "compute and end-to-end are the same call on uint8 images of its size "
                     "(its pipeline row times that call too)")
    unstable = unstable_rows(report)
    variability = {variability_warning(name, batch, mode, stats)
                   for _, name, batch, mode, stats in unstable}
    notes += [line(w) for w in report["warnings"] if w not in variability]
    if unstable:
        notes.append(folded(f"runs vary more than {100 * UNSTABLE:.0f} % ('!') in "
                            f"{len(unstable)} of {_timings(report)} timings",
                            _unstable_by_artifact(report, unstable),
                            "close other programs, or measure longer (--duration, more "
                            "--iterations)"))
    return "\n".join(lines + notes)


def unstable_rows(report: dict) -> list[tuple[int, str, int, str, dict]]:
    """``(result index, artifact name, batch, mode, stats)`` of every unstable timing."""
    return [(index, result["name"], entry["batch"], mode, entry[mode])
            for index, result in enumerate(report["results"]) for entry in result["batches"]
            for mode in MODES if entry.get(mode, {}).get("unstable")]


def _timings(report: dict) -> int:
    return sum(mode in entry for result in report["results"] for entry in result["batches"]
               for mode in MODES)


def _unstable_by_artifact(report: dict, unstable: list) -> list[str]:
    """Per table row group (artifact at its image size): "(all)" or which timings."""
    named = []
    for index, result in enumerate(report["results"]):
        mine = [f"batch {batch} {mode}" for i, _, batch, mode, _ in unstable if i == index]
        if not mine:
            continue
        total = sum(mode in entry for entry in result["batches"] for mode in MODES)
        size = "x".join(map(str, result["image_size"]))
        which = "all" if len(mine) == total else ", ".join(mine)
        named.append(f"{result['name']} {size} ({which})")
    return named
