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
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ocr_deploy.errors import BadInputError, UnsafeModelError
from ocr_deploy.export.model_file import ModelFile, identify
from ocr_deploy.tf_env import (
    describe_error,
    import_keras3,
    import_tensorflow,
    import_tf_keras,
    prefer_tf_keras_for_user_code,
)

CODE_LAYERS = ("Lambda",)  # layer classes whose config carries executable Python


@dataclass
class LoadedModel:
    """A loaded model seen as a TensorFlow callable with one image input and named outputs."""

    file: ModelFile
    keras_version: str  # the Keras (or TensorFlow) that loaded it
    input_shape: tuple  # (H, W, C), entries may be None
    output_shapes: dict[str, tuple]  # name -> (B, H, W, K) or whatever rank the output has
    model: Any  # the Keras model, or the loaded SavedModel (which owns the variables)
    dtype_policy: str | None = None  # a mixed policy the file was saved with (see _float32)
    batch: int | None = None  # a batch size fixed in the model's input, else None

    def call(self, image) -> dict:
        """Run the model on a float32 ``[B,H,W,C]`` tensor (inside or outside tf.function)."""
        if self.file.flavour == "tensorflow":
            signature = self.model.signatures["serving_default"]
            (input_name,) = signature.structured_input_signature[1]
            return dict(signature(**{input_name: image}))
        outputs = self.model(image, training=False)
        if isinstance(outputs, dict):  # a model built with a dict of outputs
            return {name: outputs[name] for name in self.output_shapes}
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]
        return dict(zip(self.output_shapes, outputs, strict=True))

    def output_shapes_at(self, input_hw: tuple[int, int]) -> dict[str, tuple]:
        """The output shapes for an input of ``input_hw``: a model with a dynamic input
        size is traced at that size to learn them."""
        if all(d is not None for shape in self.output_shapes.values() for d in shape[1:]):
            return self.output_shapes
        tf = import_tensorflow()
        spec = tf.TensorSpec((None, *input_hw, self.input_shape[2] or 3), tf.float32)
        try:
            traced = tf.function(self.call).get_concrete_function(spec).structured_outputs
        except Exception as exc:
            raise BadInputError(self.file.path, f"a model TensorFlow can trace at "
                                f"{input_hw[0]}x{input_hw[1]}", describe_error(exc),
                                "check --input-size (the model may need a multiple of its "
                                "stride)") from exc
        return {name: tuple(traced[name].shape) for name in self.output_shapes}


def load_custom_objects(source, model: Path | None = None) -> dict[str, Any]:
    """Import the user's custom-objects source and collect what it names.

    ``source`` is a Python file (``my_layers.py``) or an importable module name
    (``keras_hub``, ``mylib.layers``); a file's own folder is put on ``sys.path``, so it
    imports a package beside it as ``python my_layers.py`` would. Every class and function
    in its namespace counts, whether defined there or imported from a library
    (``from mylib.layers import Block``),
    except Keras' and TensorFlow's own; importing also runs the library's
    ``register_keras_serializable`` decorators. Modules and plain constants in it are
    passed too: tf_keras gives them to ``Lambda`` code as globals (``tf``, ``NUM_CLASSES``).
    TensorFlow's settings are applied first, so a file that imports TensorFlow gets them too.
    For a ``model`` written by tf.keras 2.x, ``tf.keras`` in the user's code means tf_keras
    when TensorFlow is not imported yet (a fresh ``ocr-export`` process).
    """
    if model is not None and _is_tf_keras_file(model):
        prefer_tf_keras_for_user_code()
    import_tensorflow()
    text = str(source)
    path = Path(text)
    if path.suffix == ".py" or path.exists() or not _MODULE_NAME.fullmatch(text):
        module = _import_file(path)
    else:
        try:
            module = importlib.import_module(text)
        except Exception as exc:
            raise BadInputError(text, "a Python file (.py) or an importable module name",
                                f"{type(exc).__name__}: {exc}"[:300],
                                "check the --custom-objects value") from exc
    return {key: value for key, value in vars(module).items()
            if not key.startswith("_") and (
                isinstance(value, (types.ModuleType, int, float, str, tuple))
                or ((inspect.isclass(value) or inspect.isfunction(value))
                    and (value.__module__ or "").split(".")[0] not in FRAMEWORK_MODULES))}


def _is_tf_keras_file(model: Path) -> bool:
    try:
        return identify(model).flavour == "tf_keras"
    except BadInputError:
        return False  # load_model reports it


_MODULE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
# classes from these are Keras' own: passing them as custom objects could shadow the
# loading Keras's (a tf_keras model with Keras 3's Dense)
FRAMEWORK_MODULES = ("keras", "tf_keras", "tensorflow", "builtins", "typing", "abc")


def _import_file(module_path: Path):
    if not module_path.is_file() or module_path.suffix != ".py":
        raise BadInputError(module_path, "a Python file (.py) defining or importing custom "
                            "layers, or a module name", "no such .py file",
                            "check the --custom-objects path")
    folder = str(module_path.resolve().parent)  # its imports resolve beside it, as with
    if folder not in sys.path:                   # `python my_layers.py` (mylib/ next to it)
        sys.path.insert(0, folder)
    name = "ocr_deploy_user_" + re.sub(r"\W", "_", module_path.stem)
    spec = importlib.util.spec_from_file_location(name, module_path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise BadInputError(module_path, "an importable Python module",
                            f"{type(exc).__name__}: {exc}", "fix the module") from exc
    return module


def load_model(path: Path, custom_objects: dict | None = None, trust: bool = False,
               custom_source: object = None) -> LoadedModel:
    """Identify and load ``path``; see the module docstring for the safety rules.

    ``custom_source`` names where ``custom_objects`` came from, for error messages.
    """
    file = identify(path)
    unsafe = sorted(set(file.serialized_classes) & set(CODE_LAYERS))
    if unsafe and not trust:
        raise UnsafeModelError(path, "a model without code-carrying layers",
                               f"{'/'.join(unsafe)} layer(s), whose loading runs Python code "
                               "stored in the file",
                               "if you trust this file, pass --trust-model")
    if file.flavour == "tensorflow":
        return _load_saved_model(file)
    return _load_keras(file, custom_objects or {}, trust, custom_source)


def _load_keras(file: ModelFile, custom_objects: dict, trust: bool,
                custom_source: object = None) -> LoadedModel:
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
    except Exception as exc:  # Keras raises anything from a model it cannot rebuild
        raise _explain_load_failure(file, exc, custom_source, custom_objects) from exc
    if len(model.inputs) != 1:
        raise BadInputError(file.path, "a model with one image input",
                            f"{len(model.inputs)} inputs", "export a single-input model")
    model, policy = _float32(model, keras, file, custom_objects)
    structure = getattr(model, "_outputs_struct", None)
    if isinstance(structure, dict):  # outputs as a dict: its keys name them
        shapes = {name: tuple(out.shape) for name, out in structure.items()}
    else:
        shapes = {name: tuple(out.shape) for name, out in zip(model.output_names,
                                                               model.outputs, strict=True)}
    return LoadedModel(file, f"{file.flavour} {keras.__version__}",
                       tuple(model.inputs[0].shape[1:]), shapes, model, policy,
                       model.inputs[0].shape[0])


MIXED_POLICIES = ("mixed_float16", "mixed_bfloat16")


def _float32(model, keras, file: ModelFile, custom_objects: dict):
    """A float32 copy of a model saved under a mixed-precision policy, and that policy.

    Mixed-precision training leaves layers computing in float16 with float32 weights;
    tf2onnx mis-types such graphs, and a deployment's reduced precision is chosen later
    (``ocr-build-engine --fp16``). The same architecture is rebuilt with float32 layers and
    given the same weights; models without a mixed policy are returned as they are.
    """
    found: set[str] = set()

    def to_float32(value):
        if isinstance(value, dict):
            name = (value.get("config") or {}).get("name") \
                if isinstance(value.get("config"), dict) else None
            if value.get("class_name") in ("DTypePolicy", "Policy") and name in MIXED_POLICIES:
                found.add(name)
                return "float32"
            return {k: to_float32(v) for k, v in value.items()}
        if isinstance(value, list):
            return [to_float32(v) for v in value]
        return value

    serialized = keras.saving.serialize_keras_object(model) \
        if hasattr(keras, "saving") and hasattr(keras.saving, "serialize_keras_object") \
        else None
    if serialized is None:
        return model, None
    converted = to_float32(serialized)
    if not found:
        return model, None
    try:
        clone = keras.saving.deserialize_keras_object(converted, custom_objects=custom_objects)
        clone.set_weights(model.get_weights())
    except Exception as exc:
        raise BadInputError(file.path, "a mixed-precision model that can be rebuilt in "
                            "float32 for export", f"{type(exc).__name__}: {exc}"[:300],
                            "re-save the model with the float32 policy") from exc
    return clone, "/".join(sorted(found))


def _explain_load_failure(file: ModelFile, exc: Exception, custom_source: object = None,
                          custom_objects: dict | None = None) -> BadInputError:
    text = str(exc)
    keras3_classes = sorted(name for name, value in (custom_objects or {}).items()
                            if inspect.isclass(value) and any(
                                (c.__module__ or "").startswith("keras.") for c in value.__mro__))
    if file.flavour == "tf_keras" and keras3_classes:
        return BadInputError(file.path, "custom layers built on tf_keras (the model was "
                             f"written by Keras {file.keras_version or '2.x'})",
                             f"Keras 3 classes from {custom_source} "
                             f"({', '.join(keras3_classes[:4])})",
                             "set TF_USE_LEGACY_KERAS=1 in the environment before TensorFlow is "
                             "imported (ocr-export does so itself for such a model), so that "
                             "the library builds its layers on tf_keras")
    if file.format == "h5" and file.flavour == "keras3" and file.ops_layers:
        return BadInputError(file.path, "an .h5 file Keras 3 can reload",
                             f"keras.ops calls saved as layers ({', '.join(file.ops_layers)}"
                             "), which Keras 3 cannot rebuild from .h5 (a Keras limitation: "
                             "ops on symbolic tensors, e.g. `x + 3.0` in MobileNetV3 or "
                             "ops.matmul)", "re-save the model as .keras "
                             "(model.save('model.keras')) and export that file")
    unknown = re.search(r"(?:Unknown layer|Could not locate class|Unknown object)[^'\"]*"
                        r"['\"]([\w.>]+)['\"]", text)
    if unknown:
        name = unknown.group(1)
        if custom_source is not None:
            action = (f"{custom_source} does not provide '{name}': import it there "
                      f"(from your_library.module import {name}) or pass the library's "
                      "module name to --custom-objects (e.g. --custom-objects "
                      "your_library.layers)")
        else:
            action = ("pass --custom-objects FILE.py (a file defining or importing it) or "
                      "--custom-objects MODULE (the library that defines it)")
        return BadInputError(file.path, "layers known to Keras or registered",
                             f"unknown layer class '{name}'", action)
    described = describe_error(exc)
    lambda_code = "Lambda" in text and (isinstance(exc, NameError) or "infer the shape" in text)
    if lambda_code and file.flavour == "tf_keras":
        return BadInputError(file.path, "Lambda code whose names exist at load time",
                             described,
                             "pass --custom-objects FILE.py defining or importing the names "
                             "the Lambda uses (e.g. import tensorflow as tf, NUM_CLASSES = 19)")
    if lambda_code:
        return BadInputError(file.path, "Lambda code that Keras 3 can rebuild",
                             described,
                             "Keras 3 reloads Lambda code without the names it used (keras, "
                             "ops, your constants): replace the Lambda with a Layer subclass "
                             "and pass its file with --custom-objects")
    first = described[:200]
    if file.flavour == "tf_keras" and "TFOpLambda" in file.serialized_classes:
        return BadInputError(file.path, "a model tf_keras can rebuild from its file",
                             f"a load error ({first[:200]})",
                             "some raw TF calls recorded as TFOpLambda layers (tf.einsum, for "
                             "one) do not reload from .h5: save the model as a SavedModel "
                             "(model.save('DIR', save_format='tf')) and export DIR")
    if file.format == "h5" and file.flavour == "keras3":
        return BadInputError(file.path, "an .h5 file Keras 3 can reload",
                             f"a load error ({first[:200]})",
                             "Keras 3's legacy .h5 loader cannot rebuild every model it saves: "
                             "re-save the model as .keras (model.save('model.keras')) and "
                             "export that file")
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
    return LoadedModel(file, f"tensorflow {tf.__version__}", tuple(spec.shape[1:]), outputs, obj,
                       batch=spec.shape[0])
