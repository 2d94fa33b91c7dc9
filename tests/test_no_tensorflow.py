"""Modules a deployment needs must import without TensorFlow."""

from __future__ import annotations

import subprocess
import sys


def test_deployment_modules_do_not_import_tensorflow():
    code = ("import sys; import ocr_deploy.metadata, ocr_deploy.images, ocr_deploy.errors, "
            "ocr_deploy.files, ocr_deploy.metrics, ocr_deploy.demo.synthetic; "
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "('tensorflow', 'keras', 'tf_keras', 'tf2onnx')]; print(bad); "
            "raise SystemExit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
