"""TensorRT backend: build an engine from the precision ONNX (TensorRT 10.x and 11.x).

Written against TensorRT's documented Python API; it has NOT been run on a GPU by this
project yet (the development machines have neither a GPU nor TensorRT): see README.

- 11.x: every network is strongly typed; precision comes from the ONNX (Cast nodes for
  FP16, Q/DQ for INT8). The precision builder flags no longer exist.
- 10.x (JetPack 6): the same strongly typed path by default; ``builder_flags=True`` instead
  parses the ONNX weakly typed and sets ``BuilderFlag.FP16`` / ``INT8`` (deprecated in
  10.12, removed in 11). DLA (``dla_core``) with GPU fallback where the build supports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ocr_deploy.errors import BadInputError, ConversionError, OcrDeployError
from ocr_deploy.files import write_bytes_atomic
from ocr_deploy.metadata import ExportMetadata


@dataclass
class TensorRTOptions:
    """Engine build settings."""

    batch: tuple[int, int, int] = (1, 1, 8)  # min, opt, max
    workspace_mib: int = 2048
    timing_cache: Path | None = None  # read if present, written back after the build
    dla_core: int | None = None
    builder_flags: bool = False  # TensorRT 10.x only: weakly typed + FP16/INT8 flags


def availability() -> tuple[bool, str]:
    """Whether TensorRT and a CUDA GPU are usable here, and why not."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False, "the tensorrt Python package is not installed"
    try:
        from ocr_deploy.nvidia.cuda import device_info as gpu_info

        gpu_info()
    except OcrDeployError as exc:
        return False, f"no usable CUDA GPU ({exc})"
    return True, "TensorRT and a CUDA GPU are present"


def tensorrt_version() -> tuple[str, int]:
    """The installed TensorRT version string and its major number."""
    import tensorrt as trt

    return trt.__version__, int(trt.__version__.split(".")[0])


def build_tensorrt(model_bytes: bytes, output: Path, meta: ExportMetadata, precision: str,
                   options: TensorRTOptions, progress=lambda _: None) -> dict:
    """Build and write the engine atomically; return the sidecar facts."""
    import tensorrt as trt

    from ocr_deploy.nvidia.cuda import device_info as gpu_info

    version, major = tensorrt_version()
    if options.builder_flags and major >= 11:
        raise BadInputError(None, "builder precision flags only on TensorRT 10.x",
                            f"TensorRT {version}", "drop --trt-builder-flags: TensorRT 11 "
                            "takes precision from the ONNX")
    if meta.attention.get("form") == "attention" and _older_than(version, (10, 14)):
        raise BadInputError(None, "TensorRT >= 10.14 for an ONNX with the Attention op",
                            f"TensorRT {version}", "re-export with --attention decomposed")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0 if options.builder_flags else \
        1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(model_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ConversionError(None, "an ONNX the TensorRT parser accepts",
                              f"parser errors: {errors}"[:400], "report this with the model")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    flags_set = _set_precision_flags(trt, config, precision) if options.builder_flags else []
    profile = _profile(builder, meta, options.batch)
    config.add_optimization_profile(profile)
    if options.dla_core is not None:
        _use_dla(trt, builder, config, options.dla_core)
    cache_bytes = options.timing_cache.read_bytes() \
        if options.timing_cache and options.timing_cache.is_file() else b""
    config.set_timing_cache(config.create_timing_cache(cache_bytes), ignore_mismatch=False)

    progress(f"building the engine with TensorRT {version} (minutes for large models)")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ConversionError(None, "TensorRT to build an engine", "the build failed",
                              "rerun with --debug and read TensorRT's log above")
    write_bytes_atomic(output, bytes(serialized))
    if options.timing_cache:
        write_bytes_atomic(options.timing_cache, bytes(config.get_timing_cache().serialize()))
    return {"backend": "tensorrt", "tensorrt_version": version, **gpu_info(),
            "strongly_typed": not options.builder_flags, "builder_flags": flags_set,
            "profiles": [{"input": meta.input_name, "min": _shape(meta, options.batch[0]),
                          "opt": _shape(meta, options.batch[1]),
                          "max": _shape(meta, options.batch[2])}],
            "workspace_mib": options.workspace_mib, "dla_core": options.dla_core,
            "timing_cache": str(options.timing_cache) if options.timing_cache else None}


def _older_than(version: str, minimum: tuple[int, int]) -> bool:
    major, minor = (int(part) for part in version.split(".")[:2])
    return (major, minor) < minimum


def _shape(meta: ExportMetadata, batch: int) -> tuple[int, int, int, int]:
    if meta.input_layout == "NCHW":
        return batch, meta.input_channels, meta.input_height, meta.input_width
    return batch, meta.input_height, meta.input_width, meta.input_channels


def _profile(builder, meta: ExportMetadata, batch: tuple[int, int, int]):
    profile = builder.create_optimization_profile()
    profile.set_shape(meta.input_name, *(_shape(meta, b) for b in batch))
    return profile


def _set_precision_flags(trt, config, precision: str) -> list[str]:
    names = {"fp16": ["FP16"], "int8": ["INT8", "FP16"]}.get(precision, [])
    for name in names:
        config.set_flag(getattr(trt.BuilderFlag, name))
    return names


def _use_dla(trt, builder, config, core: int) -> None:
    if builder.num_DLA_cores <= core:
        raise BadInputError(None, f"DLA core {core}",
                            f"{builder.num_DLA_cores} DLA core(s) on this device",
                            "drop --dla-core (DLA exists on Jetson AGX/NX Orin)")
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = core
    config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
