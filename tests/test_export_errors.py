"""Every bad input: a one-line error naming the file, a non-zero exit, nothing written."""

from __future__ import annotations

from ocr_deploy.errors import EXIT_BAD_INPUT
from ocr_deploy.export.cli import main


def _fails(capsys, *args, code=EXIT_BAD_INPUT) -> str:
    assert main([str(a) for a in args] + ["-q"]) == code
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    return lines[0]


def _nothing_written(folder):
    assert not [p for p in folder.iterdir() if p.suffix in (".onnx", ".json", ".tmp")]


def test_missing_file(tmp_path, capsys):
    err = _fails(capsys, tmp_path / "nope.h5", "-o", tmp_path / "o.onnx")
    assert "nope.h5" in err and "no such file" in err


def test_empty_file(tmp_path, capsys):
    (tmp_path / "empty.h5").write_bytes(b"")
    err = _fails(capsys, tmp_path / "empty.h5", "-o", tmp_path / "o.onnx")
    assert "empty.h5" in err and "empty file" in err


def test_truncated_h5(keras3_h5, tmp_path, capsys):
    data = keras3_h5.read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 2])
    err = _fails(capsys, tmp_path / "cut.h5", "-o", tmp_path / "o.onnx")
    assert "cut.h5" in err and "truncated or corrupt" in err
    _nothing_written(tmp_path)


def test_truncated_keras_zip(keras3_zip, tmp_path, capsys):
    data = keras3_zip.read_bytes()
    (tmp_path / "cut.keras").write_bytes(data[: len(data) // 2])
    err = _fails(capsys, tmp_path / "cut.keras", "-o", tmp_path / "o.onnx")
    assert "cut.keras" in err and "truncated or corrupt" in err


def test_not_a_model(tmp_path, capsys):
    (tmp_path / "notes.h5").write_text("hello, I am text\n")
    err = _fails(capsys, tmp_path / "notes.h5", "-o", tmp_path / "o.onnx")
    assert "expected a Keras model" in err and "another kind" in err


def test_directory_without_saved_model(tmp_path, capsys):
    (tmp_path / "dir").mkdir()
    err = _fails(capsys, tmp_path / "dir", "-o", tmp_path / "o.onnx")
    assert "saved_model.pb" in err


def test_classifier_is_not_a_segmentation_model(classifier_h5, tmp_path, capsys):
    err = _fails(capsys, classifier_h5, "-o", tmp_path / "o.onnx")
    assert "classifier.h5" in err and "segmentation model" in err and "[?,10]" in err
    _nothing_written(tmp_path)


def test_unknown_custom_layer(custom_layer_model, tmp_path, capsys):
    model, _ = custom_layer_model
    err = _fails(capsys, model, "-o", tmp_path / "o.onnx")
    assert "TimesTwo" in err and "--custom-objects" in err


def test_lambda_refused_without_opt_in(lambda_h5, tmp_path, capsys):
    err = _fails(capsys, lambda_h5, "-o", tmp_path / "o.onnx")
    assert "Lambda" in err and "--trust-model" in err and "runs Python code" in err


def test_unknown_output_name(keras3_h5, tmp_path, capsys):
    err = _fails(capsys, keras3_h5, "-o", tmp_path / "o.onnx", "--output-name", "nope")
    assert "'nope'" in err and "logits" in err


def test_unwritable_output(keras3_h5, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")  # a file where a folder should be: unwritable even for root
    err = _fails(capsys, keras3_h5, "-o", blocker / "sub" / "o.onnx")
    assert "not writable" in err


def test_existing_output_needs_force(keras3_h5, tmp_path, capsys):
    out = tmp_path / "o.onnx"
    out.write_bytes(b"a good model")
    err = _fails(capsys, keras3_h5, "-o", out)
    assert "--force" in err and out.read_bytes() == b"a good model"
    assert main([str(keras3_h5), "-o", str(out), "--force", "-q"]) == 0
    assert out.read_bytes() != b"a good model"
    assert not list(tmp_path.glob(".*.tmp")) and not list(tmp_path.glob(".o.onnx*"))


def test_output_must_be_onnx(keras3_h5, tmp_path, capsys):
    err = _fails(capsys, keras3_h5, "-o", tmp_path / "model.trt")
    assert ".onnx" in err


def test_bad_opset(keras3_h5, tmp_path, capsys):
    err = _fails(capsys, keras3_h5, "-o", tmp_path / "o.onnx", "--opset", "23")
    assert "18" in err
