"""The accuracy budget: a reduced-precision model against the FP32 ONNX on validation data.

Label agreement is always measured; mIoU when masks are given. Pixels whose mask is the
ignore index (255 by default, Cityscapes' "void") count in neither. Agreement sets ties
aside the way export parity does (``ocr_deploy.agreement``): a pixel whose two best FP32
scores are within ``2 * tol`` may go either way under any change of precision, so a
disagreement there is not held against the build; ``tol`` is ``TIE_RTOL`` of the largest
FP32 score magnitude. A model meets the budget when its mIoU is at most ``max_miou_drop``
points below FP32's and its labels agree with FP32's on at least ``min_agreement`` of the
pixels that are not ties.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import onnxruntime as ort

from ocr_deploy.agreement import top2_gap
from ocr_deploy.errors import BadInputError
from ocr_deploy.metadata import ExportMetadata
from ocr_deploy.metrics import mean_iou
from ocr_deploy.precision.calibration_data import SampleSet
from ocr_deploy.runtime.postprocess import labels_from_outputs, scores_output

BATCH = 8
TIE_RTOL = 1e-3  # about two FP16 ulps of the largest score
IGNORE_INDEX = 255


@dataclass(frozen=True)
class Budget:
    """How much accuracy a reduced-precision build may lose."""

    max_miou_drop: float = 1.0  # mIoU points (0-100 scale)
    min_agreement: float = 0.97  # fraction of (non-tie) pixels with FP32's label

    def validate(self) -> None:
        """Raise a clear error for a budget that cannot be met or means nothing."""
        if not math.isfinite(self.max_miou_drop) or not 0 <= self.max_miou_drop <= 100:
            raise BadInputError(None, "--max-miou-drop in [0, 100] (mIoU points)",
                                f"{self.max_miou_drop}", "pass e.g. --max-miou-drop 1")
        if not math.isfinite(self.min_agreement) or not 0 <= self.min_agreement <= 1:
            raise BadInputError(None, "--min-agreement in [0, 1] (a fraction of pixels)",
                                f"{self.min_agreement}", "pass e.g. --min-agreement 0.97")


@dataclass
class Reference:
    """FP32's labels on the validation data, and where they are ties."""

    labels: np.ndarray  # [N,h,w]
    ties: np.ndarray  # [N,h,w] bool
    tol: float
    masks: np.ndarray | None = None  # [N,h,w] ground truth at the labels' size


@dataclass
class Accuracy:
    """One candidate's figures against the FP32 reference."""

    agreement: float  # among non-tie, non-ignored pixels
    miou: float | None  # percent, when masks are given
    miou_fp32: float | None
    samples: int
    tie_pixels: int = 0  # disagreeing pixels that are ties
    agreement_all_pixels: float | None = None

    @property
    def miou_drop(self) -> float | None:
        return None if self.miou is None else self.miou_fp32 - self.miou

    def meets(self, budget: Budget) -> bool:
        drop_ok = self.miou_drop is None or self.miou_drop <= budget.max_miou_drop + 1e-9
        return drop_ok and self.agreement >= budget.min_agreement

    def shortfall(self, budget: Budget) -> float:
        """How far from the budget (0 when met): the ranking key of the sensitivity search."""
        drop = max(0.0, (self.miou_drop or 0.0) - budget.max_miou_drop) / 100
        return drop + max(0.0, budget.min_agreement - self.agreement)

    def to_dict(self) -> dict:
        return {**asdict(self), "miou_drop": self.miou_drop}


def predict_labels(model_bytes: bytes, data: SampleSet, meta: ExportMetadata) -> np.ndarray:
    """Class indices ``[N,h,w]`` of ``data`` under the model, on ONNX Runtime CPU."""
    return _predict(model_bytes, data, meta, with_ties=False).labels


def reference_labels(model_bytes: bytes, data: SampleSet, meta: ExportMetadata) -> Reference:
    """FP32's labels and tie map (ties judged on its per-class scores, if it has them)."""
    return _predict(model_bytes, data, meta, with_ties=True)


def _predict(model_bytes: bytes, data: SampleSet, meta: ExportMetadata,
             with_ties: bool) -> Reference:
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    scores_name = scores_output(meta) if with_ties else None
    labels, gaps, masks = [], [], []
    for inputs, batch_masks in data.batches(BATCH):
        outputs = dict(zip(names, session.run(names, {meta.input_name: inputs}), strict=True))
        labels.append(labels_from_outputs(outputs, meta))
        if scores_name in outputs:
            axis = 1 if meta.outputs[scores_name].get("layout") == "NCHW" else -1
            scores = outputs[scores_name]
            gaps.append((top2_gap(scores, axis), float(np.abs(scores).max())))
        if with_ties and batch_masks is not None:
            masks.append(_to_shape(batch_masks, labels[-1].shape[1:]))
    labels = np.concatenate(labels)
    stacked_masks = np.concatenate(masks) if masks else None
    if not gaps:
        return Reference(labels, np.zeros(labels.shape, bool), 0.0, stacked_masks)
    tol = TIE_RTOL * max(float(scale) for _, scale in gaps)
    ties = np.concatenate([gap <= 2 * tol for gap, _ in gaps])
    return Reference(labels, ties, tol, stacked_masks)


def accuracy(candidate: np.ndarray, reference: Reference, data: SampleSet, num_classes: int,
             ignore_index: int | None = IGNORE_INDEX) -> Accuracy:
    """Compare candidate labels with FP32's (and with the masks, if any)."""
    same = candidate == reference.labels
    counted = ~reference.ties
    masks = reference.masks
    if masks is not None and ignore_index is not None:
        counted &= masks != ignore_index
    agreement = float(same[counted].mean()) if counted.any() else 1.0
    tie_pixels = int((reference.ties & ~same).sum())
    if masks is None:
        return Accuracy(agreement, None, None, len(data), tie_pixels, float(same.mean()))
    try:
        miou = 100 * mean_iou(candidate, masks, num_classes, ignore_index)[0]
        miou_fp32 = 100 * mean_iou(reference.labels, masks, num_classes, ignore_index)[0]
    except ValueError as exc:
        raise BadInputError(data.folder, f"masks with class indices below {num_classes} (or "
                            f"the ignore index {ignore_index})", str(exc),
                            "fix the masks or pass --ignore-index") from exc
    return Accuracy(agreement, float(miou), float(miou_fp32), len(data), tie_pixels,
                    float(same.mean()))


def _to_shape(masks: np.ndarray, shape: tuple) -> np.ndarray:
    """Nearest-neighbour resample of masks to the labels' size (strided outputs)."""
    if masks.shape[1:] == tuple(shape):
        return masks
    rows = (np.arange(shape[0]) + 0.5) * masks.shape[1] / shape[0]
    cols = (np.arange(shape[1]) + 0.5) * masks.shape[2] / shape[1]
    return masks[:, rows.astype(int)][:, :, cols.astype(int)]
