"""``Segmenter``: one object over TensorRT engines and ONNX models, opened from the artifact.

    with Segmenter.open("export/model.onnx") as segmenter:
        labels = segmenter.predict(image)          # uint8 [H,W] at the image's own size

Preprocessing (resize, colour order, normalisation, layout) comes from the artifact's
metadata, so the application never repeats it. An end-to-end artifact
(``ocr_deploy.graph.end_to_end``) does all of it in its graph: its images go in as uint8
(one run per image size) and its labels come out as they are. Safe to call from several
threads.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ocr_deploy.backends.tensors import tensor_ref
from ocr_deploy.errors import BadInputError
from ocr_deploy.metadata import ExportMetadata
from ocr_deploy.runtime import postprocess
from ocr_deploy.runtime.artifact import check_contract
from ocr_deploy.runtime.preprocess import as_image_list, check_image, prepare_batch

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
        e2e = metadata.end_to_end
        if e2e:  # the graph's outputs are at the image size already
            self.logits_output, self.labels_output = e2e.get("scores"), e2e["labels"]
            low, high = metadata.image_sizes()
            self._hw = {name: low if low == high else (-1, -1)
                        for name in filter(None, (self.logits_output, self.labels_output))}
            self.label_dtype = np.dtype(e2e["label_dtype"])
            return
        kinds = {spec.get("kind"): name for name, spec in metadata.outputs.items()}
        self.logits_output = kinds.get("logits") or kinds.get("probabilities")  # scores
        self.labels_output = kinds.get("labels")
        self._hw = {name: self._spatial(name) for name in filter(None, (self.logits_output,
                                                                        self.labels_output))}
        self.label_dtype = postprocess.label_dtype(metadata.num_classes)

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
        if self.metadata.end_to_end:
            results = self._run_by_size(items, sizes, self.labels_output)
            return results[0] if single else results
        (output,) = self.outputs_for(sizes)
        results = []
        for start, chunk in self._chunks(items):
            value = self.run(self.prepare(chunk), [output])[output]
            results += [self.finish(value, i, size, output)
                        for i, size in enumerate(sizes[start:start + len(chunk)])]
        return results[0] if single else results

    def predict_scores(self, images):
        """Per-class scores (logits) ``[H,W,K]`` float32 at each image's size, resized
        bilinearly; same forms of ``images`` as ``predict``."""
        if self.logits_output is None and self.metadata.end_to_end:
            raise BadInputError(self.source, "an end-to-end artifact with a scores output",
                                "labels only", "build it with scores, or use predict()")
        if self.logits_output is None:
            raise BadInputError(self.source, "a model with a logits output", "labels only",
                                "re-export without --labels-only, or use predict()")
        items, single, sizes = self._images(images)
        if self.metadata.end_to_end:
            results = self._run_by_size(items, sizes, self.logits_output)
            return results[0] if single else results
        results = []
        for start, chunk in self._chunks(items):
            value = self.run(self.prepare(chunk), [self.logits_output])[self.logits_output]
            results += [self.finish(value, i, size, self.logits_output, scores=True)
                        for i, size in enumerate(sizes[start:start + len(chunk)])]
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
        labels, logits = self.labels_output, self.logits_output
        if self.metadata.end_to_end:
            return [labels]
        if logits is None or (labels is not None
                              and all(tuple(s) == self._hw[labels] for s in sizes)):
            return [labels]
        return [logits]

    def finish(self, value: np.ndarray, index: int, size: tuple[int, int], output: str,
               scores: bool = False) -> np.ndarray:
        """Image ``index`` of ``run``'s ``output`` at its image's ``(H, W)`` size: its label
        map as ``predict`` gives it, or with ``scores`` its scores as ``predict_scores`` does
        (an end-to-end artifact's output is at the image size already)."""
        height, width = size
        if self.metadata.end_to_end:
            return value[index]
        if output == self.labels_output:
            return postprocess.resize_labels(value[index], height, width, self.label_dtype)
        hwk = postprocess.scores_hwk(value, index, self._layout(output))
        if scores:
            return postprocess.resize_scores(hwk, height, width)
        return postprocess.labels_from_scores(hwk, height, width, self.label_dtype)

    # -- the model itself ------------------------------------------------------------------

    def prepare(self, images) -> np.ndarray:
        """Images -> the model's input batch (resized, normalised, laid out per metadata);
        for an end-to-end artifact, the uint8 images of one size stacked ``[N,H,W,C]``."""
        self._check_open()
        if self.metadata.end_to_end:
            return self._stack_images(images)
        items, _ = as_image_list(images)
        return prepare_batch(items, self.metadata, self.runner.input_dtype)

    def run(self, batch: np.ndarray, outputs: Sequence[str] | None = None
            ) -> dict[str, np.ndarray]:
        """Run a prepared batch (``prepare``'s result) and return raw outputs by name.

        ``outputs`` default: the logits and labels outputs the model has."""
        self._check_open()
        outputs = list(outputs) if outputs else [n for n in (self.logits_output,
                                                             self.labels_output) if n]
        self.runner.check_batch(batch, outputs, self.source)
        if self.metadata.end_to_end:
            self.check_image_sizes([batch.shape[1:3]])
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
        size = self._device_image_size(input, image_size)
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
        sizes = meta.image_sizes()
        return {"artifact": str(self.source), **self.runner.info(),
                "precision": meta.precision, "input_size": list(self.input_size),
                "input_layout": meta.input_layout, "num_classes": meta.num_classes,
                "outputs": list(self._hw), "max_batch": self.max_batch,
                "end_to_end": None if sizes is None else {
                    "image_sizes": [list(s) for s in sizes],
                    "color_order": meta.end_to_end["color_order"]}}

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

    def _run_by_size(self, items: list, sizes: list, output: str) -> list[np.ndarray]:
        """An end-to-end artifact's ``output`` per image: images of one size run together
        (``max_batch`` at a time); results are views of the backend's output."""
        self.check_image_sizes(sizes)
        groups: dict[tuple, list[int]] = {}
        for i, size in enumerate(sizes):
            groups.setdefault(tuple(size), []).append(i)
        results: list = [None] * len(items)
        for indices in groups.values():
            for _, chunk in self._chunks(indices):
                value = self.run(self.prepare([items[i] for i in chunk]), [output])[output]
                for position, i in enumerate(chunk):
                    results[i] = value[position]
        return results

    def _stack_images(self, images) -> np.ndarray:
        """An end-to-end artifact's input: the validated uint8 images of one size, stacked."""
        items, _ = as_image_list(images)
        arrays = [check_image(im, i, self.metadata.input_channels) for i, im in enumerate(items)]
        self.check_image_sizes([a.shape[:2] for a in arrays])
        sizes = sorted({a.shape[:2] for a in arrays})
        if len(sizes) > 1:
            raise BadInputError(None, "images of one size in a batch (end-to-end artifact)",
                                f"sizes {', '.join(f'{h}x{w}' for h, w in sizes)}",
                                "batch images by size (predict() does)")
        return np.stack(arrays)

    def check_image_sizes(self, sizes) -> None:
        """Every ``(H, W)`` within an end-to-end artifact's fixed size or range (a plain
        artifact takes any size); else ``BadInputError``."""
        if not self.metadata.end_to_end:
            return
        (low_h, low_w), (high_h, high_w) = self.metadata.image_sizes()
        for i, (height, width) in enumerate(sizes):
            if not (low_h <= height <= high_h and low_w <= width <= high_w):
                built = f"{low_h}x{low_w}" if (low_h, low_w) == (high_h, high_w) else \
                    f"{low_h}x{low_w} to {high_h}x{high_w}"
                raise BadInputError(self.source, f"images of {built} (what this "
                                    "end-to-end artifact was built for)",
                                    f"an image of {height}x{width}"
                                    + (f" (image {i})" if len(sizes) > 1 else ""),
                                    "resize or crop it to that size, or build an end-to-end "
                                    "artifact for this size")

    def _device_image_size(self, input, given) -> tuple[int, int] | None:
        """The image size ``run_device`` runs an end-to-end artifact of varying size at (None
        when the artifact's shapes are fixed), checked against what it takes."""
        if not self.metadata.end_to_end or -1 not in self.input_shape(1):
            return None
        shape = getattr(input, "shape", None) or getattr(
            input, "__cuda_array_interface__", {}).get("shape")
        size = tuple(given) if given is not None else tuple(shape[1:3]) if shape else None
        if size is None or len(size) != 2:
            raise BadInputError(None, "image_size=(H, W) with raw addresses (the end-to-end "
                                "artifact takes a range of sizes)", "none",
                                "pass the images' height and width")
        self.check_image_sizes([size])
        return tuple(int(v) for v in size)

    def _chunks(self, items: list):
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

    def _layout(self, name: str) -> str:
        return self.metadata.outputs.get(name, {}).get("layout", self.metadata.input_layout)

    def _spatial(self, name: str) -> tuple[int, int]:
        shape = self.runner.output_shape(name, 1)
        if self._layout(name) == "NCHW":
            return shape[2], shape[3]
        return shape[1], shape[2]


def _sized(shape: tuple[int, ...], size: tuple[int, int] | None) -> tuple[int, ...]:
    """An end-to-end tensor's shape with its image height and width (axes 1, 2) filled in."""
    return shape if size is None else (shape[0], *size, *shape[3:])

