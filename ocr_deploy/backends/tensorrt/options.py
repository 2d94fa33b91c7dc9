"""TensorRT build options (``ocr-build-engine``'s "TensorRT" flags)."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

from ocr_deploy.backends.options import option

TIMING_CACHE_NAME = "timing.cache"
DYNAMIC_PROFILE = (1, 1, 8)  # min, opt, max batch for an ONNX with a dynamic batch


def batch_profile(text: str) -> tuple[int, int, int]:
    """Parse ``MIN:OPT:MAX`` with ``1 <= MIN <= OPT <= MAX``."""
    try:
        values = tuple(int(v) for v in text.split(":"))
        if len(values) != 3 or not 1 <= values[0] <= values[1] <= values[2]:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN:OPT:MAX with 1 <= MIN <= OPT <= MAX, "
                                         f"found '{text}'") from None
    return values


def _bounded_int(low: int, high: int, what: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = math.nan
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected {what}, found '{text}'")
        return value
    return parse


@dataclass(frozen=True)
class TensorRTOptions:
    """Engine build settings; ``batch`` None means: from the ONNX (its static batch b as
    b:b:b, else 1:1:8; 1:1:1 for DLA, which takes no dynamic shapes, and for an end-to-end
    image size range)."""

    batch: tuple[int, int, int] | None = option(
        None, "--batch-profile", parse=batch_profile, metavar="MIN:OPT:MAX",
        help="optimisation profile batch sizes", shown="the ONNX's static batch, else "
        f"{':'.join(map(str, DYNAMIC_PROFILE))}; 1:1:1 with --dla-core",
        renamed_from="--batch")
    workspace_mib: int = option(2048, "--workspace-mib", parse=_bounded_int(1, 1 << 24,
                                                                            "MiB >= 1"),
                                metavar="MIB", help="builder workspace limit")
    timing_cache: Path | None = option(
        None, "--timing-cache", parse=Path, metavar="FILE",
        help="timing cache reused across builds", shown=f"{TIMING_CACHE_NAME} beside the "
        "artifact")
    use_timing_cache: bool = option(True, "--no-timing-cache", action="store_false",
                                    help="build without a timing cache")
    dla_core: int | None = option(
        None, "--dla-core", parse=_bounded_int(0, 15, "a DLA core number"), metavar="N",
        help="build for DLA core N (Jetson AGX/NX Orin; FP16 only, a static batch)",
        shown="none: the GPU")
    builder_flags: bool = option(False, "--trt-builder-flags", action="store_true",
                                 help="TensorRT 10.x: FP16/INT8 builder flags instead of "
                                      "strong typing")
    emit_onnx: Path | None = option(
        None, "--emit-onnx", parse=Path, metavar="OUT.onnx",
        help="cross-build: write the graph TensorRT's parser would get (forms, FP16 base, "
             "Q/DQ with their scales) and its sidecar instead of an engine, verified on ONNX "
             "Runtime as a proxy; needs no TensorRT. On the device: ocr-build-engine "
             "OUT.onnx --backend tensorrt (no precision flag: the graph's own)",
        shown="none: build an engine")

    def timing_cache_path(self, artifact: Path) -> Path | None:
        """Where the timing cache is read and written, or None when it is off."""
        if not self.use_timing_cache:
            return None
        return self.timing_cache or Path(artifact).parent / TIMING_CACHE_NAME
