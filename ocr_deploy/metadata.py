"""The metadata an exported ONNX carries (``metadata_props``), read by every later stage.

Pure Python: usable from the runtime without TensorFlow. Each field is stored under the
key ``ocr_deploy.<field>`` with a JSON value, so tools like Netron show them readably.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ocr_deploy.errors import BadInputError

PREFIX = "ocr_deploy."
FORMAT_VERSION = 1


@dataclass
class ExportMetadata:
    """What an exported OCRNet is: its input contract, its outputs, and where it came from."""

    input_name: str = "image"
    input_layout: str = "NHWC"  # or "NCHW"
    input_height: int = 0
    input_width: int = 0
    input_channels: int = 3
    color_order: str = "RGB"
    # pixel = (uint8 value - mean) / std, per channel; in_graph: the ONNX does it itself
    normalization: dict = field(default_factory=lambda: {"mean": [0.0] * 3, "std": [1.0] * 3,
                                                         "in_graph": False})
    resize: str = "bilinear, half-pixel centres"
    num_classes: int = 0
    class_names: list[str] = field(default_factory=list)
    palette: list[list[int]] = field(default_factory=list)
    # name -> {"kind": "logits"|"labels"|"aux_logits", "layout": ..., "stride": ...}
    outputs: dict = field(default_factory=dict)
    precision: str = "fp32"
    build: dict = field(default_factory=dict)  # reduced precision: kept layers, calibration
    source: dict = field(default_factory=dict)  # file, sha256, format, keras flavour/version
    tools: dict = field(default_factory=dict)  # versions and opset
    parity: dict = field(default_factory=dict)  # summary of the export parity check
    attention: dict = field(default_factory=dict)  # the attention-core form and its report
    notes: dict = field(default_factory=dict)  # the model card's notes (training figures)
    format_version: int = FORMAT_VERSION

    def to_props(self) -> dict[str, str]:
        """Serialise to ONNX ``metadata_props`` key/value strings."""
        return {PREFIX + key: json.dumps(value) for key, value in asdict(self).items()}

    @classmethod
    def from_props(cls, props: dict[str, str], origin: object = None) -> ExportMetadata:
        """Parse ``metadata_props``; a model without them is a clear error."""
        ours = {k[len(PREFIX):]: v for k, v in props.items() if k.startswith(PREFIX)}
        if not ours:
            raise BadInputError(origin, "an ONNX exported by ocr-export (with ocr_deploy.* "
                                "metadata)", "no ocr_deploy metadata",
                                "export the Keras model with ocr-export first")
        known = {f.name for f in fields(cls)}
        try:
            values = {k: json.loads(v) for k, v in ours.items() if k in known}
        except ValueError as exc:
            raise BadInputError(origin, "JSON values in ocr_deploy.* metadata",
                                f"malformed metadata ({exc})", "re-export the model") from exc
        return cls(**values)

    def output_of_kind(self, kind: str) -> str | None:
        """The name of the output with this kind, or None."""
        return next((name for name, spec in self.outputs.items() if spec.get("kind") == kind),
                    None)


def write_metadata(model, metadata: ExportMetadata) -> None:
    """Replace the ``ocr_deploy.*`` entries of an ``onnx.ModelProto`` in place."""
    keep = [p for p in model.metadata_props if not p.key.startswith(PREFIX)]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for key, value in metadata.to_props().items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def read_metadata(model_or_path) -> ExportMetadata:
    """Read the metadata of an ``onnx.ModelProto`` or of an ONNX file (weights not loaded)."""
    if isinstance(model_or_path, (str, Path)):
        import onnx

        try:
            model = onnx.load(str(model_or_path), load_external_data=False)
        except Exception as exc:
            raise BadInputError(model_or_path, "an ONNX model", f"unreadable data ({exc})",
                                "re-export the model") from exc
        origin = model_or_path
    else:
        model, origin = model_or_path, None
    return ExportMetadata.from_props({p.key: p.value for p in model.metadata_props}, origin)
