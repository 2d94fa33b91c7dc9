"""Parity of an end-to-end artifact with what users have today: its labels against
``Segmenter.predict`` on the plain artifact it was made from, on images of several sizes.

Disagreements at ties do not count against it (``ocr_deploy.agreement``): a pixel is a tie
when the plain artifact's two best scores *at the image size* (``predict_scores``) are
within ``2 * tol``, ``tol = TIE_RTOL`` of the largest score magnitude, as the build's
accuracy budget judges them. The report is small and JSON-ready, for the sidecar and the
artifact's ``end_to_end.parity``. NumPy and the runtime only: no TensorFlow.
"""

from __future__ import annotations

import numpy as np

from ocr_deploy.agreement import tie_mask
from ocr_deploy.precision.evaluate import TIE_RTOL


def parity_sizes(meta) -> list[tuple[int, int]]:
    """Image sizes to compare on: a fixed artifact's size; for a dynamic one its smallest
    and largest size, the model's input size and an odd size between (clamped to the
    range), so that images shrink, enlarge and have odd sides."""
    (low_h, low_w), (high_h, high_w) = meta.image_sizes()
    if (low_h, low_w) == (high_h, high_w):
        return [(low_h, low_w)]

    def clamp(height: int, width: int) -> tuple[int, int]:
        return min(max(height, low_h), high_h), min(max(width, low_w), high_w)

    middle = clamp((low_h + high_h) // 2 | 1, (low_w + high_w) // 2 | 1)
    return sorted({(low_h, low_w), (high_h, high_w), middle,
                   clamp(meta.input_height, meta.input_width)})


def sample_images(sizes: list[tuple[int, int]], per_size: int = 2, channels: int = 3,
                seed: int = 0) -> list[np.ndarray]:
    """``per_size`` smooth random uint8 RGB images of each size: upsampled noise with
    some grain, stand-ins for camera frames with regions and edges."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    images = []
    for height, width in sizes:
        for _ in range(per_size):
            coarse = rng.integers(0, 256, (max(2, height // 8), max(2, width // 8), channels),
                                  np.uint8)
            smooth = np.asarray(Image.fromarray(coarse.squeeze(-1) if channels == 1 else
                                                coarse).resize((width, height),
                                                               Image.BILINEAR))
            grain = rng.integers(-12, 13, smooth.shape)
            image = np.clip(smooth.astype(np.int32) + grain, 0, 255).astype(np.uint8)
            images.append(image.reshape(height, width, channels))
    return images


def end_to_end_parity(end_to_end, plain, images: list[np.ndarray]) -> dict:
    """Compare two open ``Segmenter`` objects, an end-to-end artifact and the plain
    artifact it wraps, on RGB ``images`` (given to the end-to-end one in its colour order).

    Returns the agreement over all pixels and outside ties, the disagreeing tie pixels, the
    sizes, and the largest score difference when the end-to-end artifact outputs scores.
    """
    swap = end_to_end.metadata.end_to_end["color_order"] == "BGR" \
        and end_to_end.metadata.input_channels == 3
    reference_scores = plain.logits_output is not None
    scores = [plain.predict_scores(image) for image in images] if reference_scores else []
    tol = TIE_RTOL * max(float(np.abs(s).max()) for s in scores) if scores else None
    pixels = same_pixels = decided = decided_same = tie_pixels = 0
    score_diff = None
    for i, image in enumerate(images):
        theirs = plain.predict(image)
        ours = end_to_end.predict(np.ascontiguousarray(image[..., ::-1]) if swap else image)
        same = ours.astype(np.int64) == theirs.astype(np.int64)
        ties = tie_mask(scores[i], tol) if scores else np.zeros(same.shape, bool)
        pixels += same.size
        same_pixels += int(same.sum())
        decided += int((~ties).sum())
        decided_same += int((same & ~ties).sum())
        tie_pixels += int((ties & ~same).sum())
        if scores and end_to_end.logits_output is not None:
            diff = float(np.abs(end_to_end.predict_scores(
                image[..., ::-1] if swap else image) - scores[i]).max())
            score_diff = diff if score_diff is None else max(score_diff, diff)
    return {"reference": "Segmenter.predict on the plain artifact",
            "images": len(images),
            "sizes": [list(size) for size in sorted({im.shape[:2] for im in images})],
            "pixels": pixels, "agreement": same_pixels / pixels if pixels else 1.0,
            "agreement_excl_ties": decided_same / decided if decided else 1.0,
            "tie_pixels": tie_pixels, "tie_tolerance": tol,
            "max_abs_score_diff": score_diff}
