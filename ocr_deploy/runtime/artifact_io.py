"""How images go into an artifact and its outputs come back, chosen once when it opens.

A plain artifact (``PlainIO``) takes batches the runtime prepares (resize, colour order,
normalisation, layout from the metadata) and gives scores or labels at the model's size,
resized back to each image's size here. An end-to-end artifact (``EndToEndIO``,
``ocr-build-engine --end-to-end``) does all of that in its graph: uint8 images of the sizes
it was built for go in as they are (one run per size) and its labels come out at the
image's size. ``Segmenter`` asks this object and never the variant.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ocr_deploy.contract import postprocess
from ocr_deploy.contract.metadata import ExportMetadata
from ocr_deploy.contract.preprocess import as_image_list, check_image, prepare_batch
from ocr_deploy.errors import BadInputError


class ArtifactIO:
    """The outputs an artifact has and how images and results pass its boundary; the
    methods here are a plain artifact's, ``EndToEndIO`` overrides them."""

    logits_output: str | None  # the per-class scores, if the artifact has them
    labels_output: str | None  # in-graph labels, if the artifact has them
    label_dtype: np.dtype  # what predict() returns

    def __init__(self, metadata: ExportMetadata, runner, source):
        self.metadata, self.runner, self.source = metadata, runner, source

    @property
    def outputs(self) -> list[str]:
        """The scores and labels outputs the artifact has."""
        return [n for n in (self.logits_output, self.labels_output) if n]

    def check_sizes(self, sizes) -> None:
        """``BadInputError`` unless every ``(H, W)`` is one the artifact takes (any, here)."""

    def prepare(self, images, input_dtype) -> np.ndarray:
        """Images -> the artifact's input batch."""
        items, _ = as_image_list(images)
        return prepare_batch(items, self.metadata, input_dtype)

    def outputs_for(self, sizes: Sequence[tuple[int, int]]) -> list[str]:
        """The output ``predict`` fetches for images of these sizes: the in-graph labels
        when every image matches their size, else the scores (resized, then argmax)."""
        labels, logits = self.labels_output, self.logits_output
        if logits is None or (labels is not None
                              and all(tuple(s) == self._hw[labels] for s in sizes)):
            return [labels]
        return [logits]

    def finish(self, value: np.ndarray, index: int, size: tuple[int, int], output: str,
               scores: bool = False) -> np.ndarray:
        """Image ``index`` of ``output`` at its ``(H, W)``: labels, or ``scores``."""
        height, width = size
        if output == self.labels_output:
            return postprocess.resize_labels(value[index], height, width, self.label_dtype)
        hwk = postprocess.scores_hwk(value, index, self._layout(output))
        if scores:
            return postprocess.resize_scores(hwk, height, width)
        return postprocess.labels_from_scores(hwk, height, width, self.label_dtype)

    def run_images(self, segmenter, items: list, sizes: list, output: str,
                   scores: bool = False) -> list[np.ndarray]:
        """``output`` of every image, ``segmenter.max_batch`` at a time, finished."""
        results = []
        for start, chunk in segmenter.chunks(items):
            value = segmenter.run(segmenter.prepare(chunk), [output])[output]
            results += [self.finish(value, i, size, output, scores)
                        for i, size in enumerate(sizes[start:start + len(chunk)])]
        return results

    def device_image_size(self, input, given) -> tuple[int, int] | None:
        """The image size ``run_device`` runs at when the artifact's sizes vary (never)."""
        return None

    def describe(self) -> dict | None:
        """The end-to-end contract for reports (None: a plain artifact)."""
        return None

    def check_scores(self) -> None:
        """``BadInputError`` when the artifact has no scores output (labels only)."""
        if self.logits_output is None:
            raise BadInputError(self.source, "a model with a logits output", "labels only",
                                "re-export without --labels-only, or use predict()")

    def refuse_tiling(self) -> None:
        """``BadInputError`` when the artifact cannot be tiled (no scores to blend)."""
        if self.logits_output is None:
            raise BadInputError(self.source, "an artifact with per-class scores to blend "
                                "overlapping windows", "a labels-only artifact",
                                "re-export without --labels-only to tile")

    def _layout(self, name: str) -> str:
        return self.metadata.outputs.get(name, {}).get("layout", self.metadata.input_layout)


class PlainIO(ArtifactIO):
    """A plain artifact: pre- and post-processing run here."""

    def __init__(self, metadata: ExportMetadata, runner, source):
        super().__init__(metadata, runner, source)
        kinds = {spec.get("kind"): name for name, spec in metadata.outputs.items()}
        self.logits_output = kinds.get("logits") or kinds.get("probabilities")  # scores
        self.labels_output = kinds.get("labels")
        self._hw = {name: self._spatial(name) for name in self.outputs}
        self.label_dtype = postprocess.label_dtype(metadata.num_classes)

    def _spatial(self, name: str) -> tuple[int, int]:
        shape = self.runner.output_shape(name, 1)
        if self._layout(name) == "NCHW":
            return shape[2], shape[3]
        return shape[1], shape[2]


class EndToEndIO(ArtifactIO):
    """An end-to-end artifact: uint8 images of its sizes in, outputs at their size out."""


    def __init__(self, metadata: ExportMetadata, runner, source):
        super().__init__(metadata, runner, source)
        e2e = metadata.end_to_end
        self.logits_output, self.labels_output = e2e.get("scores"), e2e["labels"]
        sizes = metadata.sizes()
        self._hw = {name: sizes.minimum if sizes.is_fixed else (-1, -1)
                    for name in self.outputs}
        self.label_dtype = np.dtype(e2e["label_dtype"])

    def check_sizes(self, sizes) -> None:
        built = self.metadata.sizes()
        for i, (height, width) in enumerate(sizes):
            if not built.contains(height, width):
                raise BadInputError(self.source, f"images of {built.describe()} (what this "
                                    "end-to-end artifact was built for)",
                                    f"an image of {height}x{width}"
                                    + (f" (image {i})" if len(sizes) > 1 else ""),
                                    "resize or crop it to that size, or build an end-to-end "
                                    "artifact for this size")

    def prepare(self, images, input_dtype) -> np.ndarray:
        """The validated uint8 images of one size, stacked ``[N,H,W,C]``."""
        items, _ = as_image_list(images)
        arrays = [check_image(im, i, self.metadata.input_channels) for i, im in enumerate(items)]
        self.check_sizes([a.shape[:2] for a in arrays])
        sizes = sorted({a.shape[:2] for a in arrays})
        if len(sizes) > 1:
            raise BadInputError(None, "images of one size in a batch (end-to-end artifact)",
                                f"sizes {', '.join(f'{h}x{w}' for h, w in sizes)}",
                                "batch images by size (predict() does)")
        return np.stack(arrays)

    def outputs_for(self, sizes: Sequence[tuple[int, int]]) -> list[str]:
        return [self.labels_output]

    def finish(self, value: np.ndarray, index: int, size: tuple[int, int], output: str,
               scores: bool = False) -> np.ndarray:
        return value[index]  # at the image size already

    def run_images(self, segmenter, items: list, sizes: list, output: str,
                   scores: bool = False) -> list[np.ndarray]:
        """Images of one size run together (``max_batch`` at a time); results are views of
        the backend's output."""
        self.check_sizes(sizes)
        groups: dict[tuple, list[int]] = {}
        for i, size in enumerate(sizes):
            groups.setdefault(tuple(size), []).append(i)
        results: list = [None] * len(items)
        for indices in groups.values():
            for _, chunk in segmenter.chunks(indices):
                value = segmenter.run(segmenter.prepare([items[i] for i in chunk]),
                                      [output])[output]
                for position, i in enumerate(chunk):
                    results[i] = value[position]
        return results

    def device_image_size(self, input, given) -> tuple[int, int] | None:
        """None when the artifact's shapes are fixed; else the size from ``given`` or the
        input's shape, checked against what it takes."""
        if -1 not in self.runner.input_shape(1):
            return None
        shape = getattr(input, "shape", None) or getattr(
            input, "__cuda_array_interface__", {}).get("shape")
        size = tuple(given) if given is not None else tuple(shape[1:3]) if shape else None
        if size is None or len(size) != 2:
            raise BadInputError(None, "image_size=(H, W) with raw addresses (the end-to-end "
                                "artifact takes a range of sizes)", "none",
                                "pass the images' height and width")
        self.check_sizes([size])
        return tuple(int(v) for v in size)

    def describe(self) -> dict:
        return {"image_sizes": [list(s) for s in self.metadata.image_sizes()],
                "color_order": self.metadata.end_to_end["color_order"]}

    def check_scores(self) -> None:
        if self.logits_output is None:
            raise BadInputError(self.source, "an end-to-end artifact with a scores output",
                                "labels only", "build it with scores, or use predict()")

    def refuse_tiling(self) -> None:
        raise BadInputError(self.source, "an artifact with per-class scores to blend "
                            "overlapping windows", "an end-to-end artifact (it resizes whole "
                            "images in its graph and returns their labels)",
                            "tile with the plain artifact it was built from")


def artifact_io(metadata: ExportMetadata, runner, source) -> ArtifactIO:
    """The input/output object of an artifact with ``metadata`` run by ``runner``."""
    return (EndToEndIO if metadata.end_to_end else PlainIO)(metadata, runner, source)
