"""The sidecar JSON written beside every built artifact (``NAME.engine.json``,
``NAME.onnx.json``): how it was built, for what, and how accurate it is.

A TensorRT engine cannot carry ONNX metadata, so its sidecar also holds the exported
model's ``ExportMetadata`` under ``"metadata"``; the runtime reads it from there.
"""

from __future__ import annotations

import json
from pathlib import Path

from ocr_deploy.errors import BadInputError
from ocr_deploy.files import write_bytes_atomic


def sidecar_path(artifact: Path) -> Path:
    """``engines/x.engine`` -> ``engines/x.engine.json``."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".json")


def write_sidecar(artifact: Path, data: dict) -> Path:
    """Write the sidecar of ``artifact`` atomically; return its path."""
    path = sidecar_path(artifact)
    write_bytes_atomic(path, (json.dumps(data, indent=2, default=str) + "\n").encode())
    return path


def read_sidecar(artifact: Path) -> dict:
    """Read the sidecar of ``artifact``; a missing or malformed one is a clear error."""
    path = sidecar_path(artifact)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise BadInputError(artifact, f"its sidecar {path.name} beside it", "none",
                            "rebuild it with ocr-build-engine, which writes both") from None
    except (OSError, ValueError) as exc:
        raise BadInputError(path, "a JSON sidecar", f"unreadable content ({exc})",
                            "rebuild the artifact with ocr-build-engine") from exc
