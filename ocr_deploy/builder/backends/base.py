"""The interface every build backend implements: what it produces, whether it can run
here, where it wants Q/DQ nodes, how it builds, and which graph it will really run."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import onnx

from ocr_deploy.metadata import ExportMetadata
from ocr_deploy.precision.placement import Placement

if TYPE_CHECKING:
    from ocr_deploy.builder.pipeline import BuildRequest


class BuildBackend(ABC):
    """Turns a precision ONNX (FP32, FP16 casts or INT8 Q/DQ) into a deployable artifact."""

    name: str  # as --backend spells it
    label: str  # what it needs, for messages
    suffix: str  # the artifact's file suffix

    @abstractmethod
    def availability(self) -> tuple[bool, str]:
        """Whether this backend can build here, and why (not)."""

    @abstractmethod
    def placement(self) -> Placement:
        """Where INT8 Q/DQ nodes go so that this backend runs integer kernels."""

    @abstractmethod
    def build(self, model_bytes: bytes, target: Path, artifact: Path, meta: ExportMetadata,
              precision: str, request: BuildRequest, progress: Callable[[str], None]) -> dict:
        """Write the artifact's bytes to ``target`` (a temporary file the pipeline commits
        with the sidecar as one pair, at ``artifact``); return the facts for the sidecar."""

    def runtime_graph(self, artifact: Path) -> onnx.ModelProto | None:
        """The optimised graph that will run (for the INT8 coverage report), or None when
        the backend's own choices cannot be read as ONNX."""
        return None

    def unused_options(self, request: BuildRequest) -> list[str]:
        """Options of ``request`` that this backend ignores (the CLI warns about them)."""
        return []
