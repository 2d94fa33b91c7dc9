"""Pictures of label maps: the label PNG, a colour overlay on the image, a legend."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ocr_deploy.contract.metadata import ExportMetadata

LEGEND_MIN_SIZE = 96  # no legend on images smaller than this (pixels, both sides)
OVERLAY_PIXELS = 1 << 16  # pixels blended at once: bounds the float temporaries (~4 MB)


def fallback_palette(count: int) -> np.ndarray:
    """``count`` distinct colours: class 0 black, then bits of the index spread over R, G, B
    from the most significant bit down (the usual segmentation colour map)."""
    colors = np.zeros((count, 3), np.uint8)
    for index in range(count):
        value, shift = index, 7
        while value and shift >= 0:
            for channel in range(3):
                colors[index, channel] |= ((value >> channel) & 1) << shift
            value >>= 3
            shift -= 1
    return colors


def palette_of(meta: ExportMetadata, count: int | None = None) -> np.ndarray:
    """The artifact's palette ``[K,3]`` uint8, completed from ``fallback_palette``."""
    count = max(count or 0, meta.num_classes, len(meta.palette), 1)
    colors = fallback_palette(count)
    if meta.palette:
        colors[:len(meta.palette)] = np.asarray(meta.palette, np.uint8).reshape(-1, 3)
    return colors


def class_names_of(meta: ExportMetadata, count: int) -> list[str]:
    names = list(meta.class_names)
    return names + [f"class_{i}" for i in range(len(names), count)]


def label_image(labels: np.ndarray) -> Image.Image:
    """A label map as a PNG-ready image: 8-bit greyscale, 16-bit beyond 256 classes."""
    if labels.dtype == np.uint8:
        return Image.fromarray(labels, "L")
    return Image.fromarray(labels.astype(np.uint16), "I;16")


def png_bytes(image: Image.Image) -> bytes:
    """A picture encoded as PNG (lossless)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


ALPHA = 0.5  # colour weight of overlays


def overlay(image: np.ndarray, labels: np.ndarray, palette: np.ndarray, alpha: float = ALPHA,
            names: list[str] | None = None) -> Image.Image:
    """The image blended with the class colours (``alpha`` = colour weight), with a legend
    of the classes present when ``names`` are given and the image is large enough."""
    rgb = image if image.shape[2] == 3 else np.repeat(image, 3, axis=2)
    blended = np.empty(rgb.shape, np.uint8)  # full-size arrays stay uint8; float per block
    step = max(1, OVERLAY_PIXELS // rgb.shape[1])
    for start in range(0, rgb.shape[0], step):
        rows = slice(start, start + step)
        colors = palette[np.clip(labels[rows], 0, len(palette) - 1)].astype(np.float32)
        blended[rows] = np.rint((1 - alpha) * rgb[rows].astype(np.float32) + alpha * colors)
    picture = Image.fromarray(blended, "RGB")
    if names and min(labels.shape) >= LEGEND_MIN_SIZE:
        _draw_legend(picture, np.unique(labels), palette, names)
    return picture


def _draw_legend(picture: Image.Image, present: np.ndarray, palette: np.ndarray,
                 names: list[str]) -> None:
    """Swatches and names of the classes present, in the top-left corner."""
    font = ImageFont.load_default()
    draw = ImageDraw.Draw(picture, "RGBA")
    line, pad = 12, 3
    width = max(draw.textlength(names[c], font=font) for c in present) + line + 3 * pad
    height = len(present) * line + 2 * pad
    draw.rectangle((0, 0, width, height), fill=(255, 255, 255, 190))
    for row, cls in enumerate(present):
        top = pad + row * line
        draw.rectangle((pad, top + 1, pad + line - 3, top + line - 2),
                       fill=tuple(int(v) for v in palette[cls]), outline=(0, 0, 0))
        draw.text((2 * pad + line, top), names[cls], fill=(0, 0, 0), font=font)
