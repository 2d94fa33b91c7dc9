"""The C ABI (include/ocr_deploy.h, libocr_deploy.so): built with CMake here, exercised by C
programs (capi/tests/capi_test.c, examples/), and compared with ``Segmenter`` in Python."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from artifacts import CLASS_NAMES, PALETTE
from e2e_models import save, segnet

from ocr_deploy.runtime import Segmenter
from ocr_deploy.runtime.render import fallback_palette

pytestmark = pytest.mark.xdist_group("capi")  # one worker, one CMake build
ROOT = Path(__file__).resolve().parents[1]
FORMATS = ["RGB8", "BGR8", "RGBA8", "BGRA8", "GRAY8"]
STATUS = {"OCR_E_INVALID_ARGUMENT": "images|results|count|segmenter|info|out|artifact|options",
          "OCR_E_BUFFER_TOO_SMALL": "capacity_bytes", "OCR_E_BAD_ARTIFACT": ".onnx",
          "OCR_E_UNSUPPORTED": "labels-only", "OCR_E_ENVIRONMENT": "environment"}


def _cmake(*args: str, cwd: Path | None = None) -> None:
    done = subprocess.run(["cmake", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def _build(build_dir: Path, *options: str) -> Path:
    for tool in ("cmake", "gcc", "g++"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed: cannot build the C ABI")
    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        pytest.skip("this Python has no shared libpython to embed (built without "
                    "--enable-shared)")
    _cmake("-S", str(ROOT / "capi"), "-B", str(build_dir), f"-DPython3_EXECUTABLE={sys.executable}",
           "-DOCR_DEPLOY_BUILD_TESTS=ON", *options)
    _cmake("--build", str(build_dir), "-j2")
    return build_dir


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> Path:
    return _build(tmp_path_factory.mktemp("capi_build"))


def run(build: Path, *args, env: dict | None = None, timeout: int = 300,
        program: str = "capi_test") -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "OCR_DEPLOY_PYTHON"}
    return subprocess.run([str(build / program), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env={**environ, **(env or {})})


def synthetic(n: int, height: int, width: int) -> np.ndarray:
    """Image ``n`` of a batch, as capi_test.c's channel_value makes it (RGB)."""
    y, x, c = (a.astype(np.uint32) for a in np.mgrid[0:height, 0:width, 0:3])
    return ((x * (7 + c) + y * (13 + 2 * c) + ((x * y) >> 3) + n * 31 + c * 50) & 255
            ).astype(np.uint8)


def as_given(image: np.ndarray, pixel_format: str, channels: int) -> np.ndarray:
    """What the C program's pixels mean for Python's predict: GRAY8 holds channel 0."""
    if pixel_format != "GRAY8":
        return image
    grey = image[..., 0]
    return grey if channels == 1 else np.repeat(grey[..., None], 3, axis=2)


def c_labels(build: Path, model: Path, specs: list[str], tmp_path: Path,
             label_type: str = "u8") -> list[np.ndarray]:
    out = tmp_path / "labels.raw"
    done = run(build, "predict", model, out, label_type, *specs)
    assert done.returncode == 0, done.stderr
    flat = np.fromfile(out, np.uint8 if label_type == "u8" else np.uint16)
    maps, start = [], 0
    for spec in specs:
        width, height = map(int, spec.split(":")[0].split("x"))
        maps.append(flat[start:start + width * height].reshape(height, width))
        start += width * height
    assert start == flat.size
    return maps


def python_labels(model: Path, specs: list[str]) -> list[np.ndarray]:
    with Segmenter.open(model) as seg:
        channels = seg.metadata.input_channels
        images = []
        for n, spec in enumerate(specs):
            size, pixel_format = spec.split(":")
            width, height = map(int, size.split("x"))
            images.append(as_given(synthetic(n, height, width), pixel_format, channels))
        return seg.predict(images)


def test_info_describes_the_model(build, nhwc_onnx, nchw_onnx):
    done = run(build, "info", nhwc_onnx)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:10] == ["abi 65537", "classes 4", "input 64x64x3", "label_type 1",
                          "has_scores 1", "max_batch 0", "precision fp32",
                          "backend onnxruntime", "device cpu", "images 0x0 to 0x0"]
    assert lines[10:] == [f"class {k} {r} {g} {b} {name}" for k, ((r, g, b), name)
                         in enumerate(zip(PALETTE, CLASS_NAMES, strict=True))]
    done = run(build, "info", nchw_onnx)  # labels only, no model card: fallbacks
    lines = done.stdout.splitlines()
    assert "has_scores 0" in lines
    colors = fallback_palette(4)
    assert lines[10:] == [f"class {k} {r} {g} {b} class_{k}"
                         for k, (r, g, b) in enumerate(colors.tolist())]


@pytest.mark.parametrize("variant", ["nhwc_onnx", "nchw_onnx"])
def test_single_image_matches_python(build, variant, request, tmp_path):
    model = request.getfixturevalue(variant)
    (c_map,) = c_labels(build, model, ["64x64:RGB8"], tmp_path)
    (expected,) = python_labels(model, ["64x64:RGB8"])
    assert c_map.shape == (64, 64) and np.array_equal(c_map, expected)


@pytest.mark.parametrize("variant", ["nhwc_onnx", "nchw_onnx"])
def test_batch_of_mixed_sizes_and_every_format_matches_python(build, variant, request,
                                                              tmp_path):
    model = request.getfixturevalue(variant)
    specs = [f"{w}x{h}:{f}" for (w, h), f in
             zip([(64, 64), (37, 23), (200, 90), (1, 1), (64, 65), (120, 160)],
                 [*FORMATS, "BGR8"], strict=True)]
    c_maps = c_labels(build, model, specs, tmp_path)
    expected = python_labels(model, specs)
    assert len(c_maps) == len(expected)
    for c_map, want in zip(c_maps, expected, strict=True):
        assert c_map.shape == want.shape and np.array_equal(c_map, want)
    assert any(np.unique(m).size > 1 for m in c_maps)  # not a trivial comparison
    # uint16 buffers for a model that fits uint8 work too, with the same labels
    assert all(np.array_equal(a, b) for a, b in
               zip(c_labels(build, model, specs, tmp_path, "u16"), c_maps, strict=True))


def test_every_pixel_format_gives_the_same_labels_as_rgb(build, nhwc_onnx, tmp_path):
    """The same pixels in RGB8/BGR8/RGBA8/BGRA8 give one label map (images differ by n, so
    run each format alone as image 0)."""
    maps = [c_labels(build, nhwc_onnx, [f"50x40:{f}"], tmp_path)[0] for f in FORMATS[:4]]
    assert all(np.array_equal(m, maps[0]) for m in maps[1:])


@pytest.mark.parametrize("layout", ["hwc", "chw"])
def test_scores_match_python(build, nhwc_onnx, layout, tmp_path):
    specs = ["64x64:RGB8", "30x50:BGRA8"]
    out = tmp_path / "scores.raw"
    done = run(build, "scores", nhwc_onnx, out, layout, *specs)
    assert done.returncode == 0, done.stderr
    flat = np.fromfile(out, np.float32)
    with Segmenter.open(nhwc_onnx) as seg:
        expected = seg.predict_scores([synthetic(0, 64, 64), synthetic(1, 50, 30)])
    start = 0
    for want in expected:
        got = flat[start:start + want.size]
        start += want.size
        h, w, k = want.shape
        got = got.reshape(h, w, k) if layout == "hwc" else got.reshape(k, h, w).transpose(1, 2, 0)
        assert np.array_equal(got, want)
    assert start == flat.size


def test_more_than_256_classes_need_uint16(build, many_classes_onnx, tmp_path):
    model = many_classes_onnx
    done = run(build, "info", model)
    assert "classes 300" in done.stdout and "label_type 2" in done.stdout
    specs = ["16x16:RGB8", "40x25:BGR8"]
    c_maps = c_labels(build, model, specs, tmp_path, "u16")
    expected = python_labels(model, specs)
    assert all(np.array_equal(a, b) for a, b in zip(c_maps, expected, strict=True))
    assert max(int(m.max()) for m in c_maps) > 255  # the test means something
    done = run(build, "predict", model, tmp_path / "x.raw", "u8", "16x16:RGB8")
    assert done.returncode == 1
    assert ("OCR_E_INVALID_ARGUMENT: results[0].label_type: expected OCR_LABEL_U16 (the model "
            "has 300 classes), found OCR_LABEL_U8") in done.stderr


def test_greyscale_model_takes_gray8_only(build, grey_onnx, tmp_path):
    model = grey_onnx
    specs = ["16x16:GRAY8", "33x7:GRAY8"]
    assert all(np.array_equal(a, b) for a, b in zip(c_labels(build, model, specs, tmp_path),
                                                    python_labels(model, specs), strict=True))
    done = run(build, "predict", model, tmp_path / "x.raw", "u8", "16x16:RGB8")
    assert done.returncode == 1
    assert "images[0].pixel_format: expected OCR_PIXEL_GRAY8 (the model is greyscale)" \
        in done.stderr


@pytest.mark.parametrize("color_order", ["RGB", "BGR"])
def test_end_to_end_artifact_gets_its_pixels_and_checks_their_size(build, color_order,
                                                                   tmp_path):
    """An end-to-end artifact's labels from C equal Segmenter.predict on the plain core for
    every pixel format (the bridge hands it its own colour order); other sizes are refused
    with the runtime's one line; ocr_model_info says the sizes."""
    from ocr_deploy.contract.image_sizes import ImageSizes
    from ocr_deploy.graph.end_to_end import make_end_to_end

    core = segnet("NHWC", classes=5)
    plain = save(core, tmp_path, "plain")
    model = save(make_end_to_end(core, ImageSizes.fixed(40, 50), color_order)[0], tmp_path,
                 f"e2e_{color_order}")
    lines = run(build, "info", model).stdout.splitlines()
    assert "images 50x40 to 50x40" in lines and "input 16x12x3" in lines
    specs = [f"50x40:{f}" for f in FORMATS[:4]]
    expected = python_labels(plain, specs)
    c_maps = c_labels(build, model, specs, tmp_path)
    assert all(np.array_equal(a, b) for a, b in zip(c_maps, expected, strict=True))
    assert any(np.unique(m).size > 1 for m in c_maps)
    done = run(build, "predict", model, tmp_path / "x.raw", "u8", "30x40:RGB8")
    assert done.returncode == 1
    assert ("OCR_E_INVALID_ARGUMENT" in done.stderr and "expected images of 40x50 (what this "
            "end-to-end artifact was built for), found an image of 40x30") in done.stderr


def test_bad_input_returns_a_status_and_one_line(build, nhwc_onnx, nchw_onnx, tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a model")
    done = run(build, "errors", nhwc_onnx, junk, nchw_onnx)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == "all bad inputs refused"
    cases = dict((line.split("\t")[0], line.split("\t")[1:]) for line in lines[:-1])
    assert len(cases) >= 30
    for name, (status, message) in cases.items():
        assert "expected" in message and "found" in message, name
        assert any(word in message for word in STATUS[status].split("|")), \
            f"{name}: the {status} message names nothing it is about: {message}"
    with pytest.raises(Exception) as python_error:
        Segmenter.open(junk)
    assert cases["create_not_a_model"] == ["OCR_E_BAD_ARTIFACT", str(python_error.value)]
    assert cases["image_short_stride"][1].startswith(
        "images[0].stride_bytes: expected at least 120 (width 40 x 3 bytes per RGB8 pixel), "
        "found 119")


def test_environment_without_ocr_deploy_is_a_clear_error(build, nhwc_onnx):
    base = Path(sys._base_executable)  # the interpreter the venv was made from
    probe = subprocess.run([str(base), "-I", "-c", "import ocr_deploy"], capture_output=True)
    if probe.returncode == 0:
        pytest.skip(f"{base} has ocr_deploy installed: no environment without it to try")
    done = run(build, "info", nhwc_onnx, env={"OCR_DEPLOY_PYTHON": str(base)})
    assert done.returncode == 1
    assert f"OCR_E_ENVIRONMENT: {base}: expected a Python environment with ocr-deploy " \
        "installed, found that importing ocr_deploy.capi_bridge fails (ModuleNotFoundError" \
        in done.stderr
    done = run(build, "info", nhwc_onnx, env={"OCR_DEPLOY_PYTHON": sys.prefix})  # a folder
    assert done.returncode == 0, done.stderr


def test_threads_give_the_serial_results(build, nhwc_onnx):
    done = run(build, "threads", nhwc_onnx, 8, 200)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "8 threads x 200 predictions: 0 differ from serial, 0 threads failed" in done.stdout


def test_create_destroy_keeps_memory_flat(build, nhwc_onnx):
    done = run(build, "lifecycle", nhwc_onnx, 100)
    assert done.returncode == 0, done.stderr
    values = dict(line.split() for line in done.stdout.splitlines())
    growth = int(values["rss_kib_after_100"]) - int(values["rss_kib_after_10"])
    assert growth < 2048, f"RSS grew by {growth} KiB over 90 create/destroy cycles"


def test_repeated_predictions_keep_memory_flat(build, nhwc_onnx):
    """Leaking even one Python object per call shows here (about 2 MiB over 2700 calls)."""
    done = run(build, "repeat", nhwc_onnx, 3000, "64x64:BGR8", 1)
    assert done.returncode == 0, done.stderr
    values = dict(line.split() for line in done.stdout.splitlines())
    growth = int(values["rss_kib_at_end"]) - int(values["rss_kib_after_tenth"])
    assert growth < 512, f"RSS grew by {growth} KiB over 2700 predictions"


@pytest.mark.slow
def test_address_sanitizer_finds_nothing_in_our_code(nhwc_onnx, nchw_onnx, tmp_path_factory):
    """The library and the test program built with -fsanitize=address: no invalid access,
    and no leak outside CPython / NumPy / ONNX Runtime internals (capi/tests/lsan.supp)."""
    build = _build(tmp_path_factory.mktemp("capi_asan"), "-DOCR_DEPLOY_SANITIZE=address",
                   "-DCMAKE_BUILD_TYPE=Debug")
    junk = tmp_path_factory.mktemp("asan") / "junk.onnx"
    junk.write_bytes(b"not a model")
    env = {"ASAN_OPTIONS": "detect_leaks=1:exitcode=23",
           "LSAN_OPTIONS": f"suppressions={ROOT / 'capi/tests/lsan.supp'}:print_suppressions=0"}
    specs = ["64x64:RGB8", "37x23:BGR8", "90x40:RGBA8", "5x9:BGRA8", "64x64:GRAY8"]
    raw = junk.with_suffix(".raw")
    for program, *args in (["capi_test", "errors", nhwc_onnx, junk, nchw_onnx],
                           ["capi_test", "predict", nhwc_onnx, raw, "u16", *specs],
                           ["capi_test", "scores", nhwc_onnx, raw, "chw", *specs],
                           ["capi_test", "threads", nhwc_onnx, 4, 10],
                           ["capi_test", "lifecycle", nchw_onnx, 3],
                           ["capi_test_cpp", nhwc_onnx, raw, raw, raw]):
        done = run(build, *args, env=env, timeout=600, program=program)
        assert "Sanitizer" not in done.stderr, done.stderr[-6000:]
        assert done.returncode == 0, f"{args[0]}: {done.stderr[-3000:]}"


def test_examples_build_against_the_installed_library(build, nhwc_onnx, tmp_path):
    """The README's route: install, find_package (C and C++) and pkg-config (C)."""
    from PIL import Image

    prefix = tmp_path / "prefix"
    _cmake("--install", str(build), "--prefix", str(prefix))
    _cmake("-S", str(ROOT / "examples"), "-B", str(tmp_path / "examples"),
           f"-DCMAKE_PREFIX_PATH={prefix}")
    _cmake("--build", str(tmp_path / "examples"), "-j2")
    programs = [tmp_path / "examples" / "segment"]
    if shutil.which("pkg-config"):
        pc_flags = subprocess.run(["pkg-config", "--cflags", "--libs", "ocr_deploy"],
                                  capture_output=True, text=True,
                                  env={**os.environ,
                                       "PKG_CONFIG_PATH": str(prefix / "lib/pkgconfig")})
        assert pc_flags.returncode == 0, pc_flags.stderr
        programs.append(tmp_path / "segment_pc")
        compiled = subprocess.run(["gcc", "-std=c99", "-Wall", "-Werror",
                                   str(ROOT / "examples/c/segment.c"), *pc_flags.stdout.split(),
                                   "-o", str(programs[-1])], capture_output=True, text=True)
        assert compiled.returncode == 0, compiled.stderr

    images = [synthetic(0, 70, 90), synthetic(3, 64, 64)]
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / f"image{i}.ppm")
    with Segmenter.open(nhwc_onnx) as seg:
        expected = seg.predict(images)
    for program in programs:
        done = run(program.parent, nhwc_onnx, tmp_path / "image0.ppm", tmp_path / "out.pgm",
                   program=program.name)
        assert done.returncode == 0, done.stderr
        assert np.array_equal(np.asarray(Image.open(tmp_path / "out.pgm")), expected[0])
        assert "fp32 on onnxruntime (cpu)" in done.stdout
    done = run(tmp_path / "examples", nhwc_onnx, tmp_path / "image0.ppm", tmp_path / "image1.ppm",
               program="segment_cpp")
    assert done.returncode == 0, done.stderr
    for line, image, labels in zip(done.stdout.splitlines(), range(2), expected, strict=True):
        counts = np.bincount(labels.ravel(), minlength=4)
        parts = [f"{CLASS_NAMES[k]} {n}" for k, n in enumerate(counts) if n]
        height, width = labels.shape
        assert line == "; ".join([f"{tmp_path}/image{image}.ppm: {width}x{height}", *parts])
    done = run(tmp_path / "examples", tmp_path / "none.onnx", tmp_path / "image0.ppm",
               program="segment_cpp")
    assert done.returncode == 1
    assert done.stderr == (f"segment_cpp: OCR_E_BAD_ARTIFACT: {tmp_path}/none.onnx: expected an "
                           "existing file, found no such file; check the path\n")


@pytest.mark.parametrize("classes", [4, 300])
def test_cpp_wrapper_matches_python(build, nhwc_onnx, many_classes_onnx, classes, tmp_path):
    """ocr_deploy.hpp: moves, a batch, uint8 and uint16 label maps, scores in both layouts,
    and an ocr::Error for a bad call."""
    model = nhwc_onnx if classes == 4 else many_classes_onnx
    raws = [tmp_path / name for name in ("labels.raw", "hwc.raw", "chw.raw")]
    done = run(build, model, *raws, program="capi_test_cpp")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "empty batch: OCR_E_INVALID_ARGUMENT: count: expected at least one image, found 0; "
        "pass the number of images", f"classes {classes}"]
    images = [synthetic(0, 30, 40), synthetic(1, 61, 17)]
    with Segmenter.open(model) as seg:
        labels, scores = seg.predict(images), seg.predict_scores(images)
    assert np.array_equal(np.fromfile(raws[0], np.uint16),
                          np.concatenate([m.ravel() for m in labels]))
    assert np.array_equal(np.fromfile(raws[1], np.float32),
                          np.concatenate([s.ravel() for s in scores]))
    assert np.array_equal(np.fromfile(raws[2], np.float32),
                          np.concatenate([s.transpose(2, 0, 1).ravel() for s in scores]))
