"""Activation ranges from calibration data, streamed batch by batch and cached on disk.

The FP32 model runs in ONNX Runtime cut into segments (``segments``: every node runs once
per batch, and only one segment's activations are held, within ``memory_mib`` per sample);
the calibrated tensors are folded into statistics as they come and dropped (``ranges``), so
memory depends on the model and the batch, never on the number of samples. A tensor that
only rearranges another (Transpose, Reshape, ...) has its statistics, so it is measured
once.

- ``minmax``: one pass (running minimum and maximum);
- ``entropy`` and ``percentile``: a second pass fills 2048-bin histograms over the final
  range, so the streamed result equals the all-at-once result.

Calibration runs on ONNX Runtime's CUDA execution provider where it is available, else on
the CPU (``calibration_providers``). The cache file (JSON, ``CACHE_VERSION``) is named by a
hash of the model, the data, the method and its settings, the tensor list and the
providers; it carries a checksum and is validated when read. A bad entry is a cache miss
with a warning, never an error; non-finite ranges are never cached.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import onnx
import onnxruntime as ort

from ocr_deploy.errors import BadInputError
from ocr_deploy.files import write_bytes_atomic
from ocr_deploy.graph.index import GraphIndex
from ocr_deploy.memory_budget import MemoryBudget
from ocr_deploy.onnxruntime_env import choose_providers, warn_dropped
from ocr_deploy.precision.calibration_data import SampleSet
from ocr_deploy.precision.ranges import TensorStats, entropy_threshold, percentile_threshold
from ocr_deploy.precision.segments import SegmentedModel
from ocr_deploy.precision.shapes import float_tensors
from ocr_deploy.progress import Counter
from ocr_deploy.warning_channel import warn

METHODS = ("minmax", "entropy", "percentile")
CACHE_VERSION = 4  # bump when the format, the key or the range algorithms change
MEMORY_MIB = 512  # default budget of a segment's activations, per sample (Jetson-friendly)
# Ops whose output holds its (first) input's values, rearranged: the same statistics.
REARRANGING_OPS = ("Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity")
# Activations feeding or produced by these ops are calibrated: every op a placement in
# ocr_deploy.precision.placement may quantise.
CALIBRATED_OPS = ("Conv", "MatMul", "Gemm", "Add", "Mul", "Concat", "Resize", "MaxPool",
                  "AveragePool", "GlobalAveragePool", "Relu", "Clip", "Sigmoid")


@dataclass(frozen=True)
class CalibrationSettings:
    """How ranges are computed (all of it goes into the cache key)."""

    method: str = "entropy"
    num_bins: int = 2048  # histogram methods
    num_quantized_bins: int = 128  # entropy
    percentile: float = 99.999  # percentile

    def validate(self) -> None:
        """Raise a clear error for a method or setting out of range."""
        if self.method not in METHODS:
            raise BadInputError(None, f"a calibration method in {', '.join(METHODS)}",
                                f"'{self.method}'", "choose one of them")
        if not 0 < self.percentile <= 100 or not math.isfinite(self.percentile):
            raise BadInputError(None, "--percentile in (0, 100]", f"{self.percentile}",
                                "pass e.g. --percentile 99.999")
        if self.num_quantized_bins < 2 or self.num_bins < self.num_quantized_bins:
            raise BadInputError(None, "num_bins >= num_quantized_bins >= 2",
                                f"{self.num_bins} and {self.num_quantized_bins}",
                                "use the defaults (2048 and 128)")


@dataclass(frozen=True)
class TensorRange:
    """What calibration found for one tensor: its extremes and the clipping threshold of
    ``|x|`` (equal to the largest magnitude for ``minmax``)."""

    minimum: float
    maximum: float
    threshold: float

    def bounds(self, symmetric: bool) -> tuple[float, float]:
        """The range to quantise: clipped extremes, or ``±threshold`` when symmetric."""
        low = max(self.minimum, -self.threshold)
        high = min(self.maximum, self.threshold)
        if symmetric:
            magnitude = max(abs(low), abs(high))
            return -magnitude, magnitude
        return min(low, 0.0), max(high, 0.0)


@dataclass
class CalibrationResult:
    """The ranges, where they are cached, whether they came from the cache, and the cost:
    seconds, forward passes over the data (each runs every node once per sample), the
    segments the model was cut into, and the execution providers that computed them."""

    ranges: dict[str, TensorRange]
    cache_path: Path
    cache_hit: bool
    seconds: float
    samples: int
    data_sha256: str
    settings: CalibrationSettings
    providers: list[str] = field(default_factory=list)
    passes: int = 0
    segments: int = 0

    @property
    def seconds_per_sample(self) -> float:
        return self.seconds / max(self.samples, 1)

    def to_dict(self) -> dict:
        return {"method": self.settings.method, "settings": asdict(self.settings),
                "samples": self.samples, "data_sha256": self.data_sha256,
                "tensors": len(self.ranges), "cache_file": str(self.cache_path),
                "cache_version": CACHE_VERSION, "cache_hit": self.cache_hit,
                "providers": self.providers, "segments": self.segments,
                "forward_passes_per_sample": self.passes, "seconds": round(self.seconds, 3),
                "seconds_per_sample": round(self.seconds_per_sample, 4)}


def calibration_providers(requested: Sequence[str] | None = None) -> list[str]:
    """The execution providers to calibrate on, in order: ``requested`` (ONNX Runtime
    names, or "cuda"/"cpu") checked against this onnxruntime, else CUDA where ONNX Runtime
    offers it; the CPU last unless asked for (ONNX Runtime falls back to it anyway)."""
    available = ort.get_available_providers()
    chosen = choose_providers(list(requested), available) if requested else \
        [p for p in ("CUDAExecutionProvider",) if p in available]
    return chosen if "CPUExecutionProvider" in chosen else [*chosen, "CPUExecutionProvider"]


def calibrated_tensors(model: onnx.ModelProto) -> list[str]:
    """Float activations read or written by the ops a placement may quantise, in graph
    order (initializers excluded)."""
    types = float_tensors(model)
    initializers = {t.name for t in model.graph.initializer}
    names: list[str] = []
    for node in model.graph.node:
        if node.op_type in CALIBRATED_OPS:
            for name in [*node.input, *node.output]:
                if name and name in types and name not in initializers and name not in names:
                    names.append(name)
    return names


def cache_key(model_bytes: bytes, data: SampleSet, settings: CalibrationSettings,
              tensors: list[str], providers: list[str]) -> str:
    """The hash that names a calibration: model, data, method, settings, tensors and the
    execution providers asked for (a GPU rounds differently from the CPU)."""
    parts = {"model": hashlib.sha256(model_bytes).hexdigest(), "data": data.sha256,
             "settings": asdict(settings), "tensors": tensors, "providers": providers,
             "version": CACHE_VERSION}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def calibrate(model_bytes: bytes, data: SampleSet, settings: CalibrationSettings,
              cache_dir: Path, force: bool = False, quiet: bool = False,
              memory_mib: int = MEMORY_MIB,
              providers: Sequence[str] | None = None, batch: int = 1) -> CalibrationResult:
    """Compute (or reuse) the activation ranges of the FP32 model on ``data``, on
    ``providers`` (default: ``calibration_providers()``), ``batch`` samples at a time
    (``calibration_batch``)."""
    settings.validate()
    chosen = calibration_providers(providers)
    model = onnx.load_from_string(model_bytes)
    tensors = calibrated_tensors(model)
    key = cache_key(model_bytes, data, settings, tensors, chosen)
    path = Path(cache_dir) / f"{settings.method}-{key}.json"
    if not force:
        cached = read_cache(path, key, tensors)
        if cached is not None:
            ranges, ran_on = cached
            return CalibrationResult(ranges, path, True, 0.0, len(data), data.sha256, settings,
                                     ran_on)
    start = time.perf_counter()
    sources = _sources(model, tensors)
    measured = list(dict.fromkeys(sources.values()))
    runner = SegmentedModel(model, measured, memory_mib, chosen)
    warn_dropped(chosen, runner.providers, "calibrates")
    stats = {name: TensorStats() for name in measured}
    passes = 1 if settings.method == "minmax" else 2
    for number in range(1, passes + 1):
        label = f"calibration pass {number}/{passes} ({'range' if number == 1 else 'histograms'})"
        counter = Counter(label, len(data), quiet, eta=True)
        done = 0
        for inputs, _ in data.batches(batch):
            for name, values in runner.outputs(inputs):
                if number == 1:
                    stats[name].update_range(values)
                else:
                    stats[name].update_histogram(values, settings.num_bins)
            done += len(inputs)
            counter.update(done)
        if number == 1:
            _check_finite(stats, sources, data)
    found = {name: _range(stat, settings) for name, stat in stats.items()}
    ranges = {name: found[sources[name]] for name in tensors}
    write_cache(path, key, settings, data, ranges, runner.providers)
    return CalibrationResult(ranges, path, False, time.perf_counter() - start, len(data),
                             data.sha256, settings, runner.providers, passes, len(runner))


def _sources(model: onnx.ModelProto, tensors: list[str]) -> dict[str, str]:
    """Each tensor -> the tensor whose values it holds, rearranged (itself unless made by
    ``REARRANGING_OPS`` from a computed tensor): the same extremes and histogram."""
    index = GraphIndex(model)
    producer, initializers = index.producer, index.initializers
    sources = {}
    for name in tensors:
        source = name
        node = producer.get(source)
        while node is not None and node.op_type in REARRANGING_OPS and \
                node.input[0] not in initializers:
            source = node.input[0]
            node = producer.get(source)
        sources[name] = source
    return sources


def _range(stat: TensorStats, settings: CalibrationSettings) -> TensorRange:
    if settings.method == "minmax" or stat.histogram is None:
        threshold = stat.absmax
    elif settings.method == "entropy":
        threshold = entropy_threshold(stat.histogram, stat.absmax, settings.num_quantized_bins)
    else:
        threshold = percentile_threshold(stat.histogram, stat.absmax, settings.percentile)
    return TensorRange(stat.minimum, stat.maximum, threshold)


def _check_finite(stats: dict[str, TensorStats], sources: dict[str, str],
                  data: SampleSet) -> None:
    bad = [name for name, source in sources.items()
           if not (math.isfinite(stats[source].minimum) and math.isfinite(stats[source].maximum))]
    if bad:
        raise BadInputError(data.folder, "finite activations on the calibration data",
                            f"NaN or infinite values in {len(bad)} tensor(s), first {bad[0]}",
                            "check the data's value range and the model (overflow)")


def calibration_batch(meta, memory_mib: int, budget: MemoryBudget) -> int:
    """Samples calibrated at once within ``budget`` (at most 8): each holds its input, a
    segment's outputs (``memory_mib``) and the segment's working memory (as much again)."""
    sample_bytes = 4 * meta.input_height * meta.input_width * meta.input_channels
    return budget.batch_size(sample_bytes + 2 * (memory_mib << 20), largest=8,
                             input_bytes=sample_bytes)


# --- the cache file ------------------------------------------------------------------------

def write_cache(path: Path, key: str, settings: CalibrationSettings, data: SampleSet,
                ranges: dict[str, TensorRange], providers: list[str]) -> None:
    """Write the ranges atomically with a checksum (finite ranges only, else nothing)."""
    body = {"format": "ocr-deploy-calibration", "version": CACHE_VERSION, "key": key,
            "settings": asdict(settings), "samples": len(data), "data_sha256": data.sha256,
            "providers": providers,
            "tensors": {name: [r.minimum, r.maximum, r.threshold]
                        for name, r in ranges.items()}}
    if not all(math.isfinite(v) for r in body["tensors"].values() for v in r):
        return
    text = json.dumps(body, sort_keys=True)
    document = {"checksum": hashlib.sha256(text.encode()).hexdigest(), "body": body}
    write_bytes_atomic(path, json.dumps(document).encode())


def read_cache(path: Path, key: str,
               tensors: list[str]) -> tuple[dict[str, TensorRange], list[str]] | None:
    """The cached ranges and the providers that computed them, or None (with a warning on
    stderr) when the file is missing, unreadable, tampered with, from another version, or
    does not cover ``tensors``."""
    if not path.is_file():
        return None
    try:
        document = json.loads(path.read_text())
        body = document["body"]
        text = json.dumps(body, sort_keys=True)
        if hashlib.sha256(text.encode()).hexdigest() != document["checksum"]:
            raise ValueError("checksum mismatch")
        if body.get("version") != CACHE_VERSION or body.get("key") != key:
            raise ValueError(f"version {body.get('version')} / key {body.get('key')}")
        entries = body["tensors"]
        ranges = {name: TensorRange(*(float(v) for v in entries[name])) for name in tensors}
        if not all(math.isfinite(v) for r in ranges.values() for v in asdict(r).values()):
            raise ValueError("non-finite range")
        return ranges, [str(p) for p in body["providers"]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        warn(f"ignoring calibration cache {path} ({type(exc).__name__}: "
             f"{' '.join(str(exc).split())[:120]}); recalibrating")
        return None
