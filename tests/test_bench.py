"""ocr-bench: statistics, the JSON report's schema, the table, the plot, Keras beside ONNX."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from ocr_deploy.bench import benchmark, benchmark_artifact
from ocr_deploy.bench.cli import main
from ocr_deploy.bench.report import SCHEMA, STATS_KEYS, format_table
from ocr_deploy.bench.runner import time_calls
from ocr_deploy.bench.stats import latency_stats, variability_warning
from ocr_deploy.errors import BadInputError


def _check_stats(stats: dict, batch: int) -> None:
    assert tuple(stats) == STATS_KEYS
    assert stats["min_ms"] <= stats["median_ms"] <= stats["p90_ms"] <= stats["p95_ms"] \
        <= stats["p99_ms"] <= stats["max_ms"]
    assert stats["images_per_s"] == pytest.approx(batch * 1000 / stats["mean_ms"], rel=1e-3)
    assert isinstance(stats["unstable"], bool) and stats["iterations"] >= 1


def _check_result(result: dict, batches: list[int], end_to_end: bool = True) -> None:
    assert set(result) == {"artifact", "name", "kind", "backend", "device", "providers",
                           "precision", "input_size", "image_size", "end_to_end_artifact",
                           "outputs", "open_s", "batch_limits", "batches", "skipped_batches",
                           "memory", "warnings"}
    assert result["kind"] in ("onnx", "engine", "keras") and result["device"] in ("cpu", "cuda")
    assert [b["batch"] for b in result["batches"]] == batches
    assert result["batch_limits"] == "any" and result["skipped_batches"] == []
    for entry in result["batches"]:
        _check_stats(entry["compute"], entry["batch"])
        assert ("end_to_end" in entry) == end_to_end
        if end_to_end:
            _check_stats(entry["end_to_end"], entry["batch"])
    assert set(result["memory"]) == {"peak_rss_mib", "rss_before_mib", "rss_peak_scope",
                                     "gpu_used_mib"}
    assert result["memory"]["peak_rss_mib"] > 0 and isinstance(result["warnings"], list)


def test_latency_stats_and_variability():
    steady = latency_stats([0.010] * 20, batch=4)
    assert steady["median_ms"] == 10.0 and steady["images_per_s"] == 400.0
    assert not steady["unstable"] and variability_warning("m", 4, "compute", steady) is None
    noisy = latency_stats([0.010] * 15 + [0.020] * 5, batch=1)
    assert noisy["unstable"] and noisy["p99_ms"] == pytest.approx(20.0)
    assert "runs vary more than 5 %" in variability_warning("m.onnx", 1, "compute", noisy)


def test_time_calls_counts_runs():
    calls = []
    assert len(time_calls(lambda: calls.append(1), 2, 5, None)) == 5 and len(calls) == 7
    assert len(time_calls(lambda: None, 0, None, 0.01)) >= 3


def test_benchmark_artifact_schema(nhwc_onnx):
    result = benchmark_artifact(nhwc_onnx, [1, 2], warmup=1, iterations=3,
                                image_size=(80, 100))
    _check_result(result, [1, 2])
    assert result["backend"] == "onnxruntime" and result["kind"] == "onnx"
    assert result["image_size"] == [80, 100] and result["input_size"] == [64, 64]
    assert result["outputs"] == ["logits"]  # images differ from 64x64: scores are resized
    json.dumps(result)


def test_report_keras_beside_onnx_json_table_plot(nhwc_onnx, keras3_h5, tmp_path, capsys):
    plot = tmp_path / "latency.png"
    assert main([str(nhwc_onnx), str(keras3_h5), "--batch-sizes", "2,1", "--warmup", "1",
                 "--iterations", "2", "--json", "--plot", str(plot)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"schema", "created", "machine", "settings", "results", "warnings"}
    assert report["schema"] == SCHEMA and report["settings"]["batches"] == [1, 2]
    onnx_result, keras_result = report["results"]
    for result in report["results"]:
        _check_result(result, [1, 2])
    assert keras_result["backend"] == "tensorflow" and keras_result["kind"] == "keras"
    assert keras_result["input_size"] == onnx_result["input_size"]
    table = format_table(report)
    assert nhwc_onnx.name in table and keras3_h5.name in table and "end-to-end" in table
    with Image.open(plot) as image:
        assert image.format == "PNG" and image.size[0] > 600


def test_compute_only_and_duration(nhwc_onnx):
    report = benchmark([nhwc_onnx], [1], warmup=0, iterations=None, duration=0.05,
                       end_to_end=False)
    _check_result(report["results"][0], [1], end_to_end=False)
    assert report["settings"]["iterations"] is None and report["settings"]["duration_s"] == 0.05


def test_bad_settings(nhwc_onnx, tmp_path, capsys):
    for kwargs in ({"batches": [0]}, {"batches": []}, {"iterations": 0},
                   {"duration": -1.0}, {"warmup": -1}):
        with pytest.raises(BadInputError):
            benchmark_artifact(nhwc_onnx, **{"batches": [1], **kwargs})
    assert main([str(tmp_path / "missing.onnx"), "-q"]) == 2
    assert capsys.readouterr().err.startswith("ocr-bench: error: ")
    with pytest.raises(SystemExit):
        main([str(nhwc_onnx), "--batch-sizes", "x"])
    assert np.isfinite(latency_stats([0.001], 1)["cv"])
