"""The backends — one package each — and the one registry everything asks.

``get(name)`` by ``--backend`` name, ``for_artifact(path)`` by artifact, ``choose(name)``
resolving ``auto`` (the first available in ``BACKENDS``: TensorRT where it and a GPU are
usable, else ONNX Runtime). The builder, the runtime, packaging, serving, benchmarks, the
C bridge and every ``--backend`` choice use these; none of them tests which backend it has.

Adding a backend: a package ``ocr_deploy/backends/NAME/`` whose ``BACKEND`` implements
``backends.base.Backend`` (with its options dataclass, build, runner, placement and
artifact facts), and its line in ``BACKENDS`` below.
"""

from __future__ import annotations

from pathlib import Path

from ocr_deploy.backends import onnxruntime, tensorrt
from ocr_deploy.backends.base import Backend
from ocr_deploy.errors import BadInputError
from ocr_deploy.graph.target import unknown_backend

BACKENDS: tuple[Backend, ...] = (tensorrt.BACKEND, onnxruntime.BACKEND)  # auto's order
NAMES = tuple(b.name for b in BACKENDS)
CHOICES = ("auto", *sorted(NAMES))
KERAS_SUFFIXES = (".h5", ".keras")


def get(name: str) -> Backend:
    """The backend called ``name``; an unknown name is a clear error."""
    for backend in BACKENDS:
        if backend.name == name:
            return backend
    raise unknown_backend(name, NAMES)


def for_artifact(path: Path) -> Backend:
    """The backend that runs the artifact at ``path`` (by its suffix); a Keras model, a
    folder, a missing or empty file or another file type is a clear error."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in KERAS_SUFFIXES or path.is_dir():
        raise BadInputError(path, "an exported artifact (" + ", ".join(
            b.suffix for b in BACKENDS) + ")", "a Keras model", "export it first with ocr-export")
    backend = next((b for b in BACKENDS if suffix in b.suffixes), None)
    if backend is None:
        known = ", ".join(s for b in BACKENDS for s in b.suffixes)
        raise BadInputError(path, f"an artifact ({known})",
                            f"a '{suffix or 'suffix-less'}' file", "pass an exported artifact")
    if not path.is_file():
        raise BadInputError(path, "an existing file", "no such file", "check the path")
    if path.stat().st_size == 0:
        raise BadInputError(path, "a model file", "an empty file", "re-export or rebuild it")
    return backend


def choose(requested: str) -> tuple[Backend, str]:
    """Resolve ``auto`` (the first available backend); check an explicit one."""
    if requested == "auto":
        reasons = []
        for backend in BACKENDS:
            ok, reason = backend.availability()
            if ok:
                return backend, (f"{'; '.join(reasons)}: using {backend.label}" if reasons
                                 else reason)
            reasons.append(reason)
    backend = get(requested)
    ok, reason = backend.availability()
    if not ok:
        fallback = next(b for b in BACKENDS if b.availability()[0])
        raise BadInputError(None, f"{backend.label} for --backend {backend.name}", reason,
                            f"use --backend {fallback.name}, or install what it needs "
                            "(docs/install.md)")
    return backend, "requested"


def by_triton_platform() -> dict[str, str]:
    """``{Triton platform: backend name}``."""
    return {b.triton_platform: b.name for b in BACKENDS}


__all__ = ["BACKENDS", "CHOICES", "NAMES", "Backend", "by_triton_platform", "choose",
           "for_artifact", "get"]
