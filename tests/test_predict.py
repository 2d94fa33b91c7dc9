"""ocr-predict: label and overlay PNGs per image, colours from the metadata, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from artifacts import PALETTE
from PIL import Image

from ocr_deploy.demo.synthetic import write_samples
from ocr_deploy.runtime import Segmenter
from ocr_deploy.runtime.predict_cli import main
from ocr_deploy.runtime.render import fallback_palette, overlay


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    folder = tmp_path_factory.mktemp("predict_samples")
    (small,) = write_samples(folder / "small", 1, height=40, width=50)
    return [*write_samples(folder, 2, height=120, width=150),
            small.rename(small.parent / "tiny.png")]


def test_writes_labels_and_overlays(nhwc_onnx, samples, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([str(nhwc_onnx)] + [str(p) for p in samples[:2]] + [
        str(samples[2].parent), "-o", str(out), "--json", "--max-batch", "2"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["backend"] == "onnxruntime" and len(summary["images"]) == 3
    assert "[3/3]" in captured.err  # --json keeps the progress, on stderr (-q silences it)
    with Segmenter.open(nhwc_onnx) as seg:
        for entry, path in zip(summary["images"], samples, strict=True):
            image = np.asarray(Image.open(path).convert("RGB"))
            labels_png, overlay_png = Image.open(entry["labels"]), Image.open(entry["overlay"])
            assert labels_png.mode == "L" and labels_png.size == image.shape[1::-1]
            assert overlay_png.mode == "RGB" and overlay_png.size == image.shape[1::-1]
            labels = np.asarray(labels_png)
            assert np.array_equal(labels, seg.predict(image))
            # away from the legend (top-left), overlay = half image + half class colour
            expected = np.rint(0.5 * image + 0.5 * np.asarray(PALETTE, np.float32)[labels])
            assert np.array_equal(np.asarray(overlay_png)[-20:, -20:], expected[-20:, -20:])
            assert sum(entry["class_fractions"].values()) == pytest.approx(1.0, abs=1e-4)
            assert set(entry["class_fractions"]) <= {"background", "disc", "square", "ring"}


def test_full_colour_overlay_and_fallback_palette(nchw_onnx, samples, tmp_path):
    labels_only = nchw_onnx  # no card: no palette
    assert main([str(labels_only), str(samples[0]), "-o", str(tmp_path), "-q",
                 "--alpha", "1", "--no-legend"]) == 0
    labels = np.asarray(Image.open(tmp_path / "sample_000.labels.png"))
    colours = np.asarray(Image.open(tmp_path / "sample_000.overlay.png"))
    assert np.array_equal(colours, fallback_palette(4)[labels])


def test_legend_shows_present_class_names():
    image = np.full((120, 160, 3), 200, np.uint8)
    labels = np.zeros((120, 160), np.uint8)
    labels[60:, 80:] = 2
    plain = np.asarray(overlay(image, labels, fallback_palette(3), 0.5))
    legend = np.asarray(overlay(image, labels, fallback_palette(3), 0.5, ["bg", "a", "bb"]))
    changed = np.argwhere((plain != legend).any(axis=-1))
    assert changed.size and changed[:, 0].max() < 40 and changed[:, 1].max() < 60
    assert np.array_equal(plain[60:, 80:], legend[60:, 80:])


def test_fallback_palette_is_distinct():
    colours = fallback_palette(64)
    assert len({tuple(c) for c in colours}) == 64 and tuple(colours[0]) == (0, 0, 0)


def test_errors_are_one_line(nhwc_onnx, samples, tmp_path, capsys):
    bad_image = tmp_path / "broken.png"
    bad_image.write_bytes(b"\x89PNG not really")
    a_file = tmp_path / "file"
    a_file.write_text("x")
    model = str(nhwc_onnx)
    cases = [[model, str(tmp_path / "missing.png"), "-o", str(tmp_path)],
             [model, str(bad_image), "-o", str(tmp_path / "o")],
             [str(tmp_path / "none.onnx"), str(samples[0]), "-o", str(tmp_path)],
             [model, str(samples[0]), "-o", str(a_file)],
             [model, str(samples[0]), str(samples[0]), "-o", str(tmp_path)],
             [model, str(samples[0]), "-o", str(tmp_path), "--alpha", "2"],
             [model, "-o", str(tmp_path)],  # no image
             [str(samples[0]), model, "-o", str(tmp_path)]]  # the artifact comes first
    for argv in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        errors = [line for line in err if line.startswith("ocr-predict:")]
        assert errors == [err[-1]] and errors[0].startswith("ocr-predict: error: "), err


def test_the_old_model_flag_still_works_with_a_warning(nhwc_onnx, samples, tmp_path, capsys):
    assert main([str(samples[0]), "--model", str(nhwc_onnx), "-o", str(tmp_path), "-q",
                 "--batch", "1"]) == 0
    err = capsys.readouterr().err
    assert "--model is deprecated" in err and "--batch is deprecated: use --max-batch" in err
    assert (tmp_path / "sample_000.labels.png").is_file()


def test_existing_outputs_need_force(nhwc_onnx, samples, tmp_path, capsys):
    argv = [str(nhwc_onnx), str(samples[0]), "-o", str(tmp_path), "-q"]
    assert main(argv) == 0
    labels = tmp_path / "sample_000.labels.png"
    labels.write_bytes(b"kept")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--force" in err and "2 existing file(s)" in err and labels.read_bytes() == b"kept"
    assert main([*argv, "--force"]) == 0
    assert Image.open(labels).mode == "L"
