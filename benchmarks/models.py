"""The models the benchmarks measure, made one way for all of them: the Cityscapes
configuration (``OCRNetConfig.cityscapes()``, random weights, seed 0) at any input size and
the shipped demo model, exported with ``ocr-export``'s library call, and builds through
``ocr-build-engine``'s. Each script imports this module (``sys.path`` holds the script's
folder) instead of writing its own export."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path


def keras_model(folder: Path, config, name: str, suffix: str = ".h5") -> Path:
    """An OCRNet of ``config`` (``OCRNetConfig``) with random weights (seed 0), saved as
    ``folder/NAME.h5``."""
    from ocr_deploy.model.ocrnet import build_ocrnet
    from ocr_deploy.tf_env import import_keras3

    import_keras3().utils.set_random_seed(0)
    path = Path(folder) / f"{name}{suffix}"
    path.parent.mkdir(parents=True, exist_ok=True)
    build_ocrnet(config).save(path)
    return path


def cityscapes_keras(folder: Path, height: int = 512, width: int = 1024) -> Path:
    """The Cityscapes configuration at ``height x width``, random weights, as a ``.h5``."""
    from ocr_deploy.model.ocrnet import OCRNetConfig

    return keras_model(folder, replace(OCRNetConfig.cityscapes(), input_height=height,
                                       input_width=width), f"cityscapes_{height}x{width}")


def export(keras_file: Path, out: Path, parity_samples: int = 2, **options) -> Path:
    """``keras_file`` exported to ``out``."""
    from ocr_deploy.export.pipeline import ExportRequest, export_model

    return export_model(ExportRequest(model=keras_file, output=out, force=True, quiet=True,
                                      random_samples=parity_samples, **options)).onnx_path


def export_cityscapes(folder: Path, height: int = 512, width: int = 1024,
                      parity_samples: int = 2) -> Path:
    """The Cityscapes configuration at ``height x width``, exported."""
    keras_file = cityscapes_keras(folder, height, width)
    return export(keras_file, keras_file.with_suffix(".onnx"), parity_samples)


def export_demo(folder: Path) -> Path:
    """The shipped demo model, exported with its in-graph labels."""
    from ocr_deploy.demo import DEMO_MODEL

    return export(DEMO_MODEL, Path(folder) / "demo.onnx", argmax=True)


def build(onnx_path: Path, precision: str, out: Path, calib_dir: Path | None = None,
          samples: int | None = None, backend: str = "onnxruntime", **options) -> dict:
    """``ocr-build-engine``'s library call (always rebuilt); returns the sidecar."""
    from ocr_deploy.builder.pipeline import BuildRequest
    from ocr_deploy.builder.pipeline import build as run_build

    if precision == "int8":
        options.update(calib_dir=calib_dir, calib_samples=samples)
    return run_build(BuildRequest(onnx=onnx_path, precision=precision, backend=backend,
                                  output=out, force=True, quiet=True, **options)).info


def demo_int8_artifacts(folder: Path, image_size: tuple[int, int] = (480, 640),
                        calib_samples: int = 8) -> tuple[Path, Path]:
    """The demo's INT8 artifact and its end-to-end one for ``image_size`` frames, built as
    ``ocr-demo`` builds them (synthetic calibration images) into ``folder``."""
    from ocr_deploy.builder.end_to_end import EndToEndRequest
    from ocr_deploy.contract.image_sizes import ImageSizes
    from ocr_deploy.demo.synthetic import TRAIN_SEED, write_samples

    folder = Path(folder)
    calib = folder / "calib"
    write_samples(calib, calib_samples, seed=TRAIN_SEED)
    onnx_path = export_demo(folder)
    plain, end_to_end = folder / "demo_int8.onnx", folder / "demo_int8_e2e.onnx"
    build(onnx_path, "int8", plain, calib_dir=calib)
    build(onnx_path, "int8", end_to_end, calib_dir=calib,
          end_to_end=EndToEndRequest(ImageSizes.fixed(*image_size)))
    return plain, end_to_end
