"""ONNX Runtime backend: the best available execution provider, I/O binding per thread.

A session's ``run_with_iobinding`` may be called from several threads at once, but an
``IOBinding`` may not, so every thread gets its own binding.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ocr_deploy.backends.runner import Runner
from ocr_deploy.backends.tensors import TensorRef
from ocr_deploy.errors import BadInputError
from ocr_deploy.onnxruntime_env import GPU_PROVIDERS, choose_providers, warn_dropped

_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16,
           "tensor(int32)": np.int32, "tensor(int64)": np.int64, "tensor(uint8)": np.uint8,
           "tensor(uint16)": np.uint16}


class OnnxRuntimeRunner(Runner):
    """An ``onnxruntime.InferenceSession`` run through I/O binding."""

    name = "onnxruntime"

    def __init__(self, path: Path, providers: Sequence | None = None, threads: int | None = None,
                 device_id: int = 0, built_options: dict | None = None,
                 content: bytes | None = None, memory_arena: bool = True):
        """``content``: the model's bytes, already read (and verified) from ``path``.
        ``memory_arena``: keep freed CPU memory for the next run (faster); off, memory goes
        back after each run (a verification running two models one after the other)."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.enable_cpu_mem_arena = memory_arena
        if threads:
            options.intra_op_num_threads = threads
        chosen = choose_providers(providers, ort.get_available_providers(), device_id,
                                  built_options)
        try:
            self.session = ort.InferenceSession(str(path) if content is None else content,
                                                options, providers=chosen)
        except Exception as exc:  # ORT raises its own types for every kind of bad file
            from ocr_deploy.memory_budget import allocation_failure, exhausted

            failed, needed = allocation_failure(exc)
            if failed:  # the machine's limit, not a bad file
                raise exhausted(f"loading {path} into ONNX Runtime", needed,
                                type(exc).__name__) from exc
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BadInputError(path, "an ONNX model that ONNX Runtime can load",
                                f"an error ({first[:200]})",
                                "re-export the model with ocr-export") from exc
        self.providers = self.session.get_providers()
        warn_dropped(chosen, self.providers)
        self.device = "cuda" if self.providers[0] in GPU_PROVIDERS else "cpu"
        self.device_id = device_id
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise BadInputError(path, "an ONNX model with one image input",
                                f"{len(inputs)} inputs", "export it with ocr-export")
        self._input = inputs[0]
        self.input_name = self._input.name
        self.input_dtype = np.dtype(_DTYPES.get(self._input.type, np.float32))
        self._outputs = {o.name: o for o in self.session.get_outputs()}
        self.output_names = tuple(self._outputs)
        batch_dim = self._input.shape[0] if self._input.shape else None
        self.max_batch = batch_dim if isinstance(batch_dim, int) and batch_dim > 0 else None
        self.min_batch = self.max_batch or 1
        self._local = threading.local()

    @property
    def custom_metadata(self) -> dict[str, str]:
        """The model's ``metadata_props``."""
        return dict(self.session.get_modelmeta().custom_metadata_map)

    def input_shape(self, batch: int) -> tuple[int, ...]:
        return _with_batch(self._input.shape, batch)

    def output_shape(self, name: str, batch: int) -> tuple[int, ...]:
        return _with_batch(self._outputs[name].shape, batch)

    def output_dtype(self, name: str) -> np.dtype:
        return np.dtype(_DTYPES.get(self._outputs[name].type, np.float32))

    def run_batch(self, batch: np.ndarray, outputs: Sequence[str]) -> dict[str, np.ndarray]:
        binding = self._binding()
        binding.bind_input(self.input_name, "cpu", 0, batch.dtype, batch.shape,
                           batch.ctypes.data)
        for name in outputs:
            binding.bind_output(name, "cpu")  # ORT allocates; .numpy() below does not copy
        self.session.run_with_iobinding(binding)
        values = binding.get_outputs()
        return {name: value.numpy() for name, value in zip(outputs, values, strict=True)}

    def run_device(self, input_ref: TensorRef, output_refs: dict[str, TensorRef], batch: int,
                   stream: int | None) -> None:
        for ref in (input_ref, *output_refs.values()):
            if ref.device == "cuda" and self.device != "cuda":
                raise BadInputError(None, "host (CPU) memory for a session on "
                                    f"{self.providers[0]}", "CUDA device memory",
                                    "install onnxruntime-gpu, or pass host buffers")
        if stream is not None:  # ORT runs on its own stream: wait for the caller's work
            from ocr_deploy.cuda import synchronize_stream

            synchronize_stream(stream)
        binding = self._binding()
        binding.bind_input(self.input_name, input_ref.device, input_ref.device_id,
                           input_ref.dtype, input_ref.shape, input_ref.ptr)
        for name, ref in output_refs.items():
            binding.bind_output(name, ref.device, ref.device_id, ref.dtype, ref.shape, ref.ptr)
        self.session.run_with_iobinding(binding)

    def info(self) -> dict:
        return {"backend": self.name, "device": self.device, "providers": self.providers}

    def close(self) -> None:
        self.session = None
        self._local = threading.local()

    def _binding(self):
        binding = getattr(self._local, "binding", None)
        if binding is None:
            if self.session is None:
                raise BadInputError(None, "an open segmenter", "a closed one",
                                    "open it again with Segmenter.open()")
            binding = self._local.binding = self.session.io_binding()
        binding.clear_binding_outputs()  # each call binds exactly the outputs it wants
        return binding


def _with_batch(shape: list, batch: int) -> tuple[int, ...]:
    return (batch, *(d if isinstance(d, int) else -1 for d in shape[1:]))
