"""The TensorRT backend: serialised engines (``.engine``) built from the precision ONNX and
run with cuda-python on an NVIDIA GPU (TensorRT 10.x on JetPack 6, 11.x on current GPUs).

Nothing here imports TensorRT or cuda-python until it is used, so the package imports
everywhere. **Not run by this project yet**: no GPU or TensorRT on the development machines.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ocr_deploy.backends.base import ArtifactTensors, Backend, TensorSpec, end_to_end_tensors
from ocr_deploy.backends.tensorrt.options import TensorRTOptions
from ocr_deploy.contract.metadata import ExportMetadata
from ocr_deploy.errors import BadInputError
from ocr_deploy.graph.target import TENSORRT as GRAPH_TARGET
from ocr_deploy.precision.placement import Placement
from ocr_deploy.sidecar import Sidecar

if TYPE_CHECKING:
    import onnx

LOAD_ATTEMPTS = 3  # an engine replaced by a concurrent build while it loads is read again


class TensorRT(Backend):
    """A TensorRT engine; its metadata lives in its sidecar (an engine cannot carry any)."""

    name = "tensorrt"
    label = "TensorRT and a CUDA GPU"
    kind = "engine"
    suffixes = (".engine", ".plan", ".trt")
    metadata_in_artifact = False
    triton_platform = "tensorrt_plan"
    triton_model_file = "model.plan"
    deepstream_model_key = "model-engine-file"
    options_type = TensorRTOptions
    runtime_options = ("cuda_graph",)
    graph_target = GRAPH_TARGET

    def availability(self) -> tuple[bool, str]:
        from ocr_deploy.backends.tensorrt.library import availability

        return availability()

    def resolve_options(self, options: TensorRTOptions, model: onnx.ModelProto, source: Path,
                        note: Callable[[str], None]) -> TensorRTOptions:
        from ocr_deploy.backends.tensorrt.build import resolve_options

        return resolve_options(options, model, source, note)

    def emitter(self, options: TensorRTOptions):
        if options.emit_onnx is None:
            return None
        from ocr_deploy.backends.tensorrt.cross_build import TensorRTOnnx

        return TensorRTOnnx(options.emit_onnx)

    def placement(self, options: TensorRTOptions) -> Placement:
        from ocr_deploy.backends.tensorrt.placement import placement

        return placement(strongly_typed=not options.builder_flags)

    def build(self, model_bytes: bytes, target: Path, artifact: Path, meta: ExportMetadata,
              precision: str, options: TensorRTOptions,
              progress: Callable[[str], None]) -> dict:
        from ocr_deploy.backends.tensorrt.build import build_artifact

        return build_artifact(model_bytes, target, artifact, meta, precision, options, progress)

    def coverage(self, fp32_model: onnx.ModelProto, qdq_model: onnx.ModelProto, built: Path,
                 kept: dict[str, list[str]]) -> dict:
        from ocr_deploy.precision.coverage import integer_coverage

        return integer_coverage(fp32_model, qdq_model, kept)  # judged from the Q/DQ graph

    def open_runner(self, path: Path, facts: dict | None, device_id: int = 0,
                    cuda_graph: bool = False):
        from ocr_deploy.backends.tensorrt.runner import TensorRTRunner

        return TensorRTRunner(Path(path), facts or {}, device_id, cuda_graph)

    def open(self, path: Path, device_id: int = 0, cuda_graph: bool = False):
        from ocr_deploy.backends.tensorrt.library import import_tensorrt
        from ocr_deploy.sidecar import read_sidecar_pair

        import_tensorrt(path)  # first: without TensorRT nothing else matters
        for _ in range(LOAD_ATTEMPTS):  # TensorRT loads by path: check it stayed in place
            pair = read_sidecar_pair(path)
            record = Sidecar.from_dict(pair.companion, pair.artifact)
            metadata = self.metadata(path, record)
            try:
                runner = self.open_runner(pair.artifact, record.facts, device_id, cuda_graph)
            except BadInputError:
                if pair.unchanged():
                    raise
                continue  # replaced by a concurrent build while loading: read the pair again
            if pair.unchanged():
                return runner, metadata
            runner.close()
        raise BadInputError(path, "an engine that stays in place while it loads",
                            "one replaced on every attempt", "retry after the build ends")

    def compute_capability(self, sidecar: Sidecar | dict | None) -> str | None:
        from ocr_deploy.backends.tensorrt.library import capability

        return capability(Sidecar.of(sidecar).facts.get("compute_capability"))

    def metadata(self, path: Path, sidecar: Sidecar | dict | None) -> ExportMetadata:
        data = Sidecar.of(sidecar, path).metadata
        if not isinstance(data, dict) or not data:
            raise BadInputError(path, "a sidecar holding the exported model's metadata "
                                "under 'metadata'", "none", "rebuild it with ocr-build-engine")
        return ExportMetadata.from_dict(data, path)

    def tensors(self, path: Path, meta: ExportMetadata, sidecar: Sidecar | dict | None
                ) -> ArtifactTensors:
        """From the sidecar (an engine cannot be inspected without TensorRT): FP32 input
        and scores, int32 labels, as ``ocr-build-engine`` builds them (an end-to-end
        engine: its uint8 image, labels and scores as its metadata records them)."""
        profiles = Sidecar.of(sidecar, path).facts.get("profiles") or []
        if not profiles:
            raise BadInputError(path, "a sidecar with the engine's optimisation profile",
                                "none", "rebuild it with ocr-build-engine")
        batches = tuple(int(profiles[0][key][0]) for key in ("min", "opt", "max"))
        if meta.end_to_end:
            return ArtifactTensors(*end_to_end_tensors(meta), batches)
        height, width, channels = meta.input_height, meta.input_width, meta.input_channels
        nchw = meta.input_layout == "NCHW"
        inputs = [TensorSpec(meta.input_name, "float32", [-1, channels, height, width]
                             if nchw else [-1, height, width, channels])]
        outputs = []
        for name, spec in meta.outputs.items():
            stride = int(spec.get("stride") or 1)
            h, w, k = height // stride, width // stride, meta.num_classes
            if spec.get("kind") == "labels":
                outputs.append(TensorSpec(name, "int32", [-1, h, w]))
            elif spec.get("kind") in ("logits", "probabilities"):
                layout = spec.get("layout", meta.input_layout)
                outputs.append(TensorSpec(name, "float32", [-1, k, h, w] if layout == "NCHW"
                                          else [-1, h, w, k]))
        return ArtifactTensors(inputs, outputs, batches)


BACKEND = TensorRT()
