"""mIoU, calibration time, ONNX Runtime CPU latency and file size of FP32 / FP16 / INT8
builds of the demo model, including INT8 after the sensitivity search.

    python benchmarks/precision_figures.py [--calib-samples 100] [--val-samples 200] [--json]

The "INT8 + search" row quantises everything (attention core and classifier included)
under a tighter budget than the default, so that the sensitivity search has work to do;
the row says whether the search ran and which layers it kept.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calib-samples", type=int, default=100)
    parser.add_argument("--val-samples", type=int, default=200)
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    harness.add_smoke(parser)
    args = harness.shrink(parser.parse_args(), calib_samples=4, val_samples=4, iterations=1)

    from ocr_deploy.bench.runner import benchmark_artifact
    from ocr_deploy.builder.pipeline import BuildRequest, build
    from ocr_deploy.demo import DEMO_MODEL
    from ocr_deploy.demo.synthetic import TRAIN_SEED, write_samples
    from ocr_deploy.export.pipeline import ExportRequest, export_model
    from ocr_deploy.verification.accuracy import Budget

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print("exporting the demo model and writing data ...", file=sys.stderr)
        onnx_path = export_model(ExportRequest(model=DEMO_MODEL, output=tmp / "demo.onnx",
                                               argmax=True, quiet=True)).onnx_path
        calib, val = tmp / "calib", tmp / "val"
        write_samples(calib, args.calib_samples, seed=TRAIN_SEED)
        write_samples(val, args.val_samples)
        common = {"backend": "onnxruntime", "val_dir": val,
                  "calib_dir": calib, "calib_samples": args.calib_samples}
        builds = {
            "fp32": BuildRequest(onnx=onnx_path, precision="fp32", output=tmp / "fp32.onnx",
                                 **common),
            "fp16": BuildRequest(onnx=onnx_path, precision="fp16", output=tmp / "fp16.onnx",
                                 **common),
            "int8": BuildRequest(onnx=onnx_path, precision="int8", output=tmp / "int8.onnx",
                                 **common),
            "int8 + search": BuildRequest(
                onnx=onnx_path, precision="int8", output=tmp / "int8_search.onnx",
                quantize_attention=True, budget=Budget(max_miou_drop=0.25, min_agreement=0.99),
                **common),
        }
        for name, request in builds.items():
            print(f"building {name} ...", file=sys.stderr)
            info = build(request).info
            verification = info.get("verification", {})
            accuracy = verification.get("accuracy", {})
            timing = benchmark_artifact(request.output, batches=(1,), warmup=5,
                                        iterations=args.iterations, pipeline=False)
            compute = timing["batches"][0]["compute"]
            search = verification.get("sensitivity_search")
            rows[name] = {
                "miou": accuracy.get("miou"), "miou_fp32": accuracy.get("miou_fp32"),
                "miou_drop": accuracy.get("miou_drop"), "agreement": accuracy.get("agreement"),
                "latency_median_ms": compute["median_ms"], "latency_p90_ms": compute["p90_ms"],
                "file_mib": round(request.output.stat().st_size / 2**20, 3),
                "calibration": info.get("calibration"),
                "kept_in_higher_precision": info.get("kept_in_higher_precision"),
                "search_ran": search is not None,
                "search_evaluations": search["evaluations"] if search else 0}
    rows["fp32"]["miou"] = rows["fp16"]["miou_fp32"]  # FP32 is the reference itself
    results = {"command": "python benchmarks/precision_figures.py " + " ".join(sys.argv[1:]),
               "calib_samples": args.calib_samples, "val_samples": args.val_samples,
               "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "precision_figures.json").write_text(json.dumps(results, indent=2) + "\n")
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{'build':<15}{'mIoU':>8}{'drop':>8}{'agree':>9}{'median ms':>11}{'MiB':>8}  notes")
    for name, row in rows.items():
        notes = []
        if row["calibration"]:
            cal = row["calibration"]
            notes.append(f"calibration {cal['seconds']:.1f} s"
                         + (" (cached)" if cal["cache_hit"] else f" for {cal['samples']} images"))
        if row["search_ran"]:
            kept = row["kept_in_higher_precision"].get("sensitivity_search", [])
            notes.append(f"search kept {len(kept)} layer(s) in "
                         f"{row['search_evaluations']} evaluations")
        drop = "" if row["miou_drop"] is None else f"{row['miou_drop']:.2f}"
        agree = "" if row["agreement"] is None else f"{100 * row['agreement']:.2f}%"
        print(f"{name:<15}{row['miou']:>8.2f}{drop:>8}{agree:>9}"
              f"{row['latency_median_ms']:>11.2f}{row['file_mib']:>8.2f}  {'; '.join(notes)}")


if __name__ == "__main__":
    main()
