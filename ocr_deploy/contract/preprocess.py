"""From uint8 RGB images of any size to the model's input batch, as its metadata says:
bilinear resize to the input size, colour order, normalisation (unless the graph does it),
layout, dtype."""

from __future__ import annotations

import numpy as np

from ocr_deploy.contract.metadata import ExportMetadata
from ocr_deploy.errors import BadInputError
from ocr_deploy.images import resize_bilinear


def as_image_list(images) -> tuple[list, bool]:
    """The accepted forms as a list, and whether a single image was given.

    One ``[H,W,C]`` (or ``[H,W]``) array is one image; a ``[N,H,W,C]`` array, a list or a
    tuple are several.
    """
    if isinstance(images, np.ndarray) and images.ndim in (2, 3):
        return [images], True
    if (isinstance(images, np.ndarray) and images.ndim == 4) or isinstance(images, (list, tuple)):
        items = list(images)
    else:
        raise BadInputError(None, "an image (a NumPy uint8 array [H,W,3]) or a list of them",
                            f"a {type(images).__name__}"
                            + (f" of shape {list(images.shape)}"
                               if isinstance(images, np.ndarray) else ""),
                            "pass decoded RGB images")
    if not items:
        raise BadInputError(None, "at least one image", "an empty batch",
                            "pass one image or a non-empty list")
    return items, False


def check_image(image, index: int, channels: int) -> np.ndarray:
    """Validate one image; return it as ``[H,W,channels]`` uint8."""
    where = f"image {index}"
    if not isinstance(image, np.ndarray):
        raise BadInputError(None, f"{where} as a NumPy array", f"a {type(image).__name__}",
                            "decode images to arrays first (e.g. ocr_deploy.images.read_image)")
    if image.dtype != np.uint8:
        raise BadInputError(None, f"{where} of dtype uint8 (0..255 pixels)",
                            f"dtype {image.dtype}",
                            "pass the decoded pixels (np.clip(x, 0, 255).astype(np.uint8))")
    if image.ndim == 2 and channels == 1:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] != channels:
        layout = "[H,W,3] RGB" if channels == 3 else "[H,W] or [H,W,1] greyscale"
        raise BadInputError(None, f"{where} shaped {layout}", f"shape {list(image.shape)}",
                            "convert it (drop alpha, add colour channels, or move channels "
                            "last)")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise BadInputError(None, f"{where} with pixels", f"shape {list(image.shape)}",
                            "skip empty images")
    return image


def end_to_end_pixels(image: np.ndarray, meta: ExportMetadata) -> np.ndarray:
    """An RGB image as an end-to-end artifact takes it: in its colour order (the channels
    reversed, as a view, for a BGR one); a plain artifact's images stay RGB."""
    bgr = meta.end_to_end and meta.end_to_end["color_order"] == "BGR"
    return image[..., ::-1] if bgr and image.ndim == 3 and image.shape[2] == 3 else image


def prepare_batch(images: list[np.ndarray], meta: ExportMetadata,
                  dtype=np.float32) -> np.ndarray:
    """Validated images -> the model input batch (``[N,H,W,C]`` or ``[N,C,H,W]``)."""
    height, width, channels = meta.input_height, meta.input_width, meta.input_channels
    batch = np.empty((len(images), height, width, channels), np.float32)
    for i, image in enumerate(images):
        resized = resize_image(check_image(image, i, channels), height, width)
        batch[i] = resized[..., ::-1] if meta.color_order.upper() == "BGR" else resized
    normalise = normalisation(meta)
    if normalise is not None:
        mean, scale = normalise
        batch -= mean
        batch *= scale
    if meta.input_layout == "NCHW":
        batch = np.ascontiguousarray(batch.transpose(0, 3, 1, 2))
    return batch.astype(dtype, copy=False)


def normalisation(meta: ExportMetadata) -> tuple[np.ndarray, np.ndarray] | None:
    """The float32 per-channel ``(mean, 1 / std)`` of the model input, normalised as
    ``(pixel - mean) * (1 / std)`` (here and in the end-to-end graph); None when the graph
    normalises itself (``in_graph``)."""
    norm = meta.normalization
    if norm.get("in_graph", False):
        return None
    channels = meta.input_channels
    mean = np.asarray(norm.get("mean", [0.0] * 3)[:channels], np.float32)
    scale = (1.0 / np.asarray(norm.get("std", [1.0] * 3)[:channels], np.float32))
    return mean, scale.astype(np.float32)


def resize_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a uint8 ``[H,W,C]`` image (C = 1 or 3)."""
    if image.shape[:2] == (height, width):
        return image
    if image.shape[2] == 1:
        return resize_bilinear(np.ascontiguousarray(image[..., 0]), height, width)[..., None]
    return resize_bilinear(np.ascontiguousarray(image), height, width)
