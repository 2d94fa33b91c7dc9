"""Calibration and validation data: images or arrays, preprocessed as the model says.

Sources are read in sorted (deterministic) order. Images (png/jpg/bmp) and uint8 arrays
(``.npy``/``.npz``, ``[H,W,3]`` or ``[N,H,W,3]``) are resized and normalised from the
model's metadata; float arrays already shaped like the model input are taken as they are.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ocr_deploy.errors import BadInputError
from ocr_deploy.images import IMAGE_SUFFIXES, read_image
from ocr_deploy.metadata import ExportMetadata
from ocr_deploy.runtime.preprocess import prepare_batch

ARRAY_SUFFIXES = (".npy", ".npz")
LABEL_FOLDER = "labels"  # masks of DIR/x.png live in DIR/labels/x.png


@dataclass
class SampleSet:
    """Preprocessed model inputs (one per sample), optional masks, and where they came from."""

    inputs: np.ndarray  # [N, ...model input shape without batch]
    sources: list[str]
    masks: np.ndarray | None = None  # [N,H,W] class indices at the model's size
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.inputs)

    @property
    def sha256(self) -> str:
        """A hash of the preprocessed data: same data, same calibration."""
        digest = hashlib.sha256(str(self.inputs.shape).encode())
        digest.update(np.ascontiguousarray(self.inputs).tobytes())
        return digest.hexdigest()

    def batches(self, size: int):
        """Yield ``(inputs, masks or None)`` batches in order."""
        for begin in range(0, len(self.inputs), size):
            masks = None if self.masks is None else self.masks[begin:begin + size]
            yield self.inputs[begin:begin + size], masks


def load_samples(folder: Path, meta: ExportMetadata, count: int | None = None,
                 skip_unreadable: bool = False, with_masks: bool = False,
                 minimum: int = 1) -> SampleSet:
    """Read up to ``count`` samples from ``folder`` (all when None).

    An unreadable file is an error naming it, or with ``skip_unreadable`` a warning and a
    count. Fewer than ``minimum`` usable samples (or fewer than ``count``) is an error.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise BadInputError(folder, "a folder of images or .npy/.npz arrays", "no such folder",
                            "check the path")
    files = sorted(p for p in folder.iterdir()
                   if p.suffix.lower() in IMAGE_SUFFIXES + ARRAY_SUFFIXES)
    inputs, sources, masks, skipped = [], [], [], []
    for path in files:
        if count is not None and len(inputs) >= count:
            break
        try:
            for index, sample in enumerate(_read(path, meta)):
                inputs.append(sample)
                sources.append(f"{path.name}[{index}]" if path.suffix in ARRAY_SUFFIXES
                               else path.name)
                if with_masks:
                    masks.append(_mask(folder, path, meta))
        except BadInputError:
            if not skip_unreadable:
                raise
            skipped.append(path.name)
            print(f"warning: skipped unreadable {path}", file=sys.stderr)
    inputs, sources = inputs[:count], sources[:count]
    needed = max(minimum, count or 0)
    if len(inputs) < needed:
        raise BadInputError(folder, f"at least {needed} usable samples",
                            f"{len(inputs)} ({len(skipped)} unreadable skipped)",
                            "add images or lower the sample count")
    stacked_masks = np.stack(masks[:len(inputs)]) if with_masks else None
    return SampleSet(np.stack(inputs), sources, stacked_masks, skipped)


def _read(path: Path, meta: ExportMetadata):
    """Yield preprocessed samples from one file."""
    if path.suffix.lower() in IMAGE_SUFFIXES:
        yield prepare_batch([read_image(path)], meta)[0]
        return
    try:
        loaded = np.load(path, allow_pickle=False)  # never unpickle: data files are untrusted
        arrays = [loaded[k] for k in loaded.files] if path.suffix == ".npz" else [loaded]
    except (OSError, ValueError) as exc:
        raise BadInputError(path, "a readable .npy/.npz array file (no pickles)",
                            f"unreadable data ({exc})", "remove or replace the file") from exc
    for array in arrays:
        yield from _samples_from_array(path, array, meta)


def _samples_from_array(path: Path, array: np.ndarray, meta: ExportMetadata):
    model_shape = ((meta.input_channels, meta.input_height, meta.input_width)
                   if meta.input_layout == "NCHW"
                   else (meta.input_height, meta.input_width, meta.input_channels))
    if array.dtype == np.uint8 and array.ndim in (3, 4) and array.shape[-1] == 3:
        for image in array.reshape(-1, *array.shape[-3:]):
            yield prepare_batch([image], meta)[0]
    elif np.issubdtype(array.dtype, np.floating) and array.shape[-3:] == model_shape:
        yield from array.reshape(-1, *model_shape).astype(np.float32)
    else:
        raise BadInputError(path, f"uint8 images [N,H,W,3] or float inputs shaped "
                            f"[N,{','.join(map(str, model_shape))}]",
                            f"{array.dtype} array of shape {list(array.shape)}",
                            "save arrays in one of these forms")


def _mask(folder: Path, path: Path, meta: ExportMetadata) -> np.ndarray:
    mask_path = folder / LABEL_FOLDER / f"{path.stem}.png"
    if not mask_path.is_file():
        raise BadInputError(mask_path, f"a label mask for {path.name}", "no such file",
                            f"put masks (class index per pixel) in {folder / LABEL_FOLDER}")
    from PIL import Image

    with Image.open(mask_path) as mask:
        resized = mask.convert("L").resize((meta.input_width, meta.input_height),
                                           Image.NEAREST)
        return np.asarray(resized).astype(np.int32)
