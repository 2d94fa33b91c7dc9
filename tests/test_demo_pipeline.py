"""The README's main command, the whole pipeline: the run the docs leg makes for its pages
(``demo_workdir`` in test_docs.py, marked `docs`) is the one checked here, so the demo runs
once per suite."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from PIL import Image
from test_docs import _bin, _env, demo_workdir  # noqa: F401 (the session fixture)


@pytest.mark.docs
@pytest.mark.slow
@pytest.mark.tensorflow
@pytest.mark.xdist_group("docs")  # the worker that has the demo's folder
def test_demo_pipeline_end_to_end(demo_workdir, tmp_path):  # noqa: F811
    summary = json.loads((demo_workdir.parent / "demo_summary.json").read_text())
    assert summary["export"]["passed"]
    assert (demo_workdir / "export" / "demo_ocrnet.onnx").is_file()
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
    assert (demo_workdir / "engines" / "demo_ocrnet_int8.onnx.json").is_file()
    results = summary["bench"]["results"]
    assert [(r["name"], r["image_size"]) for r in results] == [
        ("demo_ocrnet.h5", [96, 96]), ("demo_ocrnet_fp32.onnx", [96, 96]),
        ("demo_ocrnet_fp16.onnx", [96, 96]), ("demo_ocrnet_int8.onnx", [96, 96]),
        ("demo_ocrnet_int8.onnx", [480, 640]), ("demo_ocrnet_int8_e2e.onnx", [480, 640])]
    assert results[-1]["end_to_end_artifact"] and "(e2e)" in summary["bench_table"]
    with Image.open(demo_workdir / "demo_output" / "predictions.png") as picture:
        assert picture.size[0] > picture.size[1] > 0
    assert (demo_workdir / "demo_output" / "latency.png").stat().st_size > 10_000
    # a second run (in a copy: the pages' blocks use the first) reuses the INT8 calibration
    again = tmp_path / "again"
    shutil.copytree(demo_workdir, again, symlinks=True)
    done = subprocess.run([_bin("ocr-demo"), "--workdir", str(again), "--iterations", "1",
                           "-q", "--json"], capture_output=True, text=True, timeout=600,
                          env=_env())
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["builds"]["int8"]["calibration"]["cache_hit"] is True
