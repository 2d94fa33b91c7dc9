"""``ocr-bench``: measured latency and throughput of artifacts (ONNX, TensorRT engines, and
Keras models for reference), importable for comparison scripts:

    from ocr_deploy.bench import benchmark, benchmark_artifact
    result = benchmark_artifact("export/model.onnx", batches=[1, 4], warmup=3, iterations=20)

The report format is described in ``ocr_deploy.bench.report``.
"""

from ocr_deploy.bench.runner import benchmark, benchmark_artifact, open_artifact

__all__ = ["benchmark", "benchmark_artifact", "open_artifact"]
