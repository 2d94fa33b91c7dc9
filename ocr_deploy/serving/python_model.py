"""The model behind Triton's Python backend (``NAME_python``): images in, label maps out.

A request carries exactly one of two inputs (both declared optional in its config):

- ``IMAGE``: uint8 ``[N,H,W,C]`` pixels (RGB, or greyscale with C=1), any size;
- ``IMAGE_BYTES``: ``[N,1]`` encoded images (PNG, JPEG, BMP ... as Pillow reads them).

and gets ``LABELS`` ``[N,H,W]`` back: ``Segmenter.predict`` of each image, at its own size.
Every image of every request in one call (one dynamic batch) runs in one ``predict`` call;
a bad request gets its own error and the others their answers. An end-to-end artifact
takes ``IMAGE`` in its own colour order (encoded images are decoded to it) at the sizes it
was built for (another size is that request's error) and runs pre- and post-processing in
its graph.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ocr_deploy.contract.preprocess import check_image, end_to_end_pixels
from ocr_deploy.errors import OcrDeployError, RequestError
from ocr_deploy.runtime import Segmenter

INPUT_PIXELS = "IMAGE"
INPUT_ENCODED = "IMAGE_BYTES"
OUTPUT_LABELS = "LABELS"
MAX_PIXELS = 64_000_000  # an encoded image larger than this is refused before decoding


def decode(data: bytes, channels: int, index: int = 0) -> np.ndarray:
    """Decode one encoded image to uint8 ``[H,W,channels]`` (RGB or greyscale)."""
    from PIL import Image

    if not data:
        raise RequestError(f"{INPUT_ENCODED}[{index}]: expected an encoded image (png, jpg, "
                           "bmp), found 0 bytes; send the file's bytes")
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise RequestError(f"{INPUT_ENCODED}[{index}]: expected at most {MAX_PIXELS} "
                                   f"pixels, found {width}x{height}; send a smaller image")
            pixels = np.asarray(image.convert("RGB" if channels == 3 else "L"))
    except RequestError:
        raise
    except Exception as exc:  # Pillow raises many types for corrupt data
        raise RequestError(f"{INPUT_ENCODED}[{index}]: expected an encoded image (png, jpg, "
                           f"bmp), found unreadable data ({type(exc).__name__}); send the "
                           "file's bytes unchanged") from None
    return pixels if channels == 3 else pixels[..., None]


def request_images(pixels: np.ndarray | None, encoded: np.ndarray | None,
                   channels: int) -> list[np.ndarray]:
    """The images of one request, validated; a ``RequestError`` says what is wrong."""
    if (pixels is None) == (encoded is None):
        raise RequestError(f"expected exactly one of {INPUT_PIXELS} (uint8 [N,H,W,{channels}]) "
                           f"and {INPUT_ENCODED} (encoded images [N,1]), found "
                           f"{'both' if pixels is not None else 'neither'}")
    if pixels is not None:
        images = list(pixels)
    else:
        images = [decode(bytes(item), channels, i)
                  for i, item in enumerate(encoded.reshape(-1))]
    if not images:
        raise RequestError("expected at least one image, found an empty batch")
    try:
        return [check_image(image, i, channels) for i, image in enumerate(images)]
    except OcrDeployError as exc:
        raise RequestError(exc.one_line()) from None


class ImagesToLabels:
    """A ``Segmenter`` answering batches of requests."""

    def __init__(self, segmenter: Segmenter):
        self.segmenter = segmenter
        self.channels = segmenter.metadata.input_channels

    @classmethod
    def open(cls, artifact: Path, threads: int | None = None) -> ImagesToLabels:
        return cls(Segmenter.open(artifact, threads=threads))

    def answer(self, requests: list[tuple[np.ndarray | None, np.ndarray | None]]
               ) -> list[np.ndarray | RequestError]:
        """For each request's ``(pixels, encoded)``, ``LABELS`` or the error to return."""
        results: list = []
        images: list[np.ndarray] = []
        for pixels, encoded in requests:
            try:
                found = request_images(pixels, encoded, self.channels)
                if encoded is not None:
                    found = [end_to_end_pixels(im, self.segmenter.metadata) for im in found]
                try:
                    self.segmenter.check_image_sizes([im.shape[:2] for im in found])
                except OcrDeployError as exc:
                    raise RequestError(exc.one_line()) from None
                if len({image.shape[:2] for image in found}) > 1:
                    raise RequestError(f"expected images of one size per request (a [N,H,W] "
                                       f"answer), found sizes "
                                       f"{sorted({im.shape[:2] for im in found})}; send one "
                                       "image per request")
                results.append(len(found))
                images += found
            except RequestError as exc:
                results.append(exc)
        maps = self.segmenter.predict(images) if images else []
        start = 0
        for i, result in enumerate(results):
            if isinstance(result, int):
                results[i] = np.stack(maps[start:start + result])
                start += result
        return results

    def close(self) -> None:
        self.segmenter.close()
