"""The ONNX Runtime artifact: the precision ONNX with ONNX Runtime's graph optimisations saved.

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

from pathlib import Path

import onnxruntime as ort

from ocr_deploy.onnxruntime_env import GPU_PROVIDERS


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


def build_artifact(model_bytes: bytes, target: Path, artifact: Path, level: str) -> dict:
    """Save ``model_bytes`` optimised at ``level`` (``LEVELS``) to ``target``; return the
    sidecar facts (the provider options are for the artifact's final path)."""
    level = resolve_level(level)
    options = ort.SessionOptions()
    options.graph_optimization_level = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[level]
    options.optimized_model_filepath = str(target)
    ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    return {"onnxruntime_version": ort.__version__, "optimization_level": level,
            "available_providers": ort.get_available_providers(),
            "provider_options": provider_options(artifact)}
