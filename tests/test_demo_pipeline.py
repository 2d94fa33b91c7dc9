"""The README's main command, run in-process on a temporary folder: the whole pipeline."""

from __future__ import annotations

import json

import pytest
from PIL import Image


@pytest.mark.slow
@pytest.mark.tensorflow
def test_demo_pipeline_end_to_end(tmp_path, capsys):
    from ocr_deploy.demo.cli import main

    assert main(["--workdir", str(tmp_path), "--iterations", "2", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["export"]["passed"]
    assert (tmp_path / "export" / "demo_ocrnet.onnx").is_file()
    builds = summary["builds"]
    assert set(builds) == {"fp32", "fp16", "int8", "int8_e2e"}
    e2e = builds["int8_e2e"]
    assert e2e["verification"]["met_budget"] and e2e["metadata"]["end_to_end"]["image_size"] \
        == [480, 640]
    assert e2e["end_to_end_parity"]["agreement_excl_ties"] == 1.0
    for precision in ("fp16", "int8"):
        accuracy = builds[precision]["verification"]["accuracy"]
        assert builds[precision]["verification"]["met_budget"]
        assert accuracy["miou_drop"] <= (0.1 if precision == "fp16" else 1.0)
    assert (tmp_path / "engines" / "demo_ocrnet_int8.onnx.json").is_file()
    results = summary["bench"]["results"]
    assert [(r["name"], r["image_size"]) for r in results] == [
        ("demo_ocrnet.h5", [96, 96]), ("demo_ocrnet_fp32.onnx", [96, 96]),
        ("demo_ocrnet_fp16.onnx", [96, 96]), ("demo_ocrnet_int8.onnx", [96, 96]),
        ("demo_ocrnet_int8.onnx", [480, 640]), ("demo_ocrnet_int8_e2e.onnx", [480, 640])]
    assert results[-1]["end_to_end_artifact"] and "(e2e)" in summary["bench_table"]
    with Image.open(tmp_path / "demo_output" / "predictions.png") as picture:
        assert picture.size[0] > picture.size[1] > 0
    assert (tmp_path / "demo_output" / "latency.png").stat().st_size > 10_000
    # a second run reuses the INT8 calibration
    assert main(["--workdir", str(tmp_path), "--iterations", "1", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["builds"]["int8"]["calibration"]["cache_hit"] is True
