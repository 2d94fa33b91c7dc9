"""The accuracy budget: a reduced-precision model against the FP32 ONNX on validation data.

Label agreement is always measured; mIoU when masks are given. A model meets the budget
when its mIoU is at most ``max_miou_drop`` points below FP32's and its labels agree with
FP32's on at least ``min_agreement`` of the pixels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import onnxruntime as ort

from ocr_deploy.metadata import ExportMetadata
from ocr_deploy.metrics import mean_iou
from ocr_deploy.precision.calibration_data import SampleSet
from ocr_deploy.runtime.postprocess import labels_from_outputs

BATCH = 8


@dataclass(frozen=True)
class Budget:
    """How much accuracy a reduced-precision build may lose."""

    max_miou_drop: float = 1.0  # mIoU points (0-100 scale)
    min_agreement: float = 0.97  # fraction of pixels with FP32's label


@dataclass
class Accuracy:
    """One candidate's figures against the FP32 reference."""

    agreement: float
    miou: float | None  # percent, when masks are given
    miou_fp32: float | None
    samples: int

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
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    labels = []
    for inputs, _ in data.batches(BATCH):
        outputs = dict(zip(names, session.run(names, {meta.input_name: inputs}), strict=True))
        labels.append(labels_from_outputs(outputs, meta))
    return np.concatenate(labels)


def accuracy(candidate: np.ndarray, reference: np.ndarray, data: SampleSet,
             num_classes: int) -> Accuracy:
    """Compare candidate labels with the FP32 labels (and with the masks, if any)."""
    agreement = float((candidate == reference).mean())
    if data.masks is None:
        return Accuracy(agreement, None, None, len(data))
    masks = _to_shape(data.masks, candidate.shape[1:])
    miou = 100 * mean_iou(candidate, masks, num_classes)[0]
    miou_fp32 = 100 * mean_iou(reference, masks, num_classes)[0]
    return Accuracy(agreement, float(miou), float(miou_fp32), len(data))


def _to_shape(masks: np.ndarray, shape: tuple) -> np.ndarray:
    """Nearest-neighbour resample of masks to the labels' size (strided outputs)."""
    if masks.shape[1:] == tuple(shape):
        return masks
    rows = (np.arange(shape[0]) + 0.5) * masks.shape[1] / shape[0]
    cols = (np.arange(shape[1]) + 0.5) * masks.shape[2] / shape[1]
    return masks[:, rows.astype(int)][:, :, cols.astype(int)]
