"""TensorRT backend: an engine from the precision ONNX (TensorRT 10.x and 11.x).

Thin: the build itself is ``ocr_deploy.nvidia.tensorrt.build_engine``. **Not run by this
project yet** (no GPU or TensorRT on the development machines): see README.

- Strongly typed by default: the precision is the ONNX's (Cast nodes, Q/DQ).
- ``builder_flags`` (10.x only): weakly typed with ``BuilderFlag.FP16``/``INT8``.
- DLA (``dla_core``) runs FP16/INT8 only: an FP32 build for DLA is refused; on 10.x it
  uses the weakly typed FP16 (+INT8) path NVIDIA documents (trtexec, samples/common) with
  GPU fallback; TensorRT 11.0-11.3 have no DLA support.
- A timing cache (default ``<artifact folder>/timing.cache``) is read if present and
  written back; a stale or foreign one is replaced with a note instead of failing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ocr_deploy.builder.backends.base import BuildBackend
from ocr_deploy.errors import BadInputError
from ocr_deploy.files import write_bytes_atomic
from ocr_deploy.metadata import ExportMetadata
from ocr_deploy.nvidia import tensorrt as trt_support
from ocr_deploy.precision.placement import TENSORRT, Placement

TIMING_CACHE_NAME = "timing.cache"
WEAK_TYPING_FLAGS = {"fp16": ["FP16"], "int8": ["INT8", "FP16"]}  # BuilderFlag names, 10.x


@dataclass
class TensorRTOptions:
    """Engine build settings (the CLI's defaults come from here)."""

    batch: tuple[int, int, int] = (1, 1, 8)  # min, opt, max
    workspace_mib: int = 2048
    timing_cache: Path | None = None  # None: <artifact folder>/timing.cache
    use_timing_cache: bool = True
    dla_core: int | None = None
    builder_flags: bool = False  # TensorRT 10.x only: weakly typed + FP16/INT8 flags

    def timing_cache_path(self, artifact: Path) -> Path | None:
        """Where the timing cache is read and written, or None when it is off."""
        if not self.use_timing_cache:
            return None
        return self.timing_cache or Path(artifact).parent / TIMING_CACHE_NAME


class TensorRTBuild(BuildBackend):
    """A serialised TensorRT engine (``.engine``)."""

    name = "tensorrt"
    label = "TensorRT and a CUDA GPU"
    suffix = ".engine"

    def availability(self) -> tuple[bool, str]:
        return trt_support.availability()

    def placement(self) -> Placement:
        return TENSORRT

    def build(self, model_bytes: bytes, target: Path, artifact: Path, meta: ExportMetadata,
              precision: str, request, progress: Callable[[str], None]) -> dict:
        import tensorrt as trt

        from ocr_deploy.nvidia.cuda import device_info

        options: TensorRTOptions = request.tensorrt
        version = trt.__version__
        flags = _weak_typing_flags(options, precision, version)
        if meta.attention.get("form") == "attention" and \
                trt_support.version_tuple(version)[:2] < (10, 14):
            raise BadInputError(None, "TensorRT >= 10.14 for an ONNX with the Attention op",
                                f"TensorRT {version}", "re-export with --attention decomposed")
        cache_path = options.timing_cache_path(artifact)
        cache_bytes = cache_path.read_bytes() if cache_path and cache_path.is_file() else b""
        profiles = {meta.input_name: tuple(_shape(meta, b) for b in options.batch)}
        progress(f"building the engine with TensorRT {version} (minutes for large models)")
        built = trt_support.build_engine(trt_support.EngineSpec(
            model_bytes, profiles, options.workspace_mib, flags,
            cache_bytes if cache_path else None, options.dla_core), progress=progress)
        for note in built.notes:
            progress(f"warning: {cache_path}: {note}")
        Path(target).write_bytes(built.plan)
        if cache_path and built.timing_cache is not None:
            write_bytes_atomic(cache_path, built.timing_cache)
        return {"backend": self.name, "tensorrt_version": version, **device_info(),
                "strongly_typed": not flags, "builder_flags": flags,
                "profiles": [{"input": meta.input_name, "min": _shape(meta, options.batch[0]),
                              "opt": _shape(meta, options.batch[1]),
                              "max": _shape(meta, options.batch[2])}],
                "workspace_mib": options.workspace_mib, "dla_core": options.dla_core,
                "timing_cache": str(cache_path) if cache_path else None}

    def unused_options(self, request) -> list[str]:
        return ["--ort-optimization"] if request.ort_optimization != "auto" else []


def _weak_typing_flags(options: TensorRTOptions, precision: str, version: str) -> list[str]:
    """The precision builder flags to set: none (strongly typed) unless 10.x builder flags
    were asked for or DLA needs them; refuses what the TensorRT version cannot do."""
    major, minor = (*trt_support.version_tuple(version), 0, 0)[:2]
    if options.dla_core is not None:
        if precision == "fp32":
            raise BadInputError(None, "--fp16 or --int8 for DLA (it has no FP32 kernels)",
                                "--fp32 with --dla-core", "build FP16, or drop --dla-core")
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


def _shape(meta: ExportMetadata, batch: int) -> tuple[int, int, int, int]:
    if meta.input_layout == "NCHW":
        return batch, meta.input_channels, meta.input_height, meta.input_width
    return batch, meta.input_height, meta.input_width, meta.input_channels
