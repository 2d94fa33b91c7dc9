"""Graph passes over exported ONNX models (``onnx.ModelProto`` in, ``ModelProto`` out).

- ``apply_attention_form``: find OCRNet's attention core(s) and rewrite them into the form
  a backend runs fastest (``graph.attention``), with a report of what was found and changed.
- ``find_attention_cores``: the matcher alone.
- ``build_core_model``: a standalone graph of just the core in each form, for measurements.
- ``make_end_to_end``: wrap an exported model into an end-to-end graph (uint8 images in,
  labels at the image size out; ``graph.end_to_end``).
"""

from ocr_deploy.graph.attention import FORMS, apply_attention_form, summary
from ocr_deploy.graph.core_model import CORE_FORMS, build_core_model
from ocr_deploy.graph.find import AttentionCore, Findings, find_attention_cores

__all__ = ["CORE_FORMS", "FORMS", "AttentionCore", "Findings",
           "apply_attention_form", "build_core_model", "find_attention_cores", "summary"]
