"""Identify a model file and read its configuration without loading it.

Nothing here deserialises layers: it reads the HDF5 attributes, the ``.keras`` zip's JSON
or the SavedModel's folder layout, so that the loader can decide which Keras to use and
refuse unsafe content (``Lambda`` layers carry marshalled Python bytecode) before any
code from the file could run.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ocr_deploy.errors import BadInputError

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
ZIP_MAGIC = b"PK\x03\x04"
EXPECTED = "a Keras model (.h5, .keras or a SavedModel directory)"


@dataclass
class ModelFile:
    """What a model file is, before loading it."""

    path: Path
    format: str  # "h5", "keras" or "savedmodel"
    keras_version: str | None = None  # the writer's Keras version, when recorded
    # every class_name in the config (layers, initialisers, ...)
    serialized_classes: list[str] = field(default_factory=list)
    # keras.ops calls on symbolic tensors that Keras 3 recorded as layers (see ``ops_layers``)
    ops_layers: list[str] = field(default_factory=list)

    @property
    def flavour(self) -> str:
        """Which Keras loads it: "keras3", "tf_keras" or "tensorflow" (SavedModel)."""
        if self.format == "savedmodel":
            return "tensorflow"
        if self.format == "keras" or (self.keras_version or "").startswith("3."):
            return "keras3"
        return "tf_keras"


def identify(path: Path) -> ModelFile:
    """Identify ``path``; missing, empty, truncated or foreign files are clear errors."""
    path = Path(path)
    if not path.exists():
        raise BadInputError(path, EXPECTED, "no such file or directory", "check the path")
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            return ModelFile(path, "savedmodel")
        raise BadInputError(path, EXPECTED, "a directory without saved_model.pb",
                            "pass the SavedModel directory itself or a .h5/.keras file")
    size = path.stat().st_size
    if size == 0:
        raise BadInputError(path, EXPECTED, "an empty file (0 bytes)",
                            "re-save the model; the file was probably not written completely")
    with open(path, "rb") as handle:
        head = handle.read(8)
    if head.startswith(HDF5_MAGIC):
        return _identify_h5(path)
    if head.startswith(ZIP_MAGIC):
        return _identify_keras_zip(path)
    raise BadInputError(path, EXPECTED, f"a file of another kind (starts with {head[:8]!r})",
                        "pass a model saved with model.save()")


def _identify_h5(path: Path) -> ModelFile:
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            attrs = dict(handle.attrs)
    except OSError as exc:
        raise BadInputError(path, "a complete HDF5 model file",
                            f"a truncated or corrupt HDF5 file ({str(exc).splitlines()[0]})",
                            "re-save or re-download the model") from exc
    config = attrs.get("model_config")
    if config is None:
        found = "a weights-only HDF5 file" if "layer_names" in attrs else "HDF5 without a model"
        raise BadInputError(path, "a full Keras model (architecture + weights)", found,
                            "save the model with model.save(), not save_weights()")
    version = attrs.get("keras_version")
    config = json.loads(_text(config))
    return ModelFile(path, "h5", _text(version) if version is not None else None,
                     list(_serialized_classes(config)), sorted(set(ops_layers(config))))


def _identify_keras_zip(path: Path) -> ModelFile:
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if "config.json" not in names:
                raise BadInputError(path, "a .keras archive with config.json",
                                    f"a zip file holding {sorted(names)[:3]}",
                                    "pass a model saved with model.save('x.keras')")
            config = json.loads(archive.read("config.json"))
            meta = json.loads(archive.read("metadata.json")) if "metadata.json" in names else {}
    except (zipfile.BadZipFile, EOFError, ValueError) as exc:
        raise BadInputError(path, "a complete .keras archive",
                            f"a truncated or corrupt zip ({exc})",
                            "re-save or re-download the model") from exc
    return ModelFile(path, "keras", meta.get("keras_version"),
                     list(_serialized_classes(config)))


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def ops_layers(config) -> Iterator[str]:
    """Class names of functional-graph entries that are ``keras.ops`` calls, not layers.

    Keras 3 records ``x + 3.0`` or ``ops.matmul(a, b)`` on symbolic tensors as graph
    entries whose config has no ``trainable``/``dtype`` (an Operation's config, not a
    Layer's); it cannot rebuild them from an ``.h5`` (``.keras`` works).
    """
    if isinstance(config, dict):
        for layer in (config.get("config") or {}).get("layers", []) \
                if isinstance(config.get("config"), dict) else []:
            inner = layer.get("config")
            if layer.get("class_name") == "InputLayer" or not isinstance(inner, dict):
                continue
            if "trainable" not in inner and "dtype" not in inner:
                yield layer["class_name"]
            if "layers" in inner:  # a nested Functional model
                yield from ops_layers(layer)


def _serialized_classes(config) -> Iterator[str]:
    """Every ``class_name`` in a (nested) Keras model config."""
    if isinstance(config, dict):
        if "class_name" in config and isinstance(config.get("config"), dict):
            yield config["class_name"]
        for value in config.values():
            yield from _serialized_classes(value)
    elif isinstance(config, list):
        for value in config:
            yield from _serialized_classes(value)
