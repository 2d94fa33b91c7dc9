"""``ocr-demo``: the main job on the built-in demo model, end to end.

Exports the shipped demo OCRNet with a parity check (export/), builds FP32, FP16 and INT8
artifacts within the accuracy budget (engines/: TensorRT where present, else ONNX
Runtime) and an INT8 end-to-end artifact for 480x640 frames (uint8 pixels in, labels
out), draws prediction overlays and benchmarks Keras against the built artifacts, the
end-to-end one beside the plain INT8 one on 480x640 images (demo_output/:
predictions.png, latency.png, bench.json).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ocr_deploy.cli_support import (
    EXIT_OK,
    add_reporting,
    parser_for,
    positive_int,
    print_json,
    run_command,
)


def build_parser() -> argparse.ArgumentParser:
    from ocr_deploy.backends import CHOICES
    from ocr_deploy.bench.runner import ITERATIONS

    parser = parser_for("ocr-demo", __doc__)
    parser.add_argument("--workdir", type=Path, default=Path("."),
                        help="where export/, engines/ and demo_output/ are written")
    parser.add_argument("--backend", choices=CHOICES, default="auto",
                        help="auto: TensorRT if it and a GPU exist, else ONNX Runtime")
    parser.add_argument("--iterations", type=positive_int, default=ITERATIONS,
                        help="timed runs per artifact and batch size")
    add_reporting(parser, "the summary")
    return parser


def _run(args: argparse.Namespace) -> int:
    from ocr_deploy.demo.pipeline import run_demo

    result = run_demo(args.workdir, args.backend, args.iterations, args.quiet)
    if args.json:
        print_json(result.__dict__)
        return EXIT_OK
    parity = result.export["parity"]
    print("parity (Keras vs ONNX Runtime):",
          "passed" if parity["passed"] else "FAILED", "-",
          ", ".join(f"{o['name']} max abs {o['max_abs_err']:.2e}" if o["kind"] != "labels"
                    else f"labels {100 * o['label_agreement']:.2f}% equal"
                    for o in parity["outputs"]))
    for precision, info in result.builds.items():
        accuracy = info.get("verification", {}).get("accuracy")
        figures = (f"mIoU {accuracy['miou']:.2f} (FP32 {accuracy['miou_fp32']:.2f}), "
                   f"agreement {accuracy['agreement']:.2%}") if accuracy else "reference"
        print(f"{precision}: {info['artifact']} [{info['backend']}] {figures}")
    print()
    print(result.bench_table)
    print(f"\npictures: {result.overlays}, {result.plot}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``ocr-demo``."""
    return run_command("ocr-demo", _run, build_parser(), argv)
