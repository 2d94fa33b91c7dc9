"""``ocr-predict`` on a video, URL or camera: its frames through ``Segmenter.stream``, the
overlays encoded as ``OUTDIR/NAME.overlay.mp4``, label maps as
``OUTDIR/NAME/000000.labels.png`` with ``--save-labels``, and the stream's figures."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from ocr_deploy.contract.preprocess import end_to_end_pixels
from ocr_deploy.errors import BadInputError
from ocr_deploy.files import write_bytes_atomic
from ocr_deploy.runtime.render import label_image, overlay, png_bytes
from ocr_deploy.runtime.stream import DEPTH, latency_summary
from ocr_deploy.runtime.video import VideoReader, is_live, video_name, video_writer

PROGRESS_EVERY = 100  # frames between progress lines when the length is unknown
LIVE_DEPTH = 1  # queue depth under the latest policy: the fewest frames in flight


def video_outputs(output: Path, source: str) -> tuple[Path, Path]:
    """Where ``ocr-predict`` writes a video source's overlay and label maps."""
    name = video_name(source)
    return output / f"{name}.overlay.mp4", output / name


def segment_video(segmenter, source: str, args, palette: np.ndarray, names: list[str],
                  quiet: bool) -> dict:
    """Segment one video source as ``ocr-predict`` does; its summary for ``--json``."""
    if args.tile is not None:
        raise BadInputError(source, "still images with --tile", "a video",
                            "drop --tile for videos, or give their frames as images")
    meta = segmenter.metadata
    policy = args.policy if args.policy != "auto" else \
        "latest" if is_live(source) else "block"
    overlay_path, labels_dir = video_outputs(args.output, source)
    legend = None if args.no_legend else names
    reader = VideoReader(source, args.max_frames)
    total = min(filter(None, (reader.frames, args.max_frames)), default=0)
    if not quiet:
        print(f"{source}: {reader.size[1]}x{reader.size[0]} at {float(reader.fps):.2f} fps"
              f"{f', {total} frames' if total else ''}, policy {policy}", file=sys.stderr)
    # an end-to-end artifact takes its own colour order (a view); the overlay takes RGB
    frames = (end_to_end_pixels(frame, meta) for frame in reader)
    writing = []
    with video_writer(overlay_path, reader.fps) as write, \
            segmenter.stream(frames, policy=policy, with_frames=True,
                             depth=LIVE_DEPTH if policy == "latest" else DEPTH) as stream:
        try:
            for count, (index, frame, labels) in enumerate(stream, start=1):
                start = time.perf_counter()
                rgb = end_to_end_pixels(frame, meta)  # the same view again: RGB
                write(index, np.asarray(overlay(rgb, labels, palette, args.alpha, legend)))
                if args.save_labels:
                    write_bytes_atomic(labels_dir / f"{index:06d}.labels.png",
                                       png_bytes(label_image(labels)))
                writing.append(time.perf_counter() - start)
                if not quiet and (count == total or (count % PROGRESS_EVERY == 0)):
                    print(f"      {source}: {count}{f'/{total}' if total else ''} frames, "
                          f"{stream.dropped} dropped", file=sys.stderr)
        except KeyboardInterrupt:
            if not is_live(source):
                raise
            # a live source ends with Ctrl-C: keep what was segmented
            print(f"      {source}: interrupted; finishing the video", file=sys.stderr)
        stream.close()
        figures = {**stream.stats(), "frames": len(writing)}  # segmented and written
    if writing:
        figures["latency_ms"]["write"] = latency_summary(writing)
    if not quiet:
        print(f"      {source} -> {overlay_path}: {figures['frames']} frames at "
              f"{figures['fps']} fps, {figures['dropped']} dropped", file=sys.stderr)
    return {"video": source, "overlay": str(overlay_path),
            "labels": str(labels_dir) if args.save_labels else None,
            "labels_written": len(writing) if args.save_labels else 0,
            "size": list(reader.size), "input_fps": float(reader.fps), **figures}
