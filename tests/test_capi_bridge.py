"""ocr_deploy.capi_bridge, the Python side of libocr_deploy: statuses, options, no TensorFlow.
(Its conversions and writes are checked through the C library in test_capi.py.)"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from ocr_deploy import capi_bridge as bridge
from ocr_deploy.errors import BadInputError


def test_imports_without_tensorflow():
    code = ("import sys, ocr_deploy.capi_bridge; bad = [m for m in sys.modules if "
            "m.split('.')[0] in ('tensorflow', 'keras', 'tf_keras', 'tf2onnx')]; print(bad); "
            "raise SystemExit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_error_status_maps_exceptions_to_the_header_statuses():
    bad = BadInputError("m.onnx", "an ONNX model", "junk", "re-export it")
    assert bridge.error_status(bad, "create") == (bridge.BAD_ARTIFACT, bad.one_line())
    assert bridge.error_status(bad, "predict") == (bridge.INVALID_ARGUMENT, bad.one_line())
    assert bridge.error_status(MemoryError(), "predict")[0] == bridge.OUT_OF_MEMORY
    status, message = bridge.error_status(ValueError("x\ny"), "predict")
    assert status == bridge.INTERNAL and "\n" not in message
    assert message == "internal error in ocr_deploy (ValueError: x y); please report it"


def test_options_are_checked(nhwc_onnx):
    with pytest.raises(bridge.OptionError, match=re.escape(
            "ocr_options.backend: expected NULL or one of auto, onnxruntime, tensorrt, found "
            "'teapot'")):
        bridge.open_segmenter(str(nhwc_onnx), "teapot", None, 0, 0, 0)
    with pytest.raises(BadInputError, match="an artifact for the tensorrt backend"):
        bridge.open_segmenter(str(nhwc_onnx), "tensorrt", None, 0, 0, 0)
    seg = bridge.open_segmenter(str(nhwc_onnx), None, "cpu", 0, 1, 2)
    try:
        info = bridge.describe(seg)
        assert info[0] == 4 and len(info[1]) == 4 and len(info[2]) == 12
        assert info[3:8] == (64, 64, 3, True, 2)
        assert info[8:] == ("fp32", "onnxruntime", "cpu", (0, 0, 0, 0))
    finally:
        bridge.close(seg)
