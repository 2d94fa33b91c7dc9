"""Graph passes over exported ONNX models (``onnx.ModelProto`` in, ``ModelProto`` out).

- ``apply_attention_form``: find OCRNet's attention core(s) and rewrite them into the form
  a backend runs fastest (``graph.attention``), with a report of what was found and changed.
- ``find_attention_cores``: the matcher alone.
- ``build_core_model``: a standalone graph of just the core in each form, for measurements.
- ``make_end_to_end``: wrap an exported model into an end-to-end graph (uint8 images in,
  labels at the image size out; ``graph.end_to_end``).
- ``GraphTarget``: what a backend's graph compiler takes (``graph.target``).

Import from the modules: this package imports nothing, so the runtime, which needs only
``graph.target`` through the backends, does not load ONNX's graph tooling.
"""
