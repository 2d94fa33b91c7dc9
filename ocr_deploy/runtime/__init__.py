"""The runtime for applications: one ``Segmenter`` over TensorRT engines and ONNX models.

Imports NumPy, Pillow and the chosen backend only (ONNX Runtime or TensorRT), never
TensorFlow. See ``docs/runtime.md``.
"""

from ocr_deploy.backends.tensors import TensorRef, tensor_ref
from ocr_deploy.runtime.segmenter import Segmenter

__all__ = ["Segmenter", "TensorRef", "tensor_ref"]
