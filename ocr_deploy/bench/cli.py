"""``ocr-bench ARTIFACT...``: latency and throughput of exported models side by side.

Each artifact (.onnx, TensorRT .engine, or a Keras .h5/.keras for the reference) runs at
every batch size: compute only (the backend's run on a prepared batch) and pipeline
(uint8 images of --image-size through pre-processing, the model and post-processing).
Reports min/mean/median/p90/p95/p99 latency, images/s, peak memory, and warns when runs
vary by more than 5 %.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ocr_deploy.bench.plot import plot_report
from ocr_deploy.bench.report import format_table
from ocr_deploy.bench.runner import BATCHES, ITERATIONS, WARMUP, benchmark
from ocr_deploy.cli_support import (
    EXIT_OK,
    add_renamed,
    add_reporting,
    int_list,
    name_list,
    parser_for,
    positive_int,
    print_json,
    run_command,
    size_arg,
)


def build_parser() -> argparse.ArgumentParser:
    parser = parser_for("ocr-bench", __doc__)
    parser.add_argument("artifacts", nargs="+", type=Path, metavar="ARTIFACT",
                        help=".onnx, .engine, or a Keras .h5/.keras (runs TensorFlow)")
    parser.add_argument("--batch-sizes", type=int_list, default=list(BATCHES),
                        metavar="B1,B2,...", help="batch sizes to measure")
    add_renamed(parser, "--batch", "--batch-sizes", "batch_sizes", type=int_list)
    parser.add_argument("--warmup", type=int, default=WARMUP, help="untimed runs first")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--iterations", type=positive_int, default=ITERATIONS,
                        help="timed runs per batch size and mode")
    length.add_argument("--duration", type=float, metavar="S",
                        help="time each batch size and mode for S seconds instead (default: "
                             "--iterations)")
    parser.add_argument("--image-size", type=size_arg, metavar="HxW",
                        help="the pipeline's image size (default: each model's input size)")
    parser.add_argument("--compute-only", action="store_true",
                        help="skip the pipeline measurement (pre/post-processing)")
    parser.add_argument("--providers", type=name_list,
                        help="ONNX Runtime execution providers, e.g. cuda,cpu (default: the "
                             "best available)")
    parser.add_argument("--threads", type=positive_int,
                        help="ONNX Runtime intra-op threads (default: ONNX Runtime's choice)")
    parser.add_argument("--plot", type=Path, metavar="FILE.png",
                        help="draw latency against batch size per artifact (default: none)")
    add_reporting(parser, "the report")
    return parser


def _run(args: argparse.Namespace) -> int:
    quiet = args.quiet

    def progress(message: str) -> None:
        if not quiet:
            print(message, file=sys.stderr, flush=True)

    report = benchmark(args.artifacts, args.batch_sizes, args.warmup,
                       None if args.duration else args.iterations, args.duration,
                       args.image_size, not args.compute_only, args.providers, args.threads,
                       progress=progress)
    if args.plot:
        plot_report(report, args.plot)
        progress(f"wrote {args.plot}")
    if args.json:
        print_json(report)
    else:
        print(format_table(report))
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``ocr-bench``."""
    return run_command("ocr-bench", _run, build_parser(), argv)
