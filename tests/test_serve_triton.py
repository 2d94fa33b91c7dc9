"""A real Triton server (the nvidia-pytriton wheel's tritonserver, Python backend, in the
serving environment .venv-serve) on free loopback ports, called with tritonclient over HTTP
and gRPC: label maps identical to Segmenter.predict, bad requests answered with clean errors
while the server stays up, and nothing left running afterwards."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ocr_deploy.packaging.artifact_info import read_artifact
from ocr_deploy.packaging.triton_repo import write_triton_repository
from ocr_deploy.runtime import Segmenter
from ocr_deploy.serving.environment import ensure_env
from ocr_deploy.serving.python_model import INPUT_ENCODED, INPUT_PIXELS, OUTPUT_LABELS
from ocr_deploy.serving.server import Ports, TritonServer, free_ports

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("triton")]  # one server
REASON = "tritonclient is not installed (pip install 'ocr-deploy[serve]', run.sh does it)"
grpcclient = pytest.importorskip("tritonclient.grpc", reason=REASON)
httpclient = pytest.importorskip("tritonclient.http", reason=REASON)
InferenceServerException = pytest.importorskip("tritonclient.utils",
                                               reason=REASON).InferenceServerException

SIZES = [(64, 64), (37, 90), (130, 75)]  # the model's own size (in-graph labels), others
CAMERA = (40, 50)  # the end-to-end artifact's fixed size


def group_members(pgid: int) -> list[int]:
    """Processes (alive or zombie) whose process group is ``pgid``."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            members.append(int(stat.parent.name))
    return members


@pytest.fixture(scope="module")
def serving_env():
    return ensure_env(log=lambda message: print(message, file=sys.stderr))


@pytest.fixture(scope="module")
def end_to_end(tmp_path_factory) -> tuple[Path, Path]:
    """A BGR end-to-end artifact for CAMERA-size frames and the plain core it wraps."""
    from e2e_models import save, segnet

    from ocr_deploy.contract.image_sizes import ImageSizes
    from ocr_deploy.graph.end_to_end import make_end_to_end

    folder = tmp_path_factory.mktemp("e2e")
    core = segnet("NHWC", classes=5)
    wrapped, _ = make_end_to_end(core, ImageSizes.fixed(*CAMERA), "BGR")
    return save(wrapped, folder, "seg_bgr"), save(core, folder, "seg_plain")


@pytest.fixture(scope="module")
def repo(nhwc_onnx, nchw_onnx, end_to_end, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("serve") / "repo"
    write_triton_repository(read_artifact(nhwc_onnx), folder)
    write_triton_repository(read_artifact(nchw_onnx), folder)
    write_triton_repository(read_artifact(end_to_end[0]), folder)
    return folder


@pytest.fixture(scope="module")
def server(serving_env, repo, tmp_path_factory):
    ports = Ports(*free_ports(3))
    log = tmp_path_factory.mktemp("serve_log") / "tritonserver.log"
    triton = TritonServer(serving_env, repo, ports,
                          models=["nhwc_python", "nchw_labels_python", "seg_bgr_python"], log=log)
    triton.start()
    pid = triton.pid
    yield triton
    assert triton.stop() == 0  # Triton's own clean shutdown on SIGTERM
    assert not group_members(pid), "tritonserver or a backend stub is still running"


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(11)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in SIZES]


def http_infer(server, model, image=None, encoded=None, dtype="UINT8"):
    inputs = []
    if image is not None:
        inputs.append(httpclient.InferInput(INPUT_PIXELS, list(image.shape), dtype))
        inputs[-1].set_data_from_numpy(image)
    if encoded is not None:
        inputs.append(httpclient.InferInput(INPUT_ENCODED, list(encoded.shape), "BYTES"))
        inputs[-1].set_data_from_numpy(encoded)
    with httpclient.InferenceServerClient(server.url("http")) as client:
        return client.infer(model, inputs).as_numpy(OUTPUT_LABELS)


def grpc_infer(server, model, image=None, encoded=None):
    inputs = []
    if image is not None:
        inputs.append(grpcclient.InferInput(INPUT_PIXELS, list(image.shape), "UINT8"))
        inputs[-1].set_data_from_numpy(image)
    if encoded is not None:
        inputs.append(grpcclient.InferInput(INPUT_ENCODED, list(encoded.shape), "BYTES"))
        inputs[-1].set_data_from_numpy(encoded)
    with grpcclient.InferenceServerClient(server.url("grpc")) as client:
        return client.infer(model, inputs).as_numpy(OUTPUT_LABELS)


def png(image: np.ndarray) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return np.array([[buffer.getvalue()]], dtype=object)


@pytest.mark.parametrize("variant", ["nhwc", "nchw_labels"])
def test_label_maps_identical_to_the_runtime(server, images, variant, nhwc_onnx, nchw_onnx):
    artifact = {"nhwc": nhwc_onnx, "nchw_labels": nchw_onnx}[variant]
    with Segmenter.open(artifact) as seg:
        reference = seg.predict(images)
    model = f"{variant}_python"
    for image, expected in zip(images, reference, strict=True):
        for answer in (http_infer(server, model, image[None]),
                       grpc_infer(server, model, image[None]),
                       http_infer(server, model, encoded=png(image)),
                       grpc_infer(server, model, encoded=png(image))):
            assert answer.shape == (1, *image.shape[:2]) and answer.dtype == np.uint8
            assert np.array_equal(answer[0], expected)
    # several images of one size in one request
    stacked = np.stack([images[1], images[1][::-1].copy()])
    answer = grpc_infer(server, model, stacked)
    assert np.array_equal(answer[1], seg_predict(artifact, stacked[1]))


def test_end_to_end_artifact_runs_in_the_python_backend(server, end_to_end):
    """The end-to-end artifact's Python-backend model: frames in its colour order (BGR)
    or encoded (decoded RGB, then reordered), labels as Segmenter.predict on the plain
    core; another size is a clean error and the server keeps serving."""
    from ocr_deploy.verification.end_to_end_parity import sample_images

    plain = end_to_end[1]
    image = sample_images([CAMERA], per_size=1, seed=6)[0]
    expected = seg_predict(plain, image)
    bgr = np.ascontiguousarray(image[None, ..., ::-1])
    for answer in (grpc_infer(server, "seg_bgr_python", bgr),
                   http_infer(server, "seg_bgr_python", encoded=png(image))):
        assert answer.shape == (1, *CAMERA) and np.array_equal(answer[0], expected)
    assert np.unique(expected).size > 1
    with pytest.raises(InferenceServerException, match="unexpected shape"):
        http_infer(server, "seg_bgr_python", np.zeros((1, 30, 50, 3), np.uint8))
    with pytest.raises(InferenceServerException, match="images of 40x50"):
        http_infer(server, "seg_bgr_python", encoded=png(np.zeros((30, 50, 3), np.uint8)))
    assert server.ready()


def seg_predict(artifact, image):
    with Segmenter.open(artifact) as seg:
        return seg.predict(image)


def test_concurrent_clients_get_their_own_answers(server, images, nhwc_onnx):
    with Segmenter.open(nhwc_onnx) as seg:
        reference = seg.predict(images)

    def call(i):
        k = i % len(images)
        infer = grpc_infer if i % 2 else http_infer
        return k, infer(server, "nhwc_python", images[k][None])[0]

    with ThreadPoolExecutor(8) as pool:
        for k, answer in pool.map(call, range(24)):
            assert np.array_equal(answer, reference[k])


BAD_REQUESTS = {
    "wrong dtype": (dict(image=np.zeros((1, 8, 8, 3), np.float32), dtype="FP32"),
                    "expects 'UINT8'"),
    "four channels": (dict(image=np.zeros((1, 8, 8, 4), np.uint8)), "unexpected shape"),
    "no batch dimension": (dict(image=np.zeros((8, 8, 3), np.uint8)), "unexpected shape"),
    "over max batch": (dict(image=np.zeros((9, 8, 8, 3), np.uint8)), "batch-size must be <= 8"),
    "empty image": (dict(image=np.zeros((1, 0, 0, 3), np.uint8)), "with pixels"),
    "corrupt bytes": (dict(encoded=np.array([[b"\x89PNG\r\n\x1a\nnot really"]], dtype=object)),
                      "unreadable data"),
    "empty bytes": (dict(encoded=np.array([[b""]], dtype=object)), "0 bytes"),
    "both inputs": (dict(image=np.zeros((1, 8, 8, 3), np.uint8),
                         encoded=np.array([[b"x"]], dtype=object)), "found both"),
    "no input": (dict(), "0 inputs"),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_requests_get_clean_errors(server, images, case):
    kwargs, message = BAD_REQUESTS[case]
    with pytest.raises(InferenceServerException, match=message) as caught:
        http_infer(server, "nhwc_python", **kwargs)
    assert "Traceback" not in str(caught.value)
    assert server.process.poll() is None and server.ready()
    answer = grpc_infer(server, "nhwc_python", images[1][None])  # still serving
    assert answer.shape == (1, *SIZES[1])


def test_ocr_serve_command_starts_prints_and_stops(serving_env, repo):
    http, grpc, metrics = free_ports(3)
    command = [sys.executable, "-m", "ocr_deploy.serving.serve_cli", str(repo), "--json",
               "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port",
               str(metrics), "--env", str(serving_env.root), "-q",
               "--log", os.devnull]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    killer = threading.Timer(180, lambda: os.killpg(process.pid, signal.SIGKILL))
    killer.start()
    try:
        lines = []
        for line in process.stdout:  # the JSON endpoints, printed once the models are ready
            lines.append(line)
            if line.startswith("}"):
                break
        endpoints = json.loads("".join(lines))
        assert endpoints["http"] == f"127.0.0.1:{http}"
        assert endpoints["grpc"] == f"127.0.0.1:{grpc}"
        assert endpoints["models"] == ["nchw_labels_python", "nhwc_python", "seg_bgr_python"]
        # the ORT models are skipped
        with httpclient.InferenceServerClient(endpoints["http"]) as client:
            assert client.is_model_ready("nhwc_python") and not client.is_model_ready("nhwc")
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    finally:
        killer.cancel()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert not group_members(endpoints["pid"])


def test_ocr_serve_errors(serving_env, tmp_path):
    from ocr_deploy.serving.serve_cli import main

    assert main([str(tmp_path / "missing"), "--env", str(serving_env.root), "-q"]) == 2
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty"), "--env", str(serving_env.root), "-q"]) == 2


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_example_client(server, images, nhwc_onnx, tmp_path, protocol):
    """examples/triton_client.py, as the README runs it, against the running server."""
    files = []
    for i, image in enumerate(images[1:]):
        files.append(tmp_path / f"img{i}.png")
        Image.fromarray(image).save(files[-1])
    script = Path(__file__).resolve().parents[1] / "examples" / "triton_client.py"
    result = subprocess.run([sys.executable, str(script), *map(str, files), "--protocol",
                             protocol, "--url", server.url(protocol), "--model", "nhwc_python",
                             "--check", str(nhwc_onnx), "-o", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("identical to Segmenter.predict") == 2
    with Segmenter.open(nhwc_onnx) as seg:
        for i, image in enumerate(images[1:]):
            written = np.asarray(Image.open(tmp_path / "out" / f"img{i}.labels.png"))
            assert np.array_equal(written, seg.predict(image))


def test_ports_in_use_are_refused_before_starting(server, serving_env, repo):
    from ocr_deploy.errors import BadInputError

    second = TritonServer(serving_env, repo, server.ports, models=["nhwc_python"])
    with pytest.raises(BadInputError, match=f"port {server.ports.http} in use"):
        second.start()
    assert second.process is None and server.ready()
