"""Sliding-window inference (``ocr_deploy.runtime.tiling``, ``predict(tile=...)``): one
tile equals plain ``predict``, overlaps blend as a NumPy reference of MMSegmentation's
``slide`` mode does, artifacts without scores are refused, memory stays within a band."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from e2e_models import save, segnet

from ocr_deploy.contract.image_sizes import ImageSizes
from ocr_deploy.errors import BadInputError
from ocr_deploy.graph.end_to_end import make_end_to_end
from ocr_deploy.runtime import Segmenter
from ocr_deploy.runtime.tiling import predict_tiled, window_starts


def _smooth_image(height, width, seed=0):
    """Blobs rather than noise, so the net's classes form regions with boundaries."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (height // 16 + 2, width // 16 + 2, 3), np.uint8)
    big = np.repeat(np.repeat(coarse, 16, axis=0), 16, axis=1)[:height, :width]
    return np.clip(big.astype(np.int16) + rng.integers(-20, 21, big.shape), 0, 255
                   ).astype(np.uint8)


def _slide_reference(segmenter, image, tile, overlap):
    """MMSegmentation's slide mode written out: grid counts, windows clamped to the edge,
    scores summed and divided by the count at each pixel; plus that count."""
    (crop_h, crop_w), (height, width) = tile, image.shape[:2]
    stride_h, stride_w = crop_h - overlap, crop_w - overlap
    grids_h = max(height - crop_h + stride_h - 1, 0) // stride_h + 1
    grids_w = max(width - crop_w + stride_w - 1, 0) // stride_w + 1
    total = np.zeros((height, width, segmenter.metadata.num_classes), np.float64)
    count = np.zeros((height, width), np.int32)
    for h_idx in range(grids_h):
        for w_idx in range(grids_w):
            y2, x2 = min(h_idx * stride_h + crop_h, height), min(w_idx * stride_w + crop_w, width)
            y1, x1 = max(y2 - crop_h, 0), max(x2 - crop_w, 0)
            total[y1:y2, x1:x2] += segmenter.predict_scores(image[y1:y2, x1:x2])
            count[y1:y2, x1:x2] += 1
    return total / count[..., None], count


def _clear(scores, margin=1e-4):
    top2 = np.sort(scores, axis=-1)[..., -2:]
    return top2[..., 1] - top2[..., 0] > margin


def test_window_starts_cover_the_axis_with_the_last_flush():
    assert window_starts(50, 64, 48) == [0]
    assert window_starts(64, 64, 48) == [0]
    assert window_starts(65, 64, 48) == [0, 1]
    assert window_starts(200, 64, 48) == [0, 48, 96, 136]


@pytest.mark.parametrize("size", [(64, 64), (50, 90), (30, 20)])
def test_one_tile_over_the_whole_image_equals_predict(segmenter, size):
    image = _smooth_image(*size, seed=size[0])
    tiled = segmenter.predict(image, tile=(max(size[0], 64), max(size[1], 64)))
    assert tiled.dtype == np.uint8 and np.array_equal(tiled, segmenter.predict(image))


@pytest.mark.parametrize("size, tile, overlap", [((200, 300), (64, 64), 16),
                                                 ((150, 97), (64, 48), 20),
                                                 ((64, 300), (64, 64), 0)])
def test_overlaps_blend_like_the_slide_reference(segmenter, size, tile, overlap):
    image = _smooth_image(*size, seed=sum(size))
    expected, count = _slide_reference(segmenter, image, tile, overlap)
    labels = segmenter.predict(image, tile=tile, tile_overlap=overlap)
    assert labels.shape == size
    clear = _clear(expected)
    assert clear.mean() > 0.99
    assert np.array_equal(labels[clear], expected.argmax(-1)[clear])
    assert np.unique(labels).size > 1
    if overlap:
        assert count.max() > 1  # windows did overlap
        assert not np.array_equal(labels, segmenter.predict(image))  # tiling did something
    # a batch of one window at a time gives the same labels
    assert np.array_equal(labels, predict_tiled(segmenter, image, tile, overlap, batch=1))


def test_artifacts_without_scores_are_refused(tmp_path, nchw_onnx, segmenter):
    image = _smooth_image(100, 100)
    with Segmenter.open(nchw_onnx) as labels_only, \
            pytest.raises(BadInputError, match="labels-only artifact"):
        labels_only.predict(image, tile=(64, 64))
    wrapped, _ = make_end_to_end(segnet("NHWC"), ImageSizes((5, 6), (40, 50)), scores=True)
    with Segmenter.open(save(wrapped, tmp_path, "e2e")) as e2e, \
            pytest.raises(BadInputError, match="end-to-end artifact"):
        e2e.predict(image[:40, :40], tile=(12, 16))
    for tile, overlap in (((64, 64), 64), ((0, 64), 0), ((64, 64), -1)):
        with pytest.raises(BadInputError, match="tile"):
            segmenter.predict(image, tile=tile, tile_overlap=overlap)
    with pytest.raises(BadInputError, match="tile_overlap"):
        segmenter.predict(image, tile_overlap=8)


def test_memory_is_bounded_by_a_band_of_windows(segmenter):
    height, width, classes = 1024, 1536, segmenter.metadata.num_classes
    image = _smooth_image(height, width, seed=7)
    tracemalloc.start()
    try:
        labels = segmenter.predict(image, tile=(64, 64), tile_overlap=16)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    whole_scores = height * width * classes * 4  # float32 scores of the whole image
    band = 64 * width * classes * 4
    assert labels.shape == (height, width)
    # the label map, the band and one batch of windows; not the whole image's scores
    assert peak < labels.nbytes + 3 * band + (1 << 20), (peak, band)
    assert peak < whole_scores / 4, (peak, whole_scores)
