"""Sidecars written by hand for tests (of foreign, tampered or engine-shaped artifacts).
The package writes sidecars only together with their artifact (``sidecar.sidecar_output``)."""

from __future__ import annotations

import json
from pathlib import Path

from ocr_deploy.files import sha256_of, write_bytes_atomic
from ocr_deploy.pairs import HASH_KEY
from ocr_deploy.sidecar import sidecar_path


def write_sidecar(artifact: Path, data: dict) -> Path:
    """Write the sidecar of an existing ``artifact``, recording its SHA-256; its path."""
    path = sidecar_path(artifact)
    data = {**data, HASH_KEY: sha256_of(artifact)}
    write_bytes_atomic(path, (json.dumps(data, indent=2, default=str) + "\n").encode())
    return path
