"""The accuracy budget: a build against the FP32 ONNX on validation data.

Label agreement with FP32 is always measured; mIoU and per-class IoU when masks are given.
Pixels whose mask is the ignore index (255 by default, Cityscapes' "void") count in neither.
Agreement sets ties aside as export parity does (``verification.comparison``): a pixel whose
two best FP32 scores are within ``2 * tol`` may go either way under any change of
precision, so a disagreement there is not held against the build; ``tol`` is ``TIE_RTOL``
of the largest FP32 score magnitude. A build meets the budget when its mIoU is at most
``max_miou_drop`` points below FP32's and its labels agree with FP32's on at least
``min_agreement`` of the pixels that are not ties.

Everything streams: batches of ``batch`` samples (``verification_batch``: what the memory
budget allows) are compared as they come and only counts are kept (``Comparison`` for
agreement and the scores' errors, confusion matrices for IoU); the proxy's FP32 reference
is kept on disk, one file per batch, not in memory.

Two kinds of candidate are measured:

- the verdict (``artifact_accuracy``): the built artifact through its own backend's
  runner (a TensorRT engine on the GPU, an ONNX Runtime artifact in ONNX Runtime), with the
  FP32 ONNX run beside it batch by batch; these are the figures the sidecar records, with
  the runner that produced them and the scores' error statistics;
- the proxy (``proxy_accuracy``): a candidate ONNX on ONNX Runtime CPU against FP32 labels
  computed once (``Reference``), for the INT8 sensitivity search, which measures many
  candidates. TensorRT's INT8 kernels do not compute what this simulation computes, so the
  proxy only ranks; the verdict decides.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ocr_deploy.contract.metadata import ExportMetadata
from ocr_deploy.contract.postprocess import labels_from_outputs, scores_output
from ocr_deploy.errors import BadInputError
from ocr_deploy.files import private_tempdir
from ocr_deploy.memory_budget import MemoryBudget
from ocr_deploy.metrics import confusion_matrix, iou_from_confusion
from ocr_deploy.precision.calibration_data import SampleSet
from ocr_deploy.verification.comparison import TIE_RTOL, Comparison, top2_gap
from ocr_deploy.verification.end_to_end_parity import add_pair, label_comparison, label_pair
from ocr_deploy.verification.reference import reference_call

BATCH = 8  # the most samples compared at once
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
class Accuracy:
    """One candidate's figures against the FP32 reference."""

    agreement: float  # among non-tie, non-ignored pixels
    miou: float | None  # percent, when masks are given
    miou_fp32: float | None
    samples: int
    tie_pixels: int = 0  # disagreeing pixels that are ties
    agreement_all_pixels: float | None = None
    tie_tolerance: float = 0.0  # two best FP32 scores within 2x this: a tie
    per_class_iou: list | None = None  # percent per class (None: class absent), with masks
    per_class_iou_fp32: list | None = None
    runner: dict = field(default_factory=dict)  # what produced the candidate's outputs
    scores: dict | None = None  # the scores' error statistics (verdict only)

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


def verification_batch(meta: ExportMetadata, forward: int, budget: MemoryBudget) -> int:
    """Samples compared at once within ``budget`` (``verification_bytes`` each)."""
    inputs = 4 * meta.input_height * meta.input_width * meta.input_channels
    return budget.batch_size(verification_bytes(meta, forward), largest=BATCH,
                             input_bytes=inputs)


def verification_bytes(meta: ExportMetadata, forward: int) -> int:
    """What one verified sample holds: its input, two runners' working memory (``forward``:
    one image's forward pass, ``precision.shapes.forward_bytes``; the FP32 reference and the
    candidate), both runners' outputs and the comparison's per-pixel temporaries (a float32
    copy of the scores for the top-2 gap, labels, masks)."""
    pixels = meta.input_height * meta.input_width
    outputs = 0
    for spec in meta.outputs.values():  # float32 scores (or int32 labels) at their stride
        stride = spec.get("stride") or 1
        cells = (meta.input_height // stride) * (meta.input_width // stride)
        outputs += 4 * cells * (1 if spec.get("kind") == "labels" else meta.num_classes)
    return 4 * pixels * meta.input_channels + 2 * forward + 3 * outputs + 16 * pixels


class Reference:
    """FP32's labels, tie gaps and the masks on the data, batch by batch (for the proxy),
    kept in a private temporary folder (one ``.npz`` per batch), not in memory; ``close``
    removes it (a killed process's is removed by the next one)."""

    def __init__(self):
        self._stack = contextlib.ExitStack()
        self.folder = self._stack.enter_context(private_tempdir("ocr-deploy-reference-"))
        self.batches = 0
        self.tol = 0.0

    def add(self, labels: np.ndarray, gaps: np.ndarray | None, masks: np.ndarray | None
            ) -> None:
        arrays = {"labels": labels}
        arrays.update({k: v for k, v in (("gaps", gaps), ("masks", masks)) if v is not None})
        np.savez(self.folder / f"{self.batches}.npz", **arrays)
        self.batches += 1

    def batch(self, index: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """``(labels, gaps or None, masks or None)`` of batch ``index``."""
        with np.load(self.folder / f"{index}.npz") as stored:
            return tuple(stored[k] if k in stored.files else None
                         for k in ("labels", "gaps", "masks"))

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> Reference:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Tally:
    """Agreement (through ``Comparison``) and confusion matrices, batch by batch."""

    def __init__(self, comparison: Comparison, labels_name: str, samples: int,
                 folder: Path | None, num_classes: int, ignore_index: int | None):
        self.comparison, self.labels_name, self.samples = comparison, labels_name, samples
        self.folder, self.num_classes, self.ignore_index = folder, num_classes, ignore_index
        self.confusion = self.confusion_fp32 = None

    def counted(self, masks: np.ndarray | None) -> np.ndarray | None:
        return None if masks is None or self.ignore_index is None else \
            masks != self.ignore_index

    def add_masks(self, candidate: np.ndarray, fp32: np.ndarray,
                  masks: np.ndarray | None) -> None:
        if masks is None:
            return
        try:
            found = [confusion_matrix(labels, masks, self.num_classes, self.ignore_index)
                     for labels in (candidate, fp32)]
        except ValueError as exc:
            raise BadInputError(self.folder, f"masks with class indices below "
                                f"{self.num_classes} (or the ignore index {self.ignore_index})",
                                str(exc), "fix the masks or pass --ignore-index") from exc
        if self.confusion is None:
            self.confusion, self.confusion_fp32 = found
        else:
            self.confusion += found[0]
            self.confusion_fp32 += found[1]

    def accuracy(self, runner: dict, scores_name: str | None = None) -> Accuracy:
        report = self.comparison.report()
        labels = report.output(self.labels_name)
        result = Accuracy(labels.label_agreement_excl_ties, None, None, self.samples,
                          labels.tie_pixels, labels.label_agreement, report.tie_tolerance,
                          runner=runner)
        if scores_name is not None:
            scores = report.output(scores_name)
            result.scores = {k: getattr(scores, k) for k in ("max_abs_err", "max_rel_err",
                                                             "scale", "cosine")}
        if self.confusion is not None:
            (miou, per_class), (miou_fp32, per_class_fp32) = (
                iou_from_confusion(m) for m in (self.confusion, self.confusion_fp32))
            result.miou, result.miou_fp32 = 100 * miou, 100 * miou_fp32
            result.per_class_iou, result.per_class_iou_fp32 = _percent(per_class), \
                _percent(per_class_fp32)
        return result


def reference(fp32_bytes: bytes, data: SampleSet, meta: ExportMetadata, batch: int = BATCH
              ) -> Reference:
    """FP32's labels and tie gaps (judged on its per-class scores, if it has them), in
    batches of ``batch``; the caller closes it."""
    run = reference_call(fp32_bytes, meta)
    scores_name = scores_output(meta)
    stored, scale = Reference(), 0.0
    try:
        for inputs, batch_masks in data.batches(batch):
            outputs = run(inputs)
            labels = _compact(labels_from_outputs(outputs, meta))
            gaps = None
            if scores_name in outputs:
                scores = _classes_last(outputs[scores_name], meta, scores_name)
                gaps = top2_gap(scores)
                scale = max(scale, float(np.abs(scores).max()))
            del outputs
            stored.add(labels, gaps, None if batch_masks is None else
                       _to_shape(batch_masks, labels.shape[1:]))
    except BaseException:
        stored.close()
        raise
    stored.tol = TIE_RTOL * scale
    return stored


def proxy_accuracy(candidate_bytes: bytes, data: SampleSet, meta: ExportMetadata,
                   ref: Reference, ignore_index: int | None = IGNORE_INDEX,
                   batch: int = BATCH) -> Accuracy:
    """A candidate ONNX on ONNX Runtime CPU against ``ref`` (the sensitivity search's
    measure), in batches of ``batch`` (as ``ref`` was made)."""
    run = reference_call(candidate_bytes, meta)
    comparison = Comparison({"labels": "labels"}, check_values=False, tie_atol=ref.tol,
                            tie_rtol=0.0)
    tally = _Tally(comparison, "labels", len(data), data.folder, meta.num_classes,
                   ignore_index)
    for index, (inputs, _) in enumerate(data.batches(batch)):
        candidate = labels_from_outputs(run(inputs), meta)
        labels, gaps, masks = ref.batch(index)
        comparison.add_labels("labels", candidate == labels, gaps, tally.counted(masks))
        tally.add_masks(candidate, labels, masks)
    return tally.accuracy({"backend": "onnxruntime", "providers": ["CPUExecutionProvider"],
                           "role": "proxy (ONNX Runtime CPU simulation of the candidate)"})


def artifact_accuracy(runner, fp32_bytes: bytes, data: SampleSet, meta: ExportMetadata,
                      ignore_index: int | None = IGNORE_INDEX, batch: int = BATCH
                      ) -> Accuracy:
    """The built artifact through its own ``runner`` against the FP32 ONNX (ONNX Runtime
    CPU) run beside it, ``batch`` samples at a time: the build's verdict."""
    run = reference_call(fp32_bytes, meta)
    scores_name = scores_output(meta)
    labels_name = meta.output_of_kind("labels") or scores_name
    kinds = {name: meta.outputs[name]["kind"] for name in (scores_name, labels_name) if name}
    comparison = Comparison(kinds, check_values=False, tie_atol=0.0, tie_rtol=TIE_RTOL)
    tally = _Tally(comparison, labels_name, len(data), data.folder, meta.num_classes,
                   ignore_index)
    for inputs, batch_masks in data.batches(batch):
        fp32 = run(inputs)
        built = runner.run(np.ascontiguousarray(inputs, runner.input_dtype), list(kinds))
        reference = {n: _classes_last(fp32[n], meta, n) for n in kinds}
        candidate = {n: _classes_last(built[n], meta, n) for n in kinds}
        candidate_labels = labels_from_outputs(built, meta)
        fp32_labels = labels_from_outputs(fp32, meta)
        masks = None if batch_masks is None else _to_shape(batch_masks,
                                                           fp32_labels.shape[1:])
        comparison.add(reference, candidate, tally.counted(masks))
        tally.add_masks(candidate_labels, fp32_labels, masks)
    return tally.accuracy({**runner.info(), "role": "the built artifact in its own runner"},
                          scores_name)


def end_to_end_accuracy(end_to_end, fp32, samples, folder: Path | None = None,
                        ignore_index: int | None = IGNORE_INDEX) -> Accuracy:
    """An end-to-end artifact (an open ``Segmenter`` on it, in its own runner) against
    ``Segmenter.predict`` on the FP32 export (``fp32``), on camera-size RGB images:
    ``samples`` (sized) yields ``(image, mask at the image size or None)``; ``folder``:
    where they were read from (named in errors). The verdict of an end-to-end build."""
    comparison = label_comparison()
    tally = _Tally(comparison, "labels", len(samples), folder, fp32.metadata.num_classes,
                   ignore_index)
    for image, mask in samples:
        candidate, expected, scores = label_pair(end_to_end, fp32, image)
        masks = None if mask is None else mask[None]
        counted = tally.counted(masks)
        add_pair(comparison, candidate[None], expected[None],
                 None if scores is None else scores[None], counted)
        tally.add_masks(candidate[None], expected[None], masks)
    return tally.accuracy({**end_to_end.runner.info(),
                           "role": "the built end-to-end artifact in its own runner"})


def _compact(labels: np.ndarray) -> np.ndarray:
    """Labels in the smallest integer type that holds them (uint8 for up to 256 classes)."""
    return labels.astype(np.uint8) if labels.size and labels.min() >= 0 and \
        labels.max() < 256 else labels


def _classes_last(value: np.ndarray, meta: ExportMetadata, name: str) -> np.ndarray:
    """Scores with their classes on the last axis (labels as they are)."""
    spec = meta.outputs.get(name, {})
    if spec.get("kind") != "labels" and spec.get("layout", meta.input_layout) == "NCHW":
        return np.moveaxis(value, 1, -1)
    return value


def _percent(per_class: np.ndarray) -> list:
    return [None if math.isnan(v) else round(100 * float(v), 4) for v in per_class]


def _to_shape(masks: np.ndarray, shape: tuple) -> np.ndarray:
    """Nearest-neighbour resample of masks to the labels' size (strided outputs)."""
    if masks.shape[1:] == tuple(shape):
        return masks
    rows = (np.arange(shape[0]) + 0.5) * masks.shape[1] / shape[0]
    cols = (np.arange(shape[1]) + 0.5) * masks.shape[2] / shape[1]
    return masks[:, rows.astype(int)][:, :, cols.astype(int)]
