"""Reading images from disk as uint8 RGB arrays (no TensorFlow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ocr_deploy.errors import BadInputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def list_images(folder: Path) -> list[Path]:
    """The image files of ``folder`` in sorted (deterministic) order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BadInputError(folder, "a folder of images", "no such folder", "check the path")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def read_image(path: Path) -> np.ndarray:
    """Read an image file as ``[H,W,3]`` uint8 RGB; an unreadable file is a clear error."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise BadInputError(path, "a readable image (png, jpg, bmp)",
                            f"unreadable data ({type(exc).__name__})",
                            "remove or replace the file") from exc


def resize_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize a uint8 ``[H,W,3]`` image to ``height x width`` with bilinear filtering."""
    if image.shape[:2] == (height, width):
        return image
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))
