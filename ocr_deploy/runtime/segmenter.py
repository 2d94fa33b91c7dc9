"""``Segmenter``: one object over TensorRT engines and ONNX models, opened from the artifact.

    with Segmenter.open("export/model.onnx") as segmenter:
        labels = segmenter.predict(image)          # uint8 [H,W] at the image's own size

Preprocessing (resize, colour order, normalisation, layout) comes from the artifact's
metadata, so the application never repeats it. An end-to-end artifact
(``ocr_deploy.graph.end_to_end``) does all of it in its graph: its images go in as uint8
(one run per image size) and its labels come out as they are. Which of the two an artifact
is is settled once, at open, by its ``ArtifactIO`` (``ocr_deploy.runtime.artifact_io``).
Safe to call from several threads.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ocr_deploy.backends.tensors import tensor_ref
from ocr_deploy.contract.metadata import ExportMetadata
from ocr_deploy.contract.preprocess import as_image_list, check_image
from ocr_deploy.contract.signature import check_contract
from ocr_deploy.errors import BadInputError
from ocr_deploy.runtime.artifact_io import artifact_io

if TYPE_CHECKING:
    from ocr_deploy.backends.runner import Runner
    from ocr_deploy.runtime.stream import FrameStream


class Segmenter:
    """Semantic segmentation with an exported OCRNet, whatever runs it."""

    def __init__(self, runner: Runner, metadata: ExportMetadata, source: Path | str,
                 max_batch: int | None = None):
        self.runner = runner
        self.metadata = metadata
        self.source = Path(source)
        limits = [b for b in (runner.max_batch, max_batch) if b]
        self.max_batch = min(limits) if limits else None
        self.io = artifact_io(metadata, runner, self.source)  # plain or end-to-end
        self.logits_output, self.labels_output = self.io.logits_output, self.io.labels_output
        self.label_dtype = self.io.label_dtype

    @classmethod
    def open(cls, path: Path | str, backend: str = "auto", providers: Sequence | None = None,
             max_batch: int | None = None, threads: int | None = None, device_id: int = 0,
             cuda_graph: bool = False) -> Segmenter:
        """Open an artifact with the backend that runs it (``ocr_deploy.backends``: an
        ``.onnx`` on ONNX Runtime, an ``.engine`` on TensorRT).

        ``backend``: "auto", or the name of the backend the artifact must be for.
        ``providers``: ONNX Runtime execution providers (names, aliases "tensorrt", "cuda",
        "cpu", or ``(name, options)``); default the best available. ``max_batch`` caps how
        many images run at once. ``threads``: ONNX Runtime intra-op threads.
        ``cuda_graph``: replay captured CUDA graphs (TensorRT). An option the artifact's
        backend does not take is ignored with a warning. Bad or foreign files raise
        ``BadInputError``.
        """
        from ocr_deploy import backends

        path = Path(path)
        if backend not in backends.CHOICES:
            raise BadInputError(None, f"a backend among {', '.join(backends.CHOICES)}",
                                repr(backend), "use backend='auto'")
        chosen = backends.for_artifact(path)
        if backend not in ("auto", chosen.name):
            wanted = backends.get(backend)
            raise BadInputError(path, f"an artifact for the {backend} backend ({wanted.suffix})",
                                f"a {path.suffix} file, which runs on {chosen.name}",
                                "build one with ocr-build-engine --backend " + backend)
        if max_batch is not None and max_batch < 1:
            raise BadInputError(None, "max_batch >= 1", str(max_batch), "drop the option")
        given = {"providers": providers, "threads": threads, "cuda_graph": cuda_graph}
        ignored = [k for k, v in given.items() if v and k not in chosen.runtime_options]
        if ignored:
            warnings.warn(f"{path}: {', '.join(ignored)} do(es) nothing for the "
                          f"{chosen.name} backend: ignored", stacklevel=2)
        runner, metadata = chosen.open(path, device_id, **{
            k: v for k, v in given.items() if k in chosen.runtime_options})
        try:
            check_contract(path, metadata, runner)
        except BadInputError:
            runner.close()
            raise
        return cls(runner, metadata, path, max_batch)

    # -- images in, label maps / scores out ------------------------------------------------

    def predict(self, images, *, tile: tuple[int, int] | None = None, tile_overlap: int = 0):
        """Label maps ``[H,W]`` (uint8, or int32 beyond 256 classes), one per image, each at
        its image's size. ``images``: one uint8 ``[H,W,3]`` RGB array (-> one map) or a
        list / ``[N,H,W,3]`` array of them, of any sizes (-> a list). An end-to-end
        artifact takes the sizes it was built for, in its colour order, and gives its
        labels' dtype (uint8; uint16 or int32 beyond 256 classes).

        ``tile=(H, W)``: segment each image by overlapping windows of that size,
        ``tile_overlap`` pixels apart from the next, their scores blended (images larger
        than the model, in memory bounded by a band of windows; ``ocr_deploy.runtime.
        tiling``); needs an artifact with scores (not labels-only, not end-to-end)."""
        if tile is not None:
            from ocr_deploy.runtime.tiling import predict_tiled

            items, single, _ = self._images(images)
            results = [predict_tiled(self, image, tile, tile_overlap) for image in items]
            return results[0] if single else results
        if tile_overlap:
            raise BadInputError(None, "tile_overlap with a tile size", "no tile",
                                "pass tile=(H, W) too, or drop tile_overlap")
        items, single, sizes = self._images(images)
        (output,) = self.outputs_for(sizes)
        results = self.io.run_images(self, items, sizes, output)
        return results[0] if single else results

    def predict_scores(self, images):
        """Per-class scores (logits) ``[H,W,K]`` float32 at each image's size, resized
        bilinearly; same forms of ``images`` as ``predict``."""
        self.io.check_scores()
        items, single, sizes = self._images(images)
        results = self.io.run_images(self, items, sizes, self.logits_output, scores=True)
        return results[0] if single else results

    def stream(self, frames, *, scores: bool = False, policy: str = "block",
               depth: int = 2, with_frames: bool = False) -> FrameStream:
        """Segment an iterable of frames (a video's, a camera's: the images ``predict``
        takes, one at a time) with reading, pre-processing, inference and post-processing
        overlapped in threads; an iterator of label maps in the frames' order (``scores``:
        what ``predict_scores`` gives). ``policy``: "block" (every frame; reading waits
        when the ``depth``-item queues are full) or "latest" (live sources: stale frames
        are dropped, counted in ``.dropped``). ``with_frames``: yield ``(index, frame,
        result)``. A stage's exception is raised as ``FrameError`` naming the frame;
        ``close()`` (or ``with``) stops every stage. See ``ocr_deploy.runtime.stream``."""
        from ocr_deploy.runtime.stream import FrameStream

        return FrameStream(self, frames, scores=scores, policy=policy, depth=depth,
                           with_frames=with_frames)

    def outputs_for(self, sizes: Sequence[tuple[int, int]]) -> list[str]:
        """The output ``predict`` fetches for images of these ``(H, W)`` sizes: the in-graph
        labels when every image matches their size, else the logits (resized, then argmax);
        an end-to-end artifact's labels."""
        return self.io.outputs_for(sizes)

    def finish(self, value: np.ndarray, index: int, size: tuple[int, int], output: str,
               scores: bool = False) -> np.ndarray:
        """Image ``index`` of ``run``'s ``output`` at its image's ``(H, W)`` size: its label
        map as ``predict`` gives it, or with ``scores`` its scores as ``predict_scores`` does
        (an end-to-end artifact's output is at the image size already)."""
        return self.io.finish(value, index, size, output, scores)

    # -- the model itself ------------------------------------------------------------------

    def prepare(self, images) -> np.ndarray:
        """Images -> the model's input batch (resized, normalised, laid out per metadata);
        for an end-to-end artifact, the uint8 images of one size stacked ``[N,H,W,C]``."""
        self._check_open()
        return self.io.prepare(images, self.runner.input_dtype)

    def run(self, batch: np.ndarray, outputs: Sequence[str] | None = None
            ) -> dict[str, np.ndarray]:
        """Run a prepared batch (``prepare``'s result) and return raw outputs by name.

        ``outputs`` default: the logits and labels outputs the model has."""
        self._check_open()
        outputs = list(outputs) if outputs else self.io.outputs
        self.runner.check_batch(batch, outputs, self.source)
        self.io.check_sizes([batch.shape[1:3]])
        self._check_batch(batch.shape[0])
        return self.runner.run_checked(batch, outputs)  # pads to a fixed batch

    def run_device(self, input, outputs: Mapping[str, object], batch: int | None = None,
                   stream: int | None = None, device: str | None = None,
                   image_size: tuple[int, int] | None = None) -> None:
        """Run on memory the caller already holds; no copies through Python objects.

        ``input``: the prepared input (see ``input_shape``/``input_dtype``) and ``outputs``:
        ``{name: buffer}`` for the outputs to write (see ``output_shape``), each an
        ``(address, nbytes)`` tuple (the size is checked), a bare address (``int``: trusted
        as given, nothing can check it), a NumPy array, or an object with
        ``__cuda_array_interface__`` or ``__dlpack__`` (CuPy, PyTorch ...); outputs must be
        writable. Raw addresses point to ``device`` ("cpu" or "cuda"; default where the
        backend runs); ``batch`` is then required. ``stream``: a
        CUDA stream handle: TensorRT enqueues on it and returns at once (synchronise it
        yourself); ONNX Runtime waits for it first and returns when done.
        ``image_size``: ``(H, W)`` of an end-to-end artifact's images when its size varies
        (default: from the input's shape; required with raw addresses).
        """
        self._check_open()
        if not outputs:
            raise BadInputError(None, "at least one output buffer", "none",
                                f"pass {{name: buffer}} for one of {list(self.output_names)}")
        if batch is None:
            shape = getattr(input, "shape", None) or getattr(
                input, "__cuda_array_interface__", {}).get("shape")
            if not shape:
                raise BadInputError(None, "batch= with raw addresses", "none",
                                    "pass the number of images")
            batch = int(shape[0])
        self._check_batch(batch, exact=True)
        size = self.io.device_image_size(input, image_size)
        where = device or self.runner.device
        consumer = stream if stream is not None else self.runner.stream
        alignment = self.runner.address_alignment
        in_ref = tensor_ref(input, "the input", _sized(self.input_shape(batch), size),
                            self.runner.input_dtype, where, self.runner.device_id,
                            stream=consumer, alignment=alignment)
        out_refs = {}
        for name, value in outputs.items():
            if name not in self.runner.output_names:
                raise BadInputError(None, f"an output among {list(self.runner.output_names)}",
                                    repr(name), "use Segmenter.output_names")
            out_refs[name] = tensor_ref(value, f"output '{name}'",
                                        _sized(self.output_shape(name, batch), size),
                                        self.runner.output_dtype(name), where,
                                        self.runner.device_id, writable=True, stream=consumer,
                                        alignment=alignment)
        self.runner.run_device(in_ref, out_refs, batch, stream)

    # -- shapes and description ------------------------------------------------------------

    @property
    def input_size(self) -> tuple[int, int]:
        """The model's input ``(height, width)``."""
        return self.metadata.input_height, self.metadata.input_width

    @property
    def output_names(self) -> tuple[str, ...]:
        return self._open_runner().output_names

    @property
    def input_dtype(self) -> np.dtype:
        return self._open_runner().input_dtype

    def input_shape(self, batch: int) -> tuple[int, ...]:
        """The prepared input's shape for ``batch`` images."""
        return self._open_runner().input_shape(batch)

    def output_shape(self, name: str, batch: int) -> tuple[int, ...]:
        """An output's shape for ``batch`` images."""
        return self._open_runner().output_shape(name, batch)

    def output_dtype(self, name: str) -> np.dtype:
        return self._open_runner().output_dtype(name)

    def describe(self) -> dict:
        """The artifact, what runs it and its contract, for reports."""
        self._check_open()
        meta = self.metadata
        return {"artifact": str(self.source), **self.runner.info(),
                "precision": meta.precision, "input_size": list(self.input_size),
                "input_layout": meta.input_layout, "num_classes": meta.num_classes,
                "outputs": self.io.outputs, "max_batch": self.max_batch,
                "end_to_end": self.io.describe()}

    def close(self) -> None:
        """Release the backend; the segmenter is unusable afterwards."""
        if self.runner is not None:
            self.runner.close()
            self.runner = None

    def __enter__(self) -> Segmenter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- helpers ---------------------------------------------------------------------------

    def _images(self, images) -> tuple[list, bool, list[tuple[int, int]]]:
        """The images as a list (validated up front), whether one was given, their sizes."""
        self._check_open()
        items, single = as_image_list(images)
        sizes = [check_image(im, i, self.metadata.input_channels).shape[:2]
                 for i, im in enumerate(items)]
        return items, single, sizes

    def check_image_sizes(self, sizes) -> None:
        """Every ``(H, W)`` within an end-to-end artifact's fixed size or range (a plain
        artifact takes any size); else ``BadInputError``."""
        self.io.check_sizes(sizes)

    def chunks(self, items: list):
        """``(start, items)`` runs of at most ``max_batch`` items."""
        step = self.max_batch or len(items)
        for start in range(0, len(items), step):
            yield start, items[start:start + step]

    def _check_batch(self, batch: int, exact: bool = False) -> None:
        """``batch`` images within ``max_batch``; ``exact`` (caller-owned memory, which
        cannot be padded): also at least the runner's ``min_batch``."""
        low = self.runner.min_batch if exact else 1
        if batch < low or (self.max_batch and batch > self.max_batch):
            limits = self.runner.batch_limits() if exact else \
                f"1 to {self.max_batch or 'any'}"
            raise BadInputError(self.source, f"a batch of {limits} images", f"{batch}",
                                "split or fill the batch (predict() does)")

    def _check_open(self) -> None:
        if self.runner is None:
            raise BadInputError(self.source, "an open segmenter", "a closed one",
                                "open it again with Segmenter.open()")

    def _open_runner(self) -> Runner:
        self._check_open()
        return self.runner


def _sized(shape: tuple[int, ...], size: tuple[int, int] | None) -> tuple[int, ...]:
    """An end-to-end tensor's shape with its image height and width (axes 1, 2) filled in."""
    return shape if size is None else (shape[0], *size, *shape[3:])

