"""Serving exported models with NVIDIA Triton Inference Server.

``environment``: the runtime-only Python environment Triton's Python backend runs in;
``server``: start and stop the ``tritonserver`` binary of the nvidia-pytriton wheel;
``e2e``: the end-to-end logic of the Python-backend model (image in, label map out);
``triton_model``: that model's ``model.py``, copied into repositories by ``ocr-package``.
"""
