"""The main job on the demo model, end to end:

export with parity -> engines in FP32, FP16 and INT8 (TensorRT where present, else ONNX
Runtime) within the accuracy budget, and an INT8 end-to-end artifact for 480x640 camera
frames (uint8 pixels in, labels out: ``ocr-build-engine --end-to-end``) -> prediction
overlays -> benchmark table and plot (the end-to-end artifact beside the plain INT8 one
on images of its size).

Exported models go to ``export/``, built artifacts to ``engines/``, and pictures, data and
the benchmark report to ``demo_output/``. Rerunning replaces the demo's own outputs and
reuses the INT8 calibration cache.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ocr_deploy.demo import DEMO_MODEL
from ocr_deploy.progress import Progress
from ocr_deploy.sidecar import Sidecar

PRECISIONS = ("fp32", "fp16", "int8")
CALIB_SAMPLES = 64
VAL_SAMPLES = 100
OVERLAY_SAMPLES = 4
BENCH_BATCHES = (1, 4, 8)
CAMERA = (480, 640)  # the end-to-end artifact's image size (the demo model takes 96x96)
END_TO_END = "int8_e2e"  # its key in DemoResult.builds


@dataclass
class DemoResult:
    """Everything the demo produced, for printing or ``--json``."""

    export: dict
    builds: dict = field(default_factory=dict)
    overlays: Path | None = None
    bench: dict = field(default_factory=dict)
    bench_table: str = ""
    plot: Path | None = None


def run_demo(workdir: Path = Path("."), backend: str = "auto", iterations: int = 20,
             quiet: bool = False) -> DemoResult:
    """Run the whole pipeline under ``workdir``; return what it made."""
    from ocr_deploy.backends import choose
    from ocr_deploy.bench.plot import plot_report
    from ocr_deploy.bench.report import format_table
    from ocr_deploy.bench.runner import benchmark
    from ocr_deploy.builder.end_to_end import EndToEndRequest
    from ocr_deploy.builder.pipeline import BuildRequest, build
    from ocr_deploy.contract.image_sizes import ImageSizes
    from ocr_deploy.demo.synthetic import TRAIN_SEED, write_samples
    from ocr_deploy.export.pipeline import ExportRequest, export_model
    from ocr_deploy.files import write_bytes_atomic

    workdir = Path(workdir)
    out = workdir / "demo_output"
    progress = Progress(6, quiet)
    with progress.stage("exporting the demo model with parity check"):
        exported = export_model(ExportRequest(
            model=DEMO_MODEL, output=workdir / "export" / "demo_ocrnet.onnx", force=True,
            argmax=True, quiet=True))
        result = DemoResult(exported.to_dict())
        progress.note(f"{exported.onnx_path}: parity "
                      f"{'passed' if exported.parity.passed else 'FAILED'}")
    with progress.stage("writing synthetic calibration and validation images"):
        calib, val = out / "data" / "calib", out / "data" / "val"
        write_samples(calib, CALIB_SAMPLES, seed=TRAIN_SEED)
        write_samples(val, VAL_SAMPLES)
    chosen, why = choose(backend)
    with progress.stage(f"building FP32, FP16 and INT8 with {chosen.name} ({why})"):
        for precision in PRECISIONS:
            data = {"val_dir": val}  # FP32 too: its artifact is checked against the export
            if precision == "int8":
                data.update(calib_dir=calib, calib_samples=CALIB_SAMPLES)
            built = build(BuildRequest(
                onnx=exported.onnx_path, precision=precision, backend=backend, force=True,
                output=workdir / "engines" / f"demo_ocrnet_{precision}", quiet=True, **data))
            result.builds[precision] = built.info
            progress.note(_describe_build(precision, built.record))
    with progress.stage(f"building an INT8 end-to-end artifact for {CAMERA[0]}x{CAMERA[1]} "
                        "camera frames"):
        built = build(BuildRequest(
            onnx=exported.onnx_path, precision="int8", backend=backend, force=True,
            output=workdir / "engines" / "demo_ocrnet_int8_e2e", quiet=True, val_dir=val,
            calib_dir=calib, calib_samples=CALIB_SAMPLES,
            end_to_end=EndToEndRequest(ImageSizes.fixed(*CAMERA))))
        result.builds[END_TO_END] = built.info
        progress.note(_describe_build(END_TO_END, built.record))
    with progress.stage("predicting overlays"):
        result.overlays = _overlays(result.builds, val, out / "predictions.png")
        progress.note(f"wrote {result.overlays}")
    with progress.stage("benchmarking (Keras vs the built artifacts)"):
        artifacts = [DEMO_MODEL] + [Path(result.builds[p]["artifact"]) for p in PRECISIONS]
        sizes = [None] * len(artifacts) + [CAMERA, None]  # plain INT8 and e2e at 480x640
        artifacts += [Path(result.builds[p]["artifact"]) for p in ("int8", END_TO_END)]
        result.bench = benchmark(artifacts, BENCH_BATCHES, warmup=3, iterations=iterations,
                                 image_sizes=sizes)
        result.bench_table = format_table(result.bench)
        write_bytes_atomic(out / "bench.json", (json.dumps(result.bench, indent=2) + "\n")
                           .encode())
        result.plot = plot_report(result.bench, out / "latency.png")
    return result


def _describe_build(precision: str, record: Sidecar) -> str:
    text = f"{precision}: {record.artifact} ({record.artifact_bytes / 2**20:.2f} MiB)"
    accuracy = (record.verification or {}).get("accuracy")
    if accuracy:
        text += (f", mIoU {accuracy['miou']:.2f} vs FP32 {accuracy['miou_fp32']:.2f}, "
                 f"label agreement {accuracy['agreement']:.2%}")
    parity = record.end_to_end_parity
    if parity:
        text += f", labels as Segmenter.predict on {parity['agreement']:.4%} of pixels"
    calibration = record.calibration
    if calibration:
        text += (", calibration reused from cache" if calibration["cache_hit"] else
                 f", calibrated in {calibration['seconds']:.1f} s")
    return text


def _overlays(builds: dict, val: Path, path: Path) -> Path:
    """One picture: per validation image, the image, its ground truth and each precision."""
    from PIL import Image

    from ocr_deploy.files import write_bytes_atomic
    from ocr_deploy.images import list_images, read_image
    from ocr_deploy.runtime import Segmenter
    from ocr_deploy.runtime.render import overlay, palette_of

    files = list_images(val)[:OVERLAY_SAMPLES]
    images = [read_image(f) for f in files]
    truth = [np.asarray(Image.open(val / "labels" / f.name)) for f in files]
    columns = [("ground truth", truth)]
    for precision, info in builds.items():
        if precision == END_TO_END:  # takes 480x640 frames only
            continue
        with Segmenter.open(info["artifact"]) as segmenter:
            palette = palette_of(segmenter.metadata)
            columns.append((precision, segmenter.predict(images)))
    height, width = images[0].shape[:2]
    scale = 2
    sheet = Image.new("RGB", (width * scale * (len(columns) + 1), height * scale * len(images)),
                      "white")
    for row, image in enumerate(images):
        cells = [Image.fromarray(image)] + [overlay(image, labels[row], palette)
                                            for _, labels in columns]
        for col, cell in enumerate(cells):
            sheet.paste(cell.resize((width * scale, height * scale), Image.NEAREST),
                        (col * width * scale, row * height * scale))
    _label_columns(sheet, ["image"] + [name for name, _ in columns], width * scale)
    import io

    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    write_bytes_atomic(path, buffer.getvalue())
    return path


def _label_columns(sheet, names: list[str], cell_width: int) -> None:
    from PIL import ImageDraw

    draw = ImageDraw.Draw(sheet)
    for col, name in enumerate(names):
        x = col * cell_width + 4
        draw.rectangle((x - 2, 2, x + 7 * len(name) + 2, 14), fill="white")
        draw.text((x, 2), name, fill="black")
