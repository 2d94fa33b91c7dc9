"""The contract between an exported graph and everything that runs or checks it, at the
bottom of the package: the metadata and its schema (``metadata``), the graph signature
check (``signature``), the image sizes an end-to-end artifact takes (``image_sizes``), and
the pre- and post-processing arithmetic the graph passes reproduce and the runtime runs
(``preprocess``, ``postprocess``). NumPy and ONNX only; it imports nothing of the package
but ``errors``, ``files`` and ``images``."""
