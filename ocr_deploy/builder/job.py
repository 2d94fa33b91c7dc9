"""One build's backend build and verdict (``BuildJob``): the built artifact through its own
backend's runner against FP32 within the budget; for INT8 that misses it, the sensitivity
search on the ONNX Runtime CPU proxy, a rebuild and a new verdict; for an end-to-end build,
the parity figure against ``Segmenter.predict`` on the plain core."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import onnx

from ocr_deploy.backends import Backend
from ocr_deploy.builder.end_to_end import camera_images, parity_images
from ocr_deploy.builder.request import SYNTHETIC_SAMPLES, BuildRequest
from ocr_deploy.contract.metadata import ExportMetadata, write_metadata
from ocr_deploy.contract.signature import check_contract
from ocr_deploy.errors import BudgetError
from ocr_deploy.graph.end_to_end import record_parity
from ocr_deploy.precision.calibration_data import SampleSet
from ocr_deploy.precision.placement import Placement
from ocr_deploy.precision.qdq import quantize_int8
from ocr_deploy.progress import Progress
from ocr_deploy.runtime.segmenter import Segmenter
from ocr_deploy.verification.accuracy import (
    BATCH,
    Accuracy,
    artifact_accuracy,
    end_to_end_accuracy,
    proxy_accuracy,
    reference,
)
from ocr_deploy.verification.end_to_end_parity import end_to_end_parity
from ocr_deploy.verification.reference import reference_segmenter
from ocr_deploy.verification.sensitivity import search


@dataclass
class Plan:
    """What the stages before the backend build decided: the INT8 placement and calibration
    (with the data it read), the layers kept in higher precision, and what the sidecar and
    the metadata record of them."""

    placement: Placement | None = None
    calibration: object = None
    calib_data: SampleSet | None = None
    exclusions: dict = field(default_factory=dict)  # reason -> node names
    placement_record: dict | None = None  # gets ``quantized_tensors`` as INT8 is made
    calibration_record: dict | None = None
    cross_build: dict | None = None
    reference: str = "FP32"  # what the verdict compares with (the source ONNX on ORT CPU)

    @classmethod
    def emitted(cls, meta: ExportMetadata, source: Path) -> Plan:
        """Build a graph written by ``--emit-onnx`` as it is: its placement, calibration and
        kept layers from its metadata; the verdict against the graph itself."""
        return cls(exclusions=dict(meta.build.get("kept_in_higher_precision") or {}),
                   placement_record=meta.build.get("placement"),
                   calibration_record=meta.build.get("calibration"),
                   cross_build={**meta.build["cross_build"], "built_from": str(source)},
                   reference=f"the emitted graph {source.name} on ONNX Runtime CPU")

    def quantized_tensors(self) -> dict | None:
        """Where ``quantize_int8`` records the tensors each placement rule quantised: the
        sidecar's ``placement.quantized_tensors`` (None without a placement)."""
        if self.placement is None:
            return None
        return self.placement_record.setdefault("quantized_tensors", {})

    def build_record(self, precision: str) -> dict:
        """What the artifact's metadata records of its build (``ExportMetadata.build``)."""
        return {"precision": precision, **{k: v for k, v in (
            ("cross_build", self.cross_build), ("placement", self.placement_record),
            ("calibration", self.calibration_record)) if v is not None},
            "kept_in_higher_precision": self.exclusions}


@dataclass
class Verified:
    """What the backend build and the verdict hand on to the sidecar."""

    model: onnx.ModelProto  # the precision graph built (after a sensitivity search)
    meta: ExportMetadata  # the built artifact's
    facts: dict  # the backend's build facts
    verification: dict | None = None  # None: --no-verify
    end_to_end_parity: dict | None = None


@dataclass
class BuildJob:
    """One build's backend build and verdict, on what the earlier stages decided."""

    request: BuildRequest
    backend: Backend
    options: object
    source_meta: ExportMetadata
    fp32_bytes: bytes
    fp32_model: onnx.ModelProto
    output: Path
    progress: Progress
    plan: Plan
    batch: int = BATCH  # samples verified at once (what the memory budget allows)
    meta: ExportMetadata | None = None
    core: tuple[bytes, ExportMetadata] | None = None  # an end-to-end build's plain core
    verification: dict | None = None
    parity: dict | None = None

    def build_and_verify(self, model: onnx.ModelProto, data: SampleSet | None, target: Path
                         ) -> Verified:
        """Build ``model`` into ``target`` and give the verdict on what was built; INT8 that
        misses the budget is searched (proxy), rebuilt and judged again. Raises
        ``BudgetError`` when the built artifact misses the budget."""
        built = self._build(model, target)
        if data is None:
            return Verified(model, self.meta, built)
        accuracy = self._verdict(target, built, data)
        request = self.request
        if not accuracy.meets(request.budget) and request.precision == "int8" \
                and request.sensitivity_search and self.plan.calibration is not None:
            model = self._search(data, accuracy)
            built = self._build(model, target)
            accuracy = self._verdict(target, built, data)
        self.verification.update(accuracy=accuracy.to_dict(),
                                 met_budget=accuracy.meets(request.budget))
        if not accuracy.meets(request.budget):
            raise BudgetError(request.onnx, f"{request.precision} within the budget (mIoU "
                              f"drop <= {request.budget.max_miou_drop} points, agreement >= "
                              f"{request.budget.min_agreement:.2%})", describe(accuracy),
                              "loosen --max-miou-drop/--min-agreement, add calibration data, "
                              "or keep layers with --keep-fp32")
        if request.end_to_end is not None:
            self._parity(target, built)
        return Verified(model, self.meta, built, self.verification, self.parity)

    def _build(self, model: onnx.ModelProto, target: Path) -> dict:
        self.meta = replace(self.source_meta, precision=self.request.precision,
                            build=self.plan.build_record(self.request.precision))
        write_metadata(model, self.meta)
        e2e = self.request.end_to_end
        if e2e is not None:
            self.core = model.SerializeToString(), self.meta
            model, self.meta = e2e.wrap(model, self.meta, self.backend.graph_target,
                                          self.request.onnx)
            self.progress.note(f"wrapped end to end for {self.backend.name}: labels "
                               f"{self.meta.end_to_end['forms']['labels']}, argmax "
                               f"{self.meta.end_to_end['forms']['argmax']}")
        with self.progress.stage(f"building with {self.backend.name}"):
            return self.backend.build(model.SerializeToString(), target, self.output,
                                      self.meta, self.request.precision, self.options,
                                      self.progress.note)

    def _verdict(self, target: Path, built: dict, data: SampleSet) -> Accuracy:
        """The built artifact through its own backend's runner against FP32 (an end-to-end
        one on camera-size images against ``Segmenter.predict`` on the FP32 export)."""
        backend, e2e = self.backend, bool(self.meta.end_to_end)
        if e2e:
            data = camera_images(data, self.meta, self.request.val_samples or SYNTHETIC_SAMPLES)
        with self.progress.stage(f"verifying the built artifact against {self.plan.reference} "
                                 f"({backend.name} runner, {data.description})"):
            runner = backend.open_runner(target, {"backend": backend.name, **built},
                                         **backend.lean_options)
            try:
                check_contract(target, self.meta, runner)
                if e2e:
                    with reference_segmenter(self.fp32_bytes, self.source_meta,
                                             self.plan.reference) as fp32:
                        accuracy = end_to_end_accuracy(
                            Segmenter(runner, self.meta, target), fp32, data,
                            data.data.folder if data.data else None, self.request.ignore_index)
                else:
                    accuracy = artifact_accuracy(runner, self.fp32_bytes, data, self.meta,
                                                 self.request.ignore_index, self.batch)
            finally:
                runner.close()
            self.verification = {**(self.verification or {}),
                "data": data.description, "samples": len(data), "reference": self.plan.reference,
                "runner": accuracy.runner, "budget": self.request.budget.__dict__,
                "batch": 1 if e2e else self.batch,
                "ignore_index": self.request.ignore_index}
            self.progress.note(describe(accuracy))
        return accuracy

    def _parity(self, target: Path, built: dict) -> None:
        """An end-to-end artifact's labels against ``Segmenter.predict`` on its plain core
        (ONNX Runtime CPU) on images of the sizes it takes: into its metadata, the sidecar."""
        backend = self.backend
        images = parity_images(self.meta)
        with self.progress.stage(f"end-to-end parity against Segmenter.predict on the plain "
                                 f"{self.request.precision} core ({len(images)} images)"):
            runner = backend.open_runner(target, {"backend": backend.name, **built},
                                         **backend.lean_options)
            core_bytes, core_meta = self.core
            try:
                with reference_segmenter(core_bytes, core_meta, "plain core") as plain:
                    report = end_to_end_parity(Segmenter(runner, self.meta, target), plain,
                                               images)
            finally:
                runner.close()
            report["reference"] += f" (the plain {self.request.precision} core on ONNX " \
                "Runtime CPU)"
            self.meta = record_parity(None, self.meta, report)
            backend.store_metadata(target, self.meta)
            self.parity = report
            self.progress.note(f"labels agree with Segmenter.predict on "
                               f"{report['agreement']:.4%} of {report['pixels']} pixels "
                               f"({report['agreement_excl_ties']:.4%} outside ties)")
            if report["agreement_excl_ties"] < 1.0:
                self.progress.warn("the end-to-end labels differ from Segmenter.predict on "
                                   "the plain core outside ties (see end_to_end_parity)")

    def _search(self, data: SampleSet, missed: Accuracy) -> onnx.ModelProto:
        """Layers to keep in higher precision, ranked and searched on the ONNX Runtime CPU
        proxy; returns the INT8 model with them kept."""
        self.progress.note("INT8 misses the budget: searching for layers to keep in higher "
                           "precision (on the ONNX Runtime CPU proxy)")
        with reference(self.fp32_bytes, data, self.source_meta, self.batch) as ref:
            return self._search_with(data, missed, ref)

    def _search_with(self, data: SampleSet, missed: Accuracy, ref) -> onnx.ModelProto:
        """``_search`` against the FP32 reference ``ref`` (on disk)."""
        request, progress = self.request, self.progress
        plan = self.plan
        base = flatten(plan.exclusions)
        quantized = [n.name for n in self.fp32_model.graph.node
                     if n.op_type in ("Conv", "MatMul") and n.name not in base]

        def quantize(kept: list[str]) -> onnx.ModelProto:
            return quantize_int8(self.fp32_model, plan.calibration, plan.placement,
                                 base + kept, request.keep_fp32, plan.quantized_tensors())

        def evaluate(kept: list[str]) -> Accuracy:
            return proxy_accuracy(quantize(kept).SerializeToString(), data, self.source_meta,
                                  ref, request.ignore_index, self.batch)

        found = search(quantized, evaluate, request.budget, progress.note)
        self.verification = {**(self.verification or {}), "sensitivity_search": {
            **found.to_dict(), "first_verdict": missed.to_dict()}}
        if not found.met_budget:
            raise BudgetError(request.onnx, f"INT8 within the budget with layers kept in "
                              f"higher precision (mIoU drop <= {request.budget.max_miou_drop} "
                              f"points, agreement >= {request.budget.min_agreement:.2%})",
                              f"{describe(found.accuracy)} even with all {len(quantized)} "
                              "searched layers kept (proxy)", "loosen --max-miou-drop/"
                              "--min-agreement, add calibration data, or build --fp16")
        plan.exclusions["sensitivity_search"] = found.kept
        progress.note(f"keeping {len(found.kept)} layer(s): {', '.join(found.kept)}; proxy "
                      + describe(found.accuracy))
        return quantize(found.kept)


def flatten(exclusions: dict[str, list[str]]) -> list[str]:
    return [name for names in exclusions.values() for name in names]


def describe(result: Accuracy) -> str:
    text = f"label agreement {result.agreement:.4%}"
    if result.tie_pixels:
        text += f" ({result.tie_pixels} tied pixel(s) set aside)"
    if result.miou is not None and not math.isnan(result.miou):
        text += (f", mIoU {result.miou:.2f} vs FP32 {result.miou_fp32:.2f} "
                 f"(drop {result.miou_drop:.2f} points)")
    return text
