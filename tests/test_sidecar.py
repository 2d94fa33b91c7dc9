"""The sidecar's schema (``sidecar.Sidecar``) and the declared build flags
(``BuildRequest`` fields declared with ``backends.options.option``)."""

from __future__ import annotations

import pytest
from sidecars import write_sidecar

from ocr_deploy import backends
from ocr_deploy.backends.options import declared_values
from ocr_deploy.builder.cli import build_parser
from ocr_deploy.builder.request import BuildRequest, ignored_options
from ocr_deploy.errors import BadInputError
from ocr_deploy.packaging.artifact_info import read_artifact
from ocr_deploy.pairs import HASH_KEY
from ocr_deploy.precision.calibrate import CalibrationSettings
from ocr_deploy.sidecar import Sidecar, read_build_sidecar, read_sidecar


def test_a_sidecar_reads_back_as_written_with_the_backend_facts_at_the_top_level(tmp_path):
    artifact = tmp_path / "m.engine"
    artifact.write_bytes(b"plan")
    written = Sidecar(backend="tensorrt", facts={"gpu_name": "Orin", "profiles": []},
                      precision="fp16", verification={"met_budget": True}, seconds=1.5)
    write_sidecar(artifact, written.to_dict())
    raw = read_sidecar(artifact)
    assert raw["gpu_name"] == "Orin" and raw["precision"] == "fp16" and HASH_KEY in raw
    assert "metadata" not in raw  # None fields are left out, as before
    read = read_build_sidecar(artifact)
    assert read == written  # the hash is the pair's, not a backend fact


@pytest.mark.parametrize(("key", "value", "wanted"), [
    ("metadata", "not an object", "an object"), ("artifact_bytes", 1.5, "an integer"),
    ("seconds", "soon", "a number"), ("precision", 16, "a string")])
def test_a_sidecar_field_of_the_wrong_type_is_a_clear_error(tmp_path, key, value, wanted):
    artifact = tmp_path / "m.onnx"
    artifact.write_bytes(b"model")
    write_sidecar(artifact, {"backend": "onnxruntime", key: value})
    with pytest.raises(BadInputError, match=f"'{key}' is {wanted}.*rebuild it"):
        read_build_sidecar(artifact)
    with pytest.raises(BadInputError, match=f"'{key}' is {wanted}"):
        read_artifact(artifact)  # packaging reads it through the schema


def test_the_parser_defaults_are_the_requests():
    args = build_parser().parse_args(["m.onnx"])
    defaults = BuildRequest(onnx=args.model)
    values = declared_values(BuildRequest, args)
    assert values == {name: getattr(defaults, name) for name in values}
    assert {"calib", "budget", "verify", "ignore_index", "output"} <= set(values)


def test_flags_are_read_into_the_request_and_named_when_unused():
    args = build_parser().parse_args([
        "m.onnx", "--fp16", "--calib-method", "percentile", "--percentile", "99",
        "--recalibrate", "--no-verify", "--val-samples", "3", "--ignore-index", "-1",
        "--keep-fp32", "a", "b"])
    request = BuildRequest(onnx=args.model, precision=args.precision,
                           **declared_values(BuildRequest, args))
    assert request.calib == CalibrationSettings(method="percentile", percentile=99.0)
    assert (request.verify, request.ignore_index, request.keep_fp32) == (False, None,
                                                                         ["a", "b"])
    ignored = ignored_options(request, backends.get("onnxruntime"))
    assert set(ignored) == {"--calib-method/--percentile", "--recalibrate", "--val-samples"}
