"""``ocr-export MODEL [-o OUT.onnx]``: Keras OCRNet to a parity-verified ONNX."""

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
)
from ocr_deploy.memory_budget import add_memory_budget

EPILOG = """exit codes: 0 exported and verified; 2 bad input or usage; 3 parity over tolerance
(the model is kept as NAME.parity-failed.onnx); 4 the converter failed; 6 no space or no
permission to write; 7 out of memory (a smaller --memory-budget or fewer samples);
1 internal error."""


def build_parser() -> argparse.ArgumentParser:
    from ocr_deploy.backends.options import add_declared
    from ocr_deploy.export.pipeline import GRAPH, LOADING, PARITY, ExportRequest

    parser = parser_for("ocr-export", __doc__, EPILOG)
    parser.add_argument("model", type=Path, help=".h5, .keras or SavedModel directory")
    add_declared(parser, ExportRequest)
    add_force(parser)
    for group in (LOADING, GRAPH):
        add_declared(parser.add_argument_group(group), ExportRequest, group)
    check = parser.add_argument_group(PARITY)
    add_declared(check, ExportRequest, PARITY)
    add_memory_budget(check)
    add_reporting(parser, "the summary")
    return parser


def request_from_args(args: argparse.Namespace):
    """Turn parsed arguments into an ``ExportRequest``."""
    from ocr_deploy.backends.options import declared_values
    from ocr_deploy.export.pipeline import ExportRequest

    return ExportRequest(model=args.model, force=args.force, quiet=args.quiet,
                         debug=args.debug, memory_budget=args.memory_budget,
                         **declared_values(ExportRequest, args))


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
