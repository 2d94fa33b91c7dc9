"""The contract an artifact was exported with, checked against what its runner loaded.

Which backend runs an artifact, and where its metadata lives (ONNX ``metadata_props``, or
an engine's sidecar), is the backend's (``ocr_deploy.backends``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ocr_deploy.metadata import ExportMetadata
from ocr_deploy.signature import Signature, Tensor, check_signature


def check_contract(path: Path, metadata: ExportMetadata, runner) -> None:
    """Check that the loaded artifact's tensors fit its metadata (``ocr_deploy.signature``),
    so later code never guesses; a mismatch is ``MetadataError`` (exit 2)."""
    def tensor(name: str, shape, dtype) -> Tensor:
        return Tensor(name, tuple(int(d) for d in shape), np.dtype(dtype))

    inputs = (tensor(runner.input_name, runner.input_shape(1), runner.input_dtype),)
    outputs = tuple(tensor(n, runner.output_shape(n, 1), runner.output_dtype(n))
                    for n in runner.output_names)
    check_signature(path, metadata, Signature(inputs, outputs))
