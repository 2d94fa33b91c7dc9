"""``ocr-build-engine [MODEL.onnx] --fp32|--fp16|--int8``: a deployable artifact within an
accuracy budget, on TensorRT (GPU) or ONNX Runtime (CPU, or GPU execution providers)."""

from __future__ import annotations

import argparse
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ocr-build-engine", description=__doc__,
                                     epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, nargs="?", help="exported ONNX (from ocr-export)")
    precision = parser.add_mutually_exclusive_group(required=True)
    for name in ("fp32", "fp16", "int8"):
        precision.add_argument(f"--{name}", dest="precision", action="store_const", const=name)
    parser.add_argument("--backend", choices=("auto", "tensorrt", "onnxruntime"),
                        default="auto", help="auto: TensorRT if it and a GPU exist")
    parser.add_argument("-o", "--output", type=Path,
                        help="artifact path (default engines/<model>_<precision>.engine|.onnx)")
    parser.add_argument("--force", action="store_true", help="replace existing outputs")
    cal = parser.add_argument_group("INT8 calibration")
    cal.add_argument("--calib-dir", type=Path, metavar="DIR",
                     help="images (png/jpg) or .npy/.npz arrays")
    cal.add_argument("--calib-samples", type=int, default=100, metavar="N")
    cal.add_argument("--calib-method", choices=("minmax", "entropy", "percentile"),
                     default="entropy")
    cal.add_argument("--percentile", type=float, default=99.999)
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
    ver.add_argument("--val-samples", type=int, metavar="N")
    ver.add_argument("--max-miou-drop", type=float, default=1.0, help="in mIoU points")
    ver.add_argument("--min-agreement", type=float, default=0.97,
                     help="minimum fraction of pixels labelled as FP32 labels them")
    ver.add_argument("--no-verify", action="store_true", help="skip verification")
    ver.add_argument("--no-sensitivity-search", action="store_true",
                     help="fail instead of searching for layers to keep when INT8 misses")
    trt = parser.add_argument_group("TensorRT")
    trt.add_argument("--batch", type=_batch, default=(1, 1, 8), metavar="MIN:OPT:MAX")
    trt.add_argument("--workspace-mib", type=int, default=2048)
    trt.add_argument("--timing-cache", type=Path, metavar="FILE",
                     help="timing cache reused across builds (default engines/timing.cache)")
    trt.add_argument("--dla-core", type=int, metavar="N", help="build for DLA core N (Jetson)")
    trt.add_argument("--trt-builder-flags", action="store_true",
                     help="TensorRT 10.x: FP16/INT8 builder flags instead of strong typing")
    ort_group = parser.add_argument_group("ONNX Runtime")
    ort_group.add_argument("--ort-optimization", choices=("auto", "basic", "extended", "all"),
                           default="auto")
    out = parser.add_argument_group("reporting")
    out.add_argument("--json", action="store_true", help="print the sidecar as JSON")
    out.add_argument("-q", "--quiet", action="store_true")
    return parser


def _run(args: argparse.Namespace) -> int:
    from ocr_deploy.builder.pipeline import BuildRequest, build, latest_export
    from ocr_deploy.builder.backends.tensorrt import TensorRTOptions
    from ocr_deploy.precision.calibrate import CalibrationSettings
    from ocr_deploy.precision.evaluate import Budget
    from ocr_deploy.progress import Progress

    model = args.model
    if model is None:
        model = latest_export()
        Progress(0, args.quiet).note(f"no model given: using the most recent export, {model}")
    output_dir = args.output.parent if args.output else Path("engines")
    result = build(BuildRequest(
        onnx=model, precision=args.precision, backend=args.backend, output=args.output,
        force=args.force, calib_dir=args.calib_dir, calib_samples=args.calib_samples,
        calib=CalibrationSettings(method=args.calib_method, percentile=args.percentile),
        skip_unreadable=args.skip_unreadable, recalibrate=args.recalibrate,
        calib_cache=args.calib_cache, quantize_attention=args.quantize_attention,
        keep_fp32=args.keep_fp32, verify=not args.no_verify, val_dir=args.val_dir,
        val_samples=args.val_samples,
        budget=Budget(args.max_miou_drop, args.min_agreement),
        sensitivity_search=not args.no_sensitivity_search,
        ort_optimization=args.ort_optimization,
        tensorrt=TensorRTOptions(batch=args.batch, workspace_mib=args.workspace_mib,
                                 timing_cache=args.timing_cache or output_dir / "timing.cache",
                                 dla_core=args.dla_core, builder_flags=args.trt_builder_flags),
        quiet=args.quiet or args.json))
    if args.json:
        print_json(result.info)
    else:
        verification = result.info.get("verification", {}).get("accuracy")
        line = f"built {result.artifact} ({result.info['backend']}, {args.precision}"
        if verification:
            line += f", agreement {verification['agreement']:.4%}"
            if verification.get("miou") is not None:
                line += f", mIoU drop {verification['miou_drop']:.2f} points"
        print(line + f") and {result.sidecar.name} in {result.info['seconds']:.1f} s")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``ocr-build-engine``."""
    return run_command("ocr-build-engine", _run, build_parser(), argv)
