"""End-to-end artifacts (``ocr_deploy.graph.end_to_end``) against today's runtime, ONNX
Runtime CPU: the figures of issue #16.

    python benchmarks/end_to_end.py [--models demo,cityscapes] [--rounds 10]
                                    [--images scenes|noise] [--scratch DIR] [--fresh] [--json]

For the demo model and the Cityscapes configuration (``OCRNetConfig.cityscapes()``, random
weights, 512x1024): the export and the plain INT8 artifact as ``ocr-build-engine --int8``
builds it (ONNX Runtime placement, entropy calibration, no verification), and the
end-to-end artifacts as ``ocr-build-engine --int8 --end-to-end --image-size 1024x2048``
builds them from the same export and calibration data (its cached ranges are reused),
once per labels form (``--e2e-labels``), with their verdict and parity figure. All are
cached in ``--scratch`` (outside the repository). Then on 1024x2048 uint8 camera-size
images (``scenes``: the demo's synthetic scenes, few class boundaries; ``noise``: uniform
random pixels, class boundaries everywhere for the random-weight model), 2 threads,
batch 1, in interleaved rounds (medians):

- the end-to-end artifact (``Segmenter.predict``), in each labels form;
- ``Segmenter.predict`` on the plain artifact;
- the plain artifact's compute (``Segmenter.run`` on a prepared batch);
- today's pre-processing alone (``Segmenter.prepare``) and post-processing alone
  (``postprocess.labels_from_scores`` on the plain artifact's logits).

Ratios are medians of the per-round ratios (each round's calls ran seconds apart).

Prints the ratios of the issue's table, the bytes the artifact returns per frame, and the
label agreement of the run (the parity report: ties judged at the image size).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness
import int8_figures  # the images of the INT8 figures
import models  # exports and builds

RESULTS = Path(__file__).resolve().parent / "results"
IMAGE = (1024, 2048)
THREADS = 2
CALIBRATION = {"demo": 32, "cityscapes": 8}  # images, as benchmarks/int8_figures.py uses
FORMS = ("boundary", "dense")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def prepare_model(name: str, folder: Path, fresh: bool) -> dict:
    """The export, calibration images and plain INT8 artifact of ``name`` (cached)."""
    folder.mkdir(parents=True, exist_ok=True)
    calib = folder / "calib"
    if name == "demo":
        onnx_path = folder / "demo.onnx"
        if fresh or not onnx_path.exists():
            log("[demo] exporting ...")
            models.export_demo(folder)
        if fresh or not calib.exists():
            from ocr_deploy.demo.synthetic import TRAIN_SEED, write_samples

            write_samples(calib, CALIBRATION[name], seed=TRAIN_SEED)
    else:
        onnx_path = folder / "cityscapes_512x1024.onnx"
        if fresh or not onnx_path.exists():
            log("[cityscapes] exporting the Cityscapes configuration at 512x1024 ...")
            models.export_cityscapes(folder, 512, 1024)
        if fresh or not calib.exists():
            int8_figures.smooth_images(calib, CALIBRATION[name], 512, 1024)
    plain = folder / f"{name}_int8.onnx"
    if fresh or not plain.exists():
        log(f"[{name}] building the plain INT8 artifact ...")
        models.build(onnx_path, "int8", plain, calib, CALIBRATION[name], verify=False)
    return {"onnx": onnx_path, "calib": calib, "plain": plain}


def end_to_end_artifact(name: str, paths: dict, form: str, folder: Path, fresh: bool) -> Path:
    """The end-to-end artifact as ``ocr-build-engine --int8 --end-to-end --image-size
    1024x2048 --e2e-labels FORM`` builds it (the library call; same calibration data, so
    the build reuses the plain build's cached ranges), verified on 4 calibration images
    resized to the camera size."""
    out = folder / f"{name}_int8_e2e_{form}.onnx"
    if out.exists() and not fresh:
        return out
    from ocr_deploy.builder.end_to_end import EndToEndRequest
    from ocr_deploy.contract.image_sizes import ImageSizes

    log(f"[{name}] building the end-to-end artifact ({form}) ...")
    models.build(paths["onnx"], "int8", out, paths["calib"], CALIBRATION[name],
                       val_samples=4, end_to_end=EndToEndRequest(ImageSizes.fixed(*IMAGE),
                                                                 labels_form=form))
    return out


def camera_images(kind: str, count: int, size: tuple[int, int] = IMAGE) -> list[np.ndarray]:
    """Camera-size frames: the demo's synthetic scenes or uniform noise (1024x2048)."""
    if kind == "noise":
        rng = np.random.default_rng(0)
        return [rng.integers(0, 256, (*size, 3), np.uint8) for _ in range(count)]
    from ocr_deploy.demo.synthetic import VALIDATION_SEED, make_sample

    return [make_sample(VALIDATION_SEED, i, *size)[0] for i in range(count)]


def interleaved(calls: dict, rounds: int) -> dict[str, np.ndarray]:
    """Seconds of each call per round, timed round-robin after two warm-up rounds."""
    times: dict[str, list[float]] = {label: [] for label in calls}
    for warm in range(rounds + 2):
        for label, call in calls.items():
            start = time.perf_counter()
            call()
            if warm >= 2:
                times[label].append(time.perf_counter() - start)
    return {label: np.asarray(t) for label, t in times.items()}


def paired(numerator: np.ndarray, denominator: np.ndarray) -> float:
    """The median of per-round ratios: calls of one round ran seconds apart, so a shared
    machine's load drifts less between them than over the run."""
    return round(float(np.median(numerator / denominator)), 2)


def measure(name: str, paths: dict, e2e: dict[str, Path], rounds: int, kind: str) -> dict:
    from ocr_deploy.contract import postprocess
    from ocr_deploy.runtime import Segmenter
    from ocr_deploy.verification.end_to_end_parity import end_to_end_parity

    images = camera_images(kind, 3, IMAGE)
    image = images[0]
    with Segmenter.open(paths["plain"], threads=THREADS) as plain:
        wrapped = {form: Segmenter.open(path, threads=THREADS) for form, path in e2e.items()}
        try:
            batch = plain.prepare([image])
            (output,) = plain.outputs_for([IMAGE])
            logits = plain.run(batch, [output])[output]
            layout = plain.metadata.outputs[output].get("layout", plain.metadata.input_layout)
            scores = postprocess.scores_hwk(logits, 0, layout)
            calls = {f"end-to-end ({form})": (lambda s=s: s.predict(image))
                     for form, s in wrapped.items()}
            calls.update({
                "Segmenter.predict (plain)": lambda: plain.predict(image),
                "compute (plain run)": lambda: plain.run(batch, [output]),
                "pre alone (prepare)": lambda: plain.prepare([image]),
                "post alone (labels_from_scores)":
                    lambda: postprocess.labels_from_scores(scores, *IMAGE),
            })
            log(f"[{name}] timing {rounds} interleaved rounds at {IMAGE[0]}x{IMAGE[1]} ...")
            seconds = interleaved(calls, rounds)
            parity = {form: end_to_end_parity(s, plain, images) for form, s in wrapped.items()}
            labels_bytes = {form: int(s.run(s.prepare([image]))[s.labels_output].nbytes)
                            for form, s in wrapped.items()}
        finally:
            for segmenter in wrapped.values():
                segmenter.close()
    ms = {label: round(1000 * float(np.median(t)), 1) for label, t in seconds.items()}
    best = min(FORMS, key=lambda form: ms[f"end-to-end ({form})"])
    e2e_times = {form: seconds[f"end-to-end ({form})"] for form in FORMS}
    return {
        "model": name, "image": list(IMAGE), "images": kind, "threads": THREADS, "batch": 1,
        "ms": ms,
        "fastest_form": best,
        "speedup_vs_predict": {f: paired(seconds["Segmenter.predict (plain)"], t)
                               for f, t in e2e_times.items()},
        "over_compute": {f: paired(t, seconds["compute (plain run)"])
                         for f, t in e2e_times.items()},
        "bytes_per_frame": {"plain logits from the engine": int(logits.nbytes),
                            "logits at the image size (predict_scores)":
                                int(np.prod(IMAGE) * plain.metadata.num_classes * 4),
                            **{f"end-to-end labels ({f})": b
                               for f, b in labels_bytes.items()}},
        "parity": parity,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="demo,cityscapes",
                        help="models to measure, comma-separated (default demo,cityscapes)")
    parser.add_argument("--rounds", type=int, default=10,
                        help="timed interleaved rounds (default 10)")
    parser.add_argument("--images", choices=("scenes", "noise"), default="scenes",
                        help="test frames: synthetic scenes or uniform noise (default scenes)")
    parser.add_argument("--scratch", type=Path,
                        default=Path(tempfile.gettempdir()) / "ocr-deploy-end-to-end",
                        help="cache folder for exports and builds (default: "
                             "$TMPDIR/ocr-deploy-end-to-end)")
    parser.add_argument("--fresh", action="store_true",
                        help="export and build again even when cached")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    harness.add_smoke(parser)
    args = harness.shrink(parser.parse_args(), models="demo", rounds=1, fresh=True,
                          scratch=Path(tempfile.mkdtemp(prefix="end_to_end_smoke-")))
    if args.smoke:
        global IMAGE
        IMAGE = (96, 128)
    results, load_before = [], os.getloadavg()
    for name in args.models.split(","):
        if name not in CALIBRATION:
            raise SystemExit(f"unknown model '{name}': choose from {', '.join(CALIBRATION)}")
        folder = args.scratch / name
        paths = prepare_model(name, folder, args.fresh)
        e2e = {form: end_to_end_artifact(name, paths, form, folder, args.fresh)
               for form in FORMS}
        results.append(measure(name, paths, e2e, args.rounds, args.images))
    report = {"load_average": {"before": [round(v, 2) for v in load_before],
                               "after": [round(v, 2) for v in os.getloadavg()]},
              "cases": results}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"end_to_end_{args.images}.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2) if args.json else _table(report))


def _table(report: dict) -> str:
    load = report["load_average"]
    lines = [f"load average (1, 5, 15 min) before {load['before']}, after {load['after']}"]
    for case in report["cases"]:
        lines.append(f"{case['model']} INT8, {case['image'][0]}x{case['image'][1]} uint8 "
                     f"{case['images']}, "
                     f"ONNX Runtime CPU, {case['threads']} threads, batch 1 (median ms):")
        lines += [f"  {label:40s} {ms:9.1f}" for label, ms in case["ms"].items()]
        for form in FORMS:
            parity = case["parity"][form]
            speedup = case["speedup_vs_predict"][form]
            lines.append(f"  {form:9s}: predict / end-to-end {speedup:.2f}x"
                         f", end-to-end / compute {case['over_compute'][form]:.2f}, agreement "
                         f"{parity['agreement']:.5%} ({parity['agreement_excl_ties']:.5%} "
                         f"outside ties, {parity['tie_pixels']} tie pixels)")
        lines.append("  bytes per frame: " + ", ".join(
            f"{label} {value / 1e6:.1f} MB" for label, value in case["bytes_per_frame"].items()))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
