"""Write a Triton model repository for an artifact (``ocr-package ARTIFACT --triton REPO``).

Two models per artifact, each with a version folder, a ``config.pbtxt`` and ``labels.txt``:

- ``NAME``: the inference model itself (``onnxruntime_onnx`` for an ``.onnx``,
  ``tensorrt_plan`` for an ``.engine``): tensors, data types, dims and batch limits from the
  artifact; dynamic batching; GPU instances; the execution-provider settings the sidecar
  recorded. Served by Triton's ONNX Runtime / TensorRT backends (GPU servers). For an
  end-to-end artifact (``ocr-build-engine --end-to-end``) this model alone serves camera
  frames: ``UINT8`` images in (its fixed size, or ``[-1, -1, C]`` for a range), ``UINT8``
  (``UINT16``) labels at their size out, no Python backend needed. Engines of one model
  built for other GPUs (``gpu_engines``) go into it too, chosen by Triton per GPU through
  ``cc_model_filenames`` (compute capability -> file, from each engine's sidecar).
- ``NAME_python``: the Python-backend model (``ocr_deploy.serving.triton_model``), images to
  labels with pre- and post-processing:
  uint8 images or encoded image bytes in, label maps at each image's size out (any size;
  an end-to-end artifact's sizes), what a server with only the Python backend can serve.
  It runs ``Segmenter.predict``: on an end-to-end artifact that is the artifact's own run,
  with no pre- or post-processing in Python.

Each model folder is written into a temporary folder and renamed into place; an existing
model is replaced only with ``force``. The repository's ``README.md`` lists its models.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ocr_deploy import serving
from ocr_deploy.errors import BadInputError, OutputExistsError
from ocr_deploy.files import write_bytes_atomic
from ocr_deploy.packaging.artifact_info import ArtifactInfo, TensorSpec, read_artifact
from ocr_deploy.pbtxt import Enum, Message, parameter, render
from ocr_deploy.serving.python_model import INPUT_ENCODED, INPUT_PIXELS, OUTPUT_LABELS
from ocr_deploy.sidecar import sidecar_path

TRITON_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "bfloat16": "TYPE_BF16",
                "float64": "TYPE_FP64", "uint8": "TYPE_UINT8", "uint16": "TYPE_UINT16",
                "int8": "TYPE_INT8", "int32": "TYPE_INT32", "int64": "TYPE_INT64"}
PYTHON_SUFFIX = "_python"  # the Python-backend model; no inference model may end so
# model.py of the Python-backend model (not imported here: it needs Triton's Python backend)
PYTHON_MODEL_SOURCE = Path(serving.__file__).with_name("triton_model.py")
LABELS_FILE = "labels.txt"


@dataclass
class TritonOptions:
    name: str | None = None  # default: the artifact's file name without suffix
    version: int = 1
    max_batch: int | None = None  # default: the engine profile's max, else 8
    dynamic_batching: bool = True
    max_queue_delay_us: int = 2000
    instances: int = 1  # GPU instances of the inference model
    python_instances: int = 1  # CPU instances of the Python-backend model (NAME_python)
    threads: int = 0  # ONNX Runtime threads per end-to-end instance (0: its default)
    force: bool = False
    # engines of the same model built on other GPUs: one Triton model, cc_model_filenames
    gpu_engines: list[Path] = field(default_factory=list)


def model_name(info: ArtifactInfo, options: TritonOptions) -> str:
    """A Triton model name: the option, else the artifact's stem, made safe for a folder.
    Names ending in ``PYTHON_SUFFIX`` are the Python-backend models' alone, so an
    inference model never takes the name of another artifact's Python-backend model."""
    name = options.name or info.path.name.split(".")[0]
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", name).lstrip("_.-") or "model"
    if name.endswith(PYTHON_SUFFIX):
        raise BadInputError(info.path, f"a model name not ending in {PYTHON_SUFFIX} (kept for "
                            "the Python-backend models)", f"'{name}'", "pass --name another")
    return name


def max_batch_size(info: ArtifactInfo, options: TritonOptions) -> int:
    """The inference model's ``max_batch_size``: 0 for a fixed-batch ONNX; else the option,
    bounded by an engine's profile, or the profile's max, or 8."""
    if not info.dynamic_batch:
        return 0
    limit = info.profile_batches[2] if info.profile_batches else None
    wanted = options.max_batch or limit or 8
    if wanted < 1 or (limit and wanted > limit):
        raise BadInputError(info.path, f"--max-batch between 1 and {limit or 'any'}",
                            str(wanted), "the engine's optimisation profile sets the limit")
    return wanted


def inference_config(info: ArtifactInfo, name: str, options: TritonOptions,
                     gpu_files: dict[str, str] | None = None) -> Message:
    """The inference model's config (a ``pbtxt`` message); ``gpu_files``: compute
    capability -> model file (``cc_model_filenames``)."""
    batch = max_batch_size(info, options)
    config: Message = [("name", name), ("platform", info.backend.triton_platform),
                       ("max_batch_size", batch)]
    meta = info.metadata
    layout = "NHWC" if meta.end_to_end else meta.input_layout  # camera images: NHWC
    for tensor in info.inputs:
        config.append(("input", [*_tensor(tensor, batch), ("format", Enum(f"FORMAT_{layout}"))]))
    labels_output = meta.end_to_end["labels"] if meta.end_to_end else \
        meta.output_of_kind("labels")
    for tensor in info.outputs:
        extra = [("label_filename", LABELS_FILE)] if tensor.name == labels_output else []
        config.append(("output", _tensor(tensor, batch) + extra))
    if batch and options.dynamic_batching:
        config.append(("dynamic_batching", _batching(info, batch, options)))
    config.append(("instance_group", [("count", options.instances),
                                      ("kind", Enum("KIND_GPU"))]))
    if gpu_files:
        config.append(("default_model_filename", info.backend.triton_model_file))
        config += [("cc_model_filenames", [("key", cc), ("value", file)])
                   for cc, file in sorted(gpu_files.items())]
    return config + info.backend.triton_settings(info.sidecar, name)


def gpu_model_files(info: ArtifactInfo, others: list[ArtifactInfo]) -> dict[str, ArtifactInfo]:
    """``{compute capability: artifact}`` for ``info`` and the engines of the same model
    built on other GPUs (empty without any): each engine's capability from its sidecar,
    one engine per capability, and all of them the same model (source export, precision,
    tensors and batch profile)."""
    if not others:
        return {}
    by_capability: dict[str, ArtifactInfo] = {}
    for entry in [info, *others]:
        capability = entry.backend.compute_capability(entry.sidecar)
        if capability is None:
            raise BadInputError(entry.path, "an engine whose sidecar records the GPU "
                                "compute capability it was built for (Triton picks one per "
                                "GPU)", f"a {entry.backend.name} artifact without one",
                                "pass TensorRT engines built by ocr-build-engine")
        if capability in by_capability:
            raise BadInputError(entry.path, "one engine per compute capability",
                                f"a second engine for {capability} (beside "
                                f"{by_capability[capability].path})", "drop one of them")
        differs = [what for what, value in _identity(entry).items()
                   if value != _identity(info)[what]]
        if differs:
            raise BadInputError(entry.path, f"an engine of the same model as {info.path}",
                                f"another {' and '.join(differs)}", "build every engine "
                                "from the same export with the same options, one per GPU")
        by_capability[capability] = entry
    return by_capability


def _identity(info: ArtifactInfo) -> dict:
    """What engines of one model share, whatever GPU they were built on."""
    return {"source export": info.sidecar and info.sidecar.source_onnx_sha256,
            "precision": info.precision, "tensors": (info.inputs, info.outputs),
            "batch profile": info.profile_batches}


def python_config(info: ArtifactInfo, name: str, options: TritonOptions,
                  labels_dtype: str) -> Message:
    """The Python-backend model's config."""
    meta = info.metadata
    channels = meta.input_channels
    batch = options.max_batch or 8
    sizes = meta.sizes()
    sides = list(sizes.sides) if sizes else [-1, -1]
    config: Message = [
        ("name", name), ("backend", "python"), ("max_batch_size", batch),
        ("input", [("name", INPUT_PIXELS), ("data_type", Enum("TYPE_UINT8")),
                   ("dims", [*sides, channels]), ("optional", True),
                   ("allow_ragged_batch", True)]),
        ("input", [("name", INPUT_ENCODED), ("data_type", Enum("TYPE_STRING")),
                   ("dims", [1]), ("optional", True), ("allow_ragged_batch", True)]),
        ("output", [("name", OUTPUT_LABELS), ("data_type", Enum(TRITON_TYPES[labels_dtype])),
                    ("dims", [-1, -1]), ("label_filename", LABELS_FILE)]),
    ]
    if options.dynamic_batching:
        config.append(("dynamic_batching", [("max_queue_delay_microseconds",
                                             options.max_queue_delay_us)]))
    config.append(("instance_group", [("count", options.python_instances),
                                      ("kind", Enum("KIND_CPU"))]))
    config.append(("parameters", parameter("artifact", info.path.name)))
    config.append(("parameters", parameter("threads", str(options.threads))))
    return config


def write_triton_repository(info: ArtifactInfo, repo: Path,
                            options: TritonOptions | None = None) -> list[Path]:
    """Write the two models of ``info`` into ``repo``; return their folders."""
    options = options or TritonOptions()
    repo = Path(repo)
    if repo.exists() and not repo.is_dir():
        raise BadInputError(repo, "a folder for the model repository", "a file",
                            "choose another --triton folder")
    name = model_name(info, options)
    python_name = name + PYTHON_SUFFIX
    for model in (name, python_name):
        if (repo / model).exists() and not options.force:
            raise OutputExistsError(repo / model, "a model name not yet in the repository",
                                    "an existing model folder",
                                    "pass --force to replace it, or --name another")
    e2e = info.metadata.end_to_end
    labels_dtype = e2e["label_dtype"] if e2e else \
        "uint8" if info.metadata.num_classes <= 256 else "int32"
    version = str(options.version)
    model_file = info.backend.triton_model_file
    per_gpu = gpu_model_files(info, [read_artifact(p) for p in options.gpu_engines])
    gpu_files = {cc: model_file if entry is info else f"{Path(model_file).stem}_{cc}"
                 f"{Path(model_file).suffix}" for cc, entry in per_gpu.items()}
    written = [
        _write_model(repo, name, inference_config(info, name, options, gpu_files), info,
                     {f"{version}/{model_file}": info.path,
                      **{f"{version}/{gpu_files[cc]}": entry.path
                         for cc, entry in per_gpu.items() if entry is not info}}),
        _write_model(repo, python_name,
                     python_config(info, python_name, options, labels_dtype), info,
                     {f"{version}/model.py": PYTHON_MODEL_SOURCE,
                      f"{version}/{info.path.name}": info.path,
                      **({f"{version}/{sidecar_path(info.path).name}": sidecar_path(info.path)}
                         if info.sidecar is not None else {})}),
    ]
    _write_readme(repo)
    return written


def _tensor(tensor: TensorSpec, batch: int) -> Message:
    dims = tensor.shape[1:] if batch else tensor.shape
    return [("name", tensor.name), ("data_type", Enum(TRITON_TYPES[tensor.dtype])),
            ("dims", dims)]


def _batching(info: ArtifactInfo, batch: int, options: TritonOptions) -> Message:
    """Preferred sizes: an engine's profile opt and max (the sizes it was tuned for), else
    the max; a short queue delay lets requests join a batch."""
    preferred = {batch}
    if info.profile_batches:
        preferred.add(min(info.profile_batches[1], batch))
    return [("preferred_batch_size", sorted(preferred)),
            ("max_queue_delay_microseconds", options.max_queue_delay_us)]


def _write_model(repo: Path, name: str, config: Message, info: ArtifactInfo,
                 files: dict[str, Path]) -> Path:
    """Build the model folder beside its final place, then rename it in."""
    repo.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=repo))
    try:
        (staging / "config.pbtxt").write_text(render(config) + "\n")
        (staging / LABELS_FILE).write_text("".join(f"{n}\n" for n in _class_names(info)))
        for relative, source in files.items():
            (staging / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, staging / relative)
        target = repo / name
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{name}.old.", dir=repo))
            target.rename(old / name)
        staging.rename(target)
        if old:
            shutil.rmtree(old)
        return target
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def _class_names(info: ArtifactInfo) -> list[str]:
    """One name per class index (``class_N`` where the metadata has none)."""
    names = list(info.metadata.class_names)
    return names + [f"class_{i}" for i in range(len(names), info.metadata.num_classes)]


def _write_readme(repo: Path) -> None:
    """(Re)write the repository's README for the models it holds now."""
    models = sorted(p.parent.name for p in repo.glob("*/config.pbtxt"))
    e2e = [m for m in models if m.endswith(PYTHON_SUFFIX)]
    example = e2e[0] if e2e else "NAME_python"
    text = README.format(models="\n".join(f"- `{m}`" for m in models), example=example,
                         pixels=INPUT_PIXELS, encoded=INPUT_ENCODED, labels=OUTPUT_LABELS)
    write_bytes_atomic(repo / "README.md", text.encode())


README = """\
# Triton model repository (written by ocr-package)

Models:

{models}

Each artifact gives two models. `NAME` is the inference model (`onnxruntime_onnx` for an
ONNX, `tensorrt_plan` for a TensorRT engine): the raw model input (resized, normalised
pixels) in, logits/labels out; it needs Triton's ONNX Runtime or TensorRT backend and a GPU.
An end-to-end artifact's `NAME` takes the camera frames themselves (`image`, UINT8
`[1,H,W,3]` in its colour order) and returns `labels` (UINT8, UINT16 beyond 256 classes)
at their size: on a GPU server it is all you need.
`NAME_python` is the Python-backend model (`ocr_deploy.runtime` inside): send
`{pixels}` (uint8 `[1,H,W,3]`, any size) or `{encoded}` (`[1,1]` encoded PNG/JPEG), get
`{labels}` `[1,H,W]` (class index per pixel, at the image's own size) back. Class names:
`labels.txt` in each model folder.

## On this machine (CPU, the Python backend only)

    ocr-serve REPO            # HTTP 8000, gRPC 8001, metrics 8002 on 127.0.0.1; Ctrl-C stops

`ocr-serve` runs the `tritonserver` binary of the nvidia-pytriton wheel in a runtime-only
environment (`.venv-serve`: numpy < 2, ONNX Runtime, ocr-deploy without TensorFlow). That
binary has no ONNX Runtime or TensorRT backend, so only the `_python` models are served here.

## On a GPU server, in NVIDIA's Triton container

    docker run --gpus all --rm -p 8000:8000 -p 8001:8001 -p 8002:8002 \\
        -v $PWD/REPO:/models nvidia/tritonserver:<yy.mm>-py3 \\
        tritonserver --model-repository=/models

(the image from NVIDIA's NGC registry). Choose a release whose TensorRT is the one that
built a `.engine` (its sidecar's `tensorrt_version`); engines do not move across TensorRT
versions or GPU models. The `_python` models import `ocr_deploy`: install it into the
container's Python first (`pip install ocr-deploy` from a checkout, no TensorFlow needed),
or load only the inference models (`--model-control-mode=explicit --load-model=NAME`).

## A client call

    import numpy as np, tritonclient.http as http
    client = http.InferenceServerClient("127.0.0.1:8000")
    image = np.zeros((1, 480, 640, 3), np.uint8)          # your RGB image, batch of 1
    inp = http.InferInput("{pixels}", list(image.shape), "UINT8")
    inp.set_data_from_numpy(image)
    labels = client.infer("{example}", [inp]).as_numpy("{labels}")[0]   # [480, 640]
"""
