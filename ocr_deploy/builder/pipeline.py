"""The build pipeline behind ``ocr-build-engine``:
read metadata -> precision ONNX (FP16 casts or calibrated INT8 Q/DQ) -> verify against
FP32 within the budget (INT8: sensitivity search when it misses) -> backend build ->
sidecar JSON. Every file is written atomically.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import onnx

from ocr_deploy.builder.backends.onnxruntime import build_onnxruntime
from ocr_deploy.builder.backends.tensorrt import TensorRTOptions, availability, build_tensorrt
from ocr_deploy.errors import BadInputError, OcrDeployError
from ocr_deploy.files import check_writable_output
from ocr_deploy.metadata import ExportMetadata, read_metadata, write_metadata
from ocr_deploy.precision.calibrate import CalibrationSettings, calibrate
from ocr_deploy.precision.calibration_data import SampleSet, load_samples
from ocr_deploy.precision.evaluate import Accuracy, Budget, accuracy, predict_labels
from ocr_deploy.precision.fp16 import convert_fp16
from ocr_deploy.precision.qdq import default_exclusions, quantize_int8
from ocr_deploy.precision.sensitivity import search
from ocr_deploy.progress import Progress
from ocr_deploy.sidecar import write_sidecar

PRECISIONS = ("fp32", "fp16", "int8")
BACKENDS = ("auto", "tensorrt", "onnxruntime")


class BudgetError(OcrDeployError):
    """The reduced-precision model misses the accuracy budget."""

    exit_code = 3


@dataclass
class BuildRequest:
    """Everything ``ocr-build-engine`` can be asked to do (defaults match the CLI)."""

    onnx: Path
    precision: str = "fp32"
    backend: str = "auto"
    output: Path | None = None  # default: engines/<onnx stem>_<precision>.<engine|onnx>
    force: bool = False
    calib_dir: Path | None = None
    calib_samples: int = 100
    calib: CalibrationSettings = field(default_factory=CalibrationSettings)
    skip_unreadable: bool = False
    recalibrate: bool = False
    calib_cache: Path | None = None  # default: <output folder>/.calibration-cache
    quantize_attention: bool = False  # default keeps attention core + classifier in FP32
    keep_fp32: list[str] = field(default_factory=list)  # more nodes kept in higher precision
    verify: bool = True
    val_dir: Path | None = None
    val_samples: int | None = None
    budget: Budget = field(default_factory=Budget)
    sensitivity_search: bool = True
    ort_optimization: str = "auto"
    tensorrt: TensorRTOptions = field(default_factory=TensorRTOptions)
    quiet: bool = False


@dataclass
class BuildResult:
    """The artifact, its sidecar and what it contains."""

    artifact: Path
    sidecar: Path
    info: dict


def latest_export(folder: Path = Path("export")) -> Path:
    """The most recently written ``*.onnx`` in ``folder`` (not failed ones)."""
    candidates = [p for p in Path(folder).glob("*.onnx")
                  if not p.name.endswith(".parity-failed.onnx")]
    if not candidates:
        raise BadInputError(folder, "an exported model (*.onnx)", "none",
                            "run ocr-export first or pass the ONNX path")
    return max(candidates, key=lambda p: p.stat().st_mtime)


def choose_backend(requested: str) -> tuple[str, str]:
    """Resolve ``auto``: TensorRT when it and a GPU are present, else ONNX Runtime."""
    ok, reason = availability()
    if requested == "auto":
        return ("tensorrt", reason) if ok else ("onnxruntime", f"{reason}: using ONNX Runtime")
    if requested == "tensorrt" and not ok:
        raise BadInputError(None, "TensorRT and a CUDA GPU for --backend tensorrt", reason,
                            "use --backend onnxruntime, or install the 'tensorrt' extra on a "
                            "GPU machine")
    return requested, "requested"


def default_output(onnx_path: Path, precision: str, backend: str) -> Path:
    suffix = ".engine" if backend == "tensorrt" else ".onnx"
    return Path("engines") / f"{Path(onnx_path).stem}_{precision}{suffix}"


def build(request: BuildRequest) -> BuildResult:
    """Run the build; raises an ``OcrDeployError`` subclass on failure."""
    start = time.perf_counter()
    if request.precision not in PRECISIONS:
        raise BadInputError(None, f"a precision in {PRECISIONS}", request.precision,
                            "pass one of --fp32, --fp16, --int8")
    source = Path(request.onnx)
    meta = read_metadata(source)
    fp32_bytes = source.read_bytes()
    backend, why = choose_backend(request.backend)
    output = Path(request.output) if request.output else \
        default_output(source, request.precision, backend)
    output = output if output.suffix else \
        output.with_suffix(".engine" if backend == "tensorrt" else ".onnx")
    check_writable_output(output, request.force)
    check_writable_output(Path(str(output) + ".json"), request.force)
    stages = 2 + (request.precision == "int8") + (request.verify and request.precision != "fp32")
    progress = Progress(stages, request.quiet)
    progress.note(f"backend: {backend} ({why})")

    build_info: dict = {"precision": request.precision}
    calibration = None
    if request.precision == "int8":
        calibration = _calibrate(request, meta, fp32_bytes, output, progress)
        build_info["calibration"] = calibration.to_dict()
    with progress.stage(f"making the {request.precision} ONNX"):
        exclusions = _exclusions(request, fp32_bytes)
        model = _precision_model(request, fp32_bytes, calibration, _flatten(exclusions))
        build_info["kept_in_higher_precision"] = exclusions
    if request.verify and request.precision != "fp32":
        with progress.stage("verifying against FP32 (ONNX Runtime CPU)"):
            model, verification = _verify(request, meta, fp32_bytes, model, calibration,
                                          exclusions, progress)
            build_info["verification"] = verification
    meta = replace(meta, precision=request.precision, build=build_info)
    write_metadata(model, meta)
    model_bytes = model.SerializeToString()
    with progress.stage(f"building with {backend}"):
        if backend == "tensorrt":
            backend_info = build_tensorrt(model_bytes, output, meta, request.precision,
                                          request.tensorrt, progress.note)
        else:
            backend_info = build_onnxruntime(model_bytes, output, request.precision,
                                             request.ort_optimization)
    info = {**backend_info, "backend_reason": why, "artifact": str(output),
            "source_onnx": str(source),
            "source_onnx_sha256": hashlib.sha256(fp32_bytes).hexdigest(),
            "artifact_bytes": output.stat().st_size, **build_info,
            "seconds": round(time.perf_counter() - start, 2), "metadata": meta.__dict__}
    return BuildResult(output, write_sidecar(output, info), info)


def _calibrate(request: BuildRequest, meta: ExportMetadata, fp32_bytes: bytes, output: Path,
               progress: Progress):
    if request.calib_dir is None:
        raise BadInputError(None, "--calib-dir DIR (images or .npy/.npz) for --int8",
                            "no calibration data", "point --calib-dir at ~100 typical images")
    with progress.stage(f"calibrating ({request.calib.method})"):
        data = load_samples(request.calib_dir, meta, request.calib_samples,
                            request.skip_unreadable)
        cache_dir = request.calib_cache or output.parent / ".calibration-cache"
        result = calibrate(fp32_bytes, data, request.calib, cache_dir, request.recalibrate,
                           request.quiet)
        progress.note(f"{len(data)} samples; " + (
            f"reused cached ranges {result.ranges_path.name}" if result.cache_hit else
            f"computed in {result.seconds:.1f} s, cached as {result.ranges_path.name}"))
        if data.skipped:
            progress.note(f"skipped {len(data.skipped)} unreadable file(s)")
    return result


def _exclusions(request: BuildRequest, fp32_bytes: bytes) -> dict[str, list[str]]:
    """Nodes kept in higher precision, by reason. FP16 keeps by op type (Softmax, ...) in
    ``convert_fp16``, so only INT8 has default exclusions."""
    if request.precision == "fp32":
        return {}
    excluded = {}
    if request.precision == "int8" and not request.quantize_attention:
        excluded = default_exclusions(onnx.load_from_string(fp32_bytes))
    if request.keep_fp32:
        excluded["requested"] = list(request.keep_fp32)
    return excluded


def _precision_model(request: BuildRequest, fp32_bytes: bytes, calibration,
                     keep: list[str]) -> onnx.ModelProto:
    model = onnx.load_from_string(fp32_bytes)
    if request.precision == "fp16":
        return convert_fp16(model, keep_fp32=keep)
    if request.precision == "int8":
        return quantize_int8(model, calibration, keep)
    return model


def _verify(request: BuildRequest, meta: ExportMetadata, fp32_bytes: bytes,
            model: onnx.ModelProto, calibration, exclusions: dict, progress: Progress):
    data = _validation_data(request, meta)
    reference = predict_labels(fp32_bytes, data, meta)

    def measure(candidate: onnx.ModelProto) -> Accuracy:
        return accuracy(predict_labels(candidate.SerializeToString(), data, meta), reference,
                        data, meta.num_classes)

    result = measure(model)
    verification = {"data": "validation set" if request.val_dir else
                    "calibration images (no --val-dir given: agreement only)",
                    "budget": request.budget.__dict__, "accuracy": result.to_dict(),
                    "met_budget": result.meets(request.budget)}
    progress.note(_describe(result))
    if result.meets(request.budget):
        return model, verification
    if request.precision == "int8" and request.sensitivity_search:
        progress.note("INT8 misses the budget: searching for layers to keep in higher "
                      "precision")
        base = _flatten(exclusions)
        fp32_model = onnx.load_from_string(fp32_bytes)
        quantized = [n.name for n in fp32_model.graph.node
                     if n.op_type in ("Conv", "MatMul") and n.name not in base]

        def evaluate(kept: list[str]) -> Accuracy:
            return measure(quantize_int8(fp32_model, calibration, base + kept))

        found = search(quantized, evaluate, request.budget, progress.note)
        verification["sensitivity_search"] = found.to_dict()
        if found.met_budget:
            exclusions["sensitivity_search"] = found.kept
            verification.update(accuracy=found.accuracy.to_dict(), met_budget=True)
            progress.note(f"kept {len(found.kept)} layer(s): {', '.join(found.kept)}; "
                          + _describe(found.accuracy))
            return quantize_int8(fp32_model, calibration, base + found.kept), verification
    raise BudgetError(request.onnx, f"{request.precision} within the budget (mIoU drop <= "
                      f"{request.budget.max_miou_drop} points, agreement >= "
                      f"{request.budget.min_agreement:.2%})", _describe(result),
                      "loosen --max-miou-drop/--min-agreement, add calibration data, or "
                      "keep layers with --keep-fp32")


def _validation_data(request: BuildRequest, meta: ExportMetadata) -> SampleSet:
    if request.val_dir:
        return load_samples(request.val_dir, meta, request.val_samples, with_masks=True)
    if request.calib_dir:
        return load_samples(request.calib_dir, meta, request.val_samples or
                            request.calib_samples, request.skip_unreadable)
    raise BadInputError(None, "--val-dir (images + labels/) to verify the build",
                        "no validation data", "pass --val-dir, or --no-verify to skip")


def _flatten(exclusions: dict[str, list[str]]) -> list[str]:
    return [name for names in exclusions.values() for name in names]


def _describe(result: Accuracy) -> str:
    text = f"label agreement {result.agreement:.4%}"
    if result.miou is not None:
        text += (f", mIoU {result.miou:.2f} vs FP32 {result.miou_fp32:.2f} "
                 f"(drop {result.miou_drop:.2f} points)")
    return text
