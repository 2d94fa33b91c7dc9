"""Build backends, one module each: ONNX Runtime (CPU, or its GPU execution providers) and
TensorRT. ``choose_backend("auto")`` takes TensorRT where it and a GPU are usable."""

from __future__ import annotations

from ocr_deploy.builder.backends.base import BuildBackend
from ocr_deploy.builder.backends.onnxruntime import OnnxRuntimeBuild
from ocr_deploy.builder.backends.tensorrt import TensorRTBuild
from ocr_deploy.errors import BadInputError

BACKENDS: dict[str, type[BuildBackend]] = {"onnxruntime": OnnxRuntimeBuild,
                                           "tensorrt": TensorRTBuild}
CHOICES = ("auto", *BACKENDS)


def get_backend(name: str) -> BuildBackend:
    """The backend called ``name``; an unknown name is a clear error."""
    if name not in BACKENDS:
        raise BadInputError(None, f"a backend in {', '.join(CHOICES)}", f"'{name}'",
                            "pass one of them to --backend")
    return BACKENDS[name]()


def choose_backend(requested: str) -> tuple[BuildBackend, str]:
    """Resolve ``auto`` (TensorRT when usable, else ONNX Runtime); check an explicit one."""
    tensorrt = TensorRTBuild()
    if requested == "auto":
        ok, reason = tensorrt.availability()
        return (tensorrt, reason) if ok else (OnnxRuntimeBuild(),
                                              f"{reason}: using ONNX Runtime")
    backend = get_backend(requested)
    ok, reason = backend.availability()
    if not ok:
        raise BadInputError(None, f"{backend.label} for --backend {backend.name}",
                            reason, "use --backend onnxruntime, or install the 'tensorrt' "
                            "extra on a GPU machine")
    return backend, "requested"


__all__ = ["BACKENDS", "CHOICES", "BuildBackend", "choose_backend", "get_backend"]
