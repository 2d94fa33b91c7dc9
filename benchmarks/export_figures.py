"""Export time, peak memory and parity of ``ocr-export`` on the demo and at Cityscapes scale.

Each export runs as its own process (``ocr-export ... --json``), so the time is the whole
process (Python start, TensorFlow import, load, convert, parity, write) and the peak memory
is that process's maximum resident set size.

    python benchmarks/export_figures.py [--skip-cityscapes] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness
import models

RESULTS = Path(__file__).resolve().parent / "results"


def run_export(model: Path, out: Path, extra: list[str]) -> dict:
    """Run ocr-export in a child process; return its summary, wall time and peak RSS."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        proc = subprocess.Popen([sys.executable, "-c", "from ocr_deploy.export.cli import main;"
                                 " raise SystemExit(main())", str(model), "-o", str(out),
                                 "--force", "--json", *extra], stdout=stdout, stderr=stderr)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS
        wall = time.perf_counter() - start
        stdout.seek(0)
        stderr.seek(0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"ocr-export failed: {stderr.read().strip()}")
        summary = json.loads(stdout.read())
    logits = next(o for o in summary["parity"]["outputs"] if o["name"] == "logits")
    return {"wall_s": round(wall, 2),
            "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
            "stages_s": summary["timings_s"], "parity_passed": summary["passed"],
            "samples": summary["parity"]["samples"],
            "max_abs_err": logits["max_abs_err"], "max_rel_err": logits["max_rel_err"],
            "cosine": logits["cosine"], "label_agreement": logits["label_agreement"],
            "onnx_mib": round(Path(summary["onnx"]).stat().st_size / 2**20, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-demo", action="store_true")
    parser.add_argument("--skip-cityscapes", action="store_true")
    parser.add_argument("--json", action="store_true")
    harness.add_smoke(parser)
    args = harness.shrink(parser.parse_args(), skip_cityscapes=True)
    from ocr_deploy.demo import DEMO_MODEL
    from ocr_deploy.demo.synthetic import write_samples

    results = {"machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, "
                          f"{os.cpu_count()} cores"}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        samples = tmp / "samples"
        write_samples(samples, 8)
        if not args.skip_demo:
            print("exporting the demo model ...", file=sys.stderr)
            results["demo"] = run_export(DEMO_MODEL, tmp / "demo.onnx",
                                         ["--argmax", "--samples", str(samples)])
        if not args.skip_cityscapes:
            print("building and exporting a Cityscapes-scale OCRNet ...", file=sys.stderr)
            model = models.cityscapes_keras(tmp)
            results["cityscapes"] = {"config": "K=19 M=512 D=256 C=288, 512x1024 input",
                                     "h5_mib": round(model.stat().st_size / 2**20, 1),
                                     **run_export(model, tmp / "cityscapes.onnx", [])}
    RESULTS.mkdir(exist_ok=True)
    name = "export_figures" + "".join(f"_{k}" for k in ("demo", "cityscapes") if k in results)
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for name in ("demo", "cityscapes"):
        if name in results:
            r = results[name]
            print(f"{name:<11} wall {r['wall_s']:>6.1f} s  peak RSS {r['peak_rss_mib']} MiB  "
                  f"max abs {r['max_abs_err']:.2e}  max rel {r['max_rel_err']:.2e}  "
                  f"cosine {r['cosine']:.8f}  labels {100 * r['label_agreement']:.3f}%  "
                  f"({r['samples']} samples)")


if __name__ == "__main__":
    main()
