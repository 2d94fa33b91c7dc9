"""Load a Keras model (Keras 3, legacy tf_keras, or a SavedModel) safely.

The right Keras is chosen from the file itself (see ``model_file``). ``Lambda`` layers are
refused unless the caller trusts the file, since loading one runs code stored in it.
User layers come from a Python file the user names (``--custom-objects``).
"""

from __future__ import annotations

import importlib.util
import inspect
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ocr_deploy.errors import BadInputError, UnsafeModelError
from ocr_deploy.export.model_file import ModelFile, identify
from ocr_deploy.tf_env import import_keras3, import_tensorflow, import_tf_keras

CODE_LAYERS = ("Lambda",)  # layer classes whose config carries executable Python


@dataclass
class LoadedModel:
    """A loaded model seen as a TensorFlow callable with one image input and named outputs."""

    file: ModelFile
    keras_version: str  # the Keras (or TensorFlow) that loaded it
    input_shape: tuple  # (H, W, C), entries may be None
    output_shapes: dict[str, tuple]  # name -> (B, H, W, K) or whatever rank the output has
    model: Any  # the Keras model, or the loaded SavedModel (which owns the variables)

    def call(self, image) -> dict:
        """Run the model on a float32 ``[B,H,W,C]`` tensor (inside or outside tf.function)."""
        if self.file.flavour == "tensorflow":
            signature = self.model.signatures["serving_default"]
            (input_name,) = signature.structured_input_signature[1]
            return dict(signature(**{input_name: image}))
        outputs = self.model(image, training=False)
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]
        return dict(zip(self.output_shapes, outputs, strict=True))


def load_custom_objects(module_path: Path) -> dict[str, Any]:
    """Import a user's Python file and collect the classes and functions it defines.

    This runs the user's own file, which they named explicitly; classes decorated with
    ``register_keras_serializable`` register themselves as a side effect too.
    """
    module_path = Path(module_path)
    if not module_path.is_file() or module_path.suffix != ".py":
        raise BadInputError(module_path, "a Python file (.py) defining custom layers",
                            "no such .py file", "check the --custom-objects path")
    name = "ocr_deploy_user_" + re.sub(r"\W", "_", module_path.stem)
    spec = importlib.util.spec_from_file_location(name, module_path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise BadInputError(module_path, "an importable Python module",
                            f"{type(exc).__name__}: {exc}", "fix the module") from exc
    return {key: value for key, value in vars(module).items()
            if (inspect.isclass(value) or inspect.isfunction(value))
            and value.__module__ == name}


def load_model(path: Path, custom_objects: dict | None = None, trust: bool = False
               ) -> LoadedModel:
    """Identify and load ``path``; see the module docstring for the safety rules."""
    file = identify(path)
    unsafe = sorted(set(file.serialized_classes) & set(CODE_LAYERS))
    if unsafe and not trust:
        raise UnsafeModelError(path, "a model without code-carrying layers",
                               f"{'/'.join(unsafe)} layer(s), whose loading runs Python code "
                               "stored in the file",
                               "if you trust this file, pass --trust-model")
    if file.flavour == "tensorflow":
        return _load_saved_model(file)
    return _load_keras(file, custom_objects or {}, trust)


def _load_keras(file: ModelFile, custom_objects: dict, trust: bool) -> LoadedModel:
    if file.flavour == "keras3":
        keras = import_keras3()
        import ocr_deploy.model.layers  # noqa: F401  (registers the OCR layers)

        def load():
            return keras.saving.load_model(file.path, custom_objects=custom_objects,
                                           compile=False, safe_mode=not trust)
    else:
        keras = import_tf_keras()

        def load():
            return keras.models.load_model(file.path, custom_objects=custom_objects,
                                           compile=False)
    try:
        model = load()
    except (ValueError, TypeError, KeyError, OSError) as exc:
        raise _explain_load_failure(file, exc) from exc
    if len(model.inputs) != 1:
        raise BadInputError(file.path, "a model with one image input",
                            f"{len(model.inputs)} inputs", "export a single-input model")
    shapes = {name: tuple(out.shape) for name, out in zip(model.output_names, model.outputs,
                                                           strict=True)}
    return LoadedModel(file, f"{file.flavour} {keras.__version__}",
                       tuple(model.inputs[0].shape[1:]), shapes, model)


def _explain_load_failure(file: ModelFile, exc: Exception) -> BadInputError:
    text = str(exc)
    unknown = re.search(r"(?:Unknown layer|Could not locate class|Unknown object)[^'\"]*"
                        r"['\"]([\w.>]+)['\"]", text)
    if unknown:
        return BadInputError(file.path, "layers known to Keras or registered",
                             f"unknown layer class '{unknown.group(1)}'",
                             "pass --custom-objects my_layers.py (a file defining it)")
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return BadInputError(file.path, f"a model that {file.flavour} can load",
                         f"a load error ({first[:200]})",
                         "check that the file is a complete Keras model")


def _load_saved_model(file: ModelFile) -> LoadedModel:
    tf = import_tensorflow()
    try:
        obj = tf.saved_model.load(str(file.path))
    except Exception as exc:
        raise BadInputError(file.path, "a loadable SavedModel", f"a load error ({exc})"[:300],
                            "re-export the SavedModel") from exc
    signature = getattr(obj, "signatures", {}).get("serving_default")
    if signature is None:
        raise BadInputError(file.path, "a SavedModel with a 'serving_default' signature",
                            "no such signature", "save it with model.export() or tf.saved_model")
    inputs = signature.structured_input_signature[1]
    if len(inputs) != 1:
        raise BadInputError(file.path, "a signature with one image input",
                            f"{len(inputs)} inputs ({', '.join(inputs)})",
                            "export a single-input model")
    (spec,) = inputs.values()
    outputs = {name: tuple(out.shape) for name, out in
               sorted(signature.structured_outputs.items())}
    return LoadedModel(file, f"tensorflow {tf.__version__}", tuple(spec.shape[1:]), outputs, obj)
