"""The interface of a loaded model (ONNX Runtime, TensorRT, and TensorFlow for benchmarks):
run a prepared batch, or run on memory the application already holds (a ``TensorRef``,
``ocr_deploy.backends.tensors``). Each backend package (``ocr_deploy.backends.*``) has its
runner; ``Segmenter`` drives one. The base checks a batch once (outputs, rank, shape, dtype)
and fits it to the artifact's batch limits; a backend implements ``run_batch`` only."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from ocr_deploy.backends.tensors import TensorRef
from ocr_deploy.errors import BadInputError


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
        """Run a prepared host batch of any number of images: checked (``check_batch``),
        split into runs of at most ``max_batch``, a short run padded to ``min_batch`` by
        repeating its last image (the padding's outputs dropped); return the requested
        outputs for the images given."""
        self.check_batch(batch, outputs)
        return self.run_checked(batch, outputs)

    def run_checked(self, batch: np.ndarray, outputs: Sequence[str]) -> dict[str, np.ndarray]:
        """``run`` for a batch ``check_batch`` has passed (a caller that checks more of it
        in between, as ``Segmenter`` does the image sizes of an end-to-end artifact)."""
        batch = np.ascontiguousarray(batch)
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

    def check_batch(self, batch, outputs: Sequence[str], source=None) -> None:
        """``BadInputError`` unless ``batch`` is an array of the model's input rank and dtype whose
        shape fits ``input_shape`` (channels and any fixed size) and ``outputs`` are the
        model's; ``source``: the artifact named in the message."""
        unknown = [n for n in outputs if n not in self.output_names]
        if unknown:
            raise BadInputError(source, f"outputs among {list(self.output_names)}",
                                f"{unknown}", "ask for an output the model has")
        rank = len(self.input_shape(1))
        if not isinstance(batch, np.ndarray) or batch.ndim != rank or not len(batch):
            raise BadInputError(None, f"a prepared batch (a {rank}-D NumPy array from "
                                "prepare())", _describe(batch), "call prepare(images) first")
        expected = self.input_shape(batch.shape[0])
        if not _fits(batch.shape, expected) or batch.dtype != self.input_dtype:
            raise BadInputError(None, f"a batch shaped {list(expected)} of "
                                f"{self.input_dtype}", _describe(batch),
                                "call prepare(images) first")

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


def _describe(value) -> str:
    if isinstance(value, np.ndarray):
        return f"shape {list(value.shape)} of {value.dtype}"
    return f"a {type(value).__name__}"


def _fits(shape: tuple[int, ...], expected: tuple[int, ...]) -> bool:
    """A batch's shape against the backend's, where -1 is a dynamic dimension."""
    return len(shape) == len(expected) and all(
        want in (-1, got) for got, want in zip(shape, expected, strict=True))
