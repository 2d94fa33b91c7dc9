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
    ``max_batch`` (None: unbounded) and ``min_batch``, implement ``run_batch`` for batches
    within those limits, and must be safe to call from several threads. ``run`` takes any
    number of images and fits them to the limits (``batch_plan``), so that a fixed-batch
    artifact (an export with a fixed batch, a TensorRT profile b:b:b) serves every caller.
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
    def run_batch(self, batch: np.ndarray, outputs: Sequence[str]) -> dict[str, np.ndarray]:
        """Run a prepared, validated host batch of ``min_batch`` to ``max_batch`` images;
        return the requested outputs."""

    def run(self, batch: np.ndarray, outputs: Sequence[str]) -> dict[str, np.ndarray]:
        """Run a prepared host batch of any number of images: split into runs of at most
        ``max_batch``, a short run padded to ``min_batch`` by repeating its last image (the
        padding's outputs dropped); return the requested outputs for the images given."""
        plan = self.batch_plan(len(batch))
        if len(plan) == 1 and plan[0][1] == plan[0][2]:
            return self.run_batch(batch, outputs)
        parts: dict[str, list] = {}
        for begin, count, size in plan:
            chunk = batch[begin:begin + count]
            if size > count:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], size - count, axis=0)])
            for name, value in self.run_batch(np.ascontiguousarray(chunk), outputs).items():
                parts.setdefault(name, []).append(value[:count])
        return {name: values[0] if len(values) == 1 else np.concatenate(values)
                for name, values in parts.items()}

    def batch_plan(self, count: int) -> list[tuple[int, int, int]]:
        """How ``run`` runs ``count`` images: ``(first image, images, batch size run)`` per
        run, the batch size padded up to ``min_batch`` where fewer images are left."""
        if count < 1:
            raise BadInputError(None, "a batch of at least one image", "none",
                                "pass one image or more")
        step = self.max_batch or count
        return [(begin, min(step, count - begin), max(min(step, count - begin), self.min_batch))
                for begin in range(0, count, step)]

    def batch_limits(self) -> str:
        """The batch sizes one run takes, for messages: "any", "exactly 2", "1 to 8"."""
        if self.max_batch is None:
            return "any" if self.min_batch <= 1 else f"{self.min_batch} or more"
        if self.max_batch == self.min_batch:
            return f"exactly {self.max_batch}"
        return f"{self.min_batch} to {self.max_batch}"

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
