"""Reading images from disk as uint8 RGB arrays (no TensorFlow)."""

from __future__ import annotations

import re
import warnings
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
    """Read an image file as ``[H,W,3]`` uint8 RGB; an unreadable file is a clear error.

    16-bit greyscale is scaled to 8 bits (not clipped); an image with more pixels than
    Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``) is refused unread.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if image.mode.startswith("I"):  # "I;16", "I;16B", "I": 16-bit greyscale
                    grey = np.clip(np.asarray(image), 0, 65535).astype(np.uint32)
                    return np.repeat(((grey * 255 + 32767) // 65535).astype(np.uint8)[..., None],
                                     3, axis=2)
                return np.asarray(image.convert("RGB"))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        count = re.search(r"\((\d+) pixels\)", str(exc))
        raise BadInputError(path, f"an image of at most {Image.MAX_IMAGE_PIXELS:,} pixels "
                            "(Pillow's decompression-bomb limit)",
                            f"{int(count[1]):,} pixels" if count else str(exc),
                            "downscale it first (or raise PIL.Image.MAX_IMAGE_PIXELS in your "
                            "own program if you trust the file)") from None
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
