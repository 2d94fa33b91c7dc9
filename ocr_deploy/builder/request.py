"""What ``ocr-build-engine`` is asked to do (``BuildRequest``, whose defaults the CLI
shows), where the artifact goes, and the checks of the request made before any work."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from pathlib import Path

from ocr_deploy import backends
from ocr_deploy.backends import CHOICES, Backend
from ocr_deploy.backends.options import changed_declared, changed_flags, option, part, parts
from ocr_deploy.builder.end_to_end import (
    EndToEndRequest,
    default_name,
)
from ocr_deploy.cli_support import name_list
from ocr_deploy.errors import BadInputError
from ocr_deploy.files import latest_file
from ocr_deploy.memory_budget import MemoryBudget
from ocr_deploy.precision.calibrate import (
    MEMORY_MIB,
    METHODS,
    CalibrationSettings,
    calibration_providers,
)
from ocr_deploy.sidecar import Sidecar
from ocr_deploy.verification.accuracy import (
    IGNORE_INDEX,
    Budget,
)

PRECISIONS = ("fp32", "fp16", "int8")
EXPORT_FOLDER = Path("export")
ENGINE_FOLDER = Path("engines")
CALIB_SAMPLES = 100  # default: up to this many calibration samples
RECOMMENDED_CALIB_SAMPLES = 100  # fewer get a warning
RECOMMENDED_VAL_SAMPLES = 20
SYNTHETIC_SAMPLES = 16  # verification images when no data is given


def bounded(kind, low: float, high: float, what: str):
    """An argparse type: ``kind`` within ``[low, high]`` (finite)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected {what}, found '{text}'")
        return value
    return parse


def _label_value(text: str) -> int | None:
    """``--ignore-index``: a label value, or -1 for none."""
    value = bounded(int, -1, 65535, "a label value, or -1")(text)
    return None if value < 0 else value


_COUNT = bounded(int, 1, 1 << 30, "a count >= 1")
CALIBRATION, VERIFICATION = "calibration", "verification"  # help sections (``group``)
INT8, INT8_OR_VALIDATION, VERIFY = "int8", "int8 or validation", "verify"  # ``needs``


@dataclass
class BuildRequest:
    """Everything ``ocr-build-engine`` can be asked to do. The fields declared with
    ``option``/``parts`` are the CLI's flags (defaults, help, section and when they do
    something, ``backends.options``); the others the CLI sets by hand."""

    onnx: Path
    precision: str | None = "fp32"  # None: the precision of a graph --emit-onnx wrote
    backend: str = option(
        "auto", "--backend", choices=CHOICES,
        help="auto: TensorRT if it and a GPU exist, else ONNX Runtime (default: %(default)s)")
    output: Path | None = option(  # default: engines/<onnx stem>_<precision><suffix>
        None, "--output", short="-o", parse=Path,
        help="artifact path (default engines/<model>_<precision>.engine|.onnx)")
    force: bool = False
    calib_dir: Path | None = option(
        None, "--calib-dir", parse=Path, metavar="DIR", group=CALIBRATION,
        needs=INT8_OR_VALIDATION,
        help="images (png/jpg) or .npy/.npz arrays (required for --int8); they also verify "
             "the build when there is no --val-dir (default: none)")
    calib_samples: int | None = option(  # None: up to CALIB_SAMPLES (fewer: all, warned)
        None, "--calib-samples", parse=_COUNT, metavar="N", group=CALIBRATION,
        needs=INT8_OR_VALIDATION,
        help=f"exactly N samples to calibrate on (default: up to {CALIB_SAMPLES}, all "
             "there are when fewer)")
    calib: CalibrationSettings = parts(
        CalibrationSettings,
        part("method", "--calib-method", "range method (default: %(default)s)",
             choices=METHODS),
        part("percentile", "--percentile", "for --calib-method percentile (default: "
             "%(default)s)", bounded(float, 1e-9, 100, "a percentile in (0, 100]")),
        group=CALIBRATION, needs=INT8)
    calib_memory_mib: int = option(  # activations per inference while calibrating
        MEMORY_MIB, "--calib-memory-mib", parse=bounded(int, 16, 1 << 20, "MiB >= 16"),
        metavar="MIB", group=CALIBRATION, needs=INT8,
        help="activations held per sample while calibrating; the model runs in segments "
             "that fit (default: %(default)s)")
    calib_providers: list[str] = option(  # empty: CUDA if there, else CPU
        None, "--calib-providers", factory=list, parse=name_list, metavar="LIST",
        group=CALIBRATION, needs=INT8,
        help="ONNX Runtime execution providers to calibrate on, comma-separated (cuda, cpu "
             "or full names; default: CUDA where onnxruntime-gpu has it, else CPU)")
    skip_unreadable: bool = option(
        False, "--skip-unreadable", action="store_true", group=CALIBRATION,
        help="skip unreadable calibration files with a warning")
    recalibrate: bool = option(False, "--recalibrate", action="store_true",
                               group=CALIBRATION, needs=INT8,
                               help="ignore the calibration cache")
    calib_cache: Path | None = option(  # default: <output folder>/.calibration-cache
        None, "--calib-cache", parse=Path, metavar="DIR", group=CALIBRATION, needs=INT8,
        help="calibration cache folder (default <output folder>/.calibration-cache)")
    quantize_attention: bool = option(  # default keeps attention core + classifier in FP32
        False, "--quantize-attention", action="store_true", group=CALIBRATION, needs=INT8,
        help="also quantise the attention core and the classifier")
    keep_fp32: list[str] = option(  # more nodes kept in higher precision
        None, "--keep-fp32", factory=list, nargs="+", metavar="NODE", group=CALIBRATION,
        help="ONNX node names to keep in higher precision (default: none beyond the "
             "placement's own)")
    val_dir: Path | None = option(  # images, with masks in val_dir/labels/ if any
        None, "--val-dir", parse=Path, metavar="DIR", group=VERIFICATION, needs=VERIFY,
        help="validation images; masks in DIR/labels/ (same file names) add mIoU (default: "
             f"the calibration images, else {SYNTHETIC_SAMPLES} seeded synthetic images, "
             "agreement only)")
    val_samples: int | None = option(  # None: all
        None, "--val-samples", parse=_COUNT, metavar="N", group=VERIFICATION, needs=VERIFY,
        help="validation samples (default: all)")
    budget: Budget = parts(
        Budget,
        part("max_miou_drop", "--max-miou-drop", "in mIoU points (default: %(default)s)",
             bounded(float, 0, 100, "mIoU points in [0, 100]")),
        part("min_agreement", "--min-agreement",
             "minimum fraction of (non-tied) pixels labelled as FP32 labels them "
             "(default: %(default)s)", bounded(float, 0, 1, "a fraction in [0, 1]")),
        group=VERIFICATION, needs=VERIFY)
    ignore_index: int | None = option(
        IGNORE_INDEX, "--ignore-index", parse=_label_value, group=VERIFICATION,
        help="mask value left out of mIoU and agreement; -1: none (default: %(default)s)")
    verify: bool = option(True, "--no-verify", action="store_false", group=VERIFICATION,
                          help="skip verification")
    sensitivity_search: bool = option(
        True, "--no-sensitivity-search", action="store_false", group=VERIFICATION,
        needs=INT8, help="fail instead of searching for layers to keep when INT8 misses")
    end_to_end: EndToEndRequest | None = None  # camera pixels in, label map out
    # backend name -> its options (``Backend.options_type``); missing: the defaults
    backend_options: dict = field(default_factory=dict)
    memory_budget: MemoryBudget | None = None  # None: memory_budget's default, read at start
    quiet: bool = False

    def options_for(self, backend: Backend):
        """The build options given for ``backend`` (its defaults when none were)."""
        return self.backend_options.get(backend.name) or backend.options_type()


@dataclass
class BuildResult:
    """The artifact, its sidecar and what it contains."""

    artifact: Path
    sidecar: Path
    record: Sidecar

    @property
    def info(self) -> dict:
        """The sidecar as written (JSON-ready, without the artifact's SHA-256)."""
        return self.record.to_dict()


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
    if request.precision not in (*PRECISIONS, None):  # None: an emitted graph's own
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
    of the other backends, and those this precision does not use (``needs``)."""
    ignored = [flag for other in backends.BACKENDS if other.name != backend.name
               for flag in changed_flags(request.options_for(other))]
    unused = set()
    if request.precision != "int8":
        unused.add(INT8)
        if not (request.verify and not request.val_dir):  # else the calibration images
            unused.add(INT8_OR_VALIDATION)                 # validate
    if not request.verify:
        unused.add(VERIFY)
    return ignored + changed_declared(request, unused)
