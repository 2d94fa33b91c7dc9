"""Activation ranges from calibration data, cached on disk and reused.

Uses ONNX Runtime's calibrators directly: ``quantize_static`` alone silently turns
Entropy into MinMax with 128 bins, so ranges are computed here with explicit settings,
saved with ``save_tensors_data``, and handed to the quantiser through its
``calibration_cache_path``. The cache file name is a hash of the model, the data, the
method and its settings, so a change to any of them recalibrates.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from ocr_deploy.errors import BadInputError
from ocr_deploy.precision.calibration_data import SampleSet
from ocr_deploy.precision.quiet import quiet_onnxruntime
from ocr_deploy.progress import Counter

METHODS = ("minmax", "entropy", "percentile")
QUANTIZED_OPS = ["Conv", "MatMul"]  # activations are calibrated at these ops' inputs


@dataclass(frozen=True)
class CalibrationSettings:
    """How ranges are computed (all of it goes into the cache key)."""

    method: str = "entropy"
    num_bins: int = 2048  # histogram methods
    num_quantized_bins: int = 128  # entropy
    percentile: float = 99.999  # percentile

    def ort_method(self):
        from onnxruntime.quantization import CalibrationMethod

        if self.method not in METHODS:
            raise BadInputError(None, f"a calibration method in {', '.join(METHODS)}",
                                f"'{self.method}'", "choose one of them")
        return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                "percentile": CalibrationMethod.Percentile}[self.method]

    def ort_options(self) -> dict:
        options = {"symmetric": True}  # TensorRT wants symmetric INT8 activations
        if self.method in ("entropy", "percentile"):
            options["num_bins"] = self.num_bins
        if self.method == "entropy":
            options["num_quantized_bins"] = self.num_quantized_bins
        if self.method == "percentile":
            options["percentile"] = self.percentile
        return options


@dataclass
class CalibrationResult:
    """Where the ranges are, whether they came from the cache, and what they cost."""

    ranges_path: Path
    cache_hit: bool
    seconds: float
    samples: int
    data_sha256: str
    settings: CalibrationSettings

    def to_dict(self) -> dict:
        return {"method": self.settings.method, "settings": self.settings.__dict__,
                "samples": self.samples, "data_sha256": self.data_sha256,
                "cache_file": str(self.ranges_path), "cache_hit": self.cache_hit,
                "seconds": round(self.seconds, 3)}


def cache_key(model_bytes: bytes, data: SampleSet, settings: CalibrationSettings) -> str:
    """The hash that names a calibration: model, data, method, settings, tool version."""
    parts = {"model": hashlib.sha256(model_bytes).hexdigest(), "data": data.sha256,
             "settings": settings.__dict__, "ops": QUANTIZED_OPS, "onnxruntime": ort.__version__}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def calibrate(model_bytes: bytes, data: SampleSet, settings: CalibrationSettings,
              cache_dir: Path, force: bool = False, quiet: bool = False) -> CalibrationResult:
    """Compute (or reuse) activation ranges of the FP32 model on ``data``."""
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    method = settings.ort_method()
    path = Path(cache_dir) / f"{settings.method}-{cache_key(model_bytes, data, settings)}.json"
    if path.is_file() and not force:
        return CalibrationResult(path, True, 0.0, len(data), data.sha256, settings)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ocr-calib-") as tmp:
        model_path = Path(tmp) / "model.onnx"
        model_path.write_bytes(model_bytes)
        calibrator = create_calibrator(model_path, QUANTIZED_OPS,
                                       augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                                       calibrate_method=method,
                                       extra_options=settings.ort_options())
        with quiet_onnxruntime():
            calibrator.collect_data(_Reader(data, quiet))
            ranges = calibrator.compute_data()
    save_tensors_data(ranges, path)  # written atomically by ONNX Runtime
    return CalibrationResult(path, False, time.perf_counter() - start, len(data), data.sha256,
                             settings)


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over a SampleSet, with progress."""

    def __init__(self, data: SampleSet, quiet: bool):
        self.data, self.index = data, 0
        self.counter = Counter("calibrating", len(data), quiet)

    def get_next(self):
        if self.index >= len(self.data):
            return None
        sample = self.data.inputs[self.index:self.index + 1]
        self.index += 1
        self.counter.update(self.index)
        return {"image": sample}

    def __len__(self) -> int:
        return len(self.data)
