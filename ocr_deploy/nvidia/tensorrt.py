"""TensorRT helpers shared by the engine builder, the runtime and the GPU benchmarks.

Written against TensorRT 10.x (JetPack 6: 10.3) and 11.x's documented Python API. **Not run
by this project yet**: the development machines have neither a GPU nor TensorRT.

- 11.x: every network is strongly typed; precision comes from the ONNX (Cast nodes for
  FP16, Q/DQ for INT8); the precision builder flags no longer exist.
- 10.x: the same strongly typed path by default; the deprecated weakly typed path with
  ``BuilderFlag.FP16``/``INT8`` remains for DLA, which NVIDIA documents only that way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ocr_deploy.errors import BadInputError, ConversionError, CudaError


def import_tensorrt(path: object = None):
    """Import TensorRT, or say clearly that this needs it."""
    try:
        import tensorrt
    except ImportError as exc:
        raise BadInputError(path, "TensorRT (the 'tensorrt' extra, on a machine with an "
                            "NVIDIA GPU)", f"it is not installed ({exc})",
                            "install it with: pip install 'ocr-deploy[tensorrt]', or use "
                            "the ONNX Runtime backend instead") from exc
    return tensorrt


def version_tuple(version: str) -> tuple[int, ...]:
    """``"10.13.0.35"`` -> ``(10, 13, 0, 35)`` (non-numeric parts dropped)."""
    return tuple(int(part) for part in str(version).split(".") if part.isdigit())


def release(version: str) -> tuple[str, ...]:
    """``10.13.0.35`` -> ``("10", "13", "0")``: engines need the same release."""
    return tuple(str(version).split(".")[:3])


def availability() -> tuple[bool, str]:
    """Whether TensorRT and a CUDA GPU are usable here, and why not."""
    try:
        import tensorrt
    except ImportError:
        return False, "the tensorrt Python package is not installed"
    from ocr_deploy.nvidia import cuda

    try:
        device = cuda.device_info(0)
    except BadInputError as exc:  # cuda-python missing
        return False, exc.found
    except CudaError as exc:
        hint = ""
        if "InsufficientDriver" in exc.found:
            hint = ("; cuda-python is built for a newer CUDA than this driver: install "
                    "cuda-python<13 for CUDA 12 drivers (JetPack 6), or update the driver")
        return False, f"no usable CUDA GPU ({exc.found}{hint})"
    return True, f"TensorRT {tensorrt.__version__} and {device['gpu_name']} are present"


@dataclass
class EngineSpec:
    """What to build: the ONNX, each input's (min, opt, max) shapes, and the settings."""

    onnx_bytes: bytes
    profiles: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]
    workspace_mib: int = 2048
    weakly_typed_flags: list[str] = field(default_factory=list)  # e.g. ["FP16"] (10.x only)
    timing_cache: bytes | None = None  # None: no timing cache
    dla_core: int | None = None


@dataclass
class BuiltEngine:
    """The serialised engine and what the build learnt."""

    plan: bytes
    timing_cache: bytes | None
    notes: list[str]


def build_engine(spec: EngineSpec, logger=None,
                 progress: Callable[[str], None] = lambda _: None) -> BuiltEngine:
    """Parse, configure and build; raise ``ConversionError`` with TensorRT's reasons."""
    trt = import_tensorrt()
    logger = logger or trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    strongly_typed = not spec.weakly_typed_flags
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(spec.onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ConversionError(None, "an ONNX the TensorRT parser accepts",
                              f"parser errors: {errors}"[:400], "report this with the model")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, spec.workspace_mib << 20)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    for name in spec.weakly_typed_flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    profile = builder.create_optimization_profile()
    for name, shapes in spec.profiles.items():
        profile.set_shape(name, *shapes)
    config.add_optimization_profile(profile)
    if spec.dla_core is not None:
        _use_dla(trt, builder, config, spec.dla_core)
    notes = []
    if spec.timing_cache is not None:
        notes += _attach_timing_cache(config, spec.timing_cache)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ConversionError(None, "TensorRT to build an engine", "the build failed",
                              "rerun with --debug and read TensorRT's log above")
    cache = config.get_timing_cache() if spec.timing_cache is not None else None
    return BuiltEngine(bytes(serialized), None if cache is None else bytes(cache.serialize()),
                       notes)


def _attach_timing_cache(config, data: bytes) -> list[str]:
    """Attach a timing cache made from ``data``; a stale or foreign one is replaced by a
    fresh cache with a note (``set_timing_cache`` returns False for a cache from another
    GPU or TensorRT version, and a corrupt one may fail to load at all)."""
    try:
        cache = config.create_timing_cache(data)
        attached = cache is not None and config.set_timing_cache(cache, ignore_mismatch=False)
    except Exception:  # TensorRT raises its own types for corrupt caches
        attached = False
    if attached:
        return []
    config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)
    return ["the timing cache is from another GPU or TensorRT version (or corrupt): "
            "started a fresh one"]


def _use_dla(trt, builder, config, core: int) -> None:
    if builder.num_DLA_cores <= core:
        raise BadInputError(None, f"DLA core {core}",
                            f"{builder.num_DLA_cores} DLA core(s) on this device",
                            "drop --dla-core (DLA exists on Jetson AGX/NX Orin)")
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = core
    config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
