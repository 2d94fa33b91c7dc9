"""Benchmark runs: open an artifact, time compute-only and pipeline calls per batch size.

- **compute**: ``Segmenter.run`` on a batch prepared once (the backend's run: for TensorRT
  this includes the host/device copies; for ONNX Runtime its I/O-bound run).
- **pipeline** (called ``end_to_end`` before; that JSON key still holds the same figures,
  deprecated): ``Segmenter.predict`` on uint8 images of the original size: resize,
  normalise, run, resize the scores back, argmax.

An end-to-end artifact (``ocr-build-engine --end-to-end``) does all of that in its graph:
both rows are its own run on uint8 images of its size (its fixed size; for a range
``image_size``, else its largest size), ``compute`` on a batch stacked once and
``pipeline`` through ``predict``: the same call.
"""

from __future__ import annotations

import datetime
import os
import platform
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ocr_deploy.backends import KERAS_SUFFIXES, for_artifact
from ocr_deploy.bench import memory
from ocr_deploy.bench.report import SCHEMA
from ocr_deploy.bench.stats import MODES, latency_stats, variability_warning
from ocr_deploy.errors import BadInputError
from ocr_deploy.runtime.segmenter import Segmenter

MIN_RUNS = 3  # with --duration, at least this many timed runs
BATCHES, WARMUP, ITERATIONS = (1,), 3, 20  # the defaults of benchmark() and ocr-bench


def is_keras(path: Path) -> bool:
    """A Keras model file or SavedModel folder (benchmarked through TensorFlow)."""
    path = Path(path)
    return path.suffix.lower() in KERAS_SUFFIXES or path.is_dir()


def open_artifact(path: Path, providers: Sequence | None = None,
                  threads: int | None = None) -> tuple[Segmenter, str]:
    """A ``Segmenter`` over any artifact, Keras models included; and the artifact's kind."""
    path = Path(path)
    if is_keras(path):
        from ocr_deploy.bench.keras_runner import KerasRunner

        if not path.exists():
            raise BadInputError(path, "an existing model", "no such path", "check the path")
        runner = KerasRunner(path)
        return Segmenter(runner, runner.metadata(path), path), "keras"
    backend = for_artifact(path)
    options = {"providers": providers, "threads": threads}
    segmenter = Segmenter.open(path, **{k: v for k, v in options.items()
                                        if k in backend.runtime_options})
    return segmenter, backend.kind


def time_calls(function: Callable[[], object], warmup: int, iterations: int | None,
               duration: float | None) -> list[float]:
    """Seconds per call of ``function`` after ``warmup`` calls: ``iterations`` of them, or
    as many as fit in ``duration`` seconds (at least ``MIN_RUNS``)."""
    for _ in range(warmup):
        function()
    times: list[float] = []
    deadline = time.perf_counter() + duration if duration else None
    while True:
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
        if deadline is None and len(times) >= (iterations or 1):
            return times
        if deadline is not None and time.perf_counter() >= deadline and len(times) >= MIN_RUNS:
            return times


def benchmark_artifact(path: Path, batches: Sequence[int] = BATCHES, warmup: int = WARMUP,
                       iterations: int | None = ITERATIONS, duration: float | None = None,
                       image_size: tuple[int, int] | None = None, pipeline: bool = True,
                       providers: Sequence | None = None, threads: int | None = None,
                       seed: int = 0, *, end_to_end: bool | None = None) -> dict:
    """Measure one artifact at each batch size; return its result (see ``report``).
    ``end_to_end``: ``pipeline``'s old name, deprecated."""
    pipeline = _renamed_mode(pipeline, end_to_end)
    _check_settings(batches, warmup, iterations, duration)
    path = Path(path)
    rss_method = memory.reset_peak_rss()
    rss_before = memory.current_rss_mib()
    start = time.perf_counter()
    segmenter, kind = open_artifact(path, providers, threads)
    open_s = time.perf_counter() - start
    with segmenter:
        info = segmenter.describe()
        gpu = segmenter.runner.device == "cuda"
        size = bench_size(segmenter, image_size)
        limits, taken, skipped = batch_support(segmenter, batches)
        if not taken:
            raise BadInputError(path, f"batch sizes the artifact takes ({limits})",
                                f"{list(batches)}", "choose other --batch-sizes")
        rng = np.random.default_rng(seed)
        images = rng.integers(0, 256, (max(taken), *size, segmenter.metadata.input_channels),
                              dtype=np.uint8)
        outputs = segmenter.outputs_for([size])
        runs = []
        warnings = [f"{path.name}: batch {entry['batch']} skipped: {entry['reason']}"
                    for entry in skipped]
        for batch in taken:
            chunk = list(images[:batch])
            prepared = segmenter.prepare(chunk)
            entry = {"batch": batch, "compute": latency_stats(time_calls(
                lambda p=prepared: segmenter.run(p, outputs), warmup, iterations, duration),
                batch)}
            if pipeline:
                entry["pipeline"] = entry["end_to_end"] = latency_stats(time_calls(
                    lambda c=chunk: segmenter.predict(c), warmup, iterations, duration), batch)
            for mode in MODES:
                if mode in entry:
                    warning = variability_warning(path.name, batch, mode, entry[mode])
                    if warning:
                        warnings.append(warning)
            runs.append(entry)
        return {"artifact": str(path), "name": path.name, "kind": kind,
                "backend": info["backend"], "device": info["device"],
                "providers": info.get("providers"), "precision": info["precision"],
                "input_size": info["input_size"], "image_size": list(size),
                "end_to_end_artifact": bool(segmenter.metadata.end_to_end),
                "outputs": outputs, "open_s": round(open_s, 3), "batch_limits": limits,
                "batches": runs, "skipped_batches": skipped,
                "memory": {"peak_rss_mib": memory.peak_rss_mib(), "rss_before_mib": rss_before,
                           "rss_peak_scope": rss_method,
                           "gpu_used_mib": memory.gpu_used_mib(segmenter.runner.device_id)
                           if gpu else None},
                "warnings": warnings}


def batch_support(segmenter: Segmenter, batches: Sequence[int]
                  ) -> tuple[str, list[int], list[dict]]:
    """The batch sizes one run of the artifact takes (words), those of ``batches`` it takes,
    and the others with the reason: a run padded up to a fixed batch, or split, would time
    another batch size than the one reported."""
    runner = segmenter.runner
    limits = runner.batch_limits()
    high = segmenter.max_batch
    taken, skipped = [], []
    for batch in batches:
        if batch < runner.min_batch:
            skipped.append({"batch": batch, "reason": f"the artifact runs {limits} images at "
                            f"once: a batch of {batch} would be padded to {runner.min_batch}"})
        elif high and batch > high:
            skipped.append({"batch": batch, "reason": f"the artifact runs {limits} images at "
                            f"once: a batch of {batch} would be split"})
        else:
            taken.append(batch)
    return limits, taken, skipped


def bench_size(segmenter: Segmenter, image_size: tuple[int, int] | None) -> tuple[int, int]:
    """The pipeline's image size: ``image_size``, else the model's input size (an
    end-to-end artifact: its fixed size, or its range's largest; a given size is checked)."""
    sizes = segmenter.metadata.image_sizes()
    if image_size:
        segmenter.check_image_sizes([tuple(image_size)])
        return tuple(image_size)
    return segmenter.input_size if sizes is None else sizes[1]


def benchmark(paths: Sequence[Path], batches: Sequence[int] = BATCHES, warmup: int = WARMUP,
              iterations: int | None = ITERATIONS, duration: float | None = None,
              image_size: tuple[int, int] | None = None, pipeline: bool = True,
              providers: Sequence | None = None, threads: int | None = None, seed: int = 0,
              progress: Callable[[str], None] | None = None,
              image_sizes: Sequence[tuple[int, int] | None] | None = None, *,
              end_to_end: bool | None = None) -> dict:
    """Benchmark several artifacts one after another; return the whole report.
    ``image_sizes``: one per artifact, where given in place of ``image_size``;
    ``end_to_end``: ``pipeline``'s old name, deprecated."""
    pipeline = _renamed_mode(pipeline, end_to_end)
    _check_settings(batches, warmup, iterations, duration)
    if not paths:
        raise BadInputError(None, "at least one artifact", "none", "name .onnx/.engine files")
    results = []
    own = list(image_sizes or [None] * len(paths))
    for index, (path, size) in enumerate(zip(paths, own, strict=True), 1):
        if progress:
            progress(f"[{index}/{len(paths)}] {path}")
        results.append(benchmark_artifact(path, batches, warmup, iterations, duration,
                                          size or image_size, pipeline, providers, threads,
                                          seed))
    return {"schema": SCHEMA,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"),
            "machine": _machine(),
            "settings": {"batches": list(batches), "warmup": warmup,
                         "iterations": None if duration else iterations,
                         "duration_s": duration,
                         "image_size": list(image_size) if image_size else None,
                         "pipeline": pipeline, "end_to_end": pipeline, "threads": threads,
                         "seed": seed},
            "results": results,
            "warnings": [w for r in results for w in r["warnings"]]}


def _renamed_mode(pipeline: bool, end_to_end: bool | None) -> bool:
    """``pipeline``, or the deprecated ``end_to_end`` where given (with a warning)."""
    if end_to_end is None:
        return pipeline
    warnings.warn("benchmark(end_to_end=...) is deprecated: use pipeline=...",
                  DeprecationWarning, stacklevel=3)
    return end_to_end


def _check_settings(batches, warmup, iterations, duration) -> None:
    if not batches or min(batches) < 1:
        raise BadInputError(None, "batch sizes >= 1", f"{list(batches)}",
                            "e.g. --batch-sizes 1,4,8")
    if warmup < 0 or (duration is None and (iterations is None or iterations < 1)) \
            or (duration is not None and duration <= 0):
        raise BadInputError(None, "--warmup >= 0 and --iterations >= 1 or --duration > 0",
                            f"warmup {warmup}, iterations {iterations}, duration {duration}",
                            "fix the options")


def _machine() -> dict:
    import onnxruntime

    return {"platform": platform.platform(), "processor": platform.processor() or None,
            "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "onnxruntime": onnxruntime.__version__}
