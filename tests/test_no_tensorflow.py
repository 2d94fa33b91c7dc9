"""The build stage and the shared modules must import without TensorFlow: engines are
built from an exported ONNX on machines (Jetson, GPU servers) that have no TensorFlow."""

from __future__ import annotations

import subprocess
import sys

MODULES = ["ocr_deploy.contract.metadata", "ocr_deploy.images", "ocr_deploy.files",
           "ocr_deploy.metrics", "ocr_deploy.demo.synthetic", "ocr_deploy.builder.cli",
           "ocr_deploy.builder.pipeline", "ocr_deploy.precision.calibrate",
           "ocr_deploy.precision.qdq", "ocr_deploy.precision.fp16",
           "ocr_deploy.verification.sensitivity", "ocr_deploy.precision.coverage",
           "ocr_deploy.precision.placement", "ocr_deploy.backends",
           "ocr_deploy.backends.onnxruntime.build", "ocr_deploy.backends.onnxruntime.runner",
           "ocr_deploy.backends.tensorrt.build", "ocr_deploy.backends.tensorrt.runner",
           "ocr_deploy.backends.tensorrt.engine", "ocr_deploy.cuda", "ocr_deploy.onnxruntime_env",
           "ocr_deploy.bench.runner",
           "ocr_deploy.packaging.artifact_info", "ocr_deploy.runtime"]


def test_build_stage_imports_without_tensorflow():
    code = (f"import importlib, sys; [importlib.import_module(m) for m in {MODULES!r}]; "
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "('tensorflow', 'keras', 'tf_keras', 'tf2onnx')]; print(bad); "
            "raise SystemExit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_runtime_opens_and_predicts_without_loading_onnx(nhwc_onnx):
    """An application (and the C ABI) loads the runtime, a backend and an artifact without
    ONNX's graph tooling: it costs import time and is no part of running a model."""
    code = ("import sys, numpy as np; from ocr_deploy.runtime import Segmenter; "
            f"seg = Segmenter.open({str(nhwc_onnx)!r}); "
            "seg.predict(np.zeros((20, 30, 3), np.uint8)); "
            "import ocr_deploy.capi_bridge; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'onnx'))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr
