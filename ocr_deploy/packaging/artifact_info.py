"""What a deployment configuration needs to know about an artifact: its backend, tensors
(names, data types, shapes), batch limits, precision and metadata, read through the
artifact's backend (``ocr_deploy.backends``) with the same checks as the runtime and the
build apply: the sidecar must belong to the artifact, the metadata must fit its schema,
and the graph must be the one the metadata describes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ocr_deploy.backends import Backend, for_artifact
from ocr_deploy.backends.base import TensorSpec
from ocr_deploy.contract.metadata import ExportMetadata
from ocr_deploy.sidecar import Sidecar, read_build_sidecar, sidecar_path


@dataclass
class ArtifactInfo:
    path: Path
    backend: Backend
    metadata: ExportMetadata
    sidecar: Sidecar | None
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    profile_batches: tuple[int, int, int] | None  # an engine's (min, opt, max) batch

    @property
    def precision(self) -> str:
        return (self.sidecar and self.sidecar.precision) or self.metadata.precision

    @property
    def dynamic_batch(self) -> bool:
        """Whether the batch dimension is free (ONNX) or a profile range (engine)."""
        return self.profile_batches is not None or self.inputs[0].shape[0] == -1

    def output_of_kind(self, kind: str) -> TensorSpec | None:
        name = self.metadata.output_of_kind(kind)
        return next((t for t in self.outputs if t.name == name), None)


def read_artifact(path: Path) -> ArtifactInfo:
    """Inspect an artifact (an ONNX's graph and metadata, weights not loaded; an engine's
    sidecar); foreign, incomplete or inconsistent files are a ``BadInputError`` (exit 2)."""
    path = Path(path)
    backend = for_artifact(path)
    has_sidecar = not backend.metadata_in_artifact or sidecar_path(path).is_file()
    sidecar = read_build_sidecar(path) if has_sidecar else None
    meta = backend.metadata(path, sidecar)
    tensors = backend.tensors(path, meta, sidecar)
    return ArtifactInfo(path, backend, meta, sidecar, tensors.inputs, tensors.outputs,
                        tensors.profile_batches)
