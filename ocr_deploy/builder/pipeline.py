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
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import onnx

from ocr_deploy import backends
from ocr_deploy.backends import Backend
from ocr_deploy.backends.options import changed_flags
from ocr_deploy.builder.end_to_end import (
    EndToEndRequest,
    camera_images,
    cpu_segmenter,
    default_name,
    parity_images,
)
from ocr_deploy.end_to_end_parity import end_to_end_parity
from ocr_deploy.errors import BadInputError, BudgetError
from ocr_deploy.files import check_writable_output, latest_file
from ocr_deploy.graph.end_to_end import record_parity
from ocr_deploy.metadata import ExportMetadata, write_metadata
from ocr_deploy.precision.calibrate import (
    MEMORY_MIB,
    CalibrationSettings,
    calibrate,
    calibration_providers,
)
from ocr_deploy.precision.calibration_data import SampleSet, SyntheticSamples, load_samples
from ocr_deploy.precision.evaluate import (
    IGNORE_INDEX,
    Accuracy,
    Budget,
    artifact_accuracy,
    end_to_end_accuracy,
    proxy_accuracy,
    reference,
)
from ocr_deploy.precision.fp16 import convert_fp16
from ocr_deploy.precision.placement import Placement
from ocr_deploy.precision.qdq import default_exclusions, quantize_int8
from ocr_deploy.precision.sensitivity import search
from ocr_deploy.progress import Progress
from ocr_deploy.runtime.artifact import check_contract
from ocr_deploy.runtime.segmenter import Segmenter
from ocr_deploy.sidecar import sidecar_output, sidecar_path
from ocr_deploy.signature import check_onnx

PRECISIONS = ("fp32", "fp16", "int8")
EXPORT_FOLDER = Path("export")
ENGINE_FOLDER = Path("engines")
CALIB_SAMPLES = 100  # default: up to this many calibration samples
RECOMMENDED_CALIB_SAMPLES = 100  # fewer get a warning
RECOMMENDED_VAL_SAMPLES = 20
SYNTHETIC_SAMPLES = 16  # verification images when no data is given


@dataclass
class BuildRequest:
    """Everything ``ocr-build-engine`` can be asked to do (the CLI takes its defaults here)."""

    onnx: Path
    precision: str = "fp32"
    backend: str = "auto"
    output: Path | None = None  # default: engines/<onnx stem>_<precision><backend suffix>
    force: bool = False
    calib_dir: Path | None = None
    calib_samples: int | None = None  # None: up to CALIB_SAMPLES (fewer: all, with a warning)
    calib: CalibrationSettings = field(default_factory=CalibrationSettings)
    calib_memory_mib: int = MEMORY_MIB  # activations per inference while calibrating
    calib_providers: list[str] = field(default_factory=list)  # empty: CUDA if there, else CPU
    skip_unreadable: bool = False
    recalibrate: bool = False
    calib_cache: Path | None = None  # default: <output folder>/.calibration-cache
    quantize_attention: bool = False  # default keeps attention core + classifier in FP32
    keep_fp32: list[str] = field(default_factory=list)  # more nodes kept in higher precision
    verify: bool = True
    val_dir: Path | None = None  # images, with masks in val_dir/labels/ if there are any
    val_samples: int | None = None  # None: all
    budget: Budget = field(default_factory=Budget)
    ignore_index: int | None = IGNORE_INDEX
    sensitivity_search: bool = True
    end_to_end: EndToEndRequest | None = None  # camera pixels in, label map out
    # backend name -> its options (``Backend.options_type``); missing: the defaults
    backend_options: dict = field(default_factory=dict)
    quiet: bool = False

    def options_for(self, backend: Backend):
        """The build options given for ``backend`` (its defaults when none were)."""
        return self.backend_options.get(backend.name) or backend.options_type()


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


def default_output(onnx_path: Path, precision: str, backend: Backend,
                   end_to_end: bool = False) -> Path:
    """``engines/<model>_<precision>[_e2e]<suffix>``."""
    stem = f"{Path(onnx_path).stem}_{precision}"
    return ENGINE_FOLDER / f"{default_name(stem) if end_to_end else stem}{backend.suffix}"


def resolve_output(request: BuildRequest, backend: Backend) -> Path:
    """The artifact path: ``-o`` (a suffix-less name gets the backend's suffix) or the
    default; a folder, or a suffix of another backend's artifact, is an error."""
    if request.output is None:
        return default_output(request.onnx, request.precision, backend,
                              request.end_to_end is not None)
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


def ignored_options(request: BuildRequest, backend: Backend) -> list[str]:
    """Options given that do nothing for this precision and backend (the CLI warns): those
    of the other backends, and those this precision does not use."""
    ignored = [flag for other in backends.BACKENDS if other is not backend
               for flag in changed_flags(request.options_for(other))]
    defaults = BuildRequest(onnx=request.onnx)

    def changed(*pairs: tuple[str, str]) -> list[str]:
        return [flag for flag, name in pairs
                if getattr(request, name) != getattr(defaults, name)]

    calib_validates = request.verify and not request.val_dir
    if request.precision != "int8":
        if not calib_validates:  # without --val-dir the calibration images validate
            ignored += changed(("--calib-dir", "calib_dir"), ("--calib-samples", "calib_samples"))
        ignored += changed(("--recalibrate", "recalibrate"), ("--calib-cache", "calib_cache"),
                           ("--quantize-attention", "quantize_attention"),
                           ("--no-sensitivity-search", "sensitivity_search"),
                           ("--calib-memory-mib", "calib_memory_mib"),
                           ("--calib-providers", "calib_providers"),
                           ("--calib-method/--percentile", "calib"))
    if not request.verify:
        ignored += changed(("--val-dir", "val_dir"), ("--val-samples", "val_samples"),
                           ("--max-miou-drop/--min-agreement", "budget"))
    return ignored


def build(request: BuildRequest) -> BuildResult:
    """Run the build; raises an ``OcrDeployError`` subclass on failure."""
    start = time.perf_counter()
    validate(request)
    source = Path(request.onnx)
    fp32_bytes, fp32_model = _read_source(source)
    meta = check_onnx(fp32_model, source)
    _check_node_names(source, fp32_model, request.keep_fp32)
    backend, why = backends.choose(request.backend)
    if request.end_to_end is not None:
        request.end_to_end.validate(meta, backend.name, source)
    output = resolve_output(request, backend)
    check_writable_output(output, request.force)
    check_writable_output(sidecar_path(output), request.force)
    stages = 2 + (request.precision == "int8") + request.verify \
        + (request.verify and request.end_to_end is not None)
    progress = Progress(stages, request.quiet)
    progress.note(f"backend: {backend.name} ({why})")
    for flag in ignored_options(request, backend):
        progress.warn(f"{flag} does nothing for a {request.precision} build with "
                      f"{backend.name}: ignored")
    options = backend.resolve_options(request.options_for(backend), fp32_model, source,
                                      progress.note)
    job = _Job(request, backend, options, meta, fp32_bytes, fp32_model, output, progress)
    if request.precision == "int8":
        job.placement = backend.placement(options)
        job.info["placement"] = job.placement.to_dict()
        progress.note(f"INT8 placement: {job.placement.name} ({job.placement.reason})")
        job.calibration, job.calib_data = _calibrate(request, meta, fp32_bytes, output,
                                                     progress)
        job.info["calibration"] = job.calibration.to_dict()
    with progress.stage(f"making the {request.precision} ONNX"):
        job.exclusions = _exclusions(request, fp32_model, job.placement)
        model = _precision_model(request, fp32_model, job.calibration, job.placement,
                                 _flatten(job.exclusions))
    data = _validation_data(request, meta, job.calib_data, progress) if request.verify \
        else None
    if request.end_to_end is not None:
        progress.note(f"end to end: {request.end_to_end.describe()} in, labels out")
    with sidecar_output(output, request.force) as write:
        model, backend_info = job.build_and_verify(model, data, write.artifact_tmp)
        if request.precision == "int8":
            job.info["int8_coverage"] = _coverage(backend, fp32_model, model,
                                                  write.artifact_tmp, job.exclusions, progress)
        info = {"backend": backend.name, **backend_info, "backend_reason": why,
                "artifact": str(output), "source_onnx": str(source),
                "source_onnx_sha256": hashlib.sha256(fp32_bytes).hexdigest(),
                "artifact_bytes": write.artifact_tmp.stat().st_size, **job.info,
                "seconds": round(time.perf_counter() - start, 2),
                "metadata": job.meta.__dict__}
        write.companion = info
    return BuildResult(output, sidecar_path(output), info)


@dataclass
class _Job:
    """One build's state: what it was asked, what it chose, what it found."""

    request: BuildRequest
    backend: Backend
    options: object
    source_meta: ExportMetadata
    fp32_bytes: bytes
    fp32_model: onnx.ModelProto
    output: Path
    progress: Progress
    placement: Placement | None = None
    calibration: object = None
    calib_data: SampleSet | None = None
    exclusions: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    meta: ExportMetadata | None = None
    core: tuple[bytes, ExportMetadata] | None = None  # an end-to-end build's plain core

    def __post_init__(self):
        self.info["precision"] = self.request.precision

    def build_and_verify(self, model: onnx.ModelProto, data: SampleSet | None, target: Path
                         ) -> tuple[onnx.ModelProto, dict]:
        """Build ``model`` into ``target`` and give the verdict on what was built; INT8 that
        misses the budget is searched (proxy), rebuilt and judged again. Raises
        ``BudgetError`` when the built artifact misses the budget."""
        built = self._build(model, target)
        if data is None:
            return model, built
        accuracy = self._verdict(target, built, data)
        request = self.request
        if not accuracy.meets(request.budget) and request.precision == "int8" \
                and request.sensitivity_search:
            model = self._search(data, accuracy)
            built = self._build(model, target)
            accuracy = self._verdict(target, built, data)
        self.info["verification"].update(accuracy=accuracy.to_dict(),
                                         met_budget=accuracy.meets(request.budget))
        if not accuracy.meets(request.budget):
            raise BudgetError(request.onnx, f"{request.precision} within the budget (mIoU "
                              f"drop <= {request.budget.max_miou_drop} points, agreement >= "
                              f"{request.budget.min_agreement:.2%})", _describe(accuracy),
                              "loosen --max-miou-drop/--min-agreement, add calibration data, "
                              "or keep layers with --keep-fp32")
        if request.end_to_end is not None:
            self._parity(target, built)
        return model, built

    def _build(self, model: onnx.ModelProto, target: Path) -> dict:
        self.info["kept_in_higher_precision"] = self.exclusions
        self.meta = replace(self.source_meta, precision=self.request.precision,
                            build={k: v for k, v in self.info.items() if k != "verification"})
        write_metadata(model, self.meta)
        e2e = self.request.end_to_end
        if e2e is not None:
            self.core = model.SerializeToString(), self.meta
            model, self.meta = e2e.wrap(model, self.meta, self.backend.name, self.request.onnx)
            self.progress.note(f"wrapped end to end for {self.backend.name}: labels "
                               f"{self.meta.end_to_end['forms']['labels']}, argmax "
                               f"{self.meta.end_to_end['forms']['argmax']}")
        with self.progress.stage(f"building with {self.backend.name}"):
            return self.backend.build(model.SerializeToString(), target, self.output,
                                      self.meta, self.request.precision, self.options,
                                      self.progress.note)

    def _verdict(self, target: Path, built: dict, data: SampleSet) -> Accuracy:
        """The built artifact through its own backend's runner against FP32 (an end-to-end
        one on camera-size images against ``Segmenter.predict`` on the FP32 export)."""
        backend, e2e = self.backend, self.request.end_to_end is not None
        if e2e:
            data = camera_images(data, self.meta, self.request.val_samples or SYNTHETIC_SAMPLES)
        with self.progress.stage(f"verifying the built artifact against FP32 ({backend.name} "
                                 f"runner, {data.description})"):
            runner = backend.open_runner(target, {"backend": backend.name, **built})
            try:
                check_contract(target, self.meta, runner)
                if e2e:
                    with cpu_segmenter(self.fp32_bytes, self.source_meta, "fp32") as fp32:
                        accuracy = end_to_end_accuracy(
                            Segmenter(runner, self.meta, target), fp32, data,
                            data.data.folder if data.data else None, self.request.ignore_index)
                else:
                    accuracy = artifact_accuracy(runner, self.fp32_bytes, data, self.meta,
                                                 self.request.ignore_index)
            finally:
                runner.close()
            self.info.setdefault("verification", {}).update({
                "data": data.description, "samples": len(data),
                "runner": accuracy.runner, "budget": self.request.budget.__dict__,
                "ignore_index": self.request.ignore_index})
            self.progress.note(_describe(accuracy))
        return accuracy

    def _parity(self, target: Path, built: dict) -> None:
        """An end-to-end artifact's labels against ``Segmenter.predict`` on its plain core
        (ONNX Runtime CPU) on images of the sizes it takes: into its metadata, the sidecar."""
        backend = self.backend
        images = parity_images(self.meta)
        with self.progress.stage(f"end-to-end parity against Segmenter.predict on the plain "
                                 f"{self.request.precision} core ({len(images)} images)"):
            runner = backend.open_runner(target, {"backend": backend.name, **built})
            core_bytes, core_meta = self.core
            try:
                with cpu_segmenter(core_bytes, core_meta, "plain core") as plain:
                    report = end_to_end_parity(Segmenter(runner, self.meta, target), plain,
                                               images)
            finally:
                runner.close()
            report["reference"] += f" (the plain {self.request.precision} core on ONNX " \
                "Runtime CPU)"
            self.meta = record_parity(None, self.meta, report)
            backend.store_metadata(target, self.meta)
            self.info["end_to_end_parity"] = report
            self.progress.note(f"labels agree with Segmenter.predict on "
                               f"{report['agreement']:.4%} of {report['pixels']} pixels "
                               f"({report['agreement_excl_ties']:.4%} outside ties)")
            if report["agreement_excl_ties"] < 1.0:
                self.progress.warn("the end-to-end labels differ from Segmenter.predict on "
                                   "the plain core outside ties (see end_to_end_parity)")

    def _search(self, data: SampleSet, missed: Accuracy) -> onnx.ModelProto:
        """Layers to keep in higher precision, ranked and searched on the ONNX Runtime CPU
        proxy; returns the INT8 model with them kept."""
        request, progress = self.request, self.progress
        progress.note("INT8 misses the budget: searching for layers to keep in higher "
                      "precision (on the ONNX Runtime CPU proxy)")
        ref = reference(self.fp32_bytes, data, self.source_meta)
        base = _flatten(self.exclusions)
        quantized = [n.name for n in self.fp32_model.graph.node
                     if n.op_type in ("Conv", "MatMul") and n.name not in base]

        def quantize(kept: list[str]) -> onnx.ModelProto:
            return quantize_int8(self.fp32_model, self.calibration, self.placement,
                                 base + kept, request.keep_fp32)

        def evaluate(kept: list[str]) -> Accuracy:
            return proxy_accuracy(quantize(kept).SerializeToString(), data, self.source_meta,
                                  ref, request.ignore_index)

        found = search(quantized, evaluate, request.budget, progress.note)
        self.info.setdefault("verification", {})["sensitivity_search"] = {
            **found.to_dict(), "first_verdict": missed.to_dict()}
        if not found.met_budget:
            raise BudgetError(request.onnx, f"INT8 within the budget with layers kept in "
                              f"higher precision (mIoU drop <= {request.budget.max_miou_drop} "
                              f"points, agreement >= {request.budget.min_agreement:.2%})",
                              f"{_describe(found.accuracy)} even with all {len(quantized)} "
                              "searched layers kept (proxy)", "loosen --max-miou-drop/"
                              "--min-agreement, add calibration data, or build --fp16")
        self.exclusions["sensitivity_search"] = found.kept
        progress.note(f"keeping {len(found.kept)} layer(s): {', '.join(found.kept)}; proxy "
                      + _describe(found.accuracy))
        return quantize(found.kept)


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
                            request.skip_unreadable, limit=None if request.calib_samples
                            else CALIB_SAMPLES)
        if request.calib_samples is None and len(data) < RECOMMENDED_CALIB_SAMPLES:
            progress.warn(f"{len(data)} calibration samples in {request.calib_dir}: fewer "
                          f"than the {RECOMMENDED_CALIB_SAMPLES} recommended; the ranges may "
                          "not represent the data the model will see")
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
        return quantize_int8(fp32_model, calibration, placement, keep, request.keep_fp32)
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
