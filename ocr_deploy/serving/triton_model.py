"""``model.py`` of the Python-backend model (``NAME_python``) in a repository written by
``ocr-package --triton``.

Triton's Python backend loads this file; it runs in the serving environment and uses
``ocr_deploy.serving.python_model`` (this package's runtime, no TensorFlow). The artifact
lies in the version folder beside this file; the config's parameters name it.
"""

import json
from pathlib import Path

import triton_python_backend_utils as pb_utils

from ocr_deploy.serving.python_model import (
    INPUT_ENCODED,
    INPUT_PIXELS,
    OUTPUT_LABELS,
    ImagesToLabels,
)


class TritonPythonModel:
    """Images (uint8 pixels or encoded bytes) in, label maps at each image's size out."""

    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        folder = Path(args["model_repository"]) / args["model_version"]
        threads = int(params.get("threads", "0")) or None
        self.model = ImagesToLabels.open(folder / params["artifact"], threads=threads)

    def execute(self, requests):
        inputs = [(_array(request, INPUT_PIXELS), _array(request, INPUT_ENCODED))
                  for request in requests]
        try:
            results = self.model.answer(inputs)
        except Exception as exc:  # the model itself failed: every request gets the error
            message = " ".join(f"{type(exc).__name__}: {exc}".split())[:500]
            results = [RuntimeError(message)] * len(requests)
        return [pb_utils.InferenceResponse(error=pb_utils.TritonError(str(result)))
                if isinstance(result, Exception) else
                pb_utils.InferenceResponse([pb_utils.Tensor(OUTPUT_LABELS, result)])
                for result in results]

    def finalize(self):
        self.model.close()


def _array(request, name):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()
