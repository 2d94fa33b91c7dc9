"""The reference runner every verification step uses: an ONNX held in memory on ONNX
Runtime CPU, its memory given back after each run (verification runs two models one after
the other). Export parity runs the exported ONNX on it, the build's verdict the FP32 export,
the sensitivity search its candidates, end-to-end parity the plain core."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ocr_deploy.backends.onnxruntime.runner import OnnxRuntimeRunner
from ocr_deploy.contract.metadata import ExportMetadata
from ocr_deploy.runtime.segmenter import Segmenter


def reference_runner(model_bytes: bytes, name: str) -> OnnxRuntimeRunner:
    """The ONNX ``model_bytes`` (``name``: how errors call it) on ONNX Runtime CPU without
    a memory arena."""
    return OnnxRuntimeRunner(Path(name), ["CPUExecutionProvider"], content=model_bytes,
                             memory_arena=False)


def reference_call(model_bytes: bytes, meta: ExportMetadata
               ) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """``inputs -> {output name: array}`` on the reference runner (any number of inputs:
    the runner fits them to a fixed batch)."""
    runner = reference_runner(model_bytes, f"the {meta.precision or 'reference'} model")
    return lambda inputs: runner.run(np.ascontiguousarray(inputs, runner.input_dtype),
                                     runner.output_names)


def reference_segmenter(model_bytes: bytes, meta: ExportMetadata, name: str) -> Segmenter:
    """A ``Segmenter`` (described by ``meta``) on the reference runner."""
    return Segmenter(reference_runner(model_bytes, name), meta, name)
