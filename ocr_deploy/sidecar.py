"""The sidecar JSON written beside every built artifact (``NAME.engine.json``,
``NAME.onnx.json``): how it was built, for what, and how accurate it is.

A TensorRT engine cannot carry ONNX metadata, so its sidecar also holds the exported
model's ``ExportMetadata`` under ``"metadata"``; the runtime reads it from there. The
sidecar records the artifact's SHA-256 (``artifact_sha256``) and is read only together
with the artifact it belongs to (``ocr_deploy.pairs``).

``Sidecar`` is its schema: the fields every build writes (or may write), typed and checked
on reading, and ``facts``, what the backend's build recorded (its version, GPU, profiles,
provider options: the backend reads them back), written at the top level beside them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path

from ocr_deploy.errors import BadInputError
from ocr_deploy.pairs import HASH_KEY, Pair, PairWrite, pair_output, read_pair

_NUMBER = (int, float)


@dataclass
class Sidecar:
    """What ``ocr-build-engine`` records beside an artifact (see the module docstring). The
    JSON holds the fields set (None: absent), ``facts`` at the top level and, added by
    ``pairs``, the artifact's SHA-256."""

    backend: str | None = None
    facts: dict = field(default_factory=dict)  # the backend's own build facts
    backend_reason: str | None = None  # why this backend (auto: what was found)
    artifact: str | None = None
    source_onnx: str | None = None  # the export it was built from, and its SHA-256
    source_onnx_sha256: str | None = None
    artifact_bytes: int | None = None
    precision: str | None = None
    memory: dict | None = None  # the budget and the batches it gave
    cross_build: dict | None = None  # a graph emitted for another machine's TensorRT
    placement: dict | None = None  # INT8: where Q/DQ went, and the tensors quantised
    calibration: dict | None = None  # INT8: method, samples, cache
    kept_in_higher_precision: dict | None = None  # reason -> node names
    verification: dict | None = None  # the verdict (None: --no-verify)
    end_to_end_parity: dict | None = None  # against Segmenter.predict on the plain core
    int8_coverage: dict | None = None  # the MACs in integer kernels
    seconds: float | None = None
    metadata: dict | None = None  # the artifact's ExportMetadata (an engine has no other)

    @classmethod
    def from_dict(cls, values: dict, origin: object = None) -> Sidecar:
        """A sidecar read from JSON, its fields' types checked (exit 2 on a wrong one);
        keys that are not fields are the backend's facts."""
        if not isinstance(values, dict):
            raise BadInputError(origin, "a sidecar holding a JSON object",
                                type(values).__name__, "rebuild it with ocr-build-engine")
        known = {f.name: f for f in fields(cls) if f.name != "facts"}
        for name, value in values.items():
            wanted = _TYPES.get(name)
            if name in known and value is not None and not isinstance(value, wanted):
                raise BadInputError(origin, f"a sidecar whose '{name}' is "
                                    f"{_describe(wanted)}", type(value).__name__,
                                    "rebuild it with ocr-build-engine")
        return cls(facts={k: v for k, v in values.items() if k not in known and k != HASH_KEY},
                   **{k: v for k, v in values.items() if k in known})

    @classmethod
    def of(cls, value: Sidecar | dict | None, origin: object = None) -> Sidecar:
        """``value`` as a ``Sidecar`` (a parsed dict checked; None: an empty one)."""
        if isinstance(value, Sidecar):
            return value
        return cls() if value is None else cls.from_dict(value, origin)

    def to_dict(self) -> dict:
        """The JSON object to write (fields that are None left out)."""
        written = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name == "facts":
                written.update(value)
            elif value is not None:
                written[item.name] = value
        return written


_TYPES = {"backend": str, "backend_reason": str, "artifact": str, "source_onnx": str,
          "source_onnx_sha256": str, "artifact_bytes": int, "precision": str,
          "seconds": _NUMBER, **{name: dict for name in (
              "memory", "cross_build", "placement", "calibration", "kept_in_higher_precision",
              "verification", "end_to_end_parity", "int8_coverage", "metadata")}}


def _describe(wanted) -> str:
    return "a number" if wanted is _NUMBER else {str: "a string", int: "an integer",
                                                 dict: "an object"}[wanted]


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
    """The sidecar of ``artifact`` as JSON, verified against it (see ``read_sidecar_pair``)."""
    return read_sidecar_pair(artifact).companion


def read_build_sidecar(artifact: Path) -> Sidecar:
    """The sidecar of ``artifact``, verified against it and checked against the schema."""
    return Sidecar.from_dict(read_sidecar(artifact), sidecar_path(artifact))
