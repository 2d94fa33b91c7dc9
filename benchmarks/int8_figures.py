"""INT8 on ONNX Runtime CPU: speed, accuracy, integer coverage and calibration memory, each
against its baseline measured in the same run (interleaved timings).

    python benchmarks/int8_figures.py speed        [--iterations 30]
    python benchmarks/int8_figures.py accuracy     [--samples 100]
    python benchmarks/int8_figures.py calibration  [--counts 25,100] [--size 512x1024]
                                                   [--demo-samples 100] [--calib-providers cpu]
    python benchmarks/int8_figures.py all          [--json]

- speed: the Cityscapes configuration (``OCRNetConfig.cityscapes()``, random weights) at
  256x512 with 2 threads, and the demo model with 1 thread, batch 1: the FP32 artifact,
  ``ocr-build-engine --int8`` (ONNX Runtime placement) and ONNX Runtime's own
  ``quantize_static`` (QDQ, U8 activations, S8 per-channel weights, MinMax, Conv+MatMul)
  on the same exported ONNX and calibration images, all loaded with the same session
  options, timed in interleaved rounds (median).
- accuracy: the demo model on ``--samples`` synthetic validation images: mIoU drop and label
  agreement against FP32, ours (default entropy calibration) and ``quantize_static``.
- calibration: time per sample and peak RSS of streamed calibration (entropy, the default)
  of the Cityscapes configuration at ``--size`` for each sample count, and of the demo
  model, each in its own process, between two processes timing one FP32 forward pass of
  one sample (ONNX Runtime's default optimisation, and the basic level the calibration
  runs at to keep its kernels), with the load average before and after.
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
import harness
from models import build, export_cityscapes, export_demo

RESULTS = Path(__file__).resolve().parent / "results"
QUANTIZE_STATIC = "quantize_static (QDQ U8/S8, MinMax, Conv+MatMul)"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def smooth_images(folder: Path, count: int, height: int, width: int, seed: int = 0) -> Path:
    """``count`` smooth random RGB images (upsampled noise): stand-ins for street scenes."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(count):
        small = rng.integers(0, 256, (max(1, height // 16), max(1, width // 16), 3), np.uint8)
        Image.fromarray(small).resize((width, height), Image.BILINEAR).save(
            folder / f"{index:04d}.png")
    return folder


def quantize_static_model(onnx_path: Path, calib: Path, samples: int, out: Path) -> Path:
    """ONNX Runtime's own recipe, fed the same preprocessed calibration samples."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from ocr_deploy.contract.metadata import read_metadata
    from ocr_deploy.precision.calibration_data import load_samples

    meta = read_metadata(onnx_path)
    data = load_samples(calib, meta, samples)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = (batch for batch, _ in data.batches(1))

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {meta.input_name: batch}

    quantize_static(str(onnx_path), str(out), Reader(), quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=["Conv", "MatMul"], per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax)
    return out


def interleaved_ms(models: dict[str, Path], threads: int, iterations: int) -> dict[str, float]:
    """Median ms per batch-1 run of each model, timed round-robin with identical options."""
    import onnxruntime as ort

    sessions = {}
    for label, path in models.items():
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        sessions[label] = ort.InferenceSession(str(path), options,
                                               providers=["CPUExecutionProvider"])
    first = next(iter(sessions.values())).get_inputs()[0]
    shape = [1 if not isinstance(d, int) else d for d in first.shape]
    feed = np.random.default_rng(0).normal(0, 1, shape).astype(np.float32)
    for session in sessions.values():
        for _ in range(3):
            session.run(None, {first.name: feed})
    times: dict[str, list[float]] = {label: [] for label in sessions}
    for _ in range(iterations):
        for label, session in sessions.items():
            start = time.perf_counter()
            session.run(None, {first.name: feed})
            times[label].append(time.perf_counter() - start)
    return {label: round(1000 * float(np.median(t)), 2) for label, t in times.items()}


def speed_case(name: str, onnx_path: Path, calib: Path, samples: int, threads: int,
               iterations: int, folder: Path) -> dict:
    log(f"[speed] {name}: building FP32 and INT8, quantize_static ...")
    fp32 = build(onnx_path, "fp32", folder / f"{name}_fp32.onnx", None, samples)
    int8 = build(onnx_path, "int8", folder / f"{name}_int8.onnx", calib, samples, verify=False)
    qs = quantize_static_model(onnx_path, calib, samples, folder / f"{name}_qs.onnx")
    log(f"[speed] {name}: timing {iterations} interleaved rounds on {threads} thread(s) ...")
    ms = interleaved_ms({"fp32": Path(fp32["artifact"]), "int8": Path(int8["artifact"]),
                         QUANTIZE_STATIC: qs}, threads, iterations)
    return {"model": name, "threads": threads, "batch": 1, "ms": ms,
            "speedup_vs_fp32": {k: round(ms["fp32"] / v, 2) for k, v in ms.items()},
            "int8_integer_mac_share": int8["int8_coverage"]["integer_mac_share"],
            "int8_placement": int8["placement"]["name"]}


def run_speed(args, folder: Path) -> list[dict]:
    height, width = (int(v) for v in args.speed_size.split("x"))
    city = export_cityscapes(folder, height, width)
    city_calib = smooth_images(folder / "city_calib", args.speed_calib, height, width)
    demo = export_demo(folder)
    from ocr_deploy.demo.synthetic import TRAIN_SEED, write_samples

    demo_calib = folder / "demo_calib"
    write_samples(demo_calib, 32, seed=TRAIN_SEED)
    return [speed_case(f"cityscapes_{height}x{width}", city, city_calib, args.speed_calib, 2,
                       args.iterations, folder),
            speed_case("demo", demo, demo_calib, 32, 1, args.iterations * 4, folder)]


def run_accuracy(args, folder: Path) -> dict:
    from ocr_deploy.contract.metadata import read_metadata
    from ocr_deploy.demo.synthetic import TRAIN_SEED, write_samples
    from ocr_deploy.precision.calibration_data import load_samples
    from ocr_deploy.verification.accuracy import proxy_accuracy, reference

    demo = export_demo(folder)
    calib, val = folder / "acc_calib", folder / "acc_val"
    write_samples(calib, args.samples, seed=TRAIN_SEED)
    write_samples(val, args.samples)
    log(f"[accuracy] demo: INT8 builds on {args.samples} calibration images ...")
    ours = build(demo, "int8", folder / "acc_int8.onnx", calib, args.samples, verify=False)
    qs = quantize_static_model(demo, calib, args.samples, folder / "acc_qs.onnx")
    meta = read_metadata(demo)
    data = load_samples(val, meta, with_masks=True)
    fp32 = reference(demo.read_bytes(), data, meta)
    rows = {}
    for label, path in (("int8 (ocr-build-engine)", Path(ours["artifact"])),
                        (QUANTIZE_STATIC, qs)):
        result = proxy_accuracy(path.read_bytes(), data, meta, fp32)
        rows[label] = {"miou": round(result.miou, 3), "miou_fp32": round(result.miou_fp32, 3),
                       "miou_drop": round(result.miou_drop, 3),
                       "agreement": round(result.agreement, 5),
                       "agreement_all_pixels": round(result.agreement_all_pixels, 5)}
    return {"model": "demo", "validation_images": args.samples, "rows": rows}


CALIBRATE_CHILD = """
import json, sys, time
from pathlib import Path
from ocr_deploy.contract.metadata import read_metadata
from ocr_deploy.precision.calibrate import CalibrationSettings, calibrate
from ocr_deploy.precision.calibration_data import load_samples
onnx_path, folder, count, cache = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
providers = sys.argv[5].split(",") if len(sys.argv) > 5 else None
data = load_samples(folder, read_metadata(onnx_path), count)
start, cpu = time.perf_counter(), time.process_time()
result = calibrate(Path(onnx_path).read_bytes(), data, CalibrationSettings(), Path(cache),
                   force=True, providers=providers)
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
status = Path("/proc/self/status").read_text()  # VmHWM: this process image's peak RSS
peak_kib = int(next(l for l in status.splitlines() if l.startswith("VmHWM")).split()[1])
print(json.dumps({"seconds": seconds, "cpu": cpu, "segments": result.segments,
                  "passes": result.passes,
                  "providers": result.providers, "tensors": len(result.ranges),
                  "peak_kib": peak_kib}))
"""

FORWARD_CHILD = """
import json, sys, time
from pathlib import Path
import numpy as np
import onnxruntime as ort
from ocr_deploy.contract.metadata import read_metadata
from ocr_deploy.precision.calibrate import calibration_providers
from ocr_deploy.precision.calibration_data import load_samples
onnx_path, folder = sys.argv[1], Path(sys.argv[2])
providers = calibration_providers(sys.argv[3].split(",") if len(sys.argv) > 3 else None)
batch = next(load_samples(folder, read_metadata(onnx_path), 1).batches(1))[0]
seconds, cpu = {}, {}
for label, level in (("default", ort.GraphOptimizationLevel.ORT_ENABLE_ALL),
                     ("basic", ort.GraphOptimizationLevel.ORT_ENABLE_BASIC)):
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    session = ort.InferenceSession(onnx_path, options, providers=providers)
    feed = {session.get_inputs()[0].name: batch}
    session.run(None, feed)
    seconds[label], cpu[label] = [], []
    for _ in range(5):
        begin, begin_cpu = time.perf_counter(), time.process_time()
        session.run(None, feed)
        seconds[label].append(time.perf_counter() - begin)
        cpu[label].append(time.process_time() - begin_cpu)
print(json.dumps({"seconds": seconds, "cpu": cpu}))
"""


def _child(code: str, *args) -> dict:
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], stdout=subprocess.PIPE,
                          check=False)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child failed: {' '.join(map(str, args))}")
    return json.loads(proc.stdout)


def calibrate_in_child(onnx_path: Path, images: Path, count: int, folder: Path,
                       providers: str | None) -> dict:
    """Calibration (entropy) in a fresh process, between two processes timing one FP32
    forward pass of one sample (5 runs each, the median of the 10; ONNX Runtime's default
    optimisation and the basic level the calibration runs at), in wall and CPU time, with
    the load average."""
    extra = [providers] if providers else []
    load = [os.getloadavg()[0]]
    before = _child(FORWARD_CHILD, onnx_path, images, *extra)
    # the child reports its own peak (VmHWM): getrusage's ru_maxrss of a child also
    # counts the forked copy of this TensorFlow-laden parent from before its exec
    child = _child(CALIBRATE_CHILD, onnx_path, images, count, folder / "cache", *extra)
    after = _child(FORWARD_CHILD, onnx_path, images, *extra)
    load.append(os.getloadavg()[0])
    forward, forward_cpu = ({k: float(np.median(before[kind][k] + after[kind][k]))
                             for k in before[kind]} for kind in ("seconds", "cpu"))
    per_sample, cpu_per_sample = child["seconds"] / count, child["cpu"] / count
    return {"samples": count, "peak_rss_gib": round(child["peak_kib"] / 2**20, 2),
            "seconds": round(child["seconds"], 1), "seconds_per_sample": round(per_sample, 4),
            "fp32_forward_ms": {k: round(1000 * v, 2) for k, v in forward.items()},
            "per_sample_over_forward": {k: round(per_sample / v, 2) for k, v in forward.items()},
            # CPU time of all threads: less sensitive to other jobs on the machine than wall
            # time, and lower than the wall-time ratio of an idle machine (the statistics
            # run on one core while ONNX Runtime uses all)
            "cpu_per_sample_over_forward_cpu": {k: round(cpu_per_sample / v, 2)
                                                for k, v in forward_cpu.items()},
            "forward_passes_per_sample": child["passes"], "segments": child["segments"],
            "providers": child["providers"], "tensors": child["tensors"],
            "load_average": [round(v, 2) for v in load]}


def run_calibration(args, folder: Path) -> dict:
    from ocr_deploy.demo.synthetic import TRAIN_SEED, write_samples

    height, width = (int(v) for v in args.size.split("x"))
    counts = [int(c) for c in args.counts.split(",")]
    city = export_cityscapes(folder, height, width)
    images = smooth_images(folder / "calib_big", max(counts), height, width, seed=1)
    rows = []
    for count in counts:
        log(f"[calibration] {count} images at {height}x{width} (entropy, streamed) ...")
        rows.append(calibrate_in_child(city, images, count, folder, args.calib_providers))
    demo = export_demo(folder)
    demo_images = folder / "demo_calib"
    write_samples(demo_images, args.demo_samples, seed=TRAIN_SEED)
    log(f"[calibration] demo: {args.demo_samples} images (entropy) ...")
    return {"model": f"cityscapes config {height}x{width}", "method": "entropy", "rows": rows,
            "demo": calibrate_in_child(demo, demo_images, args.demo_samples, folder,
                                       args.calib_providers)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("section", nargs="?", default="all",
                        choices=("speed", "accuracy", "calibration", "all"),
                        help="which figures (default all)")
    parser.add_argument("--speed-size", default="256x512",
                        help="Cityscapes configuration's input size for speed (default 256x512)")
    parser.add_argument("--iterations", type=int, default=30,
                        help="timed rounds, Cityscapes case (x4 for the demo; default 30)")
    parser.add_argument("--speed-calib", type=int, default=8,
                        help="calibration images for the speed builds (default 8)")
    parser.add_argument("--samples", type=int, default=100,
                        help="demo calibration and validation images (default 100)")
    parser.add_argument("--counts", default="25,100",
                        help="calibration sample counts (default 25,100)")
    parser.add_argument("--size", default="512x1024",
                        help="calibration input size (default 512x1024)")
    parser.add_argument("--demo-samples", type=int, default=100,
                        help="demo calibration images (default 100)")
    parser.add_argument("--calib-providers", metavar="LIST",
                        help="calibration execution providers (default: CUDA if ONNX Runtime "
                             "has it, else CPU)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    harness.add_smoke(parser)
    args = harness.shrink(parser.parse_args(), iterations=1, speed_calib=2, samples=4,
                          counts="2", size="64x128", speed_size="64x128", demo_samples=4)
    sections = ("speed", "accuracy", "calibration") if args.section == "all" \
        else (args.section,)
    results = {}
    with tempfile.TemporaryDirectory(prefix="int8-figures-") as tmp:
        folder = Path(tmp)
        runners = {"speed": run_speed, "accuracy": run_accuracy,
                   "calibration": run_calibration}
        for section in sections:
            results[section] = runners[section](args, folder)
    RESULTS.mkdir(exist_ok=True)
    for section, data in results.items():
        (RESULTS / f"int8_{section}.json").write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps(results, indent=2) if args.json else _table(results))


def _table(results: dict) -> str:
    lines = []
    for case in results.get("speed", []):
        lines.append(f"{case['model']} ({case['threads']} thread(s), batch 1), integer MACs "
                     f"{case['int8_integer_mac_share']:.1%}:")
        for label, ms in case["ms"].items():
            lines.append(f"  {label:52s} {ms:9.2f} ms  x{case['speedup_vs_fp32'][label]:.2f}")
    if "accuracy" in results:
        acc = results["accuracy"]
        lines.append(f"demo accuracy on {acc['validation_images']} validation images:")
        for label, row in acc["rows"].items():
            lines.append(f"  {label:52s} mIoU {row['miou']:.2f} (FP32 {row['miou_fp32']:.2f}, "
                         f"drop {row['miou_drop']:.2f}), agreement {row['agreement']:.4%}")
    if "calibration" in results:
        cal = results["calibration"]
        lines.append(f"streamed calibration ({cal['method']}), s/sample over one FP32 forward "
                     "(ONNX Runtime default / basic optimisation):")
        for label, row in [*((cal["model"], row) for row in cal["rows"]),
                           ("demo", cal["demo"])]:
            ratio, forward = row["per_sample_over_forward"], row["fp32_forward_ms"]
            lines.append(
                f"  {label}, {row['samples']} samples: {row['seconds']:.1f} s, "
                f"{row['seconds_per_sample']:.3f} s/sample = {ratio['default']:.2f} / "
                f"{ratio['basic']:.2f} x forward ({forward['default']:.1f} / "
                f"{forward['basic']:.1f} ms), peak RSS {row['peak_rss_gib']:.2f} GiB, "
                f"{row['forward_passes_per_sample']} passes, {row['segments']} segment(s), "
                f"{row['providers'][0]}, load {row['load_average'][0]:.1f}-"
                f"{row['load_average'][1]:.1f}; CPU time "
                f"{row['cpu_per_sample_over_forward_cpu']['default']:.2f} / "
                f"{row['cpu_per_sample_over_forward_cpu']['basic']:.2f} x")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
