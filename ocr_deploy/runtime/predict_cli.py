"""``ocr-predict ARTIFACT IMAGE... -o OUTDIR``: segment images with an exported model.

For each image it writes ``OUTDIR/NAME.labels.png`` (one class index per pixel, 8-bit
greyscale; 16-bit beyond 256 classes) and ``OUTDIR/NAME.overlay.png`` (the image blended
with the class colours, with a legend of the classes present). Palette and class names
come from the artifact's metadata; a standard colour map fills in when it has none.
Folders given as IMAGE are expanded to their png/jpg/bmp files. An end-to-end artifact
(``ocr-build-engine --end-to-end``) gets the decoded pixels in its colour order and returns
the labels itself; its images must have the size (or a size in the range) it was built for.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np

from ocr_deploy.backends import CHOICES as BACKENDS
from ocr_deploy.cli_support import (
    EXIT_OK,
    add_renamed,
    add_reporting,
    name_list,
    parser_for,
    positive_int,
    print_json,
    run_command,
)
from ocr_deploy.errors import BadInputError
from ocr_deploy.files import write_bytes_atomic
from ocr_deploy.images import list_images, read_image
from ocr_deploy.runtime.preprocess import end_to_end_pixels
from ocr_deploy.runtime.render import ALPHA, class_names_of, label_image, overlay, palette_of
from ocr_deploy.runtime.segmenter import Segmenter

MAX_BATCH = 4  # images run together by default


def build_parser() -> argparse.ArgumentParser:
    parser = parser_for("ocr-predict", __doc__)
    parser.add_argument("inputs", nargs="+", type=Path, metavar="ARTIFACT IMAGE",
                        help="the artifact (an exported .onnx or a TensorRT .engine), then "
                             "image files (png, jpg, bmp) or folders of them")
    parser.add_argument("--model", "-m", type=Path,
                        help="deprecated: the artifact; all positional arguments are then "
                             "images (default: the first positional argument)")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUTDIR",
                        help="folder for the label and overlay PNGs (created if missing)")
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
    add_reporting(parser, "a summary")
    return parser


def _artifact_and_images(args: argparse.Namespace) -> tuple[Path, list[Path]]:
    if args.model is not None:
        print("ocr-predict: warning: --model is deprecated: give the artifact first, "
              "ocr-predict ARTIFACT IMAGE...", file=sys.stderr)
        return args.model, list(args.inputs)
    if len(args.inputs) < 2:
        raise BadInputError(None, "ARTIFACT IMAGE... (an artifact, then images)",
                            f"{len(args.inputs)} argument(s)",
                            "e.g. ocr-predict model.onnx photo.png -o out/")
    return args.inputs[0], list(args.inputs[1:])


def _inputs(paths: list[Path]) -> list[Path]:
    files = []
    for path in paths:
        if path.is_dir():
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
    stems = [f.stem for f in files]
    clash = sorted({s for s in stems if stems.count(s) > 1})
    if clash:
        raise BadInputError(None, "input images with distinct names",
                            f"several named {', '.join(clash)}",
                            "run them separately with different -o folders")
    return files


def _png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _run(args: argparse.Namespace) -> int:
    if not 0.0 <= args.alpha <= 1.0:
        raise BadInputError(None, "--alpha in 0..1", f"--alpha {args.alpha}",
                            "fix the option")
    artifact, images = _artifact_and_images(args)
    files = _inputs(images)
    if args.output.exists() and not args.output.is_dir():
        raise BadInputError(args.output, "a folder for the outputs", "a file",
                            "choose another -o")
    quiet = args.quiet or args.json
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
                                                    for im in images]), strict=True)):
                written.append(_write(args, path, image, labels, palette, names))
                if not quiet:
                    print(f"[{begin + offset + 1}/{len(files)}] {path} -> "
                          f"{written[-1]['overlay']}", file=sys.stderr)
        summary = {"model": str(artifact), **{k: v for k, v in seg.describe().items()
                                                if k in ("backend", "device", "providers")},
                   "images": written, "seconds": round(time.perf_counter() - start, 3)}
    if args.json:
        print_json(summary)
    elif not args.quiet:
        print(f"wrote {2 * len(written)} files to {args.output} in {summary['seconds']:.1f} s",
              file=sys.stderr)
    return EXIT_OK


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
    labels_path = args.output / f"{path.stem}.labels.png"
    overlay_path = args.output / f"{path.stem}.overlay.png"
    legend = None if args.no_legend else names
    write_bytes_atomic(labels_path, _png(label_image(labels)))
    write_bytes_atomic(overlay_path, _png(overlay(image, labels, palette, args.alpha, legend)))
    counts = np.bincount(labels.ravel(), minlength=len(names))
    return {"image": str(path), "labels": str(labels_path), "overlay": str(overlay_path),
            "size": list(labels.shape),
            "class_fractions": {names[c]: round(float(n) / labels.size, 6)
                                for c, n in enumerate(counts) if n}}


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``ocr-predict``."""
    return run_command("ocr-predict", _run, build_parser(), argv)
