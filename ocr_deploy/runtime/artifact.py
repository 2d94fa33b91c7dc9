"""What an artifact is (ONNX model or TensorRT engine) and the contract it was exported with.

An ONNX model carries its ``ExportMetadata`` in ``metadata_props``; a TensorRT engine
cannot, so its sidecar JSON holds it under ``"metadata"`` (see ``ocr_deploy.sidecar``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ocr_deploy.errors import BadInputError
from ocr_deploy.metadata import ExportMetadata
from ocr_deploy.signature import Signature, Tensor, check_signature

ONNX_SUFFIXES = (".onnx",)
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
KERAS_SUFFIXES = (".h5", ".keras")


def artifact_kind(path: Path) -> str:
    """``"onnx"`` or ``"engine"``; anything else (missing, empty, other type) is an error."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in KERAS_SUFFIXES or path.is_dir():
        raise BadInputError(path, "an exported artifact (.onnx or .engine)",
                            "a Keras model", "export it first with ocr-export")
    if suffix not in ONNX_SUFFIXES + ENGINE_SUFFIXES:
        raise BadInputError(path, "an .onnx model or a TensorRT .engine",
                            f"a '{suffix or 'suffix-less'}' file", "pass an exported artifact")
    if not path.is_file():
        raise BadInputError(path, "an existing file", "no such file", "check the path")
    if path.stat().st_size == 0:
        raise BadInputError(path, "a model file", "an empty file", "re-export or rebuild it")
    return "onnx" if suffix in ONNX_SUFFIXES else "engine"


def engine_metadata(path: Path, sidecar: dict) -> ExportMetadata:
    """The ``ExportMetadata`` stored in an engine's sidecar under ``"metadata"``."""
    data = sidecar.get("metadata")
    if not isinstance(data, dict) or not data:
        raise BadInputError(path, "a sidecar holding the exported model's metadata "
                            "under 'metadata'", "none", "rebuild it with ocr-build-engine")
    return ExportMetadata.from_dict(data, path)


def check_contract(path: Path, metadata: ExportMetadata, backend) -> None:
    """Check that the loaded artifact's tensors fit its metadata (``ocr_deploy.signature``),
    so later code never guesses; a mismatch is ``MetadataError`` (exit 2)."""
    def tensor(name: str, shape, dtype) -> Tensor:
        return Tensor(name, tuple(int(d) for d in shape), np.dtype(dtype))

    inputs = (tensor(backend.input_name, backend.input_shape(1), backend.input_dtype),)
    outputs = tuple(tensor(n, backend.output_shape(n, 1), backend.output_dtype(n))
                    for n in backend.output_names)
    check_signature(path, metadata, Signature(inputs, outputs))
