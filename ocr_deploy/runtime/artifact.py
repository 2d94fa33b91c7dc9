"""What an artifact is (ONNX model or TensorRT engine) and the contract it was exported with.

An ONNX model carries its ``ExportMetadata`` in ``metadata_props``; a TensorRT engine
cannot, so its sidecar JSON holds it under ``"metadata"`` (see ``ocr_deploy.sidecar``).
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from ocr_deploy.errors import BadInputError
from ocr_deploy.metadata import ExportMetadata

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
    known = {f.name for f in fields(ExportMetadata)}
    return ExportMetadata(**{k: v for k, v in data.items() if k in known})


def check_contract(path: Path, metadata: ExportMetadata, backend) -> None:
    """Check that the artifact's tensors match its metadata, so later code never guesses."""
    meta = metadata
    if meta.input_layout not in ("NHWC", "NCHW") or meta.input_height <= 0 \
            or meta.input_width <= 0 or meta.input_channels not in (1, 3):
        raise BadInputError(path, "metadata with an NHWC/NCHW layout, a size and 1 or 3 "
                            "channels", f"layout {meta.input_layout!r}, size "
                            f"{meta.input_height}x{meta.input_width}, "
                            f"{meta.input_channels} channels", "re-export the model")
    if backend.input_name != meta.input_name:
        raise BadInputError(path, f"the input '{meta.input_name}' named in its metadata",
                            f"'{backend.input_name}'", "re-export the model")
    expected = (meta.input_height, meta.input_width, meta.input_channels)
    if meta.input_layout == "NCHW":
        expected = (meta.input_channels, meta.input_height, meta.input_width)
    found = backend.input_shape(1)[1:]
    if len(found) != 3 or any(f not in (-1, e) for f, e in zip(found, expected, strict=True)):
        raise BadInputError(path, f"an input shaped {list(expected)} ({meta.input_layout}) as "
                            "its metadata says", f"{list(found)}", "re-export the model")
    kinds = {spec.get("kind") for spec in meta.outputs.values()}
    if not kinds & {"logits", "labels"}:
        raise BadInputError(path, "a logits or labels output in its metadata",
                            f"outputs {sorted(meta.outputs)}", "re-export the model")
    missing = [n for n, spec in meta.outputs.items()
               if spec.get("kind") in ("logits", "labels") and n not in backend.output_names]
    if missing:
        raise BadInputError(path, f"the outputs {missing} named in its metadata",
                            f"outputs {list(backend.output_names)}", "re-export the model")
