"""``ocr-predict ARTIFACT INPUT... -o OUTDIR``: segment images and videos with an exported
model.

For each image it writes ``OUTDIR/NAME.labels.png`` (one class index per pixel, 8-bit
greyscale; 16-bit beyond 256 classes) and ``OUTDIR/NAME.overlay.png`` (the image blended
with the class colours, with a legend of the classes present). Palette and class names
come from the artifact's metadata; a standard colour map fills in when it has none.
Folders given as IMAGE are expanded to their png/jpg/bmp files. An end-to-end artifact
(``ocr-build-engine --end-to-end``) gets the decoded pixels in its colour order and returns
the labels itself; its images must have the size (or a size in the range) it was built for.
With --tile, still images larger than the model are segmented by overlapping windows.

Videos (mp4, mkv, mov, avi, webm ...), URLs FFmpeg opens (rtsp://, http://) and cameras
(/dev/video0) need the video extra (pip install 'ocr-deploy[video]'). Their frames run
through a pipeline (decoding, pre-processing, inference and post-processing overlapped);
each writes OUTDIR/NAME.overlay.mp4 (every frame, at the source's frame rate) and, with
--save-labels, OUTDIR/NAME/000000.labels.png, 000001 ... (lossless label maps).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from ocr_deploy.backends import CHOICES as BACKENDS
from ocr_deploy.cli_support import (
    EXIT_OK,
    add_force,
    add_renamed,
    add_reporting,
    name_list,
    non_negative_int,
    parser_for,
    positive_int,
    print_json,
    run_command,
    size_arg,
)
from ocr_deploy.contract.preprocess import end_to_end_pixels
from ocr_deploy.errors import BadInputError, OutputExistsError
from ocr_deploy.files import write_bytes_atomic
from ocr_deploy.images import list_images, read_image
from ocr_deploy.runtime.render import (
    ALPHA,
    class_names_of,
    label_image,
    overlay,
    palette_of,
    png_bytes,
)
from ocr_deploy.runtime.segmenter import Segmenter
from ocr_deploy.runtime.stream import POLICIES
from ocr_deploy.runtime.video import import_av, is_live, is_video, video_name
from ocr_deploy.runtime.video_cli import segment_video, video_outputs
from ocr_deploy.warning_channel import warn

MAX_BATCH = 4  # images run together by default


def build_parser() -> argparse.ArgumentParser:
    parser = parser_for("ocr-predict", __doc__)
    parser.add_argument("inputs", nargs="+", metavar="ARTIFACT INPUT",
                        help="the artifact (an exported .onnx or a TensorRT .engine), then "
                             "image files (png, jpg, bmp), folders of them, videos, URLs "
                             "(rtsp://, http://) or cameras (/dev/video0)")
    parser.add_argument("--model", "-m", type=Path,
                        help="deprecated: the artifact; all positional arguments are then "
                             "images (default: the first positional argument)")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUTDIR",
                        help="folder for the label maps and overlays (created if missing)")
    parser.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="check which backend runs the artifact (auto: by file type)")
    parser.add_argument("--providers", type=name_list,
                        help="ONNX Runtime execution providers, e.g. cuda,cpu "
                        "(default: the best available)")
    parser.add_argument("--max-batch", type=positive_int, metavar="N",
                        help=f"images run together (default: up to {MAX_BATCH}, as many as "
                             "hold 2 MiB of model input: one from 256x512 up)")
    add_renamed(parser, "--batch", "--max-batch", "max_batch", type=positive_int)
    parser.add_argument("--alpha", type=float, default=ALPHA,
                        help="weight of the class colours in the overlay, 0..1")
    parser.add_argument("--no-legend", action="store_true", help="no legend on the overlays")
    parser.add_argument("--tile", type=size_arg, metavar="HxW",
                        help="segment still images by overlapping windows of HxW pixels, "
                             "their scores blended (images larger than the model; the "
                             "model's input size avoids resizing; needs an artifact with "
                             "scores) (default: off, each image resized to the model)")
    parser.add_argument("--tile-overlap", type=non_negative_int, default=0, metavar="PX",
                        help="pixels shared by neighbouring windows of --tile")
    video = parser.add_argument_group("videos, URLs and cameras")
    video.add_argument("--save-labels", action="store_true",
                       help="also write each frame's label map, OUTDIR/NAME/000000.labels.png")
    video.add_argument("--max-frames", type=positive_int, metavar="N",
                       help="stop after N frames (default: the whole video; a live source "
                            "until it ends or Ctrl-C)")
    video.add_argument("--policy", choices=("auto", *POLICIES), default="auto",
                       help="block: segment every frame, reading waits for the model; "
                            "latest: drop stale frames to keep up with a live source; "
                            "auto: latest for URLs and cameras, block for files")
    add_force(parser, "existing label and overlay PNGs in OUTDIR")
    add_reporting(parser, "a summary")
    return parser


def _artifact_and_images(args: argparse.Namespace) -> tuple[Path, list[str]]:
    if args.model is not None:
        warn("--model is deprecated: give the artifact first, ocr-predict ARTIFACT INPUT...")
        return args.model, list(args.inputs)
    if len(args.inputs) < 2:
        raise BadInputError(None, "ARTIFACT INPUT... (an artifact, then images or videos)",
                            f"{len(args.inputs)} argument(s)",
                            "e.g. ocr-predict model.onnx photo.png -o out/")
    return Path(args.inputs[0]), list(args.inputs[1:])


def _inputs(names: list[str]) -> tuple[list[Path], list[str]]:
    """The image files (folders expanded) and the video sources among the inputs."""
    files, videos = [], []
    for name in names:
        path = Path(name)
        if is_video(name):
            if not is_live(name) and not path.is_file():
                raise BadInputError(path, "a video file", "no such file", "check the path")
            videos.append(name)
        elif path.is_dir():
            found = list_images(path)
            if not found:
                raise BadInputError(path, "png/jpg/bmp images in the folder", "none",
                                    "check the folder")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise BadInputError(path, "an image file or a folder", "no such path",
                                "check the path")
    stems = [f.stem for f in files] + [video_name(v) for v in videos]
    clash = sorted({s for s in stems if stems.count(s) > 1})
    if clash:
        raise BadInputError(None, "inputs with distinct names",
                            f"several named {', '.join(clash)}",
                            "run them separately with different -o folders")
    return files, videos


def _run(args: argparse.Namespace) -> int:
    if not 0.0 <= args.alpha <= 1.0:
        raise BadInputError(None, "--alpha in 0..1", f"--alpha {args.alpha}",
                            "fix the option")
    artifact, names = _artifact_and_images(args)
    files, videos = _inputs(names)
    if args.output.exists() and not args.output.is_dir():
        raise BadInputError(args.output, "a folder for the outputs", "a file",
                            "choose another -o")
    if args.tile_overlap and args.tile is None:
        raise BadInputError(None, "--tile-overlap with --tile", "no --tile",
                            "add --tile HxW, e.g. the model's input size")
    if videos:
        import_av()  # before the model loads: a missing extra is a quick, clear error
    _refuse_existing(args, files, videos)
    quiet = args.quiet
    start = time.perf_counter()
    written = []
    with Segmenter.open(artifact, args.backend, args.providers,
                        max_batch=args.max_batch) as seg:
        meta = seg.metadata
        step = args.max_batch or batch_for(seg)
        palette = palette_of(meta)
        names = class_names_of(meta, len(palette))
        if not quiet:
            info = seg.describe()
            print(f"model: {artifact} ({info['backend']}, {info['device']}, "
                  f"{meta.num_classes} classes)", file=sys.stderr)
        for begin in range(0, len(files), step):
            chunk = files[begin:begin + step]
            images = [read_image(f) for f in chunk]
            for offset, (path, image, labels) in enumerate(
                    zip(chunk, images, seg.predict([end_to_end_pixels(im, meta)
                                                    for im in images], tile=args.tile,
                                                   tile_overlap=args.tile_overlap),
                        strict=True)):
                written.append(_write(args, path, image, labels, palette, names))
                if not quiet:
                    print(f"[{begin + offset + 1}/{len(files)}] {path} -> "
                          f"{written[-1]['overlay']}", file=sys.stderr)
        streamed = [segment_video(seg, source, args, palette, names, quiet)
                    for source in videos]
        summary = {"model": str(artifact), **{k: v for k, v in seg.describe().items()
                                                if k in ("backend", "device", "providers")},
                   "images": written, "videos": streamed,
                   "seconds": round(time.perf_counter() - start, 3)}
    if args.json:
        print_json(summary)
    elif not args.quiet:
        count = 2 * len(written) + sum(1 + v["labels_written"] for v in streamed)
        print(f"wrote {count} files to {args.output} in {summary['seconds']:.1f} s",
              file=sys.stderr)
    return EXIT_OK


def _outputs(args: argparse.Namespace, path: Path) -> tuple[Path, Path]:
    return (args.output / f"{path.stem}.labels.png", args.output / f"{path.stem}.overlay.png")


def _refuse_existing(args: argparse.Namespace, files: list[Path], videos: list[str]) -> None:
    """Before any work: without --force an existing output is exit 2, as for every ocr-*."""
    if args.force:
        return
    existing = [out for path in files for out in _outputs(args, path) if out.exists()]
    for source in videos:
        overlay_path, labels_dir = video_outputs(args.output, source)
        existing += [overlay_path] if overlay_path.exists() else []
        existing += [labels_dir] if args.save_labels and labels_dir.is_dir() \
            and any(labels_dir.iterdir()) else []
    if existing:
        raise OutputExistsError(existing[0], "outputs that do not exist yet",
                                f"{len(existing)} existing file(s)",
                                "pass --force to replace them (atomically), or choose "
                                "another -o")


def batch_for(segmenter: Segmenter) -> int:
    """Images run together by default: up to ``MAX_BATCH``, at most
    ``memory_budget.BATCH_INPUT_BYTES`` of model input (the artifact's own limit applies)."""
    from ocr_deploy.memory_budget import BATCH_INPUT_BYTES

    height, width = segmenter.input_size
    sample = height * width * segmenter.metadata.input_channels * \
        segmenter.input_dtype.itemsize
    return max(1, min(MAX_BATCH, segmenter.max_batch or MAX_BATCH,
                      BATCH_INPUT_BYTES // max(1, sample)))


def _write(args, path: Path, image: np.ndarray, labels: np.ndarray, palette: np.ndarray,
           names: list[str]) -> dict:
    labels_path, overlay_path = _outputs(args, path)
    legend = None if args.no_legend else names
    write_bytes_atomic(labels_path, png_bytes(label_image(labels)))
    write_bytes_atomic(overlay_path, png_bytes(overlay(image, labels, palette, args.alpha, legend)))
    counts = np.bincount(labels.ravel(), minlength=len(names))
    return {"image": str(path), "labels": str(labels_path), "overlay": str(overlay_path),
            "size": list(labels.shape),
            "class_fractions": {names[c]: round(float(n) / labels.size, 6)
                                for c, n in enumerate(counts) if n}}


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``ocr-predict``."""
    return run_command("ocr-predict", _run, build_parser(), argv)
