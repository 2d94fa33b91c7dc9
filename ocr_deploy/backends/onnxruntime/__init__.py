"""The ONNX Runtime backend: an ONNX with ONNX Runtime's graph optimisations saved, run on
the CPU, or on the GPU through onnxruntime-gpu's CUDA / TensorRT execution providers.
The artifact carries its metadata in ``metadata_props``; its sidecar adds the provider
options the build chose.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ocr_deploy.backends.base import ArtifactTensors, Backend, TensorSpec
from ocr_deploy.backends.onnxruntime.options import OnnxRuntimeOptions
from ocr_deploy.backends.onnxruntime.placement import WARN_BELOW
from ocr_deploy.contract.metadata import ExportMetadata
from ocr_deploy.errors import BadInputError
from ocr_deploy.graph.target import ONNXRUNTIME as GRAPH_TARGET
from ocr_deploy.precision.placement import Placement
from ocr_deploy.sidecar import Sidecar

if TYPE_CHECKING:
    import onnx

# ONNX TensorProto element types -> NumPy dtype names
ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 6: "int32", 7: "int64",
               10: "float16", 11: "float64", 16: "bfloat16"}
TRT_CACHE_ROOT = "/tmp/trt-cache"  # where Triton's TensorRT accelerator keeps its engines


class OnnxRuntime(Backend):
    """An ONNX model run by ONNX Runtime."""

    name = "onnxruntime"
    label = "ONNX Runtime"
    kind = "onnx"
    suffixes = (".onnx",)
    metadata_in_artifact = True
    triton_platform = "onnxruntime_onnx"
    triton_model_file = "model.onnx"
    deepstream_model_key = "onnx-file"
    options_type = OnnxRuntimeOptions
    runtime_options = ("providers", "threads")
    lean_options = {"memory_arena": False}  # noqa: RUF012 (read only)
    graph_target = GRAPH_TARGET
    coverage_warn_below = WARN_BELOW

    def availability(self) -> tuple[bool, str]:
        import onnxruntime as ort

        return True, f"ONNX Runtime {ort.__version__} ({', '.join(ort.get_available_providers())})"

    def placement(self, options: OnnxRuntimeOptions) -> Placement:
        from ocr_deploy.backends.onnxruntime.placement import placement

        return placement()

    def build(self, model_bytes: bytes, target: Path, artifact: Path, meta: ExportMetadata,
              precision: str, options: OnnxRuntimeOptions,
              progress: Callable[[str], None]) -> dict:
        from ocr_deploy.backends.onnxruntime.build import build_artifact

        return build_artifact(model_bytes, target, artifact, options.optimization)

    def store_metadata(self, built: Path, meta: ExportMetadata) -> None:
        import onnx

        from ocr_deploy.contract.metadata import write_metadata

        model = onnx.load(str(built))
        write_metadata(model, meta)
        onnx.save(model, str(built))

    def coverage(self, fp32_model: onnx.ModelProto, qdq_model: onnx.ModelProto, built: Path,
                 kept: dict[str, list[str]]) -> dict:
        import onnx

        from ocr_deploy.backends.onnxruntime.placement import FOLDED_ACTIVATIONS, INTEGER_KERNELS
        from ocr_deploy.precision.coverage import integer_coverage

        return integer_coverage(fp32_model, qdq_model, kept, onnx.load(str(built)),
                                INTEGER_KERNELS, FOLDED_ACTIVATIONS)

    def open_runner(self, path: Path, facts: dict | None, device_id: int = 0,
                    providers=None, threads: int | None = None, content: bytes | None = None,
                    memory_arena: bool = True):
        from ocr_deploy.backends.onnxruntime.runner import OnnxRuntimeRunner

        return OnnxRuntimeRunner(Path(path), providers, threads, device_id,
                                 (facts or {}).get("provider_options"), content, memory_arena)

    def open(self, path: Path, device_id: int = 0, providers=None, threads: int | None = None):
        """A built ONNX's provider options come from its sidecar, used only with the
        artifact whose SHA-256 the sidecar records (``ocr_deploy.pairs``); an export has
        no sidecar."""
        from ocr_deploy.sidecar import read_sidecar_pair, sidecar_path

        pair = read_sidecar_pair(path, content=True) if sidecar_path(path).is_file() else None
        facts = Sidecar.from_dict(pair.companion, pair.artifact).facts if pair else None
        runner = self.open_runner(path, facts, device_id,
                                  providers, threads, pair.content if pair else None)
        try:
            return runner, ExportMetadata.from_props(runner.custom_metadata, path)
        except BadInputError:
            runner.close()
            raise

    def metadata(self, path: Path, sidecar: Sidecar | dict | None) -> ExportMetadata:
        from ocr_deploy.contract.metadata import read_metadata

        return read_metadata(path)

    def tensors(self, path: Path, meta: ExportMetadata, sidecar: Sidecar | dict | None
                ) -> ArtifactTensors:
        """From the graph, checked against the metadata (``signature.check_onnx``)."""
        import onnx

        from ocr_deploy.contract.signature import check_onnx

        model = onnx.load(str(path), load_external_data=False)
        check_onnx(model, path)
        graph = model.graph
        initializers = {init.name for init in graph.initializer}
        inputs = [_tensor(path, v) for v in graph.input if v.name not in initializers]
        return ArtifactTensors(inputs, [_tensor(path, v) for v in graph.output])

    def triton_settings(self, sidecar: Sidecar | dict | None, model_name: str) -> list:
        """What the build recorded for the GPU execution providers, in the Triton ONNX
        Runtime backend's terms (TensorRT accelerator, cuDNN convolution search)."""
        from ocr_deploy.pbtxt import parameter

        providers = Sidecar.of(sidecar).facts.get("provider_options") or {}
        trt = providers.get("TensorrtExecutionProvider")
        cuda = providers.get("CUDAExecutionProvider") or {}
        config: list = []
        if trt:
            mode = "INT8" if trt.get("trt_int8_enable") else \
                "FP16" if trt.get("trt_fp16_enable") else "FP32"
            settings = [("precision_mode", mode)]
            cache = f"{TRT_CACHE_ROOT}/{model_name}"
            for kind in ("engine", "timing"):
                if trt.get(f"trt_{kind}_cache_enable"):
                    settings += [(f"trt_{kind}_cache_enable", "1"),
                                 (f"trt_{kind}_cache_path", cache)]
            accelerator = [("name", "tensorrt"), *(
                ("parameters", [("key", key), ("value", value)]) for key, value in settings)]
            config.append(("optimization", [("execution_accelerators",
                                             [("gpu_execution_accelerator", accelerator)])]))
        search = {"EXHAUSTIVE": "0", "HEURISTIC": "1", "DEFAULT": "2"}.get(
            str(cuda.get("cudnn_conv_algo_search", "")).upper())
        if search:
            config.append(("parameters", parameter("cudnn_conv_algo_search", search)))
        return config


def _tensor(path: Path, value) -> TensorSpec:
    kind = value.type.tensor_type
    dtype = ONNX_DTYPES.get(kind.elem_type)
    if dtype is None:
        raise BadInputError(path, "tensors of numeric types", f"'{value.name}' of ONNX type "
                            f"{kind.elem_type}", "re-export the model")
    shape = [d.dim_value if d.HasField("dim_value") else -1 for d in kind.shape.dim]
    return TensorSpec(value.name, dtype, shape)


BACKEND = OnnxRuntime()
