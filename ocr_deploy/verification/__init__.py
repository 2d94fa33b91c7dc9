"""Verification: judging an artifact against its reference (above the backends and the
runtime, below the export and build pipelines).

- ``comparison``: the one comparison of reference and candidate outputs, with every
  tolerance (``TIE_RTOL`` included);
- ``reference``: the one reference runner (ONNX Runtime CPU, memory given back after each
  run) every step runs the FP32 ONNX (or a proxy candidate) on;
- ``accuracy``: the build's verdict and the proxy measure against the FP32 ONNX;
- ``sensitivity``: the INT8 sensitivity search built on the proxy measure;
- ``end_to_end_parity``: an end-to-end artifact against ``Segmenter.predict`` on its plain
  artifact.
"""
