"""What ``ocr-build-engine`` is asked to do (``BuildRequest``, whose defaults the CLI
shows), where the artifact goes, and the checks of the request made before any work."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ocr_deploy import backends
from ocr_deploy.backends import Backend
from ocr_deploy.backends.options import changed_flags
from ocr_deploy.builder.end_to_end import (
    EndToEndRequest,
    default_name,
)
from ocr_deploy.errors import BadInputError
from ocr_deploy.files import latest_file
from ocr_deploy.memory_budget import MemoryBudget
from ocr_deploy.precision.calibrate import (
    MEMORY_MIB,
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


@dataclass
class BuildRequest:
    """Everything ``ocr-build-engine`` can be asked to do (the CLI takes its defaults here)."""

    onnx: Path
    precision: str | None = "fp32"  # None: the precision of a graph --emit-onnx wrote
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
    of the other backends, and those this precision does not use."""
    ignored = [flag for other in backends.BACKENDS if other.name != backend.name
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
