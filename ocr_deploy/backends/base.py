"""The interface every backend implements: one object that knows all there is to know about
one way of running a model — its artifact, its options, how it builds, where INT8 Q/DQ nodes
go and how much of it runs in integer kernels, how it runs, and how servers load it.

The builder, the runtime, packaging, serving, benchmarks and the C bridge ask a backend
(through ``ocr_deploy.backends``, the registry), never test which backend it is.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ocr_deploy.contract.metadata import ExportMetadata
from ocr_deploy.graph.target import GraphTarget
from ocr_deploy.precision.placement import Placement

if TYPE_CHECKING:
    import onnx

    from ocr_deploy.sidecar import Sidecar


@dataclass
class TensorSpec:
    """One model tensor: ``shape`` includes the batch dimension; -1 means dynamic."""

    name: str
    dtype: str  # a NumPy dtype name
    shape: list[int]


@dataclass
class ArtifactTensors:
    """An artifact's tensors as a server sees them, and its batch limits."""

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    profile_batches: tuple[int, int, int] | None = None  # (min, opt, max) of a profile


class Backend(ABC):
    """A way of running a model, and everything about its artifacts.

    Class attributes are the artifact's facts: ``suffixes`` (the first is the one new
    artifacts get), ``kind`` (what reports call the artifact), where its metadata lives,
    the Triton platform and model file name, the DeepStream key naming the model file.
    ``options_type`` is the frozen dataclass of its build options (``backends.options``).
    ``runtime_options``: the ``Segmenter.open`` keywords it takes; ``lean_options``: the
    ``open_runner`` keywords that make a runner give memory back after each run (the
    build's verification runs it beside the FP32 reference).
    """

    name: str  # as --backend spells it
    label: str  # what it needs, for messages
    kind: str  # "onnx" or "engine"
    suffixes: tuple[str, ...]
    metadata_in_artifact: bool  # False: the sidecar holds the metadata
    triton_platform: str
    triton_model_file: str
    deepstream_model_key: str
    options_type: type
    runtime_options: tuple[str, ...] = ()
    lean_options: dict = {}  # noqa: RUF012 (read only)
    graph_target: GraphTarget  # what its graph compiler takes, for the graph passes
    coverage_warn_below: float | None = None  # INT8 integer-MAC share that earns a warning
    cross_build: dict | None = None  # an emitter's record for the metadata (``emitter``)

    @property
    def suffix(self) -> str:
        """The suffix of the artifacts this backend builds."""
        return self.suffixes[0]

    # -- building ---------------------------------------------------------------------------

    @abstractmethod
    def availability(self) -> tuple[bool, str]:
        """Whether this backend can build and run here, and why (not)."""

    def resolve_options(self, options, model: onnx.ModelProto, source: Path,
                        note: Callable[[str], None]):
        """``options`` completed for this model (e.g. a profile from its static batch);
        refuses combinations the model cannot take. Default: unchanged."""
        return options

    def emitter(self, options) -> Backend | None:
        """For a cross-build (options asking for the graph this backend compiles, not an
        artifact): the backend that writes that graph instead, with its ``output`` path and
        ``reason``; None for an ordinary build. Default: None."""
        return None

    @abstractmethod
    def placement(self, options) -> Placement:
        """Where INT8 Q/DQ nodes go so that this backend runs integer kernels."""

    @abstractmethod
    def build(self, model_bytes: bytes, target: Path, artifact: Path, meta: ExportMetadata,
              precision: str, options, progress: Callable[[str], None]) -> dict:
        """Write the artifact's bytes to ``target`` (a temporary file the pipeline commits
        with the sidecar as one pair, at ``artifact``); return the facts for the sidecar."""

    def store_metadata(self, built: Path, meta: ExportMetadata) -> None:
        """Write ``meta`` into the artifact at ``built`` when it carries its metadata (a
        build's later figures, e.g. the end-to-end parity). Default: nothing, the sidecar
        holds the metadata."""
        return None

    @abstractmethod
    def coverage(self, fp32_model: onnx.ModelProto, qdq_model: onnx.ModelProto,
                 built: Path, kept: dict[str, list[str]]) -> dict:
        """The INT8 coverage report (``precision.coverage``) of the artifact at ``built``."""

    # -- running ----------------------------------------------------------------------------

    @abstractmethod
    def open_runner(self, path: Path, facts: dict | None, device_id: int = 0, **options):
        """A ``Runner`` on the artifact at ``path`` whose build facts (the sidecar's
        content) are ``facts``; used on artifacts that are not published yet too."""

    @abstractmethod
    def open(self, path: Path, device_id: int = 0, **options):
        """``(runner, ExportMetadata)`` for a published artifact, with its sidecar checked
        against it (``ocr_deploy.pairs``)."""

    # -- serving ----------------------------------------------------------------------------

    @abstractmethod
    def tensors(self, path: Path, meta: ExportMetadata, sidecar: Sidecar | None
                ) -> ArtifactTensors:
        """The artifact's tensors for servers (Triton dims and types), checked against its
        metadata the way the runtime and the build check them (``MetadataError``, exit 2)."""

    @abstractmethod
    def metadata(self, path: Path, sidecar: Sidecar | None) -> ExportMetadata:
        """The exported model's metadata, from the artifact or its sidecar."""

    def compute_capability(self, sidecar: Sidecar | None) -> str | None:
        """The GPU compute capability (``"8.9"``) the artifact was built for and runs on
        only, from its sidecar; None for an artifact that runs on any device. Default:
        None."""
        return None

    def triton_settings(self, sidecar: Sidecar | None, model_name: str) -> list:
        """Extra ``config.pbtxt`` entries (``ocr_deploy.pbtxt`` messages) for Triton's backend
        of this platform, from what the build recorded. Default: none."""
        return []


def end_to_end_tensors(meta: ExportMetadata) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """An end-to-end artifact's tensors as its metadata records them: the uint8 image
    ``[-1, H, W, C]``, labels ``[-1, H, W]`` of its label dtype, float32 scores
    ``[-1, H, W, K]`` when it has them (H, W: the fixed size, or -1 where a side varies)."""
    e2e = meta.end_to_end
    sides = list(meta.sizes().sides)
    outputs = [TensorSpec(e2e["labels"], e2e["label_dtype"], [-1, *sides])]
    if e2e.get("scores"):
        outputs.append(TensorSpec(e2e["scores"], "float32", [-1, *sides, meta.num_classes]))
    return [TensorSpec(e2e["input"], "uint8", [-1, *sides, meta.input_channels])], outputs
