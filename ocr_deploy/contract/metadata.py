"""The metadata an exported ONNX carries (``metadata_props``), read by every later stage.

Pure Python: usable from the runtime without TensorFlow. Each field is stored under the
key ``ocr_deploy.<field>`` with a JSON value, so tools like Netron show them readably.
Metadata read back is validated against a schema (``check_schema``: types, ranges,
``format_version``) — a tampered or foreign value is ``MetadataError`` (exit 2) naming the
key; ``ocr_deploy.contract.signature`` checks it against the graph.

An *end-to-end* artifact (``ocr_deploy.graph.end_to_end``: uint8 camera images in, labels
at the image size out) keeps every field describing the model it wraps, and says what its
own tensors are in ``end_to_end``: the input (``E2E_INPUT``, uint8 ``[N,H,W,C]`` in
``color_order``), the image size (``image_size: [H, W]``) or dynamic range
(``image_range: {min: [H, W], opt: [H, W], max: [H, W]}``, opt: the size a TensorRT
profile is tuned for, optional), the outputs (``E2E_LABELS`` of
``label_dtype``, ``E2E_SCORES`` or null), the target backend, the forms used, what was
folded into the first convolution and the parity figures. A plain model has ``{}``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ocr_deploy.contract.image_sizes import MAX_SIDE, ImageSizes  # MAX_SIDE: also the most classes
from ocr_deploy.errors import BadInputError, MetadataError

PREFIX = "ocr_deploy."
FORMAT_VERSION = 1
OUTPUT_KINDS = ("logits", "probabilities", "labels", "aux_logits")
SEGMENTATION_KINDS = ("logits", "probabilities", "labels")  # a model needs one of these
# the tensors of an end-to-end graph (every consumer imports these names from here)
INPUT_NAME = "image"  # the image input of every export
E2E_INPUT, E2E_LABELS, E2E_SCORES = INPUT_NAME, "labels", "scores"
E2E_LABEL_DTYPES = {"uint8": 1 << 8, "uint16": 1 << 16, "int32": 1 << 31}  # -> most classes


@dataclass
class ExportMetadata:
    """What an exported OCRNet is: its input contract, its outputs, and where it came from."""

    input_name: str = INPUT_NAME
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
    # name -> {"kind": one of OUTPUT_KINDS, "layout": ..., "stride": ...}
    outputs: dict = field(default_factory=dict)
    precision: str = "fp32"
    build: dict = field(default_factory=dict)  # reduced precision: kept layers, calibration
    source: dict = field(default_factory=dict)  # file, sha256, format, keras flavour/version
    tools: dict = field(default_factory=dict)  # versions and opset
    parity: dict = field(default_factory=dict)  # summary of the export parity check
    attention: dict = field(default_factory=dict)  # the attention-core form and its report
    notes: dict = field(default_factory=dict)  # the model card's notes (training figures)
    end_to_end: dict = field(default_factory=dict)  # {} plain; else the outer contract
    format_version: int = FORMAT_VERSION

    def to_props(self) -> dict[str, str]:
        """Serialise to ONNX ``metadata_props`` key/value strings (a plain model's empty
        ``end_to_end`` is left out: its props stay what they were before the field)."""
        return {PREFIX + key: json.dumps(value) for key, value in asdict(self).items()
                if key != "end_to_end" or value}

    @classmethod
    def from_props(cls, props: dict[str, str], origin: object = None) -> ExportMetadata:
        """Parse ``metadata_props``; a model without them is a clear error."""
        ours = {k[len(PREFIX):]: v for k, v in props.items() if k.startswith(PREFIX)}
        if not ours:
            raise BadInputError(origin, "an ONNX exported by ocr-export (with ocr_deploy.* "
                                "metadata)", "no ocr_deploy metadata",
                                "export the Keras model with ocr-export first")
        try:
            values = {k: json.loads(v) for k, v in ours.items()}
        except ValueError as exc:
            raise BadInputError(origin, "JSON values in ocr_deploy.* metadata",
                                f"malformed metadata ({exc})", "re-export the model") from exc
        return cls.from_dict(values, origin)

    @classmethod
    def from_dict(cls, values: dict, origin: object = None) -> ExportMetadata:
        """Metadata from its fields (parsed ``metadata_props``, a sidecar's ``"metadata"``),
        validated by ``check_schema``; unknown keys are ignored."""
        check_schema(values, origin)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def output_of_kind(self, kind: str) -> str | None:
        """The name of the output with this kind, or None."""
        return next((name for name, spec in self.outputs.items() if spec.get("kind") == kind),
                    None)

    def sizes(self) -> ImageSizes | None:
        """The image sizes an end-to-end artifact takes; None for a plain model."""
        return ImageSizes.from_dict(self.end_to_end) if self.end_to_end else None

    def image_sizes(self) -> tuple[tuple[int, int], tuple[int, int]] | None:
        """An end-to-end artifact's smallest and largest image ``(H, W)`` (equal when its
        size is fixed); None for a plain model."""
        sizes = self.sizes()
        return None if sizes is None else (sizes.minimum, sizes.maximum)

    def image_profile(self) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]] | None:
        """An end-to-end artifact's smallest, tuned-for (``opt``, default the largest) and
        largest image ``(H, W)``; None for a plain model."""
        sizes = self.sizes()
        return None if sizes is None else sizes.profile


def write_metadata(model, metadata: ExportMetadata) -> None:
    """Replace the ``ocr_deploy.*`` entries of an ``onnx.ModelProto`` in place."""
    keep = [p for p in model.metadata_props if not p.key.startswith(PREFIX)]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for key, value in metadata.to_props().items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def read_metadata(model_or_path, origin: object = None) -> ExportMetadata:
    """Read the metadata of an ``onnx.ModelProto`` or of an ONNX file (weights not loaded);
    ``origin`` names a model's file in error messages."""
    if isinstance(model_or_path, (str, Path)):
        import onnx

        try:
            model = onnx.load(str(model_or_path), load_external_data=False)
        except Exception as exc:
            raise BadInputError(model_or_path, "an ONNX model", f"unreadable data ({exc})",
                                "re-export the model") from exc
        origin = model_or_path
    else:
        model = model_or_path
    return ExportMetadata.from_props({p.key: p.value for p in model.metadata_props}, origin)


def check_schema(values: dict, origin: object = None) -> None:
    """Check metadata fields against the schema; the first violation is ``MetadataError``
    naming the key, what it must be and what it is."""
    def need(key: str, ok: bool, expected: str) -> None:
        if not ok:
            found = json.dumps(values.get(key)) if key in values else "nothing"
            raise MetadataError(origin, f"ocr_deploy.{key} as {expected}", found[:120],
                                "re-export the model with ocr-export (its metadata was "
                                "written by another tool or edited)")

    need("format_version", values.get("format_version") == FORMAT_VERSION
         and _is_int(values.get("format_version")), f"format version {FORMAT_VERSION}")
    for key in ("input_name", "input_layout", "input_height", "input_width", "num_classes",
                "outputs"):
        need(key, key in values, "a value (it is required)")
    given = {**asdict(ExportMetadata()), **values}  # defaults for optional keys
    need("input_name", isinstance(given["input_name"], str) and given["input_name"] != "",
         "a non-empty string")
    need("input_layout", given["input_layout"] in ("NHWC", "NCHW"), "NHWC or NCHW")
    for key in ("input_height", "input_width", "num_classes"):
        need(key, _is_int(given[key]) and 1 <= given[key] <= MAX_SIDE,
             f"an integer from 1 to {MAX_SIDE}")
    need("input_channels", given["input_channels"] in (1, 3)
         and _is_int(given["input_channels"]), "1 or 3")
    need("color_order", given["color_order"] in ("RGB", "BGR"), "RGB or BGR")
    norm, counts = given["normalization"], (3, given["input_channels"])
    need("normalization", isinstance(norm, dict) and _numbers(norm.get("mean"), counts)
         and _numbers(norm.get("std"), counts) and all(v > 0 for v in norm["std"])
         and isinstance(norm.get("in_graph", False), bool),
         "{mean: 3 numbers, std: 3 positive numbers, in_graph: true/false}")
    need("resize", isinstance(given["resize"], str), "a string")
    names = given["class_names"]
    need("class_names", isinstance(names, list) and all(isinstance(n, str) for n in names)
         and len(names) in (0, given["num_classes"]), "a list of num_classes strings (or [])")
    palette = given["palette"]
    need("palette", isinstance(palette, list) and all(
        isinstance(c, list) and len(c) == 3 and all(_is_int(v) and 0 <= v <= 255 for v in c)
        for c in palette), "a list of [R, G, B] colours with values 0..255")
    outputs = given["outputs"]
    need("outputs", isinstance(outputs, dict) and outputs and all(
        isinstance(spec, dict) and spec.get("kind") in OUTPUT_KINDS
        and spec.get("layout", "NHWC") in ("NHWC", "NCHW", "NHW")
        and (spec.get("stride") is None or (_is_int(spec["stride"]) and spec["stride"] >= 1))
        for spec in outputs.values())
        and any(spec["kind"] in SEGMENTATION_KINDS for spec in outputs.values()),
        "a mapping of output names to {kind: " + "|".join(OUTPUT_KINDS) + ", layout, "
        "stride}, with a logits, probabilities or labels output")
    need("precision", given["precision"] in ("fp32", "fp16", "int8"), "fp32, fp16 or int8")
    for key in ("build", "source", "tools", "parity", "attention", "notes"):
        need(key, isinstance(given[key], dict), "a mapping")
    need("end_to_end", isinstance(given["end_to_end"], dict) and (
        not given["end_to_end"] or _end_to_end_ok(given["end_to_end"], given["num_classes"])),
        "{} (a plain model) or {input, labels, scores, image_size [H, W] or image_range "
        "{min, opt (optional), max}, color_order, label_dtype holding num_classes, target, forms, "
        "normalization, parity}")


def _end_to_end_ok(e2e: dict, num_classes) -> bool:
    names = [e2e.get("input"), e2e.get("labels")] + \
        ([e2e["scores"]] if e2e.get("scores") is not None else [])
    fixed, span = e2e.get("image_size"), e2e.get("image_range")
    if fixed is not None:
        sizes_ok = span is None and _side_pair(fixed)
    else:
        opt = span.get("opt", span.get("max")) if isinstance(span, dict) else None
        sizes_ok = isinstance(span, dict) and _side_pair(span.get("min")) \
            and _side_pair(span.get("max")) and _side_pair(opt) \
            and all(a <= b <= c for a, b, c in zip(span["min"], opt, span["max"], strict=True))
    limit = E2E_LABEL_DTYPES.get(e2e.get("label_dtype"), 0)
    return (all(isinstance(n, str) and n for n in names) and len(set(names)) == len(names)
            and sizes_ok and e2e.get("color_order") in ("RGB", "BGR")
            and _is_int(num_classes) and num_classes <= limit
            and isinstance(e2e.get("target"), str) and e2e["target"] != ""
            and all(isinstance(e2e.get(k, {}), dict)
                    for k in ("forms", "normalization", "parity")))


def _side_pair(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(
        _is_int(v) and 1 <= v <= MAX_SIDE for v in value)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _numbers(value, counts: tuple[int, ...]) -> bool:
    return isinstance(value, list) and len(value) in counts and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        for v in value)
