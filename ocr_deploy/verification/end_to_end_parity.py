"""Parity of an end-to-end artifact with what users have today: its labels against
``Segmenter.predict`` on the plain artifact it was made from, on images of several sizes.

Compared with ``ocr_deploy.verification.comparison`` as export parity and the build's verdict are:
disagreements at ties do not count against it, a pixel being a tie when the plain
artifact's two best scores *at the image size* (``predict_scores``) are within ``2 * tol``,
``tol = TIE_RTOL`` of the largest score magnitude, as the build's accuracy budget judges.
The report is small and JSON-ready, for the sidecar and the
artifact's ``end_to_end.parity``. NumPy and the runtime only: no TensorFlow.
"""

from __future__ import annotations

import numpy as np

from ocr_deploy.contract.preprocess import end_to_end_pixels
from ocr_deploy.verification.comparison import TIE_RTOL, Comparison, top2_gap


def parity_sizes(meta) -> list[tuple[int, int]]:
    """Image sizes to compare on: a fixed artifact's size; for a dynamic one its smallest
    and largest size, the model's input size and an odd size between (clamped to the
    range), so that images shrink, enlarge and have odd sides."""
    sizes = meta.sizes()
    if sizes.is_fixed:
        return [sizes.minimum]
    (low_h, low_w), (high_h, high_w) = sizes.minimum, sizes.maximum
    middle = sizes.clamp((low_h + high_h) // 2 | 1, (low_w + high_w) // 2 | 1)
    return sorted({sizes.minimum, sizes.maximum, middle,
                   sizes.clamp(meta.input_height, meta.input_width)})


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


def label_pair(end_to_end, reference, image: np.ndarray) -> tuple:
    """One RGB ``image`` through both open ``Segmenter`` objects (given to the end-to-end
    one in its colour order): ``(end-to-end labels, reference labels, the reference's
    scores at the image size or None)``."""
    scores = reference.predict_scores(image) if reference.logits_output is not None else None
    expected = reference.predict(image)
    return end_to_end.predict(end_to_end_pixels(image, end_to_end.metadata)), expected, scores


def add_pair(comparison: Comparison, candidate: np.ndarray, expected: np.ndarray,
             scores: np.ndarray | None, counted: np.ndarray | None = None) -> None:
    """Fold one ``label_pair`` into a ``label_comparison``."""
    comparison.add_labels("labels", candidate == expected,
                          None if scores is None else top2_gap(scores), counted,
                          0.0 if scores is None else float(np.abs(scores).max()))


def label_comparison() -> Comparison:
    """The labels comparison both judge with: ties at ``TIE_RTOL`` of the largest reference
    score magnitude, fed by ``add_labels(..., scale=)``."""
    return Comparison({"labels": "labels", "scores": "logits"}, check_values=False,
                      tie_atol=0.0, tie_rtol=TIE_RTOL)


def end_to_end_parity(end_to_end, plain, images) -> dict:
    """Compare two open ``Segmenter`` objects, an end-to-end artifact and the plain
    artifact it wraps, on RGB ``images`` (any iterable; read one at a time).

    Returns the agreement over all pixels and outside ties, the disagreeing tie pixels, the
    sizes, and the largest score difference when the end-to-end artifact outputs scores.
    """
    labels = label_comparison()
    with_scores = plain.logits_output is not None and end_to_end.logits_output is not None
    values = Comparison({"scores": "logits"}, check_values=False) if with_scores else None
    sizes, count, pixels = set(), 0, 0
    for image in images:
        candidate, expected, scores = label_pair(end_to_end, plain, image)
        add_pair(labels, candidate, expected, scores)
        if values is not None:
            given = end_to_end_pixels(image, end_to_end.metadata)
            values.add({"scores": scores[None]},
                       {"scores": end_to_end.predict_scores(given)[None]})
        sizes.add(image.shape[:2])
        count, pixels = count + 1, pixels + image.shape[0] * image.shape[1]
    report = labels.report()
    result = report.output("labels")
    return {"reference": "Segmenter.predict on the plain artifact",
            "images": count, "sizes": [list(size) for size in sorted(sizes)],
            "pixels": int(pixels),
            "agreement": result.label_agreement,
            "agreement_excl_ties": result.label_agreement_excl_ties,
            "tie_pixels": result.tie_pixels, "tie_tolerance": report.tie_tolerance or None,
            "max_abs_score_diff": values.report().outputs[0].max_abs_err if values else None}
