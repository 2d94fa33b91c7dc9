"""Peak memory (RSS) of ``ocr-predict`` on one large image: this tree against a baseline
revision of the package, run alternately in fresh processes on the same image and model.

    python benchmarks/predict_memory.py --baseline-rev REV [--size 8000] [--model M.onnx]

The baseline is ``git archive REV ocr_deploy`` unpacked into a temporary folder and put
first on ``PYTHONPATH``; the candidate is this working tree. Each run is a child process
whose peak RSS is read with ``getrusage`` by a wrapper process of its own. The image is a
deterministic picture of discs on a gradient (``--size`` x ``--size`` RGB PNG). The model
defaults to the demo export (``export/demo_ocrnet.onnx``: run ``ocr-demo`` or ``ocr-export``
first). Results go to benchmarks/results/predict_memory.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "benchmarks"))
import harness  # noqa: E402
import models  # noqa: E402

WRAPPER = """
import resource, subprocess, sys
code = subprocess.run(sys.argv[1:]).returncode
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)  # KiB on Linux
sys.exit(code)
"""
PREDICT = "from ocr_deploy.runtime.predict_cli import main; raise SystemExit(main())"


def make_image(path: Path, size: int) -> None:
    """Discs of several colours on a horizontal gradient."""
    from PIL import Image, ImageDraw

    gradient = np.linspace(0, 255, size, dtype=np.float32).astype(np.uint8)
    image = Image.fromarray(np.repeat(np.stack([gradient] * 3, -1)[None], size, axis=0), "RGB")
    draw = ImageDraw.Draw(image)
    rng = np.random.default_rng(0)
    for _ in range(40):
        x, y, r = (int(v) for v in rng.integers(0, size, 3) // [1, 1, 6])
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
    image.save(path, compress_level=1)


def peak_rss_mib(pythonpath: Path, image: Path, model: Path, out: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    run = subprocess.run([sys.executable, "-c", WRAPPER, sys.executable, "-c", PREDICT,
                          str(image), "--model", str(model.resolve()), "-o", str(out), "-q"],
                         env=env, capture_output=True, text=True, check=True,
                         cwd=image.parent)  # not this tree: "python -c" imports from the cwd
    return int(run.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-rev", help="git revision to compare with (required; "
                        "--smoke: HEAD)")
    parser.add_argument("--size", type=int, default=8000, help="image side (default 8000)")
    parser.add_argument("--model", type=Path, default=ROOT / "export" / "demo_ocrnet.onnx",
                        help="the artifact (default export/demo_ocrnet.onnx)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each (default 2)")
    harness.add_smoke(parser)
    args = harness.shrink(parser.parse_args(), baseline_rev="HEAD", size=256, repeats=1)
    if args.baseline_rev is None:
        parser.error("--baseline-rev is required")
    with tempfile.TemporaryDirectory(prefix="ocr-predict-memory-") as tmp:
        tmp = Path(tmp)
        if args.smoke and not args.model.is_file():
            args.model = models.export_demo(tmp)
        archive = tmp / "baseline.tar"
        with open(archive, "wb") as handle:
            subprocess.run(["git", "-C", str(ROOT), "archive", args.baseline_rev, "ocr_deploy"],
                           stdout=handle, check=True)
        with tarfile.open(archive) as tar:
            tar.extractall(tmp / "baseline", filter="data")
        image = tmp / "large.png"
        make_image(image, args.size)
        peaks: dict[str, list[float]] = {"baseline": [], "candidate": []}
        for repeat in range(args.repeats):
            for name, path in (("baseline", tmp / "baseline"), ("candidate", ROOT)):  # alternate
                peaks[name].append(peak_rss_mib(path, image, args.model, tmp / f"out_{name}"))
                print(f"[{repeat + 1}/{args.repeats}] {name}: {peaks[name][-1]:.0f} MiB",
                      file=sys.stderr)
    result = {"image": f"{args.size}x{args.size} RGB PNG", "model": str(args.model),
              "baseline_rev": args.baseline_rev,
              "peak_rss_mib": {k: round(min(v), 1) for k, v in peaks.items()},
              "candidate_over_baseline": round(min(peaks["candidate"]) / min(peaks["baseline"]),
                                               3)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "predict_memory.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
