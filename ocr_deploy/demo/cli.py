"""``ocr-demo``: the main job on the built-in demo model.

Exports the shipped demo OCRNet to ``export/demo_ocrnet.onnx`` with in-graph argmax,
verifies parity on seeded random inputs and on synthetic validation images, and prints
the parity report. Rerunning replaces the demo's own outputs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ocr_deploy.cli_support import EXIT_OK, print_json, run_command

DEMO_MODEL = Path(__file__).resolve().parent / "weights" / "demo_ocrnet.h5"
SAMPLE_COUNT = 8


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ocr-demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("."),
                        help="where export/ (and the demo's sample images) are written")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    return parser


def _run(args: argparse.Namespace) -> int:
    from ocr_deploy.demo.synthetic import write_samples
    from ocr_deploy.export.pipeline import ExportRequest, export_model

    samples = args.workdir / "export" / "demo_samples"
    write_samples(samples, SAMPLE_COUNT)
    result = export_model(ExportRequest(
        model=DEMO_MODEL, output=args.workdir / "export" / "demo_ocrnet.onnx", force=True,
        argmax=True, samples_dir=samples, quiet=args.quiet or args.json))
    if args.json:
        print_json(result.to_dict())
    else:
        print(f"demo model: {DEMO_MODEL.name} "
              f"(validation mIoU {result.metadata.notes.get('val_miou', 'n/a')})")
        print(result.parity.table())
        print(f"wrote {result.onnx_path} and {result.report_path} "
              f"in {result.timings['total']:.1f} s")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``ocr-demo``."""
    return run_command("ocr-demo", _run, build_parser(), argv)
