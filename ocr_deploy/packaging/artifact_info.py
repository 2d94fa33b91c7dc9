"""What a deployment configuration needs to know about an artifact: its tensors (names,
data types, shapes), batch limits, precision and metadata, from the ONNX graph or, for a
TensorRT engine, from its sidecar (an engine cannot be inspected without TensorRT)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ocr_deploy.errors import BadInputError
from ocr_deploy.metadata import ExportMetadata, read_metadata
from ocr_deploy.runtime.artifact import artifact_kind, engine_metadata
from ocr_deploy.sidecar import read_sidecar, sidecar_path

# ONNX TensorProto element types -> NumPy dtype names
ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 10: "float16",
               11: "float64", 16: "bfloat16"}


@dataclass
class TensorSpec:
    """One model tensor: ``shape`` includes the batch dimension; -1 means dynamic."""

    name: str
    dtype: str
    shape: list[int]


@dataclass
class ArtifactInfo:
    path: Path
    kind: str  # "onnx" or "engine"
    metadata: ExportMetadata
    sidecar: dict | None
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    profile_batches: tuple[int, int, int] | None  # an engine's (min, opt, max) batch

    @property
    def precision(self) -> str:
        return (self.sidecar or {}).get("precision") or self.metadata.precision

    @property
    def dynamic_batch(self) -> bool:
        """Whether the batch dimension is free (ONNX) or a profile range (engine)."""
        return self.profile_batches is not None or self.inputs[0].shape[0] == -1

    def output_of_kind(self, kind: str) -> TensorSpec | None:
        name = self.metadata.output_of_kind(kind)
        return next((t for t in self.outputs if t.name == name), None)


def read_artifact(path: Path) -> ArtifactInfo:
    """Inspect an ``.onnx`` (graph and metadata, weights not loaded) or an ``.engine``
    (its sidecar); foreign or incomplete files are a ``BadInputError``."""
    path = Path(path)
    kind = artifact_kind(path)
    sidecar = read_sidecar(path) if kind == "engine" or sidecar_path(path).is_file() else None
    if kind == "engine":
        meta = engine_metadata(path, sidecar)
        profiles = sidecar.get("profiles") or []
        if not profiles:
            raise BadInputError(path, "a sidecar with the engine's optimisation profile",
                                "none", "rebuild it with ocr-build-engine")
        batches = tuple(int(profiles[0][key][0]) for key in ("min", "opt", "max"))
        inputs, outputs = _engine_tensors(meta)
        return ArtifactInfo(path, kind, meta, sidecar, inputs, outputs, batches)
    import onnx

    meta = read_metadata(path)
    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {init.name for init in graph.initializer}
    inputs = [_onnx_tensor(path, v) for v in graph.input if v.name not in initializers]
    outputs = [_onnx_tensor(path, v) for v in graph.output]
    if [t.name for t in inputs] != [meta.input_name]:
        raise BadInputError(path, f"one input '{meta.input_name}' as its metadata says",
                            f"inputs {[t.name for t in inputs]}", "re-export the model")
    return ArtifactInfo(path, kind, meta, sidecar, inputs, outputs, None)


def _onnx_tensor(path: Path, value) -> TensorSpec:
    kind = value.type.tensor_type
    dtype = ONNX_DTYPES.get(kind.elem_type)
    if dtype is None:
        raise BadInputError(path, "tensors of numeric types", f"'{value.name}' of ONNX type "
                            f"{kind.elem_type}", "re-export the model")
    shape = [d.dim_value if d.HasField("dim_value") else -1 for d in kind.shape.dim]
    return TensorSpec(value.name, dtype, shape)


def _engine_tensors(meta: ExportMetadata) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Tensors of an engine built by ocr-build-engine (FP32 input and scores, int32 labels)."""
    height, width, channels = meta.input_height, meta.input_width, meta.input_channels
    nchw = meta.input_layout == "NCHW"
    inputs = [TensorSpec(meta.input_name, "float32",
                         [-1, channels, height, width] if nchw else [-1, height, width, channels])]
    outputs = []
    for name, spec in meta.outputs.items():
        stride = int(spec.get("stride") or 1)
        h, w, k = height // stride, width // stride, meta.num_classes
        if spec.get("kind") == "labels":
            outputs.append(TensorSpec(name, "int32", [-1, h, w]))
        elif spec.get("kind") in ("logits", "probabilities"):
            layout = spec.get("layout", meta.input_layout)
            outputs.append(TensorSpec(name, "float32",
                                      [-1, k, h, w] if layout == "NCHW" else [-1, h, w, k]))
    return inputs, outputs
