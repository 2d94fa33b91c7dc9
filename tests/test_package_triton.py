"""ocr-package --triton: the repository layout, every config.pbtxt parsed with the model-config
protobuf that ships in tritonclient, and the end-to-end model's request handling (run here
without a server; tests/test_serve_triton.py runs it inside Triton)."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from google.protobuf import text_format
from PIL import Image
from sidecars import write_sidecar

from ocr_deploy.contract.metadata import INPUT_NAME, read_metadata
from ocr_deploy.errors import BadInputError, OutputExistsError, RequestError
from ocr_deploy.packaging.artifact_info import read_artifact
from ocr_deploy.packaging.cli import main as package_main
from ocr_deploy.packaging.triton_repo import TritonOptions, write_triton_repository
from ocr_deploy.runtime import Segmenter
from ocr_deploy.serving.python_model import (
    INPUT_ENCODED,
    INPUT_PIXELS,
    OUTPUT_LABELS,
    request_images,
)
from ocr_deploy.serving.python_model import ImagesToLabels as EndToEnd

model_config_pb2 = pytest.importorskip(
    "tritonclient.grpc.model_config_pb2",
    reason="tritonclient is not installed (pip install 'ocr-deploy[serve]', run.sh does it)")
Config = model_config_pb2.ModelConfig


def parse(path: Path) -> model_config_pb2.ModelConfig:
    """Parse a config.pbtxt strictly (unknown fields or bad values raise)."""
    return text_format.Parse(path.read_text(), Config())


def type_name(value: int) -> str:
    return model_config_pb2.DataType.Name(value)


@pytest.fixture(scope="module")
def repo(nhwc_onnx, nchw_onnx, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("triton") / "repo"
    write_triton_repository(read_artifact(nhwc_onnx), folder)
    write_triton_repository(read_artifact(nchw_onnx), folder,
                            TritonOptions(max_batch=4, dynamic_batching=False, instances=2))
    return folder


def test_layout_and_readme(repo, nhwc_onnx, nchw_onnx):
    names = sorted(p.name for p in repo.iterdir())
    assert names == ["README.md", "nchw_labels", "nchw_labels_python", "nhwc", "nhwc_python"]
    for model in ("nhwc", "nchw_labels"):
        assert (repo / model / "1" / "model.onnx").read_bytes() == \
            Path({"nhwc": nhwc_onnx, "nchw_labels": nchw_onnx}[model]).read_bytes()
        assert (repo / f"{model}_python" / "1" / f"{model}.onnx").is_file()
        assert (repo / f"{model}_python" / "1" / "model.py").read_text().startswith('"""')
    readme = (repo / "README.md").read_text()
    assert "ocr-serve REPO" in readme and "- `nhwc_python`" in readme and "--gpus" in readme
    assert not [p for p in repo.rglob(".*")]  # no staging folders left


def test_labels_file_has_the_class_names(repo):
    from artifacts import CLASS_NAMES

    for model in ("nhwc", "nhwc_python"):
        assert (repo / model / "labels.txt").read_text().splitlines() == CLASS_NAMES
    # no names in the metadata: one generic name per class
    assert (repo / "nchw_labels" / "labels.txt").read_text().splitlines() == \
        [f"class_{i}" for i in range(4)]


def test_inference_config_matches_the_onnx_graph(repo, nhwc_onnx):
    config = parse(repo / "nhwc" / "config.pbtxt")
    graph = onnx.load(str(nhwc_onnx)).graph
    assert config.name == "nhwc" and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 8
    (inp,) = config.input
    assert inp.name == graph.input[0].name == INPUT_NAME
    assert type_name(inp.data_type) == "TYPE_FP32"
    assert list(inp.dims) == [64, 64, 3]
    assert model_config_pb2.ModelInput.Format.Name(inp.format) == "FORMAT_NHWC"
    outputs = {o.name: o for o in config.output}
    assert set(outputs) == {o.name for o in graph.output} == {"logits", "labels"}
    assert list(outputs["logits"].dims) == [64, 64, 4]
    assert type_name(outputs["logits"].data_type) == "TYPE_FP32"
    assert list(outputs["labels"].dims) == [64, 64]
    assert type_name(outputs["labels"].data_type) == "TYPE_INT32"
    assert outputs["labels"].label_filename == "labels.txt"
    assert list(config.dynamic_batching.preferred_batch_size) == [8]
    assert config.dynamic_batching.max_queue_delay_microseconds == 2000
    (group,) = config.instance_group
    assert group.count == 1
    assert model_config_pb2.ModelInstanceGroup.Kind.Name(group.kind) == "KIND_GPU"
    assert not config.HasField("optimization")  # no sidecar: no accelerator settings


def test_options_nchw_no_batching(repo):
    config = parse(repo / "nchw_labels" / "config.pbtxt")
    assert config.max_batch_size == 4 and not config.HasField("dynamic_batching")
    assert list(config.input[0].dims) == [3, 64, 64]
    assert model_config_pb2.ModelInput.Format.Name(config.input[0].format) == "FORMAT_NCHW"
    assert [o.name for o in config.output] == ["labels"]
    assert config.instance_group[0].count == 2
    e2e = parse(repo / "nchw_labels_python" / "config.pbtxt")
    assert not e2e.HasField("dynamic_batching") and e2e.max_batch_size == 4


def test_e2e_config(repo):
    config = parse(repo / "nhwc_python" / "config.pbtxt")
    assert config.backend == "python" and config.max_batch_size == 8
    inputs = {i.name: i for i in config.input}
    assert list(inputs[INPUT_PIXELS].dims) == [-1, -1, 3]
    assert type_name(inputs[INPUT_PIXELS].data_type) == "TYPE_UINT8"
    assert type_name(inputs[INPUT_ENCODED].data_type) == "TYPE_STRING"
    assert all(i.optional and i.allow_ragged_batch for i in config.input)
    (output,) = config.output
    assert output.name == OUTPUT_LABELS and list(output.dims) == [-1, -1]
    assert type_name(output.data_type) == "TYPE_UINT8"
    assert config.parameters["artifact"].string_value == "nhwc.onnx"
    assert config.dynamic_batching.max_queue_delay_microseconds == 2000
    assert model_config_pb2.ModelInstanceGroup.Kind.Name(config.instance_group[0].kind) \
        == "KIND_CPU"


def test_sidecar_acceleration_settings(nhwc_onnx, tmp_path):
    """A built artifact's sidecar asks for the TensorRT EP in FP16 with an engine cache and
    exhaustive cuDNN search: the ONNX Runtime backend gets the same settings."""
    artifact = tmp_path / "model_fp16.onnx"
    shutil.copyfile(nhwc_onnx, artifact)
    write_sidecar(artifact, {"precision": "fp16", "provider_options": {
        "TensorrtExecutionProvider": {"trt_fp16_enable": True, "trt_int8_enable": False,
                                      "trt_engine_cache_enable": True,
                                      "trt_engine_cache_path": "x", "trt_timing_cache_enable":
                                      True, "trt_timing_cache_path": "x"},
        "CUDAExecutionProvider": {"cudnn_conv_algo_search": "EXHAUSTIVE"}}})
    write_triton_repository(read_artifact(artifact), tmp_path / "repo")
    config = parse(tmp_path / "repo" / "model_fp16" / "config.pbtxt")
    (accelerator,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "tensorrt"
    assert accelerator.parameters["precision_mode"] == "FP16"
    assert accelerator.parameters["trt_engine_cache_enable"] == "1"
    assert accelerator.parameters["trt_engine_cache_path"] == "/tmp/trt-cache/model_fp16"
    assert config.parameters["cudnn_conv_algo_search"].string_value == "0"
    # the end-to-end model carries the sidecar with its artifact (the runtime reads both)
    e2e = tmp_path / "repo" / "model_fp16_python" / "1"
    assert (e2e / "model_fp16.onnx.json").is_file()
    with Segmenter.open(e2e / "model_fp16.onnx") as seg:
        assert seg.predict(np.zeros((10, 12, 3), np.uint8)).shape == (10, 12)


def test_engine_config_from_its_sidecar(nhwc_onnx, tmp_path):
    """A TensorRT engine cannot be built here; its config comes from the sidecar alone (the
    packager never reads the engine's bytes), so a placeholder file stands in for it."""
    engine = tmp_path / "model_int8.engine"
    engine.write_bytes(b"placeholder: ocr-package only copies the engine")
    meta = read_metadata(nhwc_onnx)
    write_sidecar(engine, {"backend": "tensorrt", "precision": "int8",
                           "profiles": [{"input": INPUT_NAME, "min": [1, 64, 64, 3],
                                         "opt": [4, 64, 64, 3], "max": [16, 64, 64, 3]}],
                           "metadata": meta.__dict__})
    write_triton_repository(read_artifact(engine), tmp_path / "repo")
    config = parse(tmp_path / "repo" / "model_int8" / "config.pbtxt")
    assert config.platform == "tensorrt_plan" and config.max_batch_size == 16
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 16]
    assert (tmp_path / "repo" / "model_int8" / "1" / "model.plan").read_bytes() == \
        engine.read_bytes()
    outputs = {o.name: (type_name(o.data_type), list(o.dims)) for o in config.output}
    assert outputs == {"logits": ("TYPE_FP32", [64, 64, 4]), "labels": ("TYPE_INT32", [64, 64])}
    with pytest.raises(BadInputError, match="between 1 and 16"):
        write_triton_repository(read_artifact(engine), tmp_path / "other",
                                TritonOptions(max_batch=32))


def test_existing_model_needs_force(nhwc_onnx, tmp_path):
    info = read_artifact(nhwc_onnx)
    write_triton_repository(info, tmp_path)
    (tmp_path / "nhwc" / "config.pbtxt").write_text("old")
    with pytest.raises(OutputExistsError, match="--force"):
        write_triton_repository(info, tmp_path)
    write_triton_repository(info, tmp_path, TritonOptions(force=True))
    assert parse(tmp_path / "nhwc" / "config.pbtxt").name == "nhwc"


def test_cli(nhwc_onnx, tmp_path, capsys):
    assert package_main([str(nhwc_onnx), "--triton", str(tmp_path / "r"), "--name", "seg",
                         "--max-batch", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["triton"] == [str(tmp_path / "r" / "seg"), str(tmp_path / "r" / "seg_python")]
    assert parse(tmp_path / "r" / "seg" / "config.pbtxt").max_batch_size == 2
    assert package_main([str(nhwc_onnx)]) == 2  # neither --triton nor --deepstream
    assert "expected --triton REPO and/or --deepstream DIR" in capsys.readouterr().err
    assert package_main([str(tmp_path / "missing.onnx"), "--triton", str(tmp_path)]) == 2
    assert package_main([str(nhwc_onnx), "--triton", str(tmp_path / "r"), "--name", "seg"]) == 2
    assert "pass --force" in capsys.readouterr().err


# -- the end-to-end model's request handling, without a server -----------------------------

def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return buffer.getvalue()


def test_request_images_errors():
    image = np.zeros((5, 6, 3), np.uint8)
    assert request_images(image[None], None, 3)[0].shape == (5, 6, 3)
    decoded = request_images(None, np.array([[png_bytes(image)]], dtype=object), 3)
    assert np.array_equal(decoded[0], image)
    cases = [((None, None), "found neither"),
             ((image[None], np.array([[b"x"]], dtype=object)), "found both"),
             ((np.zeros((1, 0, 0, 3), np.uint8), None), "with pixels"),
             ((np.zeros((0, 4, 4, 3), np.uint8), None), "empty batch"),
             ((image[None].astype(np.float32), None), "dtype uint8"),
             ((None, np.array([[b""]], dtype=object)), "found 0 bytes"),
             ((None, np.array([[b"\x89PNG\r\n\x1a\n broken"]], dtype=object)),
              "unreadable data")]
    for (pixels, encoded), message in cases:
        with pytest.raises(RequestError, match=message):
            request_images(pixels, encoded, 3)


def test_oversized_encoded_image_is_refused_before_decoding(monkeypatch):
    from ocr_deploy.serving import python_model as e2e

    monkeypatch.setattr(e2e, "MAX_PIXELS", 100)
    encoded = np.array([[png_bytes(np.zeros((20, 30, 3), np.uint8))]], dtype=object)
    with pytest.raises(RequestError, match="at most 100 pixels, found 30x20"):
        request_images(None, encoded, 3)


def test_end_to_end_answers_each_request(nhwc_onnx):
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, size, dtype=np.uint8) for size in
              [(64, 64, 3), (37, 90, 3), (120, 50, 3)]]
    with Segmenter.open(nhwc_onnx) as seg:
        reference = seg.predict(images)
        model = EndToEnd(seg)
        answers = model.answer([(images[0][None], None),
                                (None, None),
                                (None, np.array([[png_bytes(images[1])]], dtype=object)),
                                (np.stack([images[2], images[2]]), None),
                                (None, np.array([[png_bytes(images[0])],
                                                 [png_bytes(images[1])]], dtype=object))])
    assert np.array_equal(answers[0][0], reference[0])
    assert isinstance(answers[1], RequestError)
    assert np.array_equal(answers[2][0], reference[1])
    assert answers[3].shape == (2, 120, 50) and np.array_equal(answers[3][1], reference[2])
    assert isinstance(answers[4], RequestError) and "one size per request" in str(answers[4])


def test_fixed_batch_onnx(nhwc_onnx, tmp_path):
    """An ONNX with a fixed batch of 1 (what ocr-export falls back to when tf2onnx mis-converts
    a dynamic batch): max_batch_size 0, the batch in the dims, no dynamic batcher."""
    model = onnx.load(str(nhwc_onnx))
    for value in [*model.graph.input, *model.graph.output]:
        value.type.tensor_type.shape.dim[0].dim_value = 1
    onnx.save(model, str(tmp_path / "fixed.onnx"))
    write_triton_repository(read_artifact(tmp_path / "fixed.onnx"), tmp_path / "repo")
    config = parse(tmp_path / "repo" / "fixed" / "config.pbtxt")
    assert config.max_batch_size == 0 and not config.HasField("dynamic_batching")
    assert list(config.input[0].dims) == [1, 64, 64, 3]
    assert {o.name: list(o.dims) for o in config.output} == {"logits": [1, 64, 64, 4],
                                                             "labels": [1, 64, 64]}
