"""Building a TensorRT engine from an ONNX: parser, builder config, profile, timing cache,
DLA (the TensorRT API calls of ``ocr-build-engine``, also used by the GPU benchmarks).

Written against TensorRT 10.x (JetPack 6: 10.3) and 11.x's documented Python API. **Not run
by this project yet**: the development machines have neither a GPU nor TensorRT.

- 11.x: every network is strongly typed; precision comes from the ONNX (Cast nodes for
  FP16, Q/DQ for INT8); the precision builder flags no longer exist.
- 10.x: the same strongly typed path by default (``STRONGLY_TYPED``, a flag 11.x ignores);
  the deprecated weakly typed path with ``BuilderFlag.FP16`` remains for DLA, which NVIDIA
  documents only that way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ocr_deploy.backends.tensorrt.library import import_tensorrt, shared_logger, version_tuple
from ocr_deploy.errors import BadInputError, ConversionError


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
    dla_layers: int | None = None  # network layers DLA accepted (DLA builds)
    layers: int = 0  # network layers
    dla_subgraphs: int | None = None  # the engine's DLA layers, per its engine inspector
    dla_report: list[str] = field(default_factory=list)  # the builder's "Layers running on DLA"


def build_engine(spec: EngineSpec, progress: Callable[[str], None] = lambda _: None
                 ) -> BuiltEngine:
    """Parse, configure and build; raise ``ConversionError`` with TensorRT's reasons."""
    trt = import_tensorrt()
    logger = shared_logger()
    mark, dla_mark = logger.errors.mark(), logger.dla_report.mark()
    builder = trt.Builder(logger)
    strongly_typed = not spec.weakly_typed_flags
    flags = 0
    if strongly_typed and version_tuple(trt.__version__)[0] < 11:
        # 11.x: every network is strongly typed; the flag is deprecated there and ignored
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
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
    dla_layers = None
    if spec.dla_core is not None:
        dla_layers = _use_dla(trt, builder, network, config, spec.dla_core)
        progress(f"DLA core {spec.dla_core}: {dla_layers} of {network.num_layers} layers can "
                 "run on the DLA, the rest falls back to the GPU")
    notes = []
    if spec.timing_cache is not None:
        notes += _attach_timing_cache(config, spec.timing_cache)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        reason = logger.errors.since(mark) or "no reason given"
        raise ConversionError(None, "TensorRT to build an engine",
                              f"the build failed ({reason[:300]})",
                              "rerun with --debug and read TensorRT's log above")
    cache = config.get_timing_cache() if spec.timing_cache is not None else None
    plan = bytes(serialized)
    dla_subgraphs, report = None, []
    if spec.dla_core is not None:
        dla_subgraphs = _dla_subgraphs(trt, plan, spec.dla_core)
        report = logger.dla_report.all_since(dla_mark)
        progress(f"the engine runs {dla_subgraphs} DLA subgraph(s) (engine inspector)")
        for line in report:
            progress(f"TensorRT, layers running on DLA: {line[:300]}")
        if dla_subgraphs == 0:
            notes.append("the engine inspector lists no DLA layer: check that the DLA "
                         "runs it (trtexec --loadEngine ... --useDLACore)")
    return BuiltEngine(plan, None if cache is None else bytes(cache.serialize()), notes,
                       dla_layers, network.num_layers, dla_subgraphs, report)


def parse_errors(onnx_bytes: bytes, strongly_typed: bool = True) -> list[str]:
    """The installed TensorRT parser's errors for ``onnx_bytes`` (none: it parses)."""
    trt = import_tensorrt()
    builder = trt.Builder(shared_logger())
    flags = 0
    if strongly_typed and version_tuple(trt.__version__)[0] < 11:
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    parser = trt.OnnxParser(builder.create_network(flags), shared_logger())
    if parser.parse(onnx_bytes):
        return []
    return [str(parser.get_error(i)) for i in range(parser.num_errors)] or ["no reason given"]


def _dla_subgraphs(trt, plan: bytes, core: int) -> int:
    """The DLA subgraphs the engine inspector lists (``dla_subgraph_count``)."""
    import json

    runtime = trt.Runtime(shared_logger())
    runtime.DLA_core = core
    engine = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        return 0
    return dla_subgraph_count(json.loads(engine.create_engine_inspector().get_engine_information(
        trt.LayerInformationFormat.JSON)))


def dla_subgraph_count(info: dict) -> int:
    """The layers of an engine inspector's JSON (DETAILED verbosity) that are DLA subgraphs:
    named "{ForeignNode[...]}", as TensorRT names the layers it hands to the DLA, and not of
    LayerType "Myelin" (GPU subgraphs TensorRT names the same way, NVIDIA/TensorRT#2576). A
    layer given by name only cannot be told apart and is not counted."""
    return sum(isinstance(layer, dict) and "ForeignNode" in str(layer.get("Name", ""))
               and str(layer.get("LayerType", "")).lower() != "myelin"
               for layer in info.get("Layers", []))


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


def _use_dla(trt, builder, network, config, core: int) -> int:
    """Put the build on DLA core ``core`` with GPU fallback; the number of network layers
    the DLA can run (``IBuilderConfig.can_run_on_DLA``). None is refused: such an engine
    would run entirely on the GPU while its sidecar says DLA."""
    if builder.num_DLA_cores <= core:
        raise BadInputError(None, f"DLA core {core}",
                            f"{builder.num_DLA_cores} DLA core(s) on this device",
                            "drop --dla-core (DLA exists on Jetson AGX/NX Orin)")
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = core
    config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    accepted = sum(bool(config.can_run_on_DLA(network.get_layer(i)))
                   for i in range(network.num_layers))
    if accepted == 0:
        raise BadInputError(None, "a network with layers the DLA can run",
                            f"none of its {network.num_layers} layers (with this precision "
                            "and shape profile)", "build for the GPU (drop --dla-core), or "
                            "build --fp16 with a static batch")
    return accepted
