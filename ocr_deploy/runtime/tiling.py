"""Images larger than the model by sliding window (MMSegmentation's ``slide`` inference).

Windows of ``tile`` pixels (``(H, W)``; the model's input size avoids any resizing) step
over the image ``tile - overlap`` pixels apart, the last one flush with the image's edge
(an image smaller than a tile is one window). Each window runs as ``predict_scores`` would
run it (resized to the model's input, scores resized back to the window); the scores are
summed where windows overlap and each pixel takes the class of the largest sum. (MMSeg
divides the sum by the number of windows at each pixel: one factor for all classes, which
leaves the argmax alone.)

Memory is bounded by a band of windows, not by the image: the scores are summed in a
float32 buffer one window high and the image wide (``K`` classes), and each row of
windows turns the rows no later window reaches into labels before the band moves down.
Only artifacts with a scores output can be tiled: a labels-only or end-to-end artifact
has no scores to blend.
"""

from __future__ import annotations

import numpy as np

from ocr_deploy.contract.preprocess import check_image
from ocr_deploy.errors import BadInputError

TILE_BATCH = 8  # windows run together when the segmenter sets no max_batch


def window_starts(length: int, tile: int, stride: int) -> list[int]:
    """Where windows of ``tile`` pixels start along an axis of ``length`` pixels, ``stride``
    apart, the last one ending at ``length`` (one window at 0 when ``length <= tile``)."""
    if length <= tile:
        return [0]
    count = -(-(length - tile) // stride) + 1
    return [min(i * stride, length - tile) for i in range(count)]


def check_tiling(segmenter, tile, overlap: int) -> tuple[int, int]:
    """The tile's ``(H, W)``, after checking that this artifact and overlap can tile."""
    segmenter.io.refuse_tiling()
    try:
        height, width = (int(v) for v in tile)
    except (TypeError, ValueError):
        height = width = 0
    if height < 1 or width < 1:
        raise BadInputError(None, "a tile (height, width) of whole numbers >= 1", repr(tile),
                            "e.g. tile=segmenter.input_size")
    if not isinstance(overlap, int) or not 0 <= overlap < min(height, width):
        raise BadInputError(None, f"a tile overlap of 0 to {min(height, width) - 1} pixels "
                            f"(less than the {height}x{width} tile)", repr(overlap),
                            "use a smaller overlap")
    return height, width


def predict_tiled(segmenter, image: np.ndarray, tile, overlap: int = 0,
                  batch: int | None = None) -> np.ndarray:
    """The label map of one image at its full size from overlapping windows (see the
    module docstring); ``batch``: windows run together (default the segmenter's
    ``max_batch``, else ``TILE_BATCH``)."""
    tile_h, tile_w = check_tiling(segmenter, tile, overlap)
    image = check_image(image, 0, segmenter.metadata.input_channels)
    height, width = image.shape[:2]
    rows = window_starts(height, tile_h, tile_h - overlap)
    cols = window_starts(width, tile_w, tile_w - overlap)
    win_h, win_w = min(tile_h, height), min(tile_w, width)
    step = batch or segmenter.max_batch or TILE_BATCH
    output = segmenter.logits_output
    labels = np.empty((height, width), segmenter.label_dtype)
    band = np.zeros((win_h, width, segmenter.metadata.num_classes), np.float32)
    top = 0  # the image row band[0] holds
    for y in rows:
        if y > top:  # rows above y get no more windows: finish them, move the band down
            done = y - top
            labels[top:y] = band[:done].argmax(axis=-1)
            band[:win_h - done] = band[done:]
            band[win_h - done:] = 0
            top = y
        for start in range(0, len(cols), step):
            xs = cols[start:start + step]
            crops = [image[y:y + win_h, x:x + win_w] for x in xs]
            value = segmenter.run(segmenter.prepare(crops), [output])[output]
            for i, x in enumerate(xs):
                band[y - top:y - top + win_h, x:x + win_w] += segmenter.finish(
                    value, i, (win_h, win_w), output, scores=True)
    labels[top:] = band[:height - top].argmax(axis=-1)
    return labels
