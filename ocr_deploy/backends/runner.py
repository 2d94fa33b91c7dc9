"""The interface of a loaded model (ONNX Runtime, TensorRT, and TensorFlow for benchmarks):
run a prepared batch, or run on memory the application already holds. Each backend package
(``ocr_deploy.backends.*``) has its runner; ``Segmenter`` drives one."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from ocr_deploy.errors import BadInputError
from ocr_deploy.runtime.tensors import TensorRef


class Runner(ABC):
    """A loaded model that runs prepared input batches.

    Subclasses set ``name``, ``device`` ("cpu" or "cuda": where raw addresses given to
    ``run_device`` point by default), ``input_name``, ``input_dtype``, ``output_names``,
    ``max_batch`` (None: unbounded) and ``min_batch``, and must be safe to call from several
    threads.
    """

    name: str
    device: str = "cpu"
    device_id: int = 0
    input_name: str
    input_dtype: np.dtype
    output_names: tuple[str, ...]
    max_batch: int | None = None
    min_batch: int = 1  # a fixed-batch model takes exactly max_batch = min_batch images
    stream: int | None = None  # the CUDA stream it runs on when the caller gives none
    address_alignment: int = 1  # bytes: caller memory given to run_device must be aligned

    @abstractmethod
    def input_shape(self, batch: int) -> tuple[int, ...]:
        """The input's full shape for ``batch`` images."""

    @abstractmethod
    def output_shape(self, name: str, batch: int) -> tuple[int, ...]:
        """An output's full shape for ``batch`` images."""

    @abstractmethod
    def output_dtype(self, name: str) -> np.dtype:
        """An output's element type."""

    @abstractmethod
    def run(self, batch: np.ndarray, outputs: Sequence[str]) -> dict[str, np.ndarray]:
        """Run a prepared, validated host batch; return the requested outputs."""

    def run_device(self, input_ref: TensorRef, output_refs: dict[str, TensorRef], batch: int,
                   stream: int | None) -> None:
        """Run on memory the caller owns, writing the outputs in place."""
        raise BadInputError(None, "a backend that runs on caller-owned memory",
                            f"the {self.name} backend", "use run() or predict()")

    def info(self) -> dict:
        """What runs the model, for reports."""
        return {"backend": self.name, "device": self.device}

    @abstractmethod
    def close(self) -> None:
        """Release what the backend holds; it is unusable afterwards."""
