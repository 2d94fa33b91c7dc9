"""ONNX Runtime backend: the precision ONNX with ONNX Runtime's graph optimisations saved.

The saved model runs on the CPU, and with the CUDA / TensorRT execution providers where
onnxruntime-gpu is installed: the provider options for those (engine cache, FP16/INT8,
timing cache) are recorded in the sidecar and used by the runtime. Optimisation levels
above ``basic`` write CPU-specific fused ops, so ``auto`` picks ``basic`` when a GPU
provider is available and ``extended`` otherwise.
"""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort

from ocr_deploy.files import atomic_output

LEVELS = ("auto", "basic", "extended", "all")
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def resolve_level(level: str) -> str:
    """``auto`` -> ``basic`` with a GPU provider available, else ``extended``."""
    if level != "auto":
        return level
    available = ort.get_available_providers()
    return "basic" if any(p in available for p in GPU_PROVIDERS) else "extended"


def provider_options(output: Path, precision: str) -> dict:
    """Options for the GPU execution providers, as the runtime will pass them."""
    cache = str(output.with_name(output.name + ".trt-cache"))
    return {
        "TensorrtExecutionProvider": {
            "trt_fp16_enable": precision == "fp16", "trt_int8_enable": precision == "int8",
            "trt_engine_cache_enable": True, "trt_engine_cache_path": cache,
            "trt_timing_cache_enable": True, "trt_timing_cache_path": cache},
        "CUDAExecutionProvider": {"cudnn_conv_algo_search": "EXHAUSTIVE"},
    }


def build_onnxruntime(model_bytes: bytes, output: Path, precision: str,
                      level: str = "auto") -> dict:
    """Optimise and save ``model_bytes`` to ``output`` atomically; return sidecar facts."""
    level = resolve_level(level)
    options = ort.SessionOptions()
    options.graph_optimization_level = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[level]
    with atomic_output(output) as tmp:
        options.optimized_model_filepath = str(tmp)
        ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    return {"backend": "onnxruntime", "onnxruntime_version": ort.__version__,
            "optimization_level": level, "available_providers": ort.get_available_providers(),
            "provider_options": provider_options(output, precision)}
