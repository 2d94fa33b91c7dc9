"""The C ABI (libocr_deploy) against ``Segmenter.predict`` from Python, on the demo model.

1. Per-call overhead, batch 1 and 8: a C program (capi/tests/capi_test.c ``repeat``) calls
   ``ocr_segmenter_predict`` on the same synthetic images that a Python program (this
   script's ``--python-repeat``) gives ``Segmenter.predict``. Blocks of calls alternate
   between the two, each block a fresh process, alternating which goes first. Each block
   gives its median per-call time; the figure is the median over pairs of (C / Python) and
   of (C - Python).
   The same comparison call by call in one process (ctypes; both with one ONNX Runtime
   thread), which isolates the library's own cost from process-to-process noise, and the
   in-process cost of the bridge's pixel views and label writes.
2. Peak RSS of the C program segmenting 1000 images one by one, against the Python program
   doing the same (fresh processes; VmHWM of each).

    python benchmarks/capi_overhead.py [--pairs 10] [--calls 300] [--json]

The library is built with CMake into a temporary folder; the demo ONNX is
export/demo_ocrnet.onnx, exported from the shipped demo weights into a temporary folder when
missing. Results go to benchmarks/results/capi_overhead.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import harness  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
SIZE = (96, 96)  # the demo model's input size: no resizing on either side


def synthetic(n: int, height: int, width: int) -> np.ndarray:
    """Image ``n`` as capi_test.c's channel_value makes it (RGB)."""
    y, x, c = (a.astype(np.uint32) for a in np.mgrid[0:height, 0:width, 0:3])
    return ((x * (7 + c) + y * (13 + 2 * c) + ((x * y) >> 3) + n * 31 + c * 50) & 255
            ).astype(np.uint8)


def build_library(folder: Path) -> Path:
    """libocr_deploy and capi_test, Release, in ``folder``; the path of capi_test."""
    for args in (["-S", str(ROOT / "capi"), "-B", str(folder), "-DOCR_DEPLOY_BUILD_TESTS=ON",
                  f"-DPython3_EXECUTABLE={sys.executable}", "-DCMAKE_BUILD_TYPE=Release"],
                 ["--build", str(folder), "-j2"]):
        subprocess.run(["cmake", *args], check=True, capture_output=True)
    return folder / "capi_test"


def demo_model(folder: Path) -> Path:
    model = ROOT / "export" / "demo_ocrnet.onnx"
    if model.is_file():
        return model
    model = folder / "demo_ocrnet.onnx"
    subprocess.run([str(Path(sys.executable).parent / "ocr-export"),
                    str(ROOT / "ocr_deploy/demo/weights/demo_ocrnet.h5"), "-o", str(model), "-q"],
                   check=True)
    return model


def repeat(program: Path, model: Path, images: int, size: tuple[int, int],
           batch: int) -> dict[str, float]:
    """One block in a fresh process: the C program (``capi_test repeat``) or, for
    ``program=None``, this script's Python twin. Its key/value lines (median_ms,
    peak_rss_kib ...)."""
    spec = f"{size[1]}x{size[0]}:RGB8"
    command = [str(program), "repeat"] if program else [sys.executable, __file__,
                                                         "--python-repeat"]
    done = subprocess.run([*command, str(model), str(images), spec, str(batch)],
                          capture_output=True, text=True, check=True)
    return {key: float(value) for key, value in (line.split() for line in
                                                  done.stdout.splitlines())}


def python_repeat(model: str, images: int, spec: str, batch: int) -> None:
    """What ``capi_test repeat`` does, with ``Segmenter.predict``."""
    from ocr_deploy.runtime import Segmenter

    width, height = map(int, spec.split(":")[0].split("x"))
    batch_images = [synthetic(n, height, width) for n in range(batch)]
    times = []
    with Segmenter.open(model) as segmenter:
        for _ in range(-(-images // batch)):
            start = time.perf_counter()
            segmenter.predict(batch_images)
            times.append(time.perf_counter() - start)
    print(f"median_ms {statistics.median(times) * 1e3:.4f}")
    # VmHWM, as the C program reads it: ru_maxrss survives exec, so a child started by a
    # big parent would report the parent's peak.
    status = Path("/proc/self/status").read_text().splitlines()
    print(next(line.replace("VmHWM:", "peak_rss_kib").replace("kB", "")
               for line in status if line.startswith("VmHWM:")))


def overhead(program: Path, model: Path, batch: int, pairs: int, calls: int) -> dict:
    c_ms, py_ms = [], []
    for pair in range(pairs):
        for side in (program, None) if pair % 2 == 0 else (None, program):
            times = c_ms if side else py_ms
            times.append(repeat(side, model, calls * batch, SIZE, batch)["median_ms"])
        print(f"batch {batch} pair {pair + 1}/{pairs}: C {c_ms[-1]:.3f} ms, "
              f"Python {py_ms[-1]:.3f} ms", file=sys.stderr)
    ratios = [c / p for c, p in zip(c_ms, py_ms, strict=True)]
    differences = [c - p for c, p in zip(c_ms, py_ms, strict=True)]
    return {"batch": batch, "pairs": pairs, "calls_per_block": calls,
            "c_median_ms": statistics.median(c_ms), "python_median_ms": statistics.median(py_ms),
            "ratio_median": statistics.median(ratios),
            "ratio_quartiles": [float(q) for q in np.percentile(ratios, [25, 75])],
            "difference_median_ms": statistics.median(differences),
            "difference_quartiles_ms": [float(q) for q in np.percentile(differences, [25, 75])]}


def inprocess_overhead(library: Path, model: Path, batch: int, pairs: int) -> dict:
    """Call by call, in this process: ``ocr_segmenter_predict`` through ctypes (the library
    uses this interpreter) against ``Segmenter.predict``, alternating which goes first. Both
    segmenters run ONNX Runtime with one thread: two sessions' spinning thread pools in one
    process would slow each other down and swamp the difference. The C side includes ctypes'
    own call cost (``ctypes_call_us``: an empty ABI call)."""
    import ctypes

    from ocr_deploy.runtime import Segmenter

    class Image(ctypes.Structure):
        _fields_ = [("struct_size", ctypes.c_size_t), ("data", ctypes.c_void_p),
                    ("width", ctypes.c_uint32), ("height", ctypes.c_uint32),
                    ("stride_bytes", ctypes.c_size_t), ("pixel_format", ctypes.c_int32)]

    class LabelMap(ctypes.Structure):
        _fields_ = [("struct_size", ctypes.c_size_t), ("data", ctypes.c_void_p),
                    ("capacity_bytes", ctypes.c_size_t), ("stride_bytes", ctypes.c_size_t),
                    ("label_type", ctypes.c_int32)]

    class Options(ctypes.Structure):
        _fields_ = [("struct_size", ctypes.c_size_t), ("backend", ctypes.c_char_p),
                    ("providers", ctypes.c_char_p), ("device_id", ctypes.c_int32),
                    ("threads", ctypes.c_uint32), ("max_batch", ctypes.c_uint32),
                    ("environment", ctypes.c_char_p)]

    lib = ctypes.CDLL(str(library))
    lib.ocr_last_error.restype = ctypes.c_char_p
    handle = ctypes.c_void_p()
    options = Options(struct_size=ctypes.sizeof(Options), threads=1)
    if lib.ocr_segmenter_create(str(model).encode(), ctypes.byref(options),
                                ctypes.byref(handle)) != 0:
        raise RuntimeError(lib.ocr_last_error().decode())
    height, width = SIZE
    pixels = [synthetic(n, height, width) for n in range(batch)]
    labels = [np.empty(SIZE, np.uint8) for _ in range(batch)]
    images = (Image * batch)(*[Image(ctypes.sizeof(Image), p.ctypes.data, width, height, 0, 1)
                               for p in pixels])
    maps = (LabelMap * batch)(*[LabelMap(ctypes.sizeof(LabelMap), m.ctypes.data, m.nbytes, 0, 1)
                                for m in labels])
    c_times, py_times = [], []
    with Segmenter.open(model, threads=1) as segmenter:
        for pair in range(pairs + 5):  # 5 warm-up pairs
            for side in ("c", "py") if pair % 2 == 0 else ("py", "c"):
                start = time.perf_counter()
                if side == "c":
                    status = lib.ocr_segmenter_predict(handle, images, batch, maps)
                else:
                    expected = segmenter.predict(pixels)
                elapsed = time.perf_counter() - start
                if pair >= 5:
                    (c_times if side == "c" else py_times).append(elapsed)
            if status != 0 or any(not np.array_equal(a, b) for a, b in zip(labels, expected,
                                                                            strict=True)):
                raise RuntimeError("the C ABI and Segmenter.predict disagree")
    lib.ocr_segmenter_destroy(handle)
    empty = time.perf_counter()
    for _ in range(10000):
        lib.ocr_abi_version()
    ctypes_us = (time.perf_counter() - empty) / 10000 * 1e6
    differences = [(c - p) * 1e3 for c, p in zip(c_times, py_times, strict=True)]
    ratios = [c / p for c, p in zip(c_times, py_times, strict=True)]
    return {"batch": batch, "pairs": pairs, "c_median_ms": statistics.median(c_times) * 1e3,
            "python_median_ms": statistics.median(py_times) * 1e3,
            "ratio_median": statistics.median(ratios),
            "ratio_quartiles": [float(q) for q in np.percentile(ratios, [25, 75])],
            "difference_median_ms": statistics.median(differences),
            "difference_quartiles_ms": [float(q) for q in np.percentile(differences, [25, 75])],
            "ctypes_call_us": ctypes_us}


def bridge_cost(model: Path, batch: int, number: int = 2000) -> dict[str, float]:
    """Microseconds the Python side of the library adds per call, in-process (timeit): the
    views of the caller's pixels and the writes into its label buffers, for ``batch``
    model-size images. The embedded interpreter's other cost (GIL, argument tuples) is in
    the paired figure only."""
    import timeit

    from ocr_deploy import capi_bridge
    from ocr_deploy.runtime import Segmenter

    height, width = SIZE
    pixels = [synthetic(n, height, width) for n in range(batch)]
    images = [(memoryview(p).cast("B"), width, height, width * 3, 1) for p in pixels]
    labels = np.zeros(SIZE, np.uint8)
    buffers = [memoryview(np.empty(SIZE, np.uint8)).cast("B") for _ in range(batch)]
    with Segmenter.open(model) as segmenter:
        views = timeit.timeit(lambda: [capi_bridge._image(segmenter, *i) for i in images],
                              number=number)
    writes = timeit.timeit(lambda: [np.copyto(capi_bridge._strided(b, labels.dtype, SIZE,
                                                                   (width, 1)), labels)
                                    for b in buffers], number=number)
    return {"batch": batch, "image_views_us": views / number * 1e6,
            "label_writes_us": writes / number * 1e6}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=10, help="C/Python block pairs (10)")
    parser.add_argument("--calls", type=int, default=300,
                        help="calls per block at batch 1; batch 8 makes calls/8 (300)")
    parser.add_argument("--images", type=int, default=1000, help="images for peak RSS (1000)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--python-repeat", nargs=4, help=argparse.SUPPRESS)
    harness.add_smoke(parser)
    args = harness.shrink(parser.parse_args(argv), pairs=1, calls=8, images=4)
    if args.python_repeat:
        model, images, spec, batch = args.python_repeat
        python_repeat(model, int(images), spec, int(batch))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        program = build_library(Path(tmp) / "build")
        model = demo_model(Path(tmp))
        results = {"model": str(model.relative_to(ROOT) if ROOT in model.parents else model.name),
                   "machine": platform.processor() or platform.machine(),
                   "overhead": [overhead(program, model, 1, args.pairs, args.calls),
                                overhead(program, model, 8, args.pairs,
                                         max(args.calls // 8, 10))],
                   "in_process": [inprocess_overhead(program.parent / "libocr_deploy.so",
                                                     model, batch, args.pairs * 50 // batch)
                                  for batch in (1, 8)],
                   "bridge_cost": [bridge_cost(model, 1), bridge_cost(model, 8)],
                   "peak_rss": []}
        for size in (SIZE, (480, 640)):
            c_rss = repeat(program, model, args.images, size, 1)
            python_rss = repeat(None, model, args.images, size, 1)["peak_rss_kib"]
            results["peak_rss"].append({
                "images": args.images, "image_size": list(size),
                "c_peak_rss_mib": c_rss["peak_rss_kib"] / 1024,
                "c_rss_growth_after_first_tenth_kib": c_rss["rss_kib_at_end"]
                - c_rss["rss_kib_after_tenth"],
                "python_peak_rss_mib": python_rss / 1024,
                "ratio": c_rss["peak_rss_kib"] / python_rss})
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "capi_overhead.json").write_text(json.dumps(results, indent=2))
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print("separate processes, blocks of calls: batch | C ABI median | Python median | "
          "C/Python (median of pairs, IQR) | C - Python")
    for row in results["overhead"]:
        print(f"{row['batch']} | {row['c_median_ms']:.3f} ms | {row['python_median_ms']:.3f} ms "
              f"| {row['ratio_median']:.3f} ({row['ratio_quartiles'][0]:.3f}-"
              f"{row['ratio_quartiles'][1]:.3f}) | {row['difference_median_ms']:+.3f} ms")
    print("in process, call by call (ctypes): batch | C ABI median | Python median | "
          "C/Python (IQR) | C - Python (IQR)")
    for row in results["in_process"]:
        print(f"{row['batch']} | {row['c_median_ms']:.3f} ms | {row['python_median_ms']:.3f} ms "
              f"| {row['ratio_median']:.3f} ({row['ratio_quartiles'][0]:.3f}-"
              f"{row['ratio_quartiles'][1]:.3f}) | {row['difference_median_ms']:+.3f} ms "
              f"({row['difference_quartiles_ms'][0]:+.3f} to "
              f"{row['difference_quartiles_ms'][1]:+.3f}); ctypes call "
              f"{row['ctypes_call_us']:.2f} us")
    for row in results["bridge_cost"]:
        print(f"bridge cost, batch {row['batch']}: image views {row['image_views_us']:.1f} us, "
              f"label writes {row['label_writes_us']:.1f} us per call")
    for row in results["peak_rss"]:
        print(f"peak RSS, {row['images']} images {row['image_size'][1]}x{row['image_size'][0]}: "
              f"C {row['c_peak_rss_mib']:.1f} MiB, Python {row['python_peak_rss_mib']:.1f} MiB "
              f"(ratio {row['ratio']:.3f}); C growth after the first tenth "
              f"{row['c_rss_growth_after_first_tenth_kib']:.0f} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
