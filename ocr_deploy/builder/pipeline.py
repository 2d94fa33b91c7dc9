"""The build pipeline behind ``ocr-build-engine``:
read and check metadata -> precision ONNX (FP16 casts, or INT8 Q/DQ placed for the chosen
backend from streamed calibration) -> verify against FP32 within the budget (INT8:
sensitivity search when it misses) -> backend build -> INT8 coverage report -> the artifact
and its sidecar, written as one pair.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import onnx

from ocr_deploy.builder.backends import BuildBackend, choose_backend
from ocr_deploy.builder.backends.tensorrt import TensorRTOptions
from ocr_deploy.errors import BadInputError, BudgetError
from ocr_deploy.files import check_writable_output, latest_file
from ocr_deploy.metadata import ExportMetadata, write_metadata
from ocr_deploy.precision.calibrate import (
    MEMORY_MIB,
    CalibrationSettings,
    calibrate,
    calibration_providers,
)
from ocr_deploy.precision.calibration_data import SampleSet, load_samples
from ocr_deploy.precision.coverage import WARN_BELOW, integer_coverage
from ocr_deploy.precision.evaluate import (
    IGNORE_INDEX,
    Accuracy,
    Budget,
    accuracy,
    predict_labels,
    reference_labels,
)
from ocr_deploy.precision.fp16 import convert_fp16
from ocr_deploy.precision.placement import Placement
from ocr_deploy.precision.qdq import default_exclusions, quantize_int8
from ocr_deploy.precision.sensitivity import search
from ocr_deploy.progress import Progress
from ocr_deploy.sidecar import sidecar_output, sidecar_path
from ocr_deploy.signature import check_onnx

PRECISIONS = ("fp32", "fp16", "int8")
EXPORT_FOLDER = Path("export")
ENGINE_FOLDER = Path("engines")


@dataclass
class BuildRequest:
    """Everything ``ocr-build-engine`` can be asked to do (the CLI takes its defaults here)."""

    onnx: Path
    precision: str = "fp32"
    backend: str = "auto"
    output: Path | None = None  # default: engines/<onnx stem>_<precision><backend suffix>
    force: bool = False
    calib_dir: Path | None = None
    calib_samples: int = 100
    calib: CalibrationSettings = field(default_factory=CalibrationSettings)
    calib_memory_mib: int = MEMORY_MIB  # activations per inference while calibrating
    calib_providers: list[str] = field(default_factory=list)  # empty: CUDA if there, else CPU
    skip_unreadable: bool = False
    recalibrate: bool = False
    calib_cache: Path | None = None  # default: <output folder>/.calibration-cache
    quantize_attention: bool = False  # default keeps attention core + classifier in FP32
    keep_fp32: list[str] = field(default_factory=list)  # more nodes kept in higher precision
    verify: bool = True
    val_dir: Path | None = None
    val_samples: int | None = None
    budget: Budget = field(default_factory=Budget)
    ignore_index: int | None = IGNORE_INDEX
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


def latest_export(folder: Path = EXPORT_FOLDER) -> Path:
    """The most recently written exported ``*.onnx`` in ``folder`` (not failed exports,
    hidden or temporary files)."""
    found = latest_file(folder, "*.onnx", skip_suffixes=(".parity-failed.onnx",))
    if found is None:
        raise BadInputError(folder, "an exported model (*.onnx)", "none",
                            "run ocr-export first or pass the ONNX path")
    return found


def default_output(onnx_path: Path, precision: str, backend: BuildBackend) -> Path:
    """``engines/<model>_<precision><suffix>``."""
    return ENGINE_FOLDER / f"{Path(onnx_path).stem}_{precision}{backend.suffix}"


def resolve_output(request: BuildRequest, backend: BuildBackend) -> Path:
    """The artifact path: ``-o`` (a suffix-less name gets the backend's suffix) or the
    default; a folder, or a suffix of another backend's artifact, is an error."""
    if request.output is None:
        return default_output(request.onnx, request.precision, backend)
    output = Path(request.output)
    if output.is_dir():
        raise BadInputError(output, "a file path for the artifact", "a folder",
                            f"give a file name, e.g. -o {output / ('model' + backend.suffix)}")
    if not output.suffix:
        return output.with_suffix(backend.suffix)
    if output.suffix != backend.suffix:
        raise BadInputError(output, f"a '{backend.suffix}' file for the {backend.name} backend",
                            f"'{output.suffix}'", f"name it {output.stem}{backend.suffix}, or "
                            "choose the backend that makes that kind of file")
    return output


def validate(request: BuildRequest) -> None:
    """Check the request's values before any slow work (exit 2 on a bad one)."""
    if request.precision not in PRECISIONS:
        raise BadInputError(None, f"a precision in {PRECISIONS}", request.precision,
                            "pass one of --fp32, --fp16, --int8")
    request.budget.validate()
    request.calib.validate()
    for name, value in (("--calib-samples", request.calib_samples),
                        ("--calib-memory-mib", request.calib_memory_mib),
                        ("--val-samples", request.val_samples)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise BadInputError(None, f"{name} >= 1", f"{value}", f"pass a positive {name}")
    if request.calib_providers:
        calibration_providers(request.calib_providers)  # names this onnxruntime has


def ignored_options(request: BuildRequest, backend: BuildBackend) -> list[str]:
    """Options given that do nothing for this precision and backend (the CLI warns)."""
    ignored = list(backend.unused_options(request))
    defaults = BuildRequest(onnx=request.onnx)
    calib_validates = request.verify and request.precision != "fp32" and not request.val_dir
    if request.precision != "int8":
        if not calib_validates:  # without --val-dir the calibration images validate
            ignored += [flag for flag, field_name in (
                ("--calib-dir", "calib_dir"), ("--calib-samples", "calib_samples"))
                if getattr(request, field_name) != getattr(defaults, field_name)]
        ignored += [flag for flag, field_name in (
            ("--recalibrate", "recalibrate"), ("--calib-cache", "calib_cache"),
            ("--quantize-attention", "quantize_attention"),
            ("--no-sensitivity-search", "sensitivity_search"),
            ("--calib-memory-mib", "calib_memory_mib"),
            ("--calib-providers", "calib_providers"))
            if getattr(request, field_name) != getattr(defaults, field_name)]
        if request.calib != defaults.calib:
            ignored.append("--calib-method/--percentile")
    if request.precision == "fp32" or not request.verify:
        ignored += [flag for flag, field_name in (
            ("--val-dir", "val_dir"), ("--val-samples", "val_samples"),
            ("--max-miou-drop/--min-agreement", "budget"))
            if getattr(request, field_name) != getattr(defaults, field_name)]
    return ignored


def build(request: BuildRequest) -> BuildResult:
    """Run the build; raises an ``OcrDeployError`` subclass on failure."""
    start = time.perf_counter()
    validate(request)
    source = Path(request.onnx)
    fp32_bytes, fp32_model = _read_source(source)
    meta = check_onnx(fp32_model, source)
    _check_node_names(source, fp32_model, request.keep_fp32)
    backend, why = choose_backend(request.backend)
    output = resolve_output(request, backend)
    check_writable_output(output, request.force)
    check_writable_output(sidecar_path(output), request.force)
    stages = 2 + (request.precision == "int8") + (request.verify and request.precision != "fp32")
    progress = Progress(stages, request.quiet)
    progress.note(f"backend: {backend.name} ({why})")
    for flag in ignored_options(request, backend):
        progress.warn(f"{flag} does nothing for a {request.precision} build with "
                      f"{backend.name}: ignored")

    build_info: dict = {"precision": request.precision}
    placement = calibration = calib_data = None
    if request.precision == "int8":
        placement = backend.placement()
        build_info["placement"] = placement.to_dict()
        progress.note(f"INT8 placement: {placement.name} ({placement.reason})")
        calibration, calib_data = _calibrate(request, meta, fp32_bytes, output, progress)
        build_info["calibration"] = calibration.to_dict()
    with progress.stage(f"making the {request.precision} ONNX"):
        exclusions = _exclusions(request, fp32_model, placement)
        model = _precision_model(request, fp32_model, calibration, placement,
                                 _flatten(exclusions))
    if request.verify and request.precision != "fp32":
        with progress.stage("verifying against FP32 (ONNX Runtime CPU)"):
            data = _validation_data(request, meta, calib_data)
            model, verification = _verify(request, meta, data, fp32_bytes, fp32_model, model,
                                          calibration, placement, exclusions, progress)
            build_info["verification"] = verification
    build_info["kept_in_higher_precision"] = exclusions
    meta = replace(meta, precision=request.precision, build=build_info)
    write_metadata(model, meta)
    model_bytes = model.SerializeToString()
    with progress.stage(f"building with {backend.name}"), \
            sidecar_output(output, request.force) as write:
        backend_info = backend.build(model_bytes, write.artifact_tmp, output, meta,
                                     request.precision, request, progress.note)
        if request.precision == "int8":
            build_info["int8_coverage"] = _coverage(backend, fp32_model, model,
                                                    write.artifact_tmp, exclusions, progress)
        info = {**backend_info, "backend_reason": why, "artifact": str(output),
                "source_onnx": str(source),
                "source_onnx_sha256": hashlib.sha256(fp32_bytes).hexdigest(),
                "artifact_bytes": write.artifact_tmp.stat().st_size, **build_info,
                "seconds": round(time.perf_counter() - start, 2), "metadata": meta.__dict__}
        write.companion = info
    return BuildResult(output, sidecar_path(output), info)


def _read_source(source: Path) -> tuple[bytes, onnx.ModelProto]:
    """The exported ONNX's bytes and model, read once; an unreadable file is exit 2."""
    from google.protobuf.message import DecodeError

    try:
        data = source.read_bytes()
    except OSError as exc:
        raise BadInputError(source, "a readable exported ONNX model",
                            f"an error ({exc.strerror or exc})", "check the path") from exc
    try:
        return data, onnx.load_from_string(data)
    except DecodeError as exc:
        raise BadInputError(source, "an ONNX model (from ocr-export)", "data that is not ONNX",
                            "export the model again with ocr-export") from exc


def _check_node_names(source: Path, model: onnx.ModelProto, names: list[str]) -> None:
    known = {n.name for n in model.graph.node}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise BadInputError(source, "--keep-fp32 names of nodes in the model",
                            f"unknown node(s) {', '.join(unknown[:5])}",
                            "list the node names with Netron, or read them from an INT8 "
                            "build's sidecar (int8_coverage)")


def _calibrate(request: BuildRequest, meta: ExportMetadata, fp32_bytes: bytes, output: Path,
               progress: Progress):
    if request.calib_dir is None:
        raise BadInputError(None, "--calib-dir DIR (images or .npy/.npz) for --int8",
                            "no calibration data", "point --calib-dir at ~100 typical images")
    with progress.stage(f"calibrating ({request.calib.method}, streamed)"):
        data = load_samples(request.calib_dir, meta, request.calib_samples,
                            request.skip_unreadable)
        cache_dir = request.calib_cache or output.parent / ".calibration-cache"
        result = calibrate(fp32_bytes, data, request.calib, cache_dir, request.recalibrate,
                           request.quiet, request.calib_memory_mib,
                           request.calib_providers or None)
        progress.note(f"{len(data)} samples, {len(result.ranges)} tensors; " + (
            f"reused cached ranges {result.cache_path.name}" if result.cache_hit else
            f"computed in {result.seconds:.1f} s ({result.seconds_per_sample:.2f} s per "
            f"sample, {result.passes} forward pass(es) in {result.segments} segment(s) on "
            f"{result.providers[0]}), cached as {result.cache_path.name}"))
        if data.skipped:
            progress.note(f"skipped {len(data.skipped)} unreadable file(s)")
    return result, data


def _exclusions(request: BuildRequest, fp32_model: onnx.ModelProto,
                placement: Placement | None) -> dict[str, list[str]]:
    """Nodes kept in higher precision, by reason. FP16 keeps by op type (Softmax, ...) in
    ``convert_fp16``, so only INT8 has default exclusions."""
    if request.precision == "fp32":
        return {}
    excluded = {}
    if request.precision == "int8" and not request.quantize_attention:
        excluded = default_exclusions(fp32_model, placement)
    if request.keep_fp32:
        excluded["requested"] = list(request.keep_fp32)
    return excluded


def _precision_model(request: BuildRequest, fp32_model: onnx.ModelProto, calibration,
                     placement: Placement | None, keep: list[str]) -> onnx.ModelProto:
    if request.precision == "fp16":
        return convert_fp16(_copy(fp32_model), keep_fp32=keep)
    if request.precision == "int8":
        return quantize_int8(fp32_model, calibration, placement, keep)
    return _copy(fp32_model)


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    copied = onnx.ModelProto()
    copied.CopyFrom(model)
    return copied


def _verify(request: BuildRequest, meta: ExportMetadata, data: SampleSet, fp32_bytes: bytes,
            fp32_model: onnx.ModelProto, model: onnx.ModelProto, calibration,
            placement: Placement | None, exclusions: dict, progress: Progress):
    reference = reference_labels(fp32_bytes, data, meta)

    def measure(candidate: onnx.ModelProto) -> Accuracy:
        return accuracy(predict_labels(candidate.SerializeToString(), data, meta), reference,
                        data, meta.num_classes, request.ignore_index)

    result = measure(model)
    verification = {"data": "validation set" if request.val_dir else
                    "calibration images (no --val-dir given: agreement only)",
                    "budget": request.budget.__dict__, "ignore_index": request.ignore_index,
                    "tie_tolerance": reference.tol, "accuracy": result.to_dict(),
                    "met_budget": result.meets(request.budget)}
    progress.note(_describe(result))
    if result.meets(request.budget):
        return model, verification
    if request.precision == "int8" and request.sensitivity_search:
        progress.note("INT8 misses the budget: searching for layers to keep in higher "
                      "precision")
        base = _flatten(exclusions)
        quantized = [n.name for n in fp32_model.graph.node
                     if n.op_type in ("Conv", "MatMul") and n.name not in base]

        def evaluate(kept: list[str]) -> Accuracy:
            return measure(quantize_int8(fp32_model, calibration, placement, base + kept))

        found = search(quantized, evaluate, request.budget, progress.note)
        verification["sensitivity_search"] = found.to_dict()
        if found.met_budget:
            exclusions["sensitivity_search"] = found.kept
            verification.update(accuracy=found.accuracy.to_dict(), met_budget=True)
            progress.note(f"kept {len(found.kept)} layer(s): {', '.join(found.kept)}; "
                          + _describe(found.accuracy))
            return quantize_int8(fp32_model, calibration, placement, base + found.kept), \
                verification
    raise BudgetError(request.onnx, f"{request.precision} within the budget (mIoU drop <= "
                      f"{request.budget.max_miou_drop} points, agreement >= "
                      f"{request.budget.min_agreement:.2%})", _describe(result),
                      "loosen --max-miou-drop/--min-agreement, add calibration data, or "
                      "keep layers with --keep-fp32")


def _coverage(backend: BuildBackend, fp32_model: onnx.ModelProto, model: onnx.ModelProto,
              artifact: Path, exclusions: dict, progress: Progress) -> dict:
    report = integer_coverage(fp32_model, model, backend.runtime_graph(artifact), exclusions)
    share = report["integer_mac_share"]
    progress.note(f"INT8 coverage: {share:.1%} of Conv/MatMul MACs in integer kernels "
                  f"({report['integer_layers']}/{report['layers']} layers)")
    for layer in report["not_integer"][:5]:
        progress.note(f"  not integer: {layer['name']} ({layer['mac_share']:.1%} of MACs): "
                      f"{layer['reason']}")
    if backend.name == "onnxruntime" and share < WARN_BELOW:
        progress.warn(f"only {share:.1%} of the MACs run in integer kernels (under "
                      f"{WARN_BELOW:.0%}): this INT8 artifact may be no faster than FP32")
    return report


def _validation_data(request: BuildRequest, meta: ExportMetadata,
                     calib_data: SampleSet | None) -> SampleSet:
    """The validation set, or the calibration images (already opened when INT8 was
    calibrated on the same number of them)."""
    if request.val_dir:
        return load_samples(request.val_dir, meta, request.val_samples, with_masks=True)
    if calib_data is not None and request.val_samples in (None, len(calib_data)):
        return calib_data
    if request.calib_dir:
        return load_samples(request.calib_dir, meta, request.val_samples or
                            request.calib_samples, request.skip_unreadable)
    raise BadInputError(None, "--val-dir (images + labels/) to verify the build",
                        "no validation data", "pass --val-dir, or --no-verify to skip")


def _flatten(exclusions: dict[str, list[str]]) -> list[str]:
    return [name for names in exclusions.values() for name in names]


def _describe(result: Accuracy) -> str:
    text = f"label agreement {result.agreement:.4%}"
    if result.tie_pixels:
        text += f" ({result.tie_pixels} tied pixel(s) set aside)"
    if result.miou is not None and not math.isnan(result.miou):
        text += (f", mIoU {result.miou:.2f} vs FP32 {result.miou_fp32:.2f} "
                 f"(drop {result.miou_drop:.2f} points)")
    return text
