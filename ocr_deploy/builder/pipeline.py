"""The build pipeline behind ``ocr-build-engine``:
read and check metadata -> precision ONNX (FP16 casts, or INT8 Q/DQ placed for the chosen
backend from streamed calibration) -> [``--end-to-end``: the end-to-end graph around it,
``builder.end_to_end``] -> backend build -> the verdict: the built artifact in its own
backend's runner against FP32 within the budget (INT8 that misses: a sensitivity search on
the ONNX Runtime CPU proxy, on the core, then a rebuild and a new verdict) -> [end to end:
the parity figure against ``Segmenter.predict`` on the plain core, into the metadata] ->
INT8 coverage report -> the artifact and its sidecar, written as one pair (nothing when the
verdict fails).

Verification always runs unless ``--no-verify``: on the validation set (masks optional:
agreement always, mIoU with masks), else on the calibration images, else on seeded
synthetic images in the export's input range (agreement only, said in the summary). An
end-to-end build is judged on camera-size images against ``Segmenter.predict`` on the FP32
export (``builder.end_to_end.camera_images``).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import replace
from pathlib import Path

import onnx

from ocr_deploy import backends
from ocr_deploy.backends import Backend
from ocr_deploy.backends.options import changed_declared
from ocr_deploy.backends.tensorrt.cross_build import emitted_for
from ocr_deploy.builder.job import BuildJob, Plan, flatten
from ocr_deploy.builder.request import (
    CALIB_SAMPLES,
    RECOMMENDED_CALIB_SAMPLES,
    RECOMMENDED_VAL_SAMPLES,
    SYNTHETIC_SAMPLES,
    BuildRequest,
    BuildResult,
    ignored_options,
    latest_export,
    resolve_output,
    validate,
)
from ocr_deploy.contract.metadata import ExportMetadata
from ocr_deploy.contract.signature import check_onnx
from ocr_deploy.errors import BadInputError
from ocr_deploy.files import check_writable_output
from ocr_deploy.memory_budget import MemoryBudget, format_size
from ocr_deploy.precision.calibrate import calibrate, calibration_batch
from ocr_deploy.precision.calibration_data import SampleSet, SyntheticSamples, load_samples
from ocr_deploy.precision.fp16 import convert_fp16
from ocr_deploy.precision.placement import Placement
from ocr_deploy.precision.qdq import default_exclusions, quantize_int8
from ocr_deploy.precision.shapes import forward_bytes
from ocr_deploy.progress import Progress
from ocr_deploy.sidecar import Sidecar, sidecar_output, sidecar_path
from ocr_deploy.verification.accuracy import verification_batch, verification_bytes

__all__ = ["BuildRequest", "BuildResult", "build", "latest_export"]  # the library's entry


def build(request: BuildRequest) -> BuildResult:
    """Run the build; raises an ``OcrDeployError`` subclass on failure."""
    start = time.perf_counter()
    validate(request)
    source = Path(request.onnx)
    fp32_bytes, fp32_model = read_source(source)
    meta = check_onnx(fp32_model, source)
    _check_node_names(source, fp32_model, request.keep_fp32)
    backend, why, output = _backend_and_output(request)
    emitted = backend.name == emitted_for(meta) and backend.emitter(
        request.options_for(backend)) is None
    request, dropped = _for_emitted(request, meta, source) if emitted else (request, [])
    if request.precision is None:
        raise BadInputError(source, "one of --fp32, --fp16, --int8", "none",
                            "pass the precision to build in (only a graph written by "
                            "--emit-onnx carries its own)")
    if request.end_to_end is not None:
        request.end_to_end.validate(meta, source)
    output = output or resolve_output(request, backend)
    check_writable_output(output, request.force)
    check_writable_output(sidecar_path(output), request.force)
    calibrates = request.precision == "int8" and not emitted
    stages = 2 + calibrates + request.verify \
        + (request.verify and request.end_to_end is not None)
    progress = Progress(stages, request.quiet)
    progress.note(f"backend: {backend.name} ({why})")
    for flag in ignored_options(request, backend):
        progress.warn(f"{flag} does nothing for a {request.precision} build with "
                      f"{backend.name}: ignored")
    for flag in dropped:
        progress.warn(f"{flag}: not used, {source.name} was written by --emit-onnx (its "
                      "scales and forms are in the graph)")
    options = backend.resolve_options(request.options_for(backend), fp32_model, source,
                                      progress.note)
    budget = request.memory_budget or MemoryBudget.default()
    forward = forward_bytes(fp32_model)
    batch = verification_batch(meta, forward, budget)
    memory = {"budget": budget.to_dict(), "forward_bytes_per_sample": forward,
              "verification_batch": batch}
    progress.note(f"memory budget {budget.describe()}: one forward pass holds about "
                  f"{format_size(forward)} per image; verifying {batch} at a time")
    needed = verification_bytes(meta, forward)
    if request.verify and needed > budget.bytes:
        progress.warn(f"--memory-budget {format_size(budget.bytes)} is below the "
                      f"{format_size(needed)} one verified sample needs (estimated): "
                      "verifying one at a time anyway; the build may run out of memory "
                      "(exit 7)")
    if emitted:
        plan = Plan.emitted(meta, source)
        progress.note(f"{source.name} was written by --emit-onnx: building it as it is (no "
                      "calibration), judged against it on ONNX Runtime CPU")
    else:
        plan = _plan(request, backend, options, meta, fp32_bytes, fp32_model, output,
                     progress, budget, memory)
    with progress.stage(f"making the {request.precision} ONNX"):
        model = _copy(fp32_model) if emitted else precision_model(
            request, fp32_model, plan.calibration, plan.placement, flatten(plan.exclusions),
            plan.quantized_tensors())
    data = _validation_data(request, meta, plan.calib_data, progress) if request.verify \
        else None
    if request.end_to_end is not None:
        progress.note(f"end to end: {request.end_to_end.describe()} in, labels out")
    job = BuildJob(request, backend, options, meta, fp32_bytes, fp32_model, output, progress,
                   plan, batch)
    with sidecar_output(output, request.force) as write:
        verified = job.build_and_verify(model, data, write.artifact_tmp)
        coverage = _coverage(backend, fp32_model, verified.model, write.artifact_tmp,
                             plan.exclusions, progress) if request.precision == "int8" else None
        record = Sidecar(
            backend=backend.name, facts=verified.facts, backend_reason=why,
            artifact=str(output), source_onnx=str(source),
            source_onnx_sha256=hashlib.sha256(fp32_bytes).hexdigest(),
            artifact_bytes=write.artifact_tmp.stat().st_size, precision=request.precision,
            memory=memory, cross_build=plan.cross_build, placement=plan.placement_record,
            calibration=plan.calibration_record,
            kept_in_higher_precision=plan.exclusions, verification=verified.verification,
            end_to_end_parity=verified.end_to_end_parity, int8_coverage=coverage,
            seconds=round(time.perf_counter() - start, 2), metadata=verified.meta.__dict__)
        write.companion = record.to_dict()
    return BuildResult(output, sidecar_path(output), record)


def _plan(request: BuildRequest, backend: Backend, options, meta: ExportMetadata,
          fp32_bytes: bytes, fp32_model: onnx.ModelProto, output: Path, progress: Progress,
          budget: MemoryBudget, memory: dict) -> Plan:
    """The layers kept in higher precision and, for INT8, the placement and the calibration
    (``memory`` gets the calibration batch)."""
    if request.precision != "int8":
        return Plan(exclusions=kept_layers(request, fp32_model, None),
                    cross_build=backend.cross_build)
    placement = backend.placement(options)
    progress.note(f"INT8 placement: {placement.name} ({placement.reason})")
    calib_batch = calibration_batch(meta, request.calib_memory_mib, budget)
    memory["calibration_batch"] = calib_batch
    calibration, data = _calibrate(request, meta, fp32_bytes, output, progress, calib_batch)
    return Plan(placement, calibration, data, kept_layers(request, fp32_model, placement),
                placement.to_dict(), calibration.to_dict(), backend.cross_build)


def _backend_and_output(request: BuildRequest) -> tuple[Backend, str, Path | None]:
    """The backend, why, and the artifact path when the backend fixes it: a cross-build
    (``Backend.emitter``) writes the graph a named backend would compile, without it."""
    if request.backend != "auto":
        named = backends.get(request.backend)
        emitter = named.emitter(request.options_for(named))
        if emitter is not None:
            if request.output is not None:
                raise BadInputError(request.output, "the path of the emitted graph in its "
                                    "option only", "-o as well", "drop -o")
            return emitter, emitter.reason, emitter.output
    elif any(b.emitter(request.options_for(b)) is not None for b in backends.BACKENDS):
        raise BadInputError(None, "the backend named (--backend tensorrt) for --emit-onnx",
                            "--backend auto", "add --backend tensorrt")
    backend, why = backends.choose(request.backend)
    return backend, why, None


# what a graph written by --emit-onnx already holds: given for one, they are dropped
CALIBRATION_INPUTS = ("calib_dir", "calib_samples", "calib", "recalibrate", "calib_cache",
                      "quantize_attention", "keep_fp32")


def _for_emitted(request: BuildRequest, meta: ExportMetadata, source: Path
                 ) -> tuple[BuildRequest, list[str]]:
    """The request for building a graph written by ``--emit-onnx`` as it is: its own
    precision, no calibration, no new end-to-end wrap; the flags that drops."""
    if request.precision not in (None, meta.precision):
        raise BadInputError(source, f"--{meta.precision} (the emitted graph's precision), or "
                            "no precision flag", f"--{request.precision}",
                            "drop the precision flag, or emit the graph again")
    if request.end_to_end is not None:
        raise BadInputError(source, "no --end-to-end flags (the emitted graph is "
                            f"{'already end to end' if meta.end_to_end else 'a plain core'})",
                            "--end-to-end", "drop them, or emit the graph again with them")
    dropped = changed_declared(request, names=CALIBRATION_INPUTS)
    defaults = BuildRequest(onnx=source)
    return replace(request, precision=meta.precision, **{
        name: getattr(defaults, name) for name in CALIBRATION_INPUTS}), dropped


def read_source(source: Path) -> tuple[bytes, onnx.ModelProto]:
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
               progress: Progress, batch: int):
    if request.calib_dir is None:
        raise BadInputError(None, "--calib-dir DIR (images or .npy/.npz) for --int8",
                            "no calibration data", "point --calib-dir at ~100 typical images")
    with progress.stage(f"calibrating ({request.calib.method}, streamed)"):
        data = load_samples(request.calib_dir, meta, request.calib_samples,
                            request.skip_unreadable, limit=None if request.calib_samples
                            else CALIB_SAMPLES)
        if request.calib_samples is None and len(data) < RECOMMENDED_CALIB_SAMPLES:
            progress.warn(f"{len(data)} calibration samples in {request.calib_dir}: fewer "
                          f"than the {RECOMMENDED_CALIB_SAMPLES} recommended; the ranges may "
                          "not represent the data the model will see")
        cache_dir = request.calib_cache or output.parent / ".calibration-cache"
        result = calibrate(fp32_bytes, data, request.calib, cache_dir, request.recalibrate,
                           request.quiet, request.calib_memory_mib,
                           request.calib_providers or None, batch)
        progress.note(f"{len(data)} samples, {len(result.ranges)} tensors; " + (
            f"reused cached ranges {result.cache_path.name}" if result.cache_hit else
            f"computed in {result.seconds:.1f} s ({result.seconds_per_sample:.2f} s per "
            f"sample, {result.passes} forward pass(es) in {result.segments} segment(s) on "
            f"{result.providers[0]}), cached as {result.cache_path.name}"))
        if data.skipped:
            progress.note(f"skipped {len(data.skipped)} unreadable file(s)")
    return result, data


def kept_layers(request: BuildRequest, fp32_model: onnx.ModelProto,
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


def precision_model(request: BuildRequest, fp32_model: onnx.ModelProto, calibration,
                     placement: Placement | None, keep: list[str],
                     record: dict | None = None) -> onnx.ModelProto:
    """The FP32 model made FP16 or INT8 (Q/DQ from ``calibration`` and ``placement``), with
    ``keep`` left in higher precision; ``record`` gets the tensors each placement rule
    quantised."""
    if request.precision == "fp16":
        return convert_fp16(_copy(fp32_model), keep_fp32=keep)
    if request.precision == "int8":
        return quantize_int8(fp32_model, calibration, placement, keep, request.keep_fp32,
                             record)
    return _copy(fp32_model)


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    copied = onnx.ModelProto()
    copied.CopyFrom(model)
    return copied


def _coverage(backend: Backend, fp32_model: onnx.ModelProto, model: onnx.ModelProto,
              artifact: Path, exclusions: dict, progress: Progress) -> dict:
    report = backend.coverage(fp32_model, model, artifact, exclusions)
    share = report["integer_mac_share"]
    progress.note(f"INT8 coverage: {share:.1%} of Conv/MatMul MACs in integer kernels "
                  f"({report['integer_layers']}/{report['layers']} layers)")
    for layer in report["not_integer"][:5]:
        progress.note(f"  not integer: {layer['name']} ({layer['mac_share']:.1%} of MACs): "
                      f"{layer['reason']}")
    floor = backend.coverage_warn_below
    if floor is not None and share < floor:
        progress.warn(f"only {share:.1%} of the MACs run in integer kernels (under "
                      f"{floor:.0%}): this INT8 artifact may be no faster than FP32")
    return report


def _validation_data(request: BuildRequest, meta: ExportMetadata,
                     calib_data: SampleSet | None, progress: Progress) -> SampleSet:
    """The validation set (masks if it has them), else the calibration images (already
    opened when INT8 was calibrated on the same number of them), else seeded synthetic
    images in the export's input range."""
    if request.val_dir:
        data = load_samples(request.val_dir, meta, request.val_samples, with_masks=None)
    elif calib_data is not None and request.val_samples in (None, len(calib_data)):
        return calib_data
    elif request.calib_dir:
        data = load_samples(request.calib_dir, meta, request.val_samples,
                            request.skip_unreadable,
                            limit=None if request.val_samples else CALIB_SAMPLES)
    else:
        progress.note(f"no --val-dir or --calib-dir: verifying on {SYNTHETIC_SAMPLES} seeded "
                      "synthetic images (label agreement with FP32 only)")
        return SyntheticSamples(meta, request.val_samples or SYNTHETIC_SAMPLES)
    if request.val_samples is None and len(data) < RECOMMENDED_VAL_SAMPLES:
        progress.warn(f"verifying on {len(data)} samples: fewer than the "
                      f"{RECOMMENDED_VAL_SAMPLES} recommended")
    return data
