"""Calibration and validation data: images or arrays, preprocessed as the model says.

Samples are read lazily, one batch at a time, so memory does not grow with the number of
samples. Opening a set reads every sample once to validate it (readable, finite) and to
hash the preprocessed data; later passes read the files again.

Sources are read in sorted (deterministic) order. Images (png/jpg/bmp) and uint8 arrays
(``.npy``/``.npz``, ``[H,W,3]`` or ``[N,H,W,3]``) are resized and normalised from the
model's metadata; float arrays already shaped like the model input are taken as they are.
Masks (``DIR/labels/NAME.png``) are optional. With no data at all, ``synthetic_samples``
makes seeded random images in the range the export's parity check fed the model.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ocr_deploy.contract.metadata import ExportMetadata
from ocr_deploy.contract.preprocess import prepare_batch
from ocr_deploy.errors import BadInputError
from ocr_deploy.images import IMAGE_SUFFIXES, read_image
from ocr_deploy.warning_channel import warn

ARRAY_SUFFIXES = (".npy", ".npz")
LABEL_FOLDER = "labels"  # masks of DIR/x.png live in DIR/labels/x.png


@dataclass
class SampleSet:
    """A validated, ordered list of samples (file and index within it), read on demand."""

    folder: Path
    meta: ExportMetadata
    items: list[tuple[Path, int]]  # (file, index of the sample within the file)
    sha256: str  # of the preprocessed inputs, in order: same data, same calibration
    with_masks: bool = False
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def sources(self) -> list[str]:
        """``name`` for images, ``name[i]`` for samples of array files."""
        return [f"{p.name}[{i}]" if p.suffix.lower() in ARRAY_SUFFIXES else p.name
                for p, i in self.items]

    def batches(self, size: int) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """Yield ``(inputs, masks or None)`` batches in order, reading files as needed."""
        inputs, masks = [], []
        for sample, mask in self._stream():
            inputs.append(sample)
            masks.append(mask)
            if len(inputs) == size:
                yield np.stack(inputs), np.stack(masks) if self.with_masks else None
                inputs, masks = [], []
        if inputs:
            yield np.stack(inputs), np.stack(masks) if self.with_masks else None

    @property
    def description(self) -> str:
        """What the samples are, for summaries and sidecars."""
        masks = "with masks" if self.with_masks else "no masks: agreement only"
        return f"{len(self)} samples from {self.folder} ({masks})"

    def _stream(self) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """Each sample with its mask, reading every file once."""
        for path, group in itertools.groupby(self.items, key=lambda item: item[0]):
            wanted = {index for _, index in group}
            mask = _mask(self.folder, path, self.meta) if self.with_masks else None
            found = 0
            for index, sample in enumerate(_samples(path, self.meta)):
                if index in wanted:
                    found += 1
                    yield sample, mask
            if found < len(wanted):
                raise BadInputError(path, f"{len(wanted)} samples", f"{found}",
                                    "do not change data files during a build")


def load_samples(folder: Path, meta: ExportMetadata, count: int | None = None,
                 skip_unreadable: bool = False, with_masks: bool | None = False,
                 minimum: int = 1, limit: int | None = None) -> SampleSet:
    """Open the samples of ``folder``, validating each: exactly ``count`` of them (fewer
    usable ones is an error), else up to ``limit`` (all when both are None).

    ``with_masks``: True requires a mask per image, None uses masks when ``DIR/labels``
    exists. An unreadable file is an error naming it, or with ``skip_unreadable`` a warning
    and a count. Non-finite values are always an error naming the file. Fewer than
    ``minimum`` usable samples is an error.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise BadInputError(folder, "a folder of images or .npy/.npz arrays", "no such folder",
                            "check the path")
    if with_masks is None:
        with_masks = (folder / LABEL_FOLDER).is_dir()
    count = count if count is not None else limit
    exact = count is not None and limit is None
    files = sorted(p for p in folder.iterdir()
                   if p.suffix.lower() in IMAGE_SUFFIXES + ARRAY_SUFFIXES
                   and not p.name.startswith("."))
    digest = hashlib.sha256()
    items: list[tuple[Path, int]] = []
    skipped: list[str] = []
    for path in files:
        if count is not None and len(items) >= count:
            break
        try:
            samples = list(_samples(path, meta))
            if with_masks:
                _mask(folder, path, meta)
        except BadInputError:
            if not skip_unreadable:
                raise
            skipped.append(path.name)
            warn(f"skipped unreadable {path}")
            continue
        for index, sample in enumerate(samples):
            if count is not None and len(items) >= count:
                break
            _check_finite(path, sample)
            digest.update(str(sample.shape).encode())
            digest.update(np.ascontiguousarray(sample).tobytes())
            items.append((path, index))
    needed = max(minimum, count if exact else 0)
    if len(items) < needed:
        raise BadInputError(folder, f"at least {needed} usable samples",
                            f"{len(items)} ({len(skipped)} unreadable skipped)",
                            "add images or lower the sample count")
    return SampleSet(folder, meta, items, digest.hexdigest(), with_masks, skipped)


def _check_finite(path: Path, sample: np.ndarray) -> None:
    if not np.isfinite(sample).all():
        bad = int(np.size(sample) - np.isfinite(sample).sum())
        raise BadInputError(path, "finite input values", f"{bad} NaN or infinite value(s)",
                            "remove or fix the file: non-finite data cannot be calibrated")


def _samples(path: Path, meta: ExportMetadata) -> Iterator[np.ndarray]:
    """Yield the preprocessed samples of one file."""
    for sample in raw_samples(path, meta):
        yield prepare_batch([sample], meta)[0] if sample.dtype == np.uint8 else sample


def raw_samples(path: Path, meta: ExportMetadata) -> Iterator[np.ndarray]:
    """Yield the samples of one file as stored: uint8 images ``[H,W,3]`` at their own size
    (image files, uint8 arrays), or float inputs already shaped like the model input."""
    if path.suffix.lower() in IMAGE_SUFFIXES:
        yield read_image(path)
        return
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as archive:  # never unpickle: untrusted
                for key in archive.files:
                    yield from _samples_from_array(path, archive[key], meta)
        else:  # memory-mapped: a large .npy is read one sample at a time
            yield from _samples_from_array(path, np.load(path, mmap_mode="r",
                                                         allow_pickle=False), meta)
    except (OSError, ValueError, EOFError) as exc:
        raise BadInputError(path, "a readable .npy/.npz array file (no pickles)",
                            f"unreadable data ({exc})", "remove or replace the file") from exc


def _samples_from_array(path: Path, array: np.ndarray, meta: ExportMetadata):
    model_shape = ((meta.input_channels, meta.input_height, meta.input_width)
                   if meta.input_layout == "NCHW"
                   else (meta.input_height, meta.input_width, meta.input_channels))
    if array.dtype == np.uint8 and array.ndim in (3, 4) and array.shape[-1] == 3:
        yield from array.reshape(-1, *array.shape[-3:])
    elif np.issubdtype(array.dtype, np.floating) and array.shape[-3:] == model_shape:
        for sample in array.reshape(-1, *model_shape):
            yield np.asarray(sample, dtype=np.float32)
    else:
        raise BadInputError(path, f"uint8 images [N,H,W,3] or float inputs shaped "
                            f"[N,{','.join(map(str, model_shape))}]",
                            f"{array.dtype} array of shape {list(array.shape)}",
                            "save arrays in one of these forms")


def _mask(folder: Path, path: Path, meta: ExportMetadata) -> np.ndarray:
    return read_mask(folder, path, (meta.input_height, meta.input_width))


def read_mask(folder: Path, path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """The label mask of the image ``path`` (``folder/labels/<stem>.png``) as int32, at its
    own size or resized nearest to ``size`` ``(H, W)``."""
    mask_path = folder / LABEL_FOLDER / f"{path.stem}.png"
    if not mask_path.is_file():
        raise BadInputError(mask_path, f"a label mask for {path.name}", "no such file",
                            f"put masks (class index per pixel) in {folder / LABEL_FOLDER}")
    from PIL import Image

    with Image.open(mask_path) as mask:
        grey = mask.convert("L")
        if size is not None and grey.size != (size[1], size[0]):
            grey = grey.resize((size[1], size[0]), Image.NEAREST)
        return np.asarray(grey).astype(np.int32)


class SyntheticSamples(SampleSet):
    """Seeded random images in the export's parity input range (``metadata.parity``'s
    ``inputs``, else the metadata's normalisation), generated on demand: for verifying a
    build when the user has no data (agreement with FP32 only)."""

    def __init__(self, meta: ExportMetadata, count: int, seed: int = 0):
        self.seed = seed
        super().__init__(Path("synthetic"), meta, [(Path("synthetic"), i) for i in range(count)],
                         "", with_masks=False)
        digest = hashlib.sha256(f"synthetic-{seed}".encode())
        for sample, _ in self._stream():
            digest.update(sample.tobytes())
        self.sha256 = digest.hexdigest()

    @property
    def sources(self) -> list[str]:
        return [f"synthetic[{i}]" for i in range(len(self))]

    @property
    def description(self) -> str:
        return (f"{len(self)} seeded synthetic images (seed {self.seed}) in the export's "
                "input range: no data given, agreement only")

    def _stream(self) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        meta = self.meta
        rng = np.random.default_rng(self.seed)
        shape = (meta.input_height, meta.input_width, meta.input_channels)
        inputs = meta.parity.get("inputs") or {}
        norm = meta.normalization
        for _ in self.items:
            pixels = rng.integers(0, 256, shape).astype(np.float32)
            if not norm.get("in_graph", False):
                mean = inputs.get("mean") or norm.get("mean") or [0.0] * 3
                std = inputs.get("std") or norm.get("std") or [1.0] * 3
                channels = meta.input_channels
                pixels = (pixels - np.float32(mean[:channels])) / np.float32(std[:channels])
            if meta.input_layout == "NCHW":
                pixels = np.ascontiguousarray(pixels.transpose(2, 0, 1))
            yield pixels, None
