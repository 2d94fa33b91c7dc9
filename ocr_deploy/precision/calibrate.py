"""Activation ranges from calibration data, streamed batch by batch and cached on disk.

The FP32 model is run in ONNX Runtime with the calibrated tensors added as outputs, one
batch at a time; statistics are folded in and the outputs dropped (``ranges``), so memory
depends on the model and the batch, never on the number of samples. Tensors are split into
groups whose activations fit ``memory_mib`` per sample, one inference per group.

- ``minmax``: one pass (running minimum and maximum);
- ``entropy`` and ``percentile``: a second pass fills 2048-bin histograms over the final
  range, so the streamed result equals the all-at-once result.

The cache file (JSON, ``CACHE_VERSION``) is named by a hash of the model, the data, the
method and its settings and the tensor list; it carries a checksum and is validated when
read. A bad entry is a cache miss with a warning, never an error; non-finite ranges are
never cached.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from ocr_deploy.errors import BadInputError
from ocr_deploy.files import write_bytes_atomic
from ocr_deploy.precision.calibration_data import SampleSet
from ocr_deploy.precision.ranges import TensorStats, entropy_threshold, percentile_threshold
from ocr_deploy.precision.shapes import float_tensors, static_shapes
from ocr_deploy.progress import Counter

METHODS = ("minmax", "entropy", "percentile")
CACHE_VERSION = 3  # bump when the format or the range algorithms change
MEMORY_MIB = 512  # default activation budget per calibration inference (Jetson-friendly)
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
    """The ranges, where they are cached, whether they came from the cache, and the cost."""

    ranges: dict[str, TensorRange]
    cache_path: Path
    cache_hit: bool
    seconds: float
    samples: int
    data_sha256: str
    settings: CalibrationSettings
    groups: int = 1

    def to_dict(self) -> dict:
        return {"method": self.settings.method, "settings": asdict(self.settings),
                "samples": self.samples, "data_sha256": self.data_sha256,
                "tensors": len(self.ranges), "cache_file": str(self.cache_path),
                "cache_version": CACHE_VERSION, "cache_hit": self.cache_hit,
                "inference_groups": self.groups, "seconds": round(self.seconds, 3)}


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
              tensors: list[str]) -> str:
    """The hash that names a calibration: model, data, method, settings, tensors."""
    parts = {"model": hashlib.sha256(model_bytes).hexdigest(), "data": data.sha256,
             "settings": asdict(settings), "tensors": tensors, "version": CACHE_VERSION}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def calibrate(model_bytes: bytes, data: SampleSet, settings: CalibrationSettings,
              cache_dir: Path, force: bool = False, quiet: bool = False,
              memory_mib: int = MEMORY_MIB) -> CalibrationResult:
    """Compute (or reuse) the activation ranges of the FP32 model on ``data``."""
    settings.validate()
    model = onnx.load_from_string(model_bytes)
    tensors = calibrated_tensors(model)
    key = cache_key(model_bytes, data, settings, tensors)
    path = Path(cache_dir) / f"{settings.method}-{key}.json"
    if not force:
        cached = read_cache(path, key, tensors)
        if cached is not None:
            return CalibrationResult(cached, path, True, 0.0, len(data), data.sha256, settings)
    start = time.perf_counter()
    groups = _groups(model, tensors, memory_mib)
    stats = {name: TensorStats() for name in tensors}
    passes = 1 if settings.method == "minmax" else 2
    runner = _AugmentedModel(model, groups)
    for number in range(1, passes + 1):
        label = f"calibration pass {number}/{passes} ({'range' if number == 1 else 'histograms'})"
        counter = Counter(label, len(data), quiet, eta=True)
        done = 0
        for batch, _ in data.batches(_batch_size(data)):
            for name, values in runner.outputs(batch):
                if number == 1:
                    stats[name].update_range(values)
                else:
                    stats[name].update_histogram(values, settings.num_bins)
            done += len(batch)
            counter.update(done)
        if number == 1:
            _check_finite(stats, data)
    ranges = {name: _range(stat, settings) for name, stat in stats.items()}
    write_cache(path, key, settings, data, ranges)
    return CalibrationResult(ranges, path, False, time.perf_counter() - start, len(data),
                             data.sha256, settings, len(groups))


def _range(stat: TensorStats, settings: CalibrationSettings) -> TensorRange:
    if settings.method == "minmax" or stat.histogram is None:
        threshold = stat.absmax
    elif settings.method == "entropy":
        threshold = entropy_threshold(stat.histogram, stat.absmax, settings.num_quantized_bins)
    else:
        threshold = percentile_threshold(stat.histogram, stat.absmax, settings.percentile)
    return TensorRange(stat.minimum, stat.maximum, threshold)


def _check_finite(stats: dict[str, TensorStats], data: SampleSet) -> None:
    bad = [name for name, stat in stats.items()
           if not (math.isfinite(stat.minimum) and math.isfinite(stat.maximum))]
    if bad:
        raise BadInputError(data.folder, "finite activations on the calibration data",
                            f"NaN or infinite values in {len(bad)} tensor(s), first {bad[0]}",
                            "check the data's value range and the model (overflow)")


def _batch_size(data: SampleSet) -> int:
    """Small inputs in batches of 8; inputs over 1 MiB one at a time (memory first)."""
    meta = data.meta
    sample_bytes = 4 * meta.input_height * meta.input_width * meta.input_channels
    return 8 if sample_bytes <= 1 << 20 else 1


class _AugmentedModel:
    """One session per group of tensors: the FP32 model cut down to the nodes those tensors
    need, with the tensors as its outputs (no memory arena, so memory is returned between
    runs)."""

    def __init__(self, model: onnx.ModelProto, groups: list[list[str]]):
        self.input_name = model.graph.input[0].name
        self.sessions = []
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.enable_cpu_mem_arena = False
        options.log_severity_level = 3
        for group in groups:
            session = ort.InferenceSession(_cut(model, group).SerializeToString(), options,
                                           providers=["CPUExecutionProvider"])
            self.sessions.append((session, group))

    def outputs(self, batch: np.ndarray):
        """Yield ``(tensor name, values)`` for every calibrated tensor, group by group; each
        group's arrays are released before the next group runs."""
        for session, group in self.sessions:
            values = session.run(group, {self.input_name: batch})
            for index, name in enumerate(group):
                yield name, values[index]
                values[index] = None
            del values


def _cut(model: onnx.ModelProto, outputs: list[str]) -> onnx.ModelProto:
    """``model`` with ``outputs`` as its only outputs and only the nodes they need (all
    nodes when a node has subgraphs, whose inputs are not listed)."""
    needed = set(outputs)
    kept = []
    nested = any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
                 for node in model.graph.node for a in node.attribute)
    for node in reversed(model.graph.node):  # exported graphs are topologically sorted
        if nested or any(name in needed for name in node.output):
            kept.append(node)
            needed.update(name for name in node.input if name)
    cut = onnx.ModelProto()
    cut.CopyFrom(model)
    del cut.graph.node[:]
    cut.graph.node.extend(reversed(kept))
    del cut.graph.output[:]
    cut.graph.output.extend(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT,
                                                               None) for name in outputs)
    initializers = [t for t in cut.graph.initializer if t.name in needed]
    del cut.graph.initializer[:]
    cut.graph.initializer.extend(initializers)
    return cut


def _groups(model: onnx.ModelProto, tensors: list[str], memory_mib: int) -> list[list[str]]:
    """Split ``tensors`` into groups whose per-sample activations fit ``memory_mib``."""
    sizes = {name: 4 * int(np.prod(dims)) for name, dims in static_shapes(model).items()}
    budget = memory_mib << 20
    groups: list[list[str]] = [[]]
    used = 0
    for name in tensors:
        size = sizes.get(name, 0)
        if groups[-1] and used + size > budget:
            groups.append([])
            used = 0
        groups[-1].append(name)
        used += size
    return groups


# --- the cache file ------------------------------------------------------------------------

def write_cache(path: Path, key: str, settings: CalibrationSettings, data: SampleSet,
                ranges: dict[str, TensorRange]) -> None:
    """Write the ranges atomically with a checksum (finite ranges only, else nothing)."""
    body = {"format": "ocr-deploy-calibration", "version": CACHE_VERSION, "key": key,
            "settings": asdict(settings), "samples": len(data), "data_sha256": data.sha256,
            "tensors": {name: [r.minimum, r.maximum, r.threshold]
                        for name, r in ranges.items()}}
    if not all(math.isfinite(v) for r in body["tensors"].values() for v in r):
        return
    text = json.dumps(body, sort_keys=True)
    document = {"checksum": hashlib.sha256(text.encode()).hexdigest(), "body": body}
    write_bytes_atomic(path, json.dumps(document).encode())


def read_cache(path: Path, key: str, tensors: list[str]) -> dict[str, TensorRange] | None:
    """The cached ranges, or None (with a warning on stderr) when the file is missing,
    unreadable, tampered with, from another version, or does not cover ``tensors``."""
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
        return ranges
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        print(f"warning: ignoring calibration cache {path} ({type(exc).__name__}: "
              f"{' '.join(str(exc).split())[:120]}); recalibrating", file=sys.stderr)
        return None
