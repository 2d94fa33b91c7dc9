"""Frames per second of ``Segmenter.stream`` against a loop of ``predict`` on the same
frames, and the peak memory of tiled inference against the image size.

    python benchmarks/stream_figures.py [--frames 120] [--rounds 5] [--sizes 1024,...,8192]
    python benchmarks/stream_figures.py --smoke          # tiny sizes, one round (CI)
    python benchmarks/stream_figures.py --write-clip clip.mp4      # the clip, for ocr-predict
    python benchmarks/stream_figures.py --write-image large.png --image-size 2048

Stream: a synthetic 640x480 clip (a camera panning over a scene of ``ocr_deploy.demo.
synthetic``), decoded once into memory, runs through the plain INT8 artifact and the
end-to-end one the demo builds (``ocr-demo``: ``engines/demo_ocrnet_int8.onnx``,
``engines/demo_ocrnet_int8_e2e.onnx``), ``--rounds`` times, the stream and the loop
interleaved (their order alternating) on one open ``Segmenter``; the figures are the
median frames per second of each and the median of the per-round ratios.

Tiling: for each side in ``--sizes``, a fresh process opens the plain artifact, makes a
square image (a mosaic of synthetic samples repeated), and segments it with ``--tile`` the
model's input size and ``--tile-overlap``; its peak RSS (``VmHWM``) and the RSS before the
call (the image loaded, the model open) are read from ``/proc``. Results: benchmarks/results/
stream_figures.json (not in ``--smoke`` mode).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
PLAIN = ROOT / "engines" / "demo_ocrnet_int8.onnx"
END_TO_END = ROOT / "engines" / "demo_ocrnet_int8_e2e.onnx"
CLIP_SIZE = (480, 640)  # (H, W)
PAN = 4  # pixels the camera moves per frame
FPS = Fraction(30)
SIZES = (1024, 2048, 4096, 8192)
SMOKE = {"frames": 6, "rounds": 1, "sizes": (256, 512)}


def clip_frames(count: int) -> list[np.ndarray]:
    """``count`` 480x640 RGB frames panning over one synthetic scene."""
    from ocr_deploy.demo.synthetic import make_sample

    height, width = CLIP_SIZE
    scene, _ = make_sample(11, 0, height, width + PAN * count)
    return [np.ascontiguousarray(scene[:, PAN * i:PAN * i + width]) for i in range(count)]


def square_image(side: int) -> np.ndarray:
    """A ``side`` x ``side`` RGB image: a 4x4 mosaic of 96x96 synthetic samples (objects at
    the scale the demo model learnt) repeated."""
    from ocr_deploy.demo.synthetic import make_sample

    samples = [make_sample(12, i, 96, 96)[0] for i in range(16)]
    mosaic = np.concatenate([np.concatenate(samples[row * 4:row * 4 + 4], axis=1)
                             for row in range(4)], axis=0)
    reps = -(-side // mosaic.shape[0])
    return np.ascontiguousarray(np.tile(mosaic, (reps, reps, 1))[:side, :side])


def write_clip(path: Path, count: int) -> None:
    from ocr_deploy.runtime.video import video_writer

    with video_writer(path, FPS) as write:
        for index, frame in enumerate(clip_frames(count)):
            write(index, frame)


def stream_vs_loop(artifact: Path, frames: list[np.ndarray], rounds: int,
                   threads: int | None) -> dict:
    """Interleaved rounds of the stream and the loop on one open segmenter."""
    from ocr_deploy.runtime import Segmenter

    fps: dict[str, list[float]] = {"stream": [], "loop": []}
    cpu: dict[str, list[float]] = {"stream": [], "loop": []}  # process CPU ms per frame
    with Segmenter.open(artifact, threads=threads) as seg:
        seg.predict(frames[0])  # warm up
        for round_ in range(rounds):
            order = ("stream", "loop") if round_ % 2 == 0 else ("loop", "stream")
            for arm in order:
                start, cpu_start = time.perf_counter(), time.process_time()
                if arm == "stream":
                    with seg.stream(frames) as stream:
                        count = sum(1 for _ in stream)
                    stages = stream.stats()["latency_ms"]
                else:
                    count = sum(1 for frame in frames if seg.predict(frame) is not None)
                fps[arm].append(count / (time.perf_counter() - start))
                cpu[arm].append((time.process_time() - cpu_start) * 1e3 / count)
            print(f"      {artifact.name} round {round_ + 1}/{rounds}: stream "
                  f"{fps['stream'][-1]:.1f} fps, loop {fps['loop'][-1]:.1f} fps",
                  file=sys.stderr)
    ratios = [s / lo for s, lo in zip(fps["stream"], fps["loop"], strict=True)]
    # what overlapping can give at most: the stages' sum over the slowest stage
    means = {stage: stages[stage]["mean"] for stage in ("prepare", "infer", "finish")}
    return {"artifact": str(artifact), "frames": len(frames), "rounds": rounds,
            "onnxruntime_threads": threads or "default",
            "stream_fps": round(statistics.median(fps["stream"]), 2),
            "loop_fps": round(statistics.median(fps["loop"]), 2),
            "stream_over_loop": round(statistics.median(ratios), 3),
            "ratios": [round(r, 3) for r in ratios],
            "cpu_ms_per_frame": {arm: round(statistics.median(v), 2) for arm, v in cpu.items()},
            "stage_mean_ms": means,
            "overlap_bound": round(sum(means.values()) / max(means.values()), 3)}


TILED_CHILD = """
import json, sys, time
sys.path.insert(0, {here!r})
from stream_figures import square_image
from ocr_deploy.bench.memory import current_rss_mib, peak_rss_mib, reset_peak_rss
from ocr_deploy.runtime import Segmenter
seg = Segmenter.open({artifact!r})
image = square_image({side})
seg.predict(image[:seg.input_size[0], :seg.input_size[1]])  # warm up
before = current_rss_mib()
reset_peak_rss()
start = time.perf_counter()
labels = seg.predict(image, tile=seg.input_size, tile_overlap={overlap})
seconds = time.perf_counter() - start
print(json.dumps({{"side": {side}, "peak_rss_mib": round(peak_rss_mib(), 1),
                  "rss_before_mib": round(before, 1), "seconds": round(seconds, 2),
                  "image_mib": round(image.nbytes / 2**20, 1),
                  "labels_mib": round(labels.nbytes / 2**20, 1)}}))
"""


def tiled_memory(artifact: Path, side: int, overlap: int) -> dict:
    """Peak RSS of tiled inference on a ``side``-pixel square image, in a fresh process."""
    code = TILED_CHILD.format(here=str(Path(__file__).resolve().parent),
                              artifact=str(artifact.resolve()), side=side, overlap=overlap)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT)  # "python -c" imports this tree
    if run.returncode:
        sys.exit(f"stream_figures: the tiled run of {side}x{side} failed: "
                 f"{(run.stderr.strip().splitlines() or ['?'])[-1]}")
    result = json.loads(run.stdout.strip().splitlines()[-1])
    result["above_before_mib"] = round(result["peak_rss_mib"] - result["rss_before_mib"], 1)
    print(f"      tiled {side}x{side}: peak {result['peak_rss_mib']} MiB "
          f"({result['above_before_mib']} MiB above the image and model), "
          f"{result['seconds']} s", file=sys.stderr)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plain", type=Path, default=PLAIN,
                        help="the plain artifact (default engines/demo_ocrnet_int8.onnx)")
    parser.add_argument("--end-to-end", type=Path, default=END_TO_END,
                        help="the end-to-end 480x640 artifact "
                             "(default engines/demo_ocrnet_int8_e2e.onnx)")
    parser.add_argument("--frames", type=int, default=120, help="clip length (default 120)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="interleaved rounds of stream and loop (default 5)")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)),
                        help="square image sides for tiling (default 1024,2048,4096,8192)")
    parser.add_argument("--tile-overlap", type=int, default=32,
                        help="pixels shared by neighbouring windows (default 32)")
    parser.add_argument("--threads", type=int,
                        help="ONNX Runtime intra-op threads for stream and loop (default: "
                             "ONNX Runtime's, one per core)")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes, one round, nothing written (CI)")
    parser.add_argument("--write-clip", type=Path, metavar="PATH",
                        help="only write the synthetic clip (--frames frames, 640x480, "
                             "30 fps) as an MP4 (needs the video extra)")
    parser.add_argument("--write-image", type=Path, metavar="PATH",
                        help="only write a square synthetic image of --image-size pixels")
    parser.add_argument("--image-size", type=int, default=2048,
                        help="side of --write-image (default 2048)")
    args = parser.parse_args()
    if args.write_clip or args.write_image:
        if args.write_clip:
            write_clip(args.write_clip, args.frames)
        if args.write_image:
            from PIL import Image

            Image.fromarray(square_image(args.image_size)).save(args.write_image)
        return
    frames_count, rounds = args.frames, args.rounds
    sizes = [int(v) for v in args.sizes.split(",")]
    if args.smoke:
        frames_count, rounds, sizes = SMOKE["frames"], SMOKE["rounds"], list(SMOKE["sizes"])
    if args.smoke and (args.plain, args.end_to_end) == (PLAIN, END_TO_END) \
            and not (PLAIN.is_file() and END_TO_END.is_file()):
        from models import demo_int8_artifacts

        args.plain, args.end_to_end = demo_int8_artifacts(RESULTS / "smoke_artifacts")
    for artifact in (args.plain, args.end_to_end):
        if not artifact.is_file():
            sys.exit(f"stream_figures: {artifact}: no such artifact; run ocr-demo (it writes "
                     "engines/) or pass --plain/--end-to-end")
    frames = clip_frames(frames_count)
    load_before = os.getloadavg()[0]
    result = {"clip": f"{frames_count} frames of {CLIP_SIZE[1]}x{CLIP_SIZE[0]}",
              "cpus": os.cpu_count(),
              "stream": [stream_vs_loop(a, frames, rounds, args.threads)
                         for a in (args.plain, args.end_to_end)],
              "tiled": {"artifact": str(args.plain), "tile_overlap": args.tile_overlap,
                        "sizes": [tiled_memory(args.plain, s, args.tile_overlap)
                                  for s in sizes]},
              "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)]}
    if not args.smoke:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "stream_figures.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
