"""Keras (TensorFlow) against ONNX Runtime FP32 / FP16 / INT8 on this machine's CPU, for
the demo model and an OCRNet at Cityscapes scale (random weights), through ``ocr-bench``.

    python benchmarks/compare_backends.py [--skip-demo] [--skip-cityscapes] [--json]

INT8 is calibrated with MinMax on a few synthetic images; at Cityscapes scale the weights
are random, so the builds are not verified for accuracy (timing only). The runtime
wrapper's overhead over a bare InferenceSession is measured by runtime_overhead.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness
import models

RESULTS = Path(__file__).resolve().parent / "results"


def build_all(onnx_path: Path, calib: Path, folder: Path, calib_samples: int,
              verify: bool, val: Path | None) -> list[Path]:
    """FP16 and INT8 ONNX Runtime artifacts of ``onnx_path`` (FP32 is the ONNX itself)."""
    from ocr_deploy.precision.calibrate import CalibrationSettings

    paths = []
    for precision in ("fp16", "int8"):
        print(f"  building {precision} ...", file=sys.stderr)
        info = models.build(onnx_path, precision, folder / f"{onnx_path.stem}_{precision}.onnx",
                            calib, calib_samples, calib=CalibrationSettings(method="minmax"),
                            verify=verify, val_dir=val)
        paths.append(Path(info["artifact"]))
    return paths


def compare(name: str, model: Path, folder: Path, size: tuple[int, int], calib_samples: int,
            batches: tuple[int, ...], iterations: int, verify: bool) -> dict:
    """Export ``model``, build the three precisions, benchmark them all with Keras."""
    from ocr_deploy.bench.report import format_table
    from ocr_deploy.bench.runner import benchmark
    from ocr_deploy.demo.synthetic import write_samples
    from ocr_deploy.export.pipeline import ExportRequest, export_model

    print(f"{name}: exporting ...", file=sys.stderr)
    onnx_path = export_model(ExportRequest(model=model, output=folder / f"{name}.onnx",
                                           argmax=True, quiet=True)).onnx_path
    calib, val = folder / f"{name}_calib", folder / f"{name}_val"
    write_samples(calib, calib_samples, seed=1, height=size[0], width=size[1])
    if verify:
        write_samples(val, 100)
    artifacts = [model, onnx_path, *build_all(onnx_path, calib, folder, calib_samples, verify,
                                              val if verify else None)]
    print(f"{name}: benchmarking ...", file=sys.stderr)
    report = benchmark(artifacts, batches, warmup=2, iterations=iterations,
                       progress=lambda line: print(f"  {line}", file=sys.stderr))
    print(f"\n== {name} ==\n{format_table(report)}")
    print(ratio_table(report))
    return report


def ratio_table(report: dict) -> str:
    """Each artifact's compute median over the FP32 ONNX's, per batch size, in this run:
    the figure that carries over to another machine (absolute times do not)."""
    rows = {r["name"]: {b["batch"]: b["compute"]["median_ms"] for b in r["batches"]}
            for r in report["results"]}
    base = next(r["name"] for r in report["results"]
                if r["kind"] != "keras" and r["precision"] == "fp32")
    batches = sorted(rows[base])
    lines = ["compute median / FP32 ONNX's, same run: " + ", ".join(
        f"batch {b}" for b in batches)]
    lines += [f"  {name:32s} " + "  ".join(f"{times[b] / rows[base][b]:6.2f}" for b in batches)
              for name, times in rows.items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-demo", action="store_true")
    parser.add_argument("--skip-cityscapes", action="store_true")
    parser.add_argument("--json", action="store_true")
    harness.add_smoke(parser)
    args = harness.shrink(parser.parse_args(), skip_cityscapes=True)
    from ocr_deploy.demo import DEMO_MODEL
    from ocr_deploy.model.ocrnet import OCRNetConfig

    reports = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if not args.skip_demo:
            reports["demo"] = compare("demo", DEMO_MODEL, folder, (96, 96),
                                      4 if args.smoke else 64,
                                      (1,) if args.smoke else (1, 4, 8),
                                      1 if args.smoke else 50, verify=not args.smoke)
        if not args.skip_cityscapes:
            config = OCRNetConfig.cityscapes()
            model = models.cityscapes_keras(folder)
            reports["cityscapes"] = compare("cityscapes", model, folder,
                                            (config.input_height, config.input_width), 8,
                                            (1,), 5, verify=False)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "compare_backends.json").write_text(json.dumps(reports, indent=2) + "\n")
    if args.json:
        print(json.dumps(reports, indent=2))


if __name__ == "__main__":
    main()
