"""ONNX Runtime backend: the precision ONNX with ONNX Runtime's graph optimisations saved.

The saved model runs on the CPU, and with the CUDA / TensorRT execution providers where
onnxruntime-gpu is installed: the provider options for those (engine and timing caches)
are recorded in the sidecar and used by the runtime. The precision is in the ONNX (Cast
nodes, Q/DQ), so the TensorRT provider's FP16/INT8 switches stay off: they would make it
build a weakly typed network and run layers the accuracy budget kept in FP32 in FP16.

Optimisation levels above ``basic`` write CPU-specific fused ops, so ``auto`` picks
``basic`` when a GPU provider is available and ``extended`` otherwise (``all`` would save
layouts tied to this CPU's vector width; the runtime applies them when it loads the model).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import onnx
import onnxruntime as ort

from ocr_deploy.builder.backends.base import BuildBackend
from ocr_deploy.metadata import ExportMetadata
from ocr_deploy.precision.placement import Placement, onnxruntime_placement

LEVELS = ("auto", "basic", "extended", "all")
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def resolve_level(level: str) -> str:
    """``auto`` -> ``basic`` with a GPU provider available, else ``extended``."""
    if level != "auto":
        return level
    available = ort.get_available_providers()
    return "basic" if any(p in available for p in GPU_PROVIDERS) else "extended"


def provider_options(output: Path) -> dict:
    """Options for the GPU execution providers, as the runtime will pass them."""
    cache = str(output.with_name(output.name + ".trt-cache"))
    return {
        "TensorrtExecutionProvider": {
            "trt_fp16_enable": False, "trt_int8_enable": False,
            "trt_engine_cache_enable": True, "trt_engine_cache_path": cache,
            "trt_timing_cache_enable": True, "trt_timing_cache_path": cache},
        "CUDAExecutionProvider": {"cudnn_conv_algo_search": "EXHAUSTIVE"},
    }


class OnnxRuntimeBuild(BuildBackend):
    """An ONNX Runtime-optimised ONNX model."""

    name = "onnxruntime"
    label = "ONNX Runtime"
    suffix = ".onnx"

    def availability(self) -> tuple[bool, str]:
        return True, f"ONNX Runtime {ort.__version__} ({', '.join(ort.get_available_providers())})"

    def placement(self) -> Placement:
        return onnxruntime_placement()

    def build(self, model_bytes: bytes, target: Path, artifact: Path, meta: ExportMetadata,
              precision: str, request, progress: Callable[[str], None]) -> dict:
        level = resolve_level(request.ort_optimization)
        options = ort.SessionOptions()
        options.graph_optimization_level = {
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[level]
        options.optimized_model_filepath = str(target)
        ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
        return {"backend": self.name, "onnxruntime_version": ort.__version__,
                "optimization_level": level,
                "available_providers": ort.get_available_providers(),
                "provider_options": provider_options(artifact)}

    def runtime_graph(self, artifact: Path) -> onnx.ModelProto:
        return onnx.load(str(artifact))

    def unused_options(self, request) -> list[str]:
        defaults = type(request.tensorrt)()
        return [f"--{flag}" for flag, field in (
            ("dla-core", "dla_core"), ("trt-builder-flags", "builder_flags"),
            ("batch", "batch"), ("workspace-mib", "workspace_mib"),
            ("timing-cache", "timing_cache"))
            if getattr(request.tensorrt, field) != getattr(defaults, field)]
