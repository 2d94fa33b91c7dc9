"""The Python side of libocr_deploy, the C ABI in ``include/ocr_deploy.h``.

The library (``capi/``) embeds CPython and calls these functions with the caller's memory
wrapped in ``memoryview`` objects (no copies); they run ``ocr_deploy.runtime.Segmenter``.
Validation of pointers, sizes and strides happens in C before the call. Not an API for
Python code (use ``Segmenter``); imports no TensorFlow. The constants mirror the header.
"""

from __future__ import annotations

import numpy as np

from ocr_deploy.backends import CHOICES as BACKENDS
from ocr_deploy.errors import BadInputError, MemoryExhaustedError, OcrDeployError, OptionError
from ocr_deploy.runtime import Segmenter
from ocr_deploy.runtime.render import class_names_of, palette_of

# ocr_status
OK, INVALID_ARGUMENT, BAD_ARTIFACT, BUFFER_TOO_SMALL, UNSUPPORTED, ENVIRONMENT, \
    OUT_OF_MEMORY, INTERNAL = range(8)
# ocr_pixel_format -> (bytes per pixel, channel indices giving R, G, B)
PIXEL_FORMATS = {1: (3, [0, 1, 2]), 2: (3, [2, 1, 0]), 3: (4, [0, 1, 2]), 4: (4, [2, 1, 0]),
                 5: (1, None)}
LABEL_TYPES = {1: np.dtype(np.uint8), 2: np.dtype(np.uint16)}  # ocr_label_type
SCORES_HWC, SCORES_CHW = 1, 2  # ocr_score_layout
MAX_CLASSES = 65536  # what OCR_LABEL_U16 holds


def open_segmenter(path: str, backend: str | None, providers: str | None, device_id: int,
                   threads: int, max_batch: int) -> Segmenter:
    """``ocr_segmenter_create``: zero and NULL option values mean the defaults."""
    if backend not in (None, *BACKENDS):
        raise OptionError("ocr_options.backend", f"NULL or one of {', '.join(BACKENDS)}",
                          repr(backend), "leave it NULL to choose from the file")
    segmenter = _open(path, backend or "auto",
                      [p.strip() for p in providers.split(",") if p.strip()]
                      if providers else None,
                      device_id, threads or None, max_batch or None)
    if segmenter.metadata.num_classes > MAX_CLASSES:
        segmenter.close()
        raise BadInputError(path, f"a model with at most {MAX_CLASSES} classes (uint16 labels)",
                            f"{segmenter.metadata.num_classes}", "use the Python runtime")
    return segmenter


def _open(path, backend, providers, device_id, threads, max_batch) -> Segmenter:
    try:
        return Segmenter.open(path, backend=backend, providers=providers,
                              device_id=device_id, threads=threads, max_batch=max_batch)
    except BadInputError as exc:
        if exc.path is None:  # not about the file: an option value
            raise OptionError(None, exc.expected, exc.found, exc.action) from exc
        raise


def describe(segmenter: Segmenter) -> tuple:
    """``ocr_model_info``: (num_classes, class names, palette bytes, input height, width,
    channels, has_scores, max_batch, precision, backend, device, (image min height, min
    width, max height, max width): an end-to-end artifact's sizes, zeros for a plain one)."""
    meta = segmenter.metadata
    count = meta.num_classes
    info = segmenter.describe()
    sizes = meta.image_sizes() or ((0, 0), (0, 0))
    return (count, class_names_of(meta, count), palette_of(meta, count)[:count].tobytes(),
            meta.input_height, meta.input_width, meta.input_channels,
            segmenter.logits_output is not None, segmenter.max_batch or 0,
            str(meta.precision), str(info.get("backend", "")), str(info.get("device", "")),
            (*sizes[0], *sizes[1]))


def predict(segmenter: Segmenter, images: list[tuple], outputs: list[tuple]) -> None:
    """``ocr_segmenter_predict``: ``images`` are ``(memoryview, width, height, stride,
    pixel_format)``, ``outputs`` ``(writable memoryview, stride, label_type)``."""
    maps = segmenter.predict([_image(segmenter, *image) for image in images])
    for labels, (view, stride, label_type) in zip(maps, outputs, strict=True):
        dtype = LABEL_TYPES[label_type]
        target = _strided(view, dtype, labels.shape, (stride, dtype.itemsize))
        np.copyto(target, labels, casting="unsafe")  # classes fit: checked in C


def predict_scores(segmenter: Segmenter, images: list[tuple], outputs: list[tuple]) -> None:
    """``ocr_segmenter_predict_scores``: ``outputs`` are ``(writable memoryview, layout)``."""
    maps = segmenter.predict_scores([_image(segmenter, *image) for image in images])
    for scores, (view, layout) in zip(maps, outputs, strict=True):
        height, width, classes = scores.shape
        target = np.frombuffer(view, np.float32, count=scores.size)
        if layout == SCORES_CHW:
            target.reshape(classes, height, width)[...] = scores.transpose(2, 0, 1)
        else:
            target.reshape(height, width, classes)[...] = scores


def close(segmenter: Segmenter) -> None:
    """``ocr_segmenter_destroy``."""
    segmenter.close()


def error_status(exc: BaseException, during: str) -> tuple[int, str]:
    """The ``ocr_status`` and one-line message for an exception raised ``during`` "create"
    or a call on a segmenter."""
    from ocr_deploy.memory_budget import allocation_failure

    if isinstance(exc, MemoryExhaustedError) or allocation_failure(exc)[0]:
        return OUT_OF_MEMORY, "out of memory while running the model; use smaller batches"
    if isinstance(exc, OptionError):
        return INVALID_ARGUMENT, exc.one_line()
    if isinstance(exc, OcrDeployError):
        status = BAD_ARTIFACT if during == "create" else INVALID_ARGUMENT
        return status, exc.one_line()
    text = " ".join(f"internal error in ocr_deploy ({type(exc).__name__}: {exc})".split())
    return INTERNAL, text + "; please report it"


def _image(segmenter: Segmenter, view, width: int, height: int, stride: int,
           pixel_format: int) -> np.ndarray:
    """A zero-copy ``[H,W,3]`` view of the caller's pixels in the order the artifact takes
    (RGB; an end-to-end artifact's own colour order), or ``[H,W]`` greyscale."""
    size, order = PIXEL_FORMATS[pixel_format]
    pixels = _strided(view, np.dtype(np.uint8), (height, width, size), (stride, size, 1))
    if order is None:
        grey = pixels[..., 0]
        if segmenter.metadata.input_channels == 1:
            return grey
        return np.broadcast_to(grey[..., None], (height, width, 3))
    e2e = segmenter.metadata.end_to_end
    wanted = order[::-1] if e2e and e2e["color_order"] == "BGR" else order
    return pixels[..., :3] if wanted == [0, 1, 2] else pixels[..., 2::-1]


def _strided(view, dtype: np.dtype, shape: tuple, strides: tuple) -> np.ndarray:
    flat = np.frombuffer(view, dtype, count=len(view) // dtype.itemsize)
    return np.lib.stride_tricks.as_strided(flat, shape, strides, writeable=not view.readonly)
