"""The TensorRT artifact: an engine from the precision ONNX (TensorRT 10.x and 11.x).

Thin: the TensorRT calls are ``engine.build_engine``. **Not run by this project yet** (no
GPU or TensorRT on the development machines): see README, "What has and has not run where".

- Strongly typed by default: the precision is the ONNX's (Cast nodes, Q/DQ).
- ``builder_flags`` (10.x only): weakly typed with ``BuilderFlag.FP16``/``INT8``.
- The profile: the ONNX's static batch b as b:b:b (TensorRT refuses any other profile for
  a static input), else ``--batch-profile`` or 1:1:8 (1:1:1 for an end-to-end image size
  range: a context allocates for the profile's largest shapes, and batch 8 of 1080x1920
  score maps alone would take gigabytes). An end-to-end graph's uint8 image
  input gets the batch profile and its image sizes: a fixed size, or a range's min, opt
  (default: the max) and max as the profile's height and width.
- DLA (``dla_core``): FP16 only, on a static profile (DLA takes no dynamic shapes; with a
  dynamic one every layer silently falls back to the GPU), through the weakly typed FP16
  path NVIDIA documents for 10.x, with GPU fallback; an engine none of whose layers can run
  on the DLA is refused. INT8 on DLA needs TensorRT's implicit (calibrator) quantisation on
  10.x and a Q/DQ-everywhere placement on 11.4.1, neither of which is built here: refused.
  TensorRT 11.0-11.3 have no DLA.
- Before parsing, the preflight (``preflight``: NVIDIA's published parser rules for this
  TensorRT version): findings are exit 2, one line each, unless the parser takes the graph
  anyway, when they are warnings and the parser decides.
- A timing cache (default ``<artifact folder>/timing.cache``) is read if present and
  written back; a stale or foreign one is replaced with a note instead of failing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import onnx

from ocr_deploy.backends.tensorrt import engine
from ocr_deploy.backends.tensorrt.library import version_tuple
from ocr_deploy.backends.tensorrt.options import DYNAMIC_PROFILE, TensorRTOptions
from ocr_deploy.backends.tensorrt.preflight import check_before_parse
from ocr_deploy.contract.metadata import ExportMetadata
from ocr_deploy.errors import BadInputError
from ocr_deploy.files import write_bytes_atomic
from ocr_deploy.warning_channel import warn

WEAK_TYPING_FLAGS = {"fp16": ["FP16"], "int8": ["INT8", "FP16"]}  # BuilderFlag names, 10.x
RANGE_PROFILE = (1, 1, 1)  # the default batch profile for an end-to-end image size range


def static_batch(model: onnx.ModelProto) -> int | None:
    """The input's batch size when the ONNX fixes it (a fixed-batch export), else None."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    return dims[0].dim_value if dims and dims[0].HasField("dim_value") else None


def resolve_options(options: TensorRTOptions, model: onnx.ModelProto, source: Path,
                    note: Callable[[str], None]) -> TensorRTOptions:
    """The profile this ONNX can take: its static batch, else ``--batch-profile`` or 1:1:8 (1:1:1
    for DLA). A profile that contradicts a static batch, or a dynamic one for DLA, is
    refused (exit 2)."""
    fixed = static_batch(model)
    profile = options.batch
    if fixed is not None:
        if profile is not None and profile != (fixed,) * 3:
            raise BadInputError(source, f"--batch-profile {fixed}:{fixed}:{fixed} (the ONNX's "
                                f"input has a static batch of {fixed})",
                                f"--batch-profile {':'.join(map(str, profile))}",
                                "drop --batch-profile, or re-export with a dynamic batch")
        profile = (fixed,) * 3
        if options.batch is None:
            note(f"static batch {fixed} in the ONNX: profile {fixed}:{fixed}:{fixed}")
    elif profile is None:
        profile = (1, 1, 1) if options.dla_core is not None else DYNAMIC_PROFILE
    if options.dla_core is not None and len(set(profile)) != 1:
        raise BadInputError(source, "a static profile N:N:N for DLA (it takes no dynamic "
                            "shapes; layers would silently fall back to the GPU)",
                            f"--batch-profile {':'.join(map(str, profile))}",
                            "pass e.g. --batch-profile 1:1:1 with --dla-core")
    return replace(options, batch=profile)


def weak_typing_flags(options: TensorRTOptions, precision: str, version: str) -> list[str]:
    """The precision builder flags to set: none (strongly typed) unless 10.x builder flags
    were asked for or DLA needs them; refuses what the TensorRT version cannot do."""
    major, minor = (*version_tuple(version), 0, 0)[:2]
    if options.dla_core is not None:
        if precision != "fp16":
            raise BadInputError(None, "--fp16 for DLA", f"--{precision} with --dla-core",
                                "FP32: DLA has no FP32 kernels; INT8: DLA runs INT8 only "
                                "through implicit calibration, which ocr-deploy does not "
                                "use. Build --fp16 for DLA, or drop --dla-core")
        if major == 11 and minor < 4:
            raise BadInputError(None, "TensorRT 10.x (JetPack 6) or >= 11.4 for DLA",
                                f"TensorRT {version}", "drop --dla-core")
        if major == 10:
            return WEAK_TYPING_FLAGS[precision]
    if options.builder_flags:
        if major >= 11:
            raise BadInputError(None, "builder precision flags only on TensorRT 10.x",
                                f"TensorRT {version}", "drop --trt-builder-flags: TensorRT 11 "
                                "takes precision from the ONNX")
        return WEAK_TYPING_FLAGS.get(precision, [])
    return []


def size_range(meta: ExportMetadata) -> bool:
    """Whether ``meta`` is an end-to-end graph taking a range of image sizes."""
    return bool(meta.end_to_end) and len(set(meta.image_sizes())) > 1


def before_parse(model_bytes: bytes, meta: ExportMetadata, options: TensorRTOptions,
                 version: str | None, progress: Callable[[str], None],
                 parse_errors: Callable[[bytes], list[str]] | None = None) -> None:
    """The checks of the graph TensorRT's parser is about to get, the preflight of NVIDIA's
    parser rules among them: run by every engine build (``parse_errors``: the installed
    parser, which decides over the preflight's findings) and by ``--emit-onnx``
    (``cross_build``), which has no TensorRT (``version`` None: findings are refusals) —
    the one place for checks of NVIDIA's parser rules."""
    if meta.attention.get("form") == "attention":
        if version is None:
            progress("the Attention op needs TensorRT >= 10.14 on the device (JetPack 6's "
                     "10.3 refuses it)")
        elif version_tuple(version)[:2] < (10, 14):
            raise BadInputError(None, "TensorRT >= 10.14 for an ONNX with the Attention op",
                                f"TensorRT {version}", "re-export with --attention decomposed")
    if options.builder_flags and size_range(meta) and meta.precision in WEAK_TYPING_FLAGS:
        # weakly typed with FP16 allowed, TensorRT may run the resize taps computed from the
        # image size in FP16, where their values pass FP16's largest number (65504)
        raise BadInputError(None, "strong typing for an --image-range end-to-end graph (its "
                            "computed resize must stay FP32)", "--trt-builder-flags",
                            "drop --trt-builder-flags, or build with --image-size HxW")
    report = check_before_parse(model_bytes, version, parse_errors, warn)
    if report.accepted:
        progress(f"preflight: TensorRT {report.version}'s published parser rules take it")


def build_artifact(model_bytes: bytes, target: Path, artifact: Path, meta: ExportMetadata,
                   precision: str, options: TensorRTOptions,
                   progress: Callable[[str], None]) -> dict:
    """Build the engine into ``target``; return the sidecar facts. ``options`` come from
    ``resolve_options`` (their profile is set)."""
    from ocr_deploy.backends.tensorrt.library import import_tensorrt
    from ocr_deploy.cuda import device_info

    version = import_tensorrt().__version__
    flags = weak_typing_flags(options, precision, version)
    if options.dla_core is not None and meta.end_to_end \
            and len(set(meta.image_sizes())) > 1:
        raise BadInputError(None, "a fixed --image-size for DLA (it takes no dynamic shapes)",
                            "--image-range", "build with --image-size HxW, or drop --dla-core")
    before_parse(model_bytes, meta, options, version, progress,
                 lambda data: engine.parse_errors(data, strongly_typed=not flags))
    cache_path = options.timing_cache_path(artifact)
    cache_bytes = cache_path.read_bytes() if cache_path and cache_path.is_file() else b""
    batches = options.batch
    # the default object itself (resolve_options' choice), not a --batch-profile equal to it
    if batches is DYNAMIC_PROFILE and size_range(meta):
        batches = RANGE_PROFILE  # each context allocates for the profile's largest shapes
        progress(f"image size range: batch profile {':'.join(map(str, batches))} (each "
                 "execution context allocates for the largest batch and image; pass "
                 "--batch-profile for more)")
    name, shapes = profile_shapes(meta, batches)
    progress(f"building the engine with TensorRT {version} (minutes for large models)")
    built = engine.build_engine(engine.EngineSpec(
        model_bytes, {name: tuple(shapes)}, options.workspace_mib, flags,
        cache_bytes if cache_path else None, options.dla_core), progress=progress)
    for note in built.notes:
        warn(f"{cache_path}: {note}")
    Path(target).write_bytes(built.plan)
    if cache_path and built.timing_cache is not None:
        write_bytes_atomic(cache_path, built.timing_cache)
    return {"tensorrt_version": version, **device_info(), "strongly_typed": not flags,
            "builder_flags": flags,
            "profiles": [{"input": name, "min": shapes[0], "opt": shapes[1],
                          "max": shapes[2]}],
            "workspace_mib": options.workspace_mib, "dla_core": options.dla_core,
            "dla_layers": built.dla_layers, "dla_subgraphs": built.dla_subgraphs,
            "dla_report": built.dla_report,
            "network_layers": built.layers,
            "timing_cache": str(cache_path) if cache_path else None}


def profile_shapes(meta: ExportMetadata, batches: tuple[int, int, int]
                   ) -> tuple[str, list[tuple[int, int, int, int]]]:
    """The engine input's name and its (min, opt, max) shapes for these batch sizes: the
    model input's, or an end-to-end graph's uint8 ``[N, H, W, C]`` image over its sizes."""
    if meta.end_to_end:
        sides = meta.image_profile()
        return meta.end_to_end["input"], [(batch, *side, meta.input_channels)
                                          for batch, side in zip(batches, sides, strict=True)]
    return meta.input_name, [input_shape(meta, b) for b in batches]


def input_shape(meta: ExportMetadata, batch: int) -> tuple[int, int, int, int]:
    """The model input's shape for ``batch`` images, in its layout."""
    if meta.input_layout == "NCHW":
        return batch, meta.input_channels, meta.input_height, meta.input_width
    return batch, meta.input_height, meta.input_width, meta.input_channels
