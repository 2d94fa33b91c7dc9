"""Peak memory (RSS) of every command at deployment resolution, each over one FP32 ONNX
Runtime forward pass at the same size measured in the same run.

    python benchmarks/memory_at_scale.py [--sizes 256x512,512x1024,1024x2048] [--smoke]

For each size, the Cityscapes configuration (``OCRNetConfig.cityscapes()``, random weights,
``models.py``) is exported with ``ocr-export``, then measured, each step in a fresh
process whose peak RSS a wrapper process reads with ``getrusage(RUSAGE_CHILDREN)``:

- ``forward``: one FP32 forward pass on ONNX Runtime CPU at batch 1 (the baseline);
- ``export``: ``ocr-export`` of the Keras model (TensorFlow, the parity check);
- ``build fp32`` / ``build fp16``: ``ocr-build-engine --fp32|--fp16`` with nothing else
  (verification on its synthetic images);
- ``build int8``: ``--int8 --calib-dir`` (``--images`` images) ``--val-dir`` (as many, with
  masks), ``--no-sensitivity-search`` and a budget every build meets (random weights: the
  search's time, not its memory, would dominate; it streams like the verdict);
- ``build e2e``: ``--fp16 --end-to-end --image-size`` at the model's size;
- ``predict``: ``ocr-predict`` over ``--images`` images of the model's size;
- ``fp16 under 6 GiB``: the FP16 build under ``ulimit -v`` 6 GiB, its exit code (0, or
  7: out of memory, said in one line).

``--smoke`` measures one tiny size with two images, for CI. Results go to
benchmarks/results/memory_at_scale.json (``--merge``: added to what is there, to measure
one size at a time); ``--plot FILE`` draws the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from predict_memory import WRAPPER  # getrusage of a child process

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SIZES = ((256, 512), (512, 1024), (1024, 2048))
CAP_KIB = 6 << 20  # the address-space cap of a small Jetson, in KiB (ulimit -v)
FORWARD = """
import sys, numpy as np, onnxruntime as ort
session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
shape = [1 if not isinstance(d, int) else d for d in session.get_inputs()[0].shape]
session.run(None, {session.get_inputs()[0].name: np.random.default_rng(0).normal(
    size=shape).astype(np.float32)})
"""
KERAS = """
import sys
sys.path.insert(0, sys.argv[1])
from models import cityscapes_keras
cityscapes_keras(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
"""
CLI = "import sys, importlib; raise SystemExit(importlib.import_module(sys.argv.pop(1)).main())"
EXPORT = """
import sys
sys.path.insert(0, sys.argv[1])
from models import export
export(sys.argv[2], sys.argv[3])
"""


def measure(command: list[str], cwd: Path, cap_kib: int | None = None) -> dict:
    """Run ``command`` in a fresh process: its peak RSS (MiB), exit code, seconds and the
    last line it wrote on stderr."""
    wrapped = [sys.executable, "-c", WRAPPER, *command]
    if cap_kib:
        wrapped = ["bash", "-c", f'ulimit -v {cap_kib} && exec "$@"', "bash", *wrapped]
    start = time.perf_counter()
    run = subprocess.run(wrapped, cwd=cwd, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(
                             [str(ROOT), os.environ.get("PYTHONPATH", "")])})
    lines = run.stdout.strip().splitlines()
    peak = int(lines[-1]) / 1024 if lines and lines[-1].isdigit() else None
    errors = [line for line in run.stderr.strip().splitlines() if "error" in line.lower()]
    return {"peak_rss_mib": None if peak is None else round(peak, 1),
            "exit_code": run.returncode, "seconds": round(time.perf_counter() - start, 1),
            "error": errors[-1][:300] if errors else None}


def write_images(folder: Path, size: tuple[int, int], count: int, masks: bool) -> Path:
    """``count`` smooth random RGB images of ``size`` (and random masks of 19 classes)."""
    from PIL import Image

    from ocr_deploy.verification.end_to_end_parity import sample_images

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for index, image in enumerate(sample_images([size], count, seed=int(masks))):
        Image.fromarray(image).save(folder / f"{index:03d}.png", compress_level=1)
        if masks:
            (folder / "labels").mkdir(exist_ok=True)
            mask = rng.integers(0, 19, (size[0] // 16, size[1] // 16), np.uint8)
            Image.fromarray(mask).resize((size[1], size[0]), Image.NEAREST).save(
                folder / "labels" / f"{index:03d}.png")
    return folder


def measure_size(size: tuple[int, int], images: int, folder: Path, steps: list[str],
                 log) -> dict:
    """Every step at ``size`` in ``folder``; ratios over the forward pass."""
    height, width = size
    py = sys.executable
    tools = str(ROOT / "benchmarks")
    subprocess.run([py, "-c", KERAS, tools, str(folder), str(height), str(width)], check=True,
                   capture_output=True)  # the Keras model, made in a process of its own
    keras_file = folder / f"cityscapes_{height}x{width}.h5"
    onnx_path = folder / "model.onnx"
    results = {}

    def step(name: str, command: list[str], cap_kib: int | None = None) -> None:
        if name not in steps:
            return
        results[name] = measure(command, folder, cap_kib)
        log(f"{height}x{width} {name}: {results[name]}")

    step("export", [py, "-c", EXPORT, tools, str(keras_file), str(onnx_path)])
    if not onnx_path.is_file():
        raise SystemExit(f"export failed at {height}x{width}: {results.get('export')}")
    step("forward", [py, "-c", FORWARD, str(onnx_path)])
    calib = write_images(folder / "calib", size, images, masks=False)
    val = write_images(folder / "val", size, images, masks=True)
    build = [py, "-c", CLI, "ocr_deploy.builder.cli", str(onnx_path), "--backend", "onnxruntime",
             "--force", "-q"]
    step("build fp32", [*build, "--fp32", "-o", str(folder / "fp32.onnx")])
    step("build fp16", [*build, "--fp16", "-o", str(folder / "fp16.onnx")])
    step("build int8", [*build, "--int8", "-o", str(folder / "int8.onnx"), "--calib-dir",
                        str(calib), "--val-dir", str(val), "--no-sensitivity-search",
                        "--max-miou-drop", "100", "--min-agreement", "0"])
    step("build e2e", [*build, "--fp16", "-o", str(folder / "e2e.onnx"), "--end-to-end",
                       "--image-size", f"{height}x{width}"])
    step("predict", [py, "-c", CLI, "ocr_deploy.runtime.predict_cli",
                     *map(str, sorted(calib.glob("*.png"))), "--model", str(onnx_path),
                     "-o", str(folder / "predicted"), "-q"])
    step("fp16 under 6 GiB", [*build, "--fp16", "-o", str(folder / "fp16_capped.onnx")],
         CAP_KIB)
    forward = results.get("forward", {}).get("peak_rss_mib")
    for entry in results.values():
        peak = entry["peak_rss_mib"]
        entry["over_forward"] = round(peak / forward, 2) if peak and forward else None
    return results


STEPS = ["export", "forward", "build fp32", "build fp16", "build int8", "build e2e", "predict",
         "fp16 under 6 GiB"]


def table(report: dict) -> str:
    sizes = list(report["sizes"])
    lines = ["| step | " + " | ".join(sizes) + " |", "| --- |" + " --- |" * len(sizes)]
    for name in STEPS:
        cells = []
        for size in sizes:
            entry = report["sizes"][size].get(name)
            if entry is None:
                cells.append("not run")
                continue
            peak = entry["peak_rss_mib"]
            text = f"{peak / 1024:.2f} GiB" if peak else "?"
            if name != "forward" and entry["over_forward"]:
                text += f" ({entry['over_forward']:.2f}×)"
            if entry["exit_code"]:
                text += f", exit {entry['exit_code']}"
            cells.append(text)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = list(report["sizes"])
    figure, axis = plt.subplots(figsize=(7, 4))
    for name in STEPS:
        if name == "forward":
            continue
        points = [(i, report["sizes"][s][name]["over_forward"]) for i, s in enumerate(sizes)
                  if report["sizes"][s].get(name, {}).get("over_forward")]
        if points:
            axis.plot(*zip(*points, strict=True), marker="o", label=name)
    axis.axhline(3, color="grey", linestyle="--", linewidth=1, label="target 3×")
    axis.set_xticks(range(len(sizes)), sizes)
    axis.set_xlabel("input size (Cityscapes configuration)")
    axis.set_ylabel("peak RSS / one FP32 forward pass")
    axis.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default=",".join(f"{h}x{w}" for h, w in SIZES),
                        help="HxW sizes, comma-separated (default: %(default)s)")
    parser.add_argument("--images", type=int, default=8,
                        help="calibration, validation and predict images (default 8)")
    parser.add_argument("--steps", default=",".join(STEPS),
                        help="steps to run, comma-separated (default: all)")
    parser.add_argument("--smoke", action="store_true",
                        help="one tiny size (64x128), 2 images: that every step runs (CI)")
    parser.add_argument("--merge", action="store_true",
                        help="add this run's sizes to the results already in "
                             "benchmarks/results/memory_at_scale.json (one size at a time)")
    parser.add_argument("--plot", type=Path, help="write a PNG of the ratios")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    sizes = [(64, 128)] if args.smoke else [tuple(int(v) for v in s.split("x"))
                                            for s in args.sizes.split(",")]
    images = 2 if args.smoke else args.images
    steps = args.steps.split(",")
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        parser.error(f"unknown steps {unknown}; choose from {STEPS}")
    report = {"command": " ".join(sys.argv), "images": images, "sizes": {}}
    with tempfile.TemporaryDirectory(prefix="ocr-memory-at-scale-") as tmp:
        for height, width in sizes:
            folder = Path(tmp) / f"{height}x{width}"
            folder.mkdir()
            report["sizes"][f"{height}x{width}"] = measure_size(
                (height, width), images, folder, steps,
                lambda text: print(text, file=sys.stderr, flush=True))
    RESULTS.mkdir(exist_ok=True)
    stored = RESULTS / "memory_at_scale.json"
    if args.merge and stored.is_file():
        earlier = json.loads(stored.read_text())
        report["command"] = f"{earlier['command']}; {report['command']}"
        report["sizes"] = {**earlier["sizes"], **report["sizes"]}
        report["sizes"] = dict(sorted(report["sizes"].items(),
                                      key=lambda item: int(item[0].split("x")[0])))
    stored.write_text(json.dumps(report, indent=2) + "\n")
    if args.plot:
        plot(report, args.plot)
    print(json.dumps(report, indent=2) if args.json else table(report))
    failed = [f"{size} {name}" for size, entries in report["sizes"].items()
              for name, entry in entries.items()
              if entry["exit_code"] not in ((0, 7) if name == "fp16 under 6 GiB" else (0,))]
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
