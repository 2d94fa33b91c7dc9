"""Cross-builds for devices: calibrate here, build there.

``ocr-build-engine M.onnx --backend tensorrt --emit-onnx OUT.onnx`` runs the TensorRT
backend's whole graph path — its forms (``GRAPH_TARGET``), its placement on the FP16 base,
the calibrated Q/DQ scales, the end-to-end wrap, ``build.before_parse`` — on a machine
without TensorRT and writes the graph its ONNX parser would get as ``OUT.onnx`` (with its
sidecar, one pair), verified on ONNX Runtime CPU as a proxy: ONNX Runtime's kernels do not
compute what TensorRT's INT8/FP16 kernels compute, so that verdict says the graph is right,
not that an engine will be. Its metadata carries the marker ``build.cross_build`` (with the
placement and calibration provenance beside it).

On the device, ``ocr-build-engine OUT.onnx --backend tensorrt`` recognises the marker
(``emitted_for``) and builds the engine from the graph as it is — no calibration (the
scales are in the graph), no new forms — then judges the engine against the emitted graph
on ONNX Runtime CPU with whatever validation data the device has (synthetic when none).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import onnx

from ocr_deploy.backends.onnxruntime import OnnxRuntime
from ocr_deploy.backends.tensorrt.options import TensorRTOptions
from ocr_deploy.contract.metadata import ExportMetadata
from ocr_deploy.graph.target import TENSORRT as GRAPH_TARGET
from ocr_deploy.precision.placement import Placement

PROXY = ("ONNX Runtime CPU, as a proxy for TensorRT: it runs the same graph, but "
         "TensorRT's fused INT8/FP16 kernels round differently; the device build judges the "
         "engine itself")


def emitted_for(meta: ExportMetadata) -> str | None:
    """The backend an ONNX was emitted for by ``--emit-onnx`` (its marker), else None."""
    record = meta.build.get("cross_build") if isinstance(meta.build, dict) else None
    return record.get("emitted_for") if isinstance(record, dict) else None


class TensorRTOnnx(OnnxRuntime):
    """The TensorRT backend's graph path, written out as an ONNX instead of compiled; the
    verdict runs it on ONNX Runtime CPU (``PROXY``)."""

    name = "tensorrt"
    label = "the TensorRT graph on ONNX Runtime (--emit-onnx)"
    options_type = TensorRTOptions
    graph_target = GRAPH_TARGET
    coverage_warn_below = None

    def __init__(self, output: Path):
        self.output = Path(output)
        self.reason = ("--emit-onnx: the graph TensorRT's parser would get, verified on ONNX "
                       "Runtime as a proxy (no TensorRT needed here)")
        self.cross_build = {"emitted_for": "tensorrt", "verified_on": PROXY,
                            "device_step": f"ocr-build-engine {self.output.name} --backend "
                                           "tensorrt (on the device, with TensorRT)"}

    def availability(self) -> tuple[bool, str]:
        return True, self.reason

    def resolve_options(self, options: TensorRTOptions, model: onnx.ModelProto, source: Path,
                        note: Callable[[str], None]) -> TensorRTOptions:
        from ocr_deploy.backends.tensorrt import BACKEND

        return BACKEND.resolve_options(options, model, source, note)

    def placement(self, options: TensorRTOptions) -> Placement:
        from ocr_deploy.backends.tensorrt import BACKEND

        return BACKEND.placement(options)

    def build(self, model_bytes: bytes, target: Path, artifact: Path, meta: ExportMetadata,
              precision: str, options: TensorRTOptions,
              progress: Callable[[str], None]) -> dict:
        import onnxruntime as ort

        from ocr_deploy.backends.tensorrt.build import before_parse

        before_parse(model_bytes, meta, options, None, progress)
        Path(target).write_bytes(model_bytes)  # exactly what the parser would get
        return {"onnxruntime_version": ort.__version__,
                "batch_profile": list(options.batch) if options.batch else None,
                "builder_flags": bool(options.builder_flags)}

    def coverage(self, fp32_model: onnx.ModelProto, qdq_model: onnx.ModelProto, built: Path,
                 kept: dict[str, list[str]]) -> dict:
        from ocr_deploy.backends.tensorrt import BACKEND

        return BACKEND.coverage(fp32_model, qdq_model, built, kept)

    def open_runner(self, path: Path, facts: dict | None, device_id: int = 0, **_):
        return super().open_runner(path, None, providers=["cpu"])
