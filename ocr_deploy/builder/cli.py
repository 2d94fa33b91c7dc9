"""``ocr-build-engine [MODEL.onnx] --fp32|--fp16|--int8``: a deployable artifact within an
accuracy budget, on TensorRT (GPU) or ONNX Runtime (CPU, or GPU execution providers)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ocr_deploy.cli_support import EXIT_OK, print_json, run_command

EPILOG = """Without MODEL, the most recent export in export/ is used.
exit codes: 0 built (and verified); 2 bad input or usage; 3 accuracy budget missed;
4 the backend failed to build; 1 internal error."""


def _batch(text: str) -> tuple[int, int, int]:
    try:
        values = tuple(int(v) for v in text.split(":"))
        if len(values) != 3 or not 1 <= values[0] <= values[1] <= values[2]:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN:OPT:MAX with 1 <= MIN <= OPT <= MAX, "
                                         f"found '{text}'") from None
    return values


def _bounded(kind, low: float, high: float, what: str):
    """An argparse type: ``kind`` within ``[low, high]`` (finite)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected {what}, found '{text}'")
        return value
    return parse


def _names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, found '{text}'")
    return names


def build_parser() -> argparse.ArgumentParser:
    from ocr_deploy.builder.backends import CHOICES
    from ocr_deploy.builder.backends.onnxruntime import LEVELS
    from ocr_deploy.builder.backends.tensorrt import TensorRTOptions
    from ocr_deploy.builder.pipeline import BuildRequest
    from ocr_deploy.precision.calibrate import METHODS, CalibrationSettings
    from ocr_deploy.precision.evaluate import IGNORE_INDEX, Budget

    request, calib, budget, trt = BuildRequest(onnx=Path()), CalibrationSettings(), Budget(), \
        TensorRTOptions()
    parser = argparse.ArgumentParser(prog="ocr-build-engine", description=__doc__,
                                     epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, nargs="?",
                        help="exported ONNX (default: the most recent one in export/)")
    precision = parser.add_mutually_exclusive_group(required=True)
    for name in ("fp32", "fp16", "int8"):
        precision.add_argument(f"--{name}", dest="precision", action="store_const", const=name,
                               help=f"build in {name.upper()}")
    parser.add_argument("--backend", choices=CHOICES, default=request.backend,
                        help="auto: TensorRT if it and a GPU exist, else ONNX Runtime "
                             "(default: %(default)s)")
    parser.add_argument("-o", "--output", type=Path,
                        help="artifact path (default engines/<model>_<precision>.engine|.onnx)")
    parser.add_argument("--force", action="store_true", help="replace existing outputs")
    cal = parser.add_argument_group("INT8 calibration (streamed: memory does not grow with "
                                    "the number of samples)")
    cal.add_argument("--calib-dir", type=Path, metavar="DIR",
                     help="images (png/jpg) or .npy/.npz arrays (required for --int8)")
    cal.add_argument("--calib-samples", type=_bounded(int, 1, 1 << 30, "a count >= 1"),
                     default=request.calib_samples, metavar="N",
                     help="samples to calibrate on (default: %(default)s)")
    cal.add_argument("--calib-method", choices=METHODS, default=calib.method,
                     help="range method (default: %(default)s)")
    cal.add_argument("--percentile", type=_bounded(float, 1e-9, 100, "a percentile in (0, 100]"),
                     default=calib.percentile,
                     help="for --calib-method percentile (default: %(default)s)")
    cal.add_argument("--calib-memory-mib", type=_bounded(int, 16, 1 << 20, "MiB >= 16"),
                     default=request.calib_memory_mib, metavar="MIB",
                     help="activations held per sample while calibrating; the model runs "
                          "in segments that fit (default: %(default)s)")
    cal.add_argument("--calib-providers", type=_names, default=request.calib_providers,
                     metavar="LIST",
                     help="ONNX Runtime execution providers to calibrate on, comma-separated "
                          "(cuda, cpu or full names; default: CUDA where onnxruntime-gpu "
                          "has it, else CPU)")
    cal.add_argument("--skip-unreadable", action="store_true",
                     help="skip unreadable calibration files with a warning")
    cal.add_argument("--recalibrate", action="store_true", help="ignore the calibration cache")
    cal.add_argument("--calib-cache", type=Path, metavar="DIR",
                     help="calibration cache folder (default <output folder>/.calibration-cache)")
    cal.add_argument("--quantize-attention", action="store_true",
                     help="also quantise the attention core and the classifier")
    cal.add_argument("--keep-fp32", nargs="+", default=[], metavar="NODE",
                     help="ONNX node names to keep in higher precision")
    ver = parser.add_argument_group("accuracy budget")
    ver.add_argument("--val-dir", type=Path, metavar="DIR",
                     help="validation images with masks in DIR/labels/ (same file names)")
    ver.add_argument("--val-samples", type=_bounded(int, 1, 1 << 30, "a count >= 1"),
                     metavar="N", help="validation samples (default: all)")
    ver.add_argument("--max-miou-drop", type=_bounded(float, 0, 100, "mIoU points in [0, 100]"),
                     default=budget.max_miou_drop,
                     help="in mIoU points (default: %(default)s)")
    ver.add_argument("--min-agreement", type=_bounded(float, 0, 1, "a fraction in [0, 1]"),
                     default=budget.min_agreement,
                     help="minimum fraction of (non-tied) pixels labelled as FP32 labels them "
                          "(default: %(default)s)")
    ver.add_argument("--ignore-index", type=_bounded(int, -1, 65535, "a label value, or -1"),
                     default=IGNORE_INDEX,
                     help="mask value left out of mIoU and agreement; -1: none "
                          "(default: %(default)s)")
    ver.add_argument("--no-verify", action="store_true", help="skip verification")
    ver.add_argument("--no-sensitivity-search", action="store_true",
                     help="fail instead of searching for layers to keep when INT8 misses")
    tensorrt = parser.add_argument_group("TensorRT")
    tensorrt.add_argument("--batch", type=_batch, default=trt.batch, metavar="MIN:OPT:MAX",
                          help="optimisation profile batch sizes (default: "
                               f"{':'.join(map(str, trt.batch))})")
    tensorrt.add_argument("--workspace-mib", type=_bounded(int, 1, 1 << 24, "MiB >= 1"),
                          default=trt.workspace_mib, help="(default: %(default)s)")
    tensorrt.add_argument("--timing-cache", type=Path, metavar="FILE",
                          help="timing cache reused across builds (default: timing.cache "
                               "beside the artifact)")
    tensorrt.add_argument("--no-timing-cache", action="store_true",
                          help="build without a timing cache")
    tensorrt.add_argument("--dla-core", type=_bounded(int, 0, 15, "a DLA core number"),
                          metavar="N", help="build for DLA core N (Jetson; FP16/INT8 only)")
    tensorrt.add_argument("--trt-builder-flags", action="store_true",
                          help="TensorRT 10.x: FP16/INT8 builder flags instead of strong typing")
    ort_group = parser.add_argument_group("ONNX Runtime")
    ort_group.add_argument("--ort-optimization", choices=LEVELS,
                           default=request.ort_optimization,
                           help="graph optimisation level saved in the artifact "
                                "(default: %(default)s)")
    out = parser.add_argument_group("reporting")
    out.add_argument("--json", action="store_true", help="print the sidecar as JSON")
    out.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    return parser


def _run(args: argparse.Namespace) -> int:
    from ocr_deploy.builder.backends.tensorrt import TensorRTOptions
    from ocr_deploy.builder.pipeline import BuildRequest, build, latest_export
    from ocr_deploy.precision.calibrate import CalibrationSettings
    from ocr_deploy.precision.evaluate import Budget
    from ocr_deploy.progress import Progress

    model = args.model
    if model is None:
        model = latest_export()
        Progress(0, args.quiet).note(f"no model given: using the most recent export, {model}")
    result = build(BuildRequest(
        onnx=model, precision=args.precision, backend=args.backend, output=args.output,
        force=args.force, calib_dir=args.calib_dir, calib_samples=args.calib_samples,
        calib=CalibrationSettings(method=args.calib_method, percentile=args.percentile),
        calib_memory_mib=args.calib_memory_mib, calib_providers=args.calib_providers,
        skip_unreadable=args.skip_unreadable, recalibrate=args.recalibrate,
        calib_cache=args.calib_cache, quantize_attention=args.quantize_attention,
        keep_fp32=args.keep_fp32, verify=not args.no_verify, val_dir=args.val_dir,
        val_samples=args.val_samples,
        budget=Budget(args.max_miou_drop, args.min_agreement),
        ignore_index=None if args.ignore_index < 0 else args.ignore_index,
        sensitivity_search=not args.no_sensitivity_search,
        ort_optimization=args.ort_optimization,
        tensorrt=TensorRTOptions(batch=args.batch, workspace_mib=args.workspace_mib,
                                 timing_cache=args.timing_cache,
                                 use_timing_cache=not args.no_timing_cache,
                                 dla_core=args.dla_core, builder_flags=args.trt_builder_flags),
        quiet=args.quiet or args.json))
    if args.json:
        print_json(result.info)
    else:
        print(_summary(result, args.precision))
    return EXIT_OK


def _summary(result, precision: str) -> str:
    info = result.info
    line = f"built {result.artifact} ({info['backend']}, {precision}"
    verification = info.get("verification", {}).get("accuracy")
    if verification:
        line += f", agreement {verification['agreement']:.4%}"
        if verification.get("miou_drop") is not None:
            line += f", mIoU drop {verification['miou_drop']:.2f} points"
    coverage = info.get("int8_coverage")
    if coverage:
        line += f", {coverage['integer_mac_share']:.1%} of MACs in integer kernels"
    return line + f") and {result.sidecar.name} in {info['seconds']:.1f} s"


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``ocr-build-engine``."""
    return run_command("ocr-build-engine", _run, build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
