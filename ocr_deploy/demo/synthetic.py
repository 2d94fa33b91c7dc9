"""A deterministic synthetic segmentation dataset: coloured shapes on textured backgrounds.

NumPy and Pillow only (the runtime uses it). Each image holds 1-4 objects of the classes in
``CLASS_NAMES``, drawn in random colours over a random smooth texture (gradient, stripes or
blobs) with pixel noise, so the classes can only be told apart by shape. Objects may overlap
a little (the later one wins) but keep most of their outline. Sample ``i`` of a dataset
depends only on ``(seed, i)``, so datasets are reproducible and a longer split starts with
the shorter one.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from ocr_deploy.files import write_bytes_atomic

CLASS_NAMES = ("background", "disc", "square", "triangle", "ring")
PALETTE = ((0, 0, 0), (230, 25, 75), (60, 180, 75), (0, 130, 200), (255, 225, 25))
MEAN = (127.5, 127.5, 127.5)  # model input = (pixel - MEAN) / STD, RGB order
STD = (127.5, 127.5, 127.5)

TRAIN_SEED = 20240611
VALIDATION_SEED = 77031

_SIZE_RANGE = (15.0, 28.0)  # object radius / half-size in pixels at 96x96, scaled with the image
_MIN_CONTRAST = 100.0  # least RGB distance of an object's colour to the background's and others'
_TEXTURE_CONTRAST = 50.0  # RMS per channel of the difference of the two background colours
_MAX_OVERLAP = 0.2  # largest fraction of an object that a later one may cover
_PLACEMENT_TRIES = 10


def normalize(images: np.ndarray) -> np.ndarray:
    """Map uint8 RGB images ``[..., 3]`` to the model's float32 input range (about -1..1)."""
    mean = np.asarray(MEAN, np.float32)
    std = np.asarray(STD, np.float32)
    return (np.asarray(images, np.float32) - mean) / std


def make_dataset(count: int, seed: int, height: int = 96, width: int = 96, start: int = 0
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Samples ``start .. start+count-1`` of dataset ``seed``: images ``[N,H,W,3]`` uint8 and
    labels ``[N,H,W]`` uint8."""
    images = np.empty((count, height, width, 3), np.uint8)
    labels = np.empty((count, height, width), np.uint8)
    for i in range(count):
        images[i], labels[i] = make_sample(seed, start + i, height, width)
    return images, labels


def make_sample(seed: int, index: int, height: int = 96, width: int = 96
                ) -> tuple[np.ndarray, np.ndarray]:
    """Generate sample ``index`` of the dataset ``seed``: an image and its label map."""
    rng = np.random.default_rng([seed, index])
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5  # pixel centres
    image, colors = _background(rng, xx, yy)
    label = np.zeros((height, width), np.uint8)
    masks: list[np.ndarray] = []
    scale = min(height, width) / 96.0
    for _ in range(rng.integers(1, 5)):
        cls = int(rng.integers(1, len(CLASS_NAMES)))
        size = rng.uniform(*_SIZE_RANGE) * scale
        mask = _place(cls, size, rng, xx, yy, masks)
        if mask is None:
            continue
        color = _object_color(rng, colors)
        colors = np.vstack([colors, color])
        shading = _ramp(rng, xx, yy)[..., None] * rng.uniform(-20, 20)
        image = np.where(mask[..., None], color + shading, image)
        label[mask] = cls
        masks.append(mask)
    image = image + rng.normal(0.0, rng.uniform(2.0, 8.0), image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), label


def train_split(count: int, height: int = 96, width: int = 96, start: int = 0
                ) -> tuple[np.ndarray, np.ndarray]:
    """``count`` samples of the training split, from sample ``start`` on."""
    return make_dataset(count, TRAIN_SEED, height, width, start)


def validation_split(count: int, height: int = 96, width: int = 96
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The first ``count`` samples of the held-out validation split."""
    return make_dataset(count, VALIDATION_SEED, height, width)


def write_samples(folder: Path, count: int, seed: int = VALIDATION_SEED,
                  height: int = 96, width: int = 96) -> list[Path]:
    """Write ``count`` samples as PNGs; return the image paths.

    Images go to ``FOLDER/sample_NNN.png`` (RGB) and their label maps, one class index per
    pixel, to ``FOLDER/labels/sample_NNN.png`` (8-bit greyscale), so ``FOLDER/*.png`` is
    exactly the images.
    """
    folder = Path(folder)
    images, labels = make_dataset(count, seed, height, width)
    paths = []
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        path = folder / f"sample_{i:03d}.png"
        write_bytes_atomic(path, _png_bytes(Image.fromarray(image, "RGB")))
        write_bytes_atomic(folder / "labels" / path.name, _png_bytes(Image.fromarray(label, "L")))
        paths.append(path)
    return paths


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _ramp(rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """A linear ramp from 0 to 1 across the image in a random direction."""
    angle = rng.uniform(0, 2 * np.pi)
    proj = np.cos(angle) * xx + np.sin(angle) * yy
    return (proj - proj.min()) / max(float(np.ptp(proj)), 1e-6)


def _place(cls: int, size: float, rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray,
           masks: list[np.ndarray]) -> np.ndarray | None:
    """Mask of a shape at a random place where it overlaps the earlier ``masks`` little.

    At most ``_MAX_OVERLAP`` of the new shape, and of each earlier one, may be shared, so
    every object keeps most of its outline. ``None`` if no place is found in a few tries.
    """
    height, width = xx.shape
    for _ in range(_PLACEMENT_TRIES):
        cx, cy = rng.uniform(0.1, 0.9) * width, rng.uniform(0.1, 0.9) * height
        mask = _shape_mask(cls, size, rng, xx - cx, yy - cy)
        area = mask.sum()
        if all((mask & old).sum() <= _MAX_OVERLAP * min(area, old.sum()) for old in masks):
            return mask
    return None


def _background(rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """A float RGB texture mixing two random colours a moderate distance apart, and those
    two colours."""
    first = rng.uniform(0, 255, 3)
    second = np.clip(first + rng.normal(0.0, 1.0, 3) * _TEXTURE_CONTRAST, 0, 255)
    colors = np.stack([first, second])
    kind = rng.integers(3)
    if kind == 0:  # smooth gradient
        t = _ramp(rng, xx, yy)
    elif kind == 1:  # stripes with a random period and orientation
        angle = rng.uniform(0, np.pi)
        proj = np.cos(angle) * xx + np.sin(angle) * yy
        t = 0.5 + 0.5 * np.sin(2 * np.pi * proj / rng.uniform(12, 40) + rng.uniform(0, 2 * np.pi))
    else:  # blobs: coarse random noise, upsampled bilinearly
        cells = int(rng.integers(3, 9))
        coarse = Image.fromarray(rng.uniform(0, 1, (cells, cells)).astype(np.float32), "F")
        t = np.asarray(coarse.resize(xx.shape[::-1], Image.BILINEAR))
    return colors[0] + (colors[1] - colors[0]) * t[..., None], colors


def _object_color(rng: np.random.Generator, used: np.ndarray) -> np.ndarray:
    """A random colour at least ``_MIN_CONTRAST`` from the ``used`` ones (best effort)."""
    for _ in range(50):
        color = rng.uniform(0, 255, 3)
        if np.linalg.norm(used - color, axis=1).min() >= _MIN_CONTRAST:
            break
    return color


def _shape_mask(cls: int, size: float, rng: np.random.Generator, dx: np.ndarray,
                dy: np.ndarray) -> np.ndarray:
    """Boolean mask of a class-``cls`` shape of the given size centred at ``dx = dy = 0``."""
    angle = rng.uniform(0, 2 * np.pi)
    radius = np.hypot(dx, dy)
    if cls == 1:  # disc
        return radius <= size
    if cls == 2:  # square, rotated
        u = np.cos(angle) * dx + np.sin(angle) * dy
        v = -np.sin(angle) * dx + np.cos(angle) * dy
        return np.maximum(np.abs(u), np.abs(v)) <= size * 0.9
    if cls == 3:  # equilateral triangle, rotated: inside all three edges (inradius R/2)
        circumradius = size * 1.4
        edges = [np.cos(angle + k * 2 * np.pi / 3) * dx + np.sin(angle + k * 2 * np.pi / 3) * dy
                 for k in range(3)]
        return np.max(edges, axis=0) <= circumradius / 2
    # ring: an annulus 45-65 % of its outer radius thick
    outer = size * 1.1
    inner = outer * rng.uniform(0.35, 0.55)
    return (radius <= outer) & (radius >= inner)
