"""The end-to-end step of ``ocr-build-engine --end-to-end``: what was asked, the wrap of
the precision ONNX for the chosen backend, and the images and references its verdict and
parity figure use.

- **Wrap**: the precision ONNX (FP32, FP16 casts, INT8 Q/DQ calibrated as any build is) is
  wrapped by ``graph.end_to_end.make_end_to_end`` for the backend's target, then built by
  the backend. Calibration needs nothing else: the graph's resize is the runtime's bit for
  bit, so the core calibrated on the user's images resized by the runtime sees exactly the
  inputs the end-to-end graph gives it.
- **Verdict images** (``camera_images``): the validation (else calibration) images at
  their own size where the artifact takes it, else resized (Pillow BILINEAR; masks
  nearest) to the nearest size it takes; without usable images (no data, or float arrays
  already shaped like the model input) seeded synthetic images (``sample_images``) at the
  sizes ``parity_sizes`` picks.
- **References** (``verification.reference.reference_segmenter``): ``Segmenter.predict``
  on the FP32 export (the verdict) and on the plain precision core (the parity figure), on
  ONNX Runtime CPU.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import onnx

from ocr_deploy.contract.image_sizes import ImageSizes
from ocr_deploy.contract.metadata import ExportMetadata
from ocr_deploy.contract.preprocess import resize_image
from ocr_deploy.graph.end_to_end import make_end_to_end, validate_request
from ocr_deploy.graph.target import GraphTarget
from ocr_deploy.precision.calibration_data import (
    SampleSet,
    SyntheticSamples,
    raw_samples,
    read_mask,
)
from ocr_deploy.verification.end_to_end_parity import parity_sizes, sample_images

PARITY_IMAGES_PER_SIZE = 2
SUFFIX = "_e2e"  # default artifact names: <model>_<precision>_e2e<backend suffix>


@dataclass(frozen=True)
class EndToEndRequest:
    """An end-to-end build: camera pixels in, label map out (the CLI's defaults)."""

    sizes: ImageSizes
    color_order: str = "RGB"  # or "BGR" (OpenCV, DeepStream)
    scores: bool = False  # a float32 scores output [N,H,W,K] too
    labels_form: str = "auto"  # auto, dense or boundary (graph.label_maps)
    argmax_form: str = "auto"  # auto, argmax or compare

    def validate(self, meta: ExportMetadata, source: object) -> None:
        """What the wrap would refuse, before any slow work (``BadInputError``)."""
        validate_request(meta, self.sizes, self.color_order, self.scores, self.labels_form,
                         self.argmax_form, source)

    def wrap(self, core: onnx.ModelProto, meta: ExportMetadata, target: GraphTarget,
             source: object) -> tuple[onnx.ModelProto, ExportMetadata]:
        """The end-to-end graph around ``core`` (whose metadata is ``meta``) for ``target``,
        the building backend's ``graph_target``."""
        return make_end_to_end(core, self.sizes, self.color_order, self.scores,
                               self.labels_form, self.argmax_form, target, meta, source)

    def describe(self) -> str:
        return f"{self.sizes.describe()} {self.color_order} uint8 images"


@dataclass
class CameraImages:
    """RGB images at sizes an end-to-end artifact takes, each with its mask (at the image's
    size) when the data has masks, read one at a time."""

    meta: ExportMetadata  # the end-to-end artifact's
    data: SampleSet | None  # None: synthetic images
    count: int
    description: str

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        if self.data is None:
            for image in _synthetic(self.meta, self.count):
                yield image, None
            return
        data = self.data
        for path, group in itertools.groupby(data.items, key=lambda item: item[0]):
            wanted = {index for _, index in group}
            for index, image in enumerate(raw_samples(path, data.meta)):
                if index not in wanted:
                    continue
                size = fitting_size(self.meta, image.shape[:2])
                mask = read_mask(data.folder, path, size) if data.with_masks else None
                yield resize_image(np.asarray(image), *size), mask


def camera_images(data: SampleSet | None, meta: ExportMetadata, synthetic: int
                  ) -> CameraImages:
    """The verdict's images for the end-to-end artifact described by ``meta`` (see the
    module docstring); ``synthetic`` images when ``data`` has none to give."""
    if data is not None and not isinstance(data, SyntheticSamples) and len(data) \
            and _holds_images(data):
        return CameraImages(meta, data, len(data), f"{data.description}, at their own "
                            f"size where the artifact takes it (else resized to the nearest "
                            f"size it takes, {meta.sizes().describe()})")
    sizes = parity_sizes(meta)
    why = "no image data given" if data is None or isinstance(data, SyntheticSamples) else \
        f"{data.folder} holds float inputs, not images"
    return CameraImages(meta, None, synthetic, f"{synthetic} seeded synthetic images of "
                        f"{', '.join(f'{h}x{w}' for h, w in sizes)} ({why}: agreement only)")


def parity_images(meta: ExportMetadata) -> list[np.ndarray]:
    """The parity figure's images: two seeded synthetic images of each size
    ``parity_sizes`` picks (shrunk, enlarged, odd sides)."""
    return sample_images(parity_sizes(meta), PARITY_IMAGES_PER_SIZE, meta.input_channels)


def fitting_size(meta: ExportMetadata, shape: tuple[int, int]) -> tuple[int, int]:
    """The size in the artifact's range nearest to ``shape`` (each side clamped)."""
    return meta.sizes().clamp(*shape[:2])


def default_name(stem: str) -> str:
    return stem + SUFFIX


def _holds_images(data: SampleSet) -> bool:
    path = data.items[0][0]
    return next(raw_samples(path, data.meta)).dtype == np.uint8


def _synthetic(meta: ExportMetadata, count: int) -> Iterator[np.ndarray]:
    """``count`` seeded synthetic images, cycling through the ``parity_sizes``."""
    sizes = parity_sizes(meta)
    for i, size in enumerate(itertools.islice(itertools.cycle(sizes), count)):
        yield sample_images([size], 1, meta.input_channels, seed=1000 + i)[0]
