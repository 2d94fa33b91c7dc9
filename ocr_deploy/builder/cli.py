"""``ocr-build-engine [MODEL.onnx] --fp32|--fp16|--int8``: a deployable artifact within an
accuracy budget, on TensorRT (GPU) or ONNX Runtime (CPU, or GPU execution providers).
With --end-to-end it takes uint8 camera images and returns the label map at their size."""

from __future__ import annotations

import argparse
from pathlib import Path

from ocr_deploy.cli_support import (
    EXIT_OK,
    add_force,
    add_reporting,
    parser_for,
    print_json,
    run_command,
    size_arg,
)
from ocr_deploy.errors import EXIT_BAD_INPUT, BadInputError
from ocr_deploy.memory_budget import add_memory_budget

EPILOG = """Without MODEL, the most recent export in export/ is used.
exit codes: 0 built (and verified), or every --preflight form accepted; 2 bad input or
usage, or a --preflight form refused; 3 accuracy budget missed;
4 the backend failed to build; 6 no space or no permission to write; 7 out of memory (a
smaller --memory-budget, or fewer or smaller samples); 1 internal error."""


def image_range(text: str):
    """Parse ``MINxMIN:MAXxMAX`` or ``MIN:OPT:MAX`` sizes (``480x640:1080x1920``) into
    ``ImageSizes``."""
    from ocr_deploy.contract.image_sizes import ImageSizes

    parts = text.split(":")
    try:
        sizes = [size_arg(part) for part in parts]
    except argparse.ArgumentTypeError:
        sizes = []
    if len(sizes) not in (2, 3) or not all(a <= b <= c for a, b, c in zip(
            sizes[0], sizes[-2] if len(sizes) == 3 else sizes[0], sizes[-1], strict=True)):
        raise argparse.ArgumentTypeError(
            f"expected MINxMIN:MAXxMAX (or MIN:OPT:MAX sizes), each side growing, like "
            f"480x640:1080x1920, found '{text}'")
    return ImageSizes(sizes[0], sizes[-1], sizes[1] if len(sizes) == 3 else None)


def add_end_to_end(parser: argparse.ArgumentParser) -> None:
    """The --end-to-end group, its defaults from ``builder.end_to_end.EndToEndRequest``."""
    from ocr_deploy.builder.end_to_end import EndToEndRequest
    from ocr_deploy.graph.label_maps import ARGMAX_FORMS, LABEL_FORMS

    defaults = EndToEndRequest(sizes=None)
    group = parser.add_argument_group(
        "end to end: uint8 camera images [N,H,W,3] in, uint8 labels at their size out "
        "(resize, colour order, normalisation, the model, resize back, argmax in the graph)")
    group.add_argument("--end-to-end", action="store_true",
                       help="build an end-to-end artifact (needs --image-size or "
                            "--image-range)")
    sizes = group.add_mutually_exclusive_group()
    sizes.add_argument("--image-size", type=size_arg, metavar="HxW",
                       help="the camera's fixed image size, e.g. 1024x2048 (default: none)")
    sizes.add_argument("--image-range", type=image_range, metavar="MIN:MAX",
                       help="a range of image sizes, MINxMIN:MAXxMAX (e.g. 480x640:1080x1920) "
                            "or MIN:OPT:MAX (TensorRT tunes for OPT; default OPT: MAX) "
                            "(default: none)")
    group.add_argument("--bgr", action="store_true",
                       help="images in BGR order (OpenCV, DeepStream); default RGB")
    group.add_argument("--scores", action="store_true", default=defaults.scores,
                       help="also output float32 scores [N,H,W,K] at the image size")
    group.add_argument("--e2e-labels", choices=("auto", "dense", "boundary"),
                       default=defaults.labels_form,
                       help="how labels reach the image size; auto: per backend "
                            f"({'/'.join(LABEL_FORMS)}, docs/end_to_end.md)")
    group.add_argument("--e2e-argmax", choices=("auto", *ARGMAX_FORMS),
                       default=defaults.argmax_form,
                       help="argmax op or comparison chain; auto: per backend")


def end_to_end_request(args: argparse.Namespace):
    """The ``EndToEndRequest`` the flags ask for (None without --end-to-end); its flags
    without --end-to-end, or --end-to-end without a size, are an error."""
    from ocr_deploy.builder.end_to_end import EndToEndRequest
    from ocr_deploy.contract.image_sizes import ImageSizes

    defaults = EndToEndRequest(sizes=None)
    given = [flag for flag, value, default in (
        ("--image-size", args.image_size, None), ("--image-range", args.image_range, None),
        ("--bgr", args.bgr, False), ("--scores", args.scores, defaults.scores),
        ("--e2e-labels", args.e2e_labels, defaults.labels_form),
        ("--e2e-argmax", args.e2e_argmax, defaults.argmax_form)) if value != default]
    if not args.end_to_end:
        if given:
            raise BadInputError(None, f"{', '.join(given)} with --end-to-end",
                                f"{', '.join(given)} without it",
                                "add --end-to-end, or drop the option(s)")
        return None
    if args.image_size is None and args.image_range is None:
        raise BadInputError(None, "--image-size HxW or --image-range MIN:MAX with "
                            "--end-to-end", "neither", "give the camera's image size")
    sizes = ImageSizes.fixed(*args.image_size) if args.image_size else args.image_range
    return EndToEndRequest(sizes, "BGR" if args.bgr else "RGB", args.scores,
                           args.e2e_labels, args.e2e_argmax)


def add_preflight(parser: argparse.ArgumentParser) -> None:
    """The --preflight group (``builder.preflight``)."""
    from ocr_deploy.backends.tensorrt.preflight import DEFAULT_VERSION

    group = parser.add_argument_group(
        "TensorRT preflight, without TensorRT: each graph the build would hand TensorRT's ONNX "
        "parser (the core, the end-to-end graph if asked, per precision) checked against "
        "NVIDIA's published parser rules: operators and their data types, tensor types (no "
        "float64 or 16-bit integers, uint8 only at the edges), uint8 casts, Q/DQ zero points "
        "and axes, the Attention op; with --dla-core, the layers DLA's published restrictions "
        "leave to the GPU. Only a GPU with TensorRT can check kernels, fusions, speed, memory "
        "and accuracy")
    group.add_argument("--preflight", action="store_true",
                       help="check the graphs (needs --backend tensorrt), build nothing, "
                            "write nothing; exit 0 accepted, 2 refused")
    group.add_argument("--trt-version", metavar="X.Y",
                       help="the TensorRT version to judge for, e.g. 10.3 (JetPack 6) or "
                            f"10.15 (default: the installed TensorRT's, else {DEFAULT_VERSION})")


def _preflight(args: argparse.Namespace, request) -> int:
    """``--preflight``: the forms' verdicts on stdout (JSON with --json)."""
    from ocr_deploy.builder.preflight import preflight_forms, summary
    from ocr_deploy.builder.request import PRECISIONS
    from ocr_deploy.progress import Progress

    if args.backend != "tensorrt":
        raise BadInputError(None, "--backend tensorrt with --preflight",
                            f"--backend {args.backend}", "add --backend tensorrt")
    quiet = Progress(0, args.quiet or args.json)
    result = preflight_forms(request, (args.precision,) if args.precision else PRECISIONS,
                             args.trt_version, quiet.note)
    if args.json:
        print_json(result)
    else:
        print("\n".join(summary(result)))
    return EXIT_OK if result["accepted"] else EXIT_BAD_INPUT


def build_parser() -> argparse.ArgumentParser:
    from ocr_deploy.backends import BACKENDS
    from ocr_deploy.backends.options import add_arguments, add_declared
    from ocr_deploy.builder.request import CALIBRATION, VERIFICATION, BuildRequest

    parser = parser_for("ocr-build-engine", __doc__, EPILOG)
    parser.add_argument("model", type=Path, nargs="?",
                        help="exported ONNX (default: the most recent one in export/)")
    precision = parser.add_mutually_exclusive_group()
    for name in ("fp32", "fp16", "int8"):
        precision.add_argument(f"--{name}", dest="precision", action="store_const", const=name,
                               help=f"build in {name.upper()} (one is required, except with "
                                    "--preflight: default all three)")
    add_declared(parser, BuildRequest)
    add_force(parser, "an existing artifact and its sidecar")
    add_declared(parser.add_argument_group("INT8 calibration (streamed: memory does not grow "
                                           "with the number of samples)"),
                 BuildRequest, CALIBRATION)
    add_declared(parser.add_argument_group("verification: the built artifact in its own "
                                           "runner against FP32, within an accuracy budget"),
                 BuildRequest, VERIFICATION)
    add_memory_budget(parser.add_argument_group("memory"))
    add_end_to_end(parser)
    add_preflight(parser)
    for backend in BACKENDS:
        add_arguments(parser, f"{backend.name} backend", backend.options_type, backend.name)
    add_reporting(parser, "the sidecar")
    return parser


def _run(args: argparse.Namespace) -> int:
    from ocr_deploy.backends import BACKENDS
    from ocr_deploy.backends.options import declared_values, from_args
    from ocr_deploy.builder.pipeline import BuildRequest, build, latest_export
    from ocr_deploy.progress import Progress

    end_to_end = end_to_end_request(args)
    if not args.preflight and args.trt_version:
        raise BadInputError(None, "--trt-version with --preflight", "--trt-version alone",
                            "add --preflight")
    model = args.model
    if model is None:
        model = latest_export()
        Progress(0, args.quiet).note(f"no model given: using the most recent export, {model}")
    request = BuildRequest(
        onnx=model, precision=args.precision, force=args.force,
        **declared_values(BuildRequest, args),
        backend_options={b.name: from_args(b.options_type, args, b.name) for b in BACKENDS},
        end_to_end=end_to_end, memory_budget=args.memory_budget, quiet=args.quiet)
    if args.preflight:
        return _preflight(args, request)
    result = build(request)
    if args.json:
        print_json(result.info)
    else:
        print(_summary(result, result.record.precision))
    return EXIT_OK


def _summary(result, precision: str) -> str:
    record = result.record
    line = f"built {result.artifact} ({record.backend}, {precision}"
    verification = record.verification or {}
    accuracy = verification.get("accuracy")
    if accuracy:
        line += f", agreement {accuracy['agreement']:.4%}"
        if accuracy.get("miou_drop") is not None:
            line += f", mIoU drop {accuracy['miou_drop']:.2f} points"
        runner = accuracy.get("runner", {})
        where = ", ".join(runner.get("providers") or [runner.get("device", "")])
        line += f" (verified by {runner.get('backend')} on {where}: {verification['data']})"
    else:
        line += ", not verified"
    parity = record.end_to_end_parity
    if parity:
        line += (f", end to end: labels as Segmenter.predict on {parity['agreement']:.4%} "
                 f"of pixels ({parity['agreement_excl_ties']:.4%} outside ties)")
    coverage = record.int8_coverage
    if coverage:
        line += f", {coverage['integer_mac_share']:.1%} of MACs in integer kernels"
    memory = record.memory
    if memory:
        from ocr_deploy.memory_budget import format_size

        line += (f", memory budget {format_size(memory['budget']['bytes'])}: "
                 f"{memory['verification_batch']} sample(s) verified at once")
    return line + f") and {result.sidecar.name} in {record.seconds:.1f} s"


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``ocr-build-engine``."""
    return run_command("ocr-build-engine", _run, build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
