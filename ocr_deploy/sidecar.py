"""The sidecar JSON written beside every built artifact (``NAME.engine.json``,
``NAME.onnx.json``): how it was built, for what, and how accurate it is.

A TensorRT engine cannot carry ONNX metadata, so its sidecar also holds the exported
model's ``ExportMetadata`` under ``"metadata"``; the runtime reads it from there. The
sidecar records the artifact's SHA-256 (``artifact_sha256``) and is read only together
with the artifact it belongs to (``ocr_deploy.pairs``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from ocr_deploy.pairs import Pair, PairWrite, pair_output, read_pair


def sidecar_path(artifact: Path) -> Path:
    """``engines/x.engine`` -> ``engines/x.engine.json``."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".json")


@contextlib.contextmanager
def sidecar_output(artifact: Path, force: bool = False) -> Iterator[PairWrite]:
    """Write an artifact and its sidecar as one pair: write the artifact to
    ``.artifact_tmp``, set ``.companion`` to the sidecar dict (see ``pairs.pair_output``)."""
    with pair_output(artifact, sidecar_path(artifact), force) as write:
        yield write


def read_sidecar_pair(artifact: Path, content: bool = False) -> Pair:
    """The sidecar of ``artifact`` and the file holding the artifact it belongs to (and its
    bytes, with ``content``); a missing, malformed or mismatched sidecar is a clear error
    (exit 2). See ``pairs.read_pair``."""
    return read_pair(artifact, sidecar_path(artifact), "sidecar", content)


def read_sidecar(artifact: Path) -> dict:
    """The sidecar of ``artifact``, verified against it (see ``read_sidecar_pair``)."""
    return read_sidecar_pair(artifact).companion
