"""``ocr-export MODEL [-o OUT.onnx]``: Keras OCRNet to a parity-verified ONNX."""

from __future__ import annotations

import argparse
from pathlib import Path

from ocr_deploy.backends import NAMES
from ocr_deploy.cli_support import (
    EXIT_OK,
    add_force,
    add_reporting,
    floats_arg,
    parser_for,
    positive_int,
    print_json,
    run_command,
    size_arg,
)
from ocr_deploy.export.convert import MAX_OPSET
from ocr_deploy.graph.attention import FORMS
from ocr_deploy.memory_budget import add_memory_budget

EPILOG = """exit codes: 0 exported and verified; 2 bad input or usage; 3 parity over tolerance
(the model is kept as NAME.parity-failed.onnx); 4 the converter failed; 6 no space or no
permission to write; 7 out of memory (a smaller --memory-budget or fewer samples);
1 internal error."""


def build_parser() -> argparse.ArgumentParser:
    from ocr_deploy.export.pipeline import ExportRequest

    request = ExportRequest(model=Path())
    parser = parser_for("ocr-export", __doc__, EPILOG)
    parser.add_argument("model", type=Path, help=".h5, .keras or SavedModel directory")
    parser.add_argument("-o", "--output", type=Path,
                        help="output .onnx (default: export/<model name>.onnx)")
    add_force(parser)
    load = parser.add_argument_group("loading")
    load.add_argument("--custom-objects", type=Path, metavar="FILE.py|MODULE",
                      help="Python file defining or importing the model's custom layers, or "
                      "an importable module name (e.g. keras_hub, mylib.layers); every class "
                      "and function in its namespace is used (default: none)")
    load.add_argument("--trust-model", action="store_true",
                      help="allow Lambda layers: loading them RUNS CODE stored in the file")
    load.add_argument("--card", type=Path,
                      help="model card JSON (default: MODEL.card.json beside the model)")
    graph = parser.add_argument_group("graph")
    graph.add_argument("--output-name", metavar="NAME",
                       help="Keras output to export as logits (default: found automatically)")
    graph.add_argument("--keep-aux", action="store_true",
                       help="also export the auxiliary soft-region output as aux_logits")
    graph.add_argument("--argmax", action="store_true",
                       help="add an int32 'labels' output (per-pixel argmax) in the graph")
    graph.add_argument("--labels-only", action="store_true",
                       help="export only 'labels' (implies --argmax)")
    graph.add_argument("--nchw", action="store_true",
                       help="NCHW input (and logits) layout instead of NHWC")
    graph.add_argument("--opset", type=int, default=request.opset,
                       help=f"ONNX opset (tf2onnx supports up to {MAX_OPSET})")
    graph.add_argument("--attention", choices=FORMS, default=request.attention,
                       help="attention-core form: decomposed (MatMul-Softmax-MatMul, scale on "
                       "Q, fusable by TensorRT), attention (ONNX Attention op, opset 23, "
                       "TensorRT >= 10.14), keep (as converted), auto (measured best for "
                       "--attention-target; rewrites the cores it understands, leaves the "
                       "rest and never fails the export)")
    graph.add_argument("--attention-target", choices=NAMES, default=request.attention_target,
                       help="backend that --attention auto chooses for")
    graph.add_argument("--input-size", type=size_arg, metavar="HxW",
                       help="input size, required when the model's is dynamic (default: the "
                       "model's own)")
    graph.add_argument("--normalize-in-graph", action="store_true",
                       help="put (pixel - mean) / std in the graph: the ONNX takes 0..255 pixels")
    graph.add_argument("--mean", type=floats_arg, metavar="R,G,B",
                       help="normalisation mean in pixel units (default: from the card, else 0); "
                       "also sets the parity inputs' range (default there: the model's own "
                       "Rescaling/Normalization layers, else ImageNet's mean/std)")
    graph.add_argument("--std", type=floats_arg, metavar="R,G,B",
                       help="normalisation std in pixel units (default: from the card, else 1)")
    check = parser.add_argument_group("parity check")
    check.add_argument("--samples", type=Path, metavar="DIR",
                       help="also compare on these images (png/jpg, resized to the input; "
                       "default: none)")
    check.add_argument("--parity-samples", type=positive_int, default=request.random_samples,
                       metavar="N", help="seeded random images to compare on")
    check.add_argument("--seed", type=int, default=request.seed,
                       help="seed of the random parity images")
    check.add_argument("--atol", type=float, default=request.atol,
                       help="absolute tolerance of the scores")
    check.add_argument("--rtol", type=float, default=request.rtol,
                       help="relative to the logit scale (max |reference|)")
    check.add_argument("--min-agreement", type=float, default=request.min_agreement,
                       help="minimum fraction of pixels with equal labels, ties aside")
    add_memory_budget(check)
    add_reporting(parser, "the summary")
    return parser


def request_from_args(args: argparse.Namespace):
    """Turn parsed arguments into an ``ExportRequest``."""
    from ocr_deploy.export.pipeline import ExportRequest

    return ExportRequest(
        model=args.model, output=args.output, force=args.force,
        custom_objects=args.custom_objects, trust_model=args.trust_model,
        output_name=args.output_name, keep_aux=args.keep_aux, argmax=args.argmax,
        labels_only=args.labels_only, nchw=args.nchw, opset=args.opset,
        attention=args.attention, attention_target=args.attention_target,
        input_size=args.input_size, card=args.card, mean=args.mean, std=args.std,
        normalize_in_graph=args.normalize_in_graph, samples_dir=args.samples,
        random_samples=args.parity_samples, seed=args.seed, atol=args.atol, rtol=args.rtol,
        min_agreement=args.min_agreement, quiet=args.quiet, debug=args.debug,
        memory_budget=args.memory_budget)


def _run(args: argparse.Namespace) -> int:
    from ocr_deploy.tf_env import apply_settings

    apply_settings()  # before anything (the user's --custom-objects) imports TensorFlow
    from ocr_deploy.export.pipeline import export_model

    result = export_model(request_from_args(args))
    if args.json:
        print_json(result.to_dict())
    else:
        print(result.parity.table())
        from ocr_deploy.memory_budget import format_size

        print(f"wrote {result.onnx_path} and {result.report_path} "
              f"in {result.timings['total']:.1f} s (parity {result.memory['parity_batch']} "
              f"image(s) at once, memory budget "
              f"{format_size(result.memory['budget']['bytes'])})")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``ocr-export``."""
    return run_command("ocr-export", _run, build_parser(), argv)
