"""ocr-export on models written in other ways than this project's: custom objects from
libraries, Keras limitations, softmax outputs, the parity input range, quiet stderr, and
the converter checks (issue #9). The corpus of real library models is in
test_export_corpus.py."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from ocr_deploy.contract.metadata import INPUT_NAME, read_metadata
from ocr_deploy.export.cli import main

pytestmark = pytest.mark.tensorflow  # Keras models of every source, through ocr-export
SIZE = 32
OCR_EXPORT = Path(sys.executable).parent / "ocr-export"


def _export(args, capsys) -> tuple[int, dict | None, str]:
    code = main([*map(str, args), "--json", "-q"])  # -q: stderr holds the error alone
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if code == 0 else None, captured.err


def _small_model(keras3, head):
    keras3.utils.set_random_seed(4)
    image = keras3.Input((SIZE, SIZE, 3))
    x = keras3.layers.Conv2D(4, 3, padding="same")(image)
    return keras3.Model(image, head(x))


# ---------------------------------------------------------------- custom objects

def test_custom_objects_imported_from_a_library(custom_layer_model, tmp_path, monkeypatch,
                                                 capsys):
    model, module_path = custom_layer_model
    library = tmp_path / "lib"
    library.mkdir()
    (library / "shapes_lib.py").write_text(module_path.read_text())
    monkeypatch.syspath_prepend(str(library))
    user_file = tmp_path / "uses_library.py"
    user_file.write_text("from shapes_lib import TimesTwo  # a library's layer\n")
    code, report, err = _export([model, "-o", tmp_path / "a.onnx", "--custom-objects",
                                 user_file], capsys)
    assert code == 0, err
    assert report["parity"]["passed"]
    code, report, err = _export([model, "-o", tmp_path / "b.onnx", "--custom-objects",
                                 "shapes_lib"], capsys)  # the library's module name
    assert code == 0, err
    sys.modules.pop("shapes_lib", None)


def test_custom_objects_file_imports_a_package_beside_it(custom_layer_model, tmp_path,
                                                        monkeypatch, capsys):
    """docs/export.md's mylib example: my_layers.py imports mylib/ next to it, with no
    PYTHONPATH and from another working folder."""
    model, module_path = custom_layer_model
    project = tmp_path / "project"
    (project / "mylib_docs").mkdir(parents=True)
    (project / "mylib_docs" / "__init__.py").write_text("")
    (project / "mylib_docs" / "blocks.py").write_text(module_path.read_text())
    (project / "my_layers.py").write_text("from mylib_docs.blocks import TimesTwo\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    code, report, err = _export([model, "-o", tmp_path / "a.onnx", "--custom-objects",
                                 project / "my_layers.py"], capsys)
    assert code == 0, err
    assert report["parity"]["passed"]
    for name in ("mylib_docs", "mylib_docs.blocks"):
        sys.modules.pop(name, None)


def test_custom_objects_file_without_the_class_says_so(custom_layer_model, tmp_path, capsys):
    model, _ = custom_layer_model
    other = tmp_path / "other.py"
    other.write_text("import math\n")
    code, _, err = _export([model, "-o", tmp_path / "a.onnx", "--custom-objects", other],
                           capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"{other} does not provide 'TimesTwo'" in err and "import it there" in err


def test_unknown_module_name(custom_layer_model, tmp_path, capsys):
    model, _ = custom_layer_model
    code, _, err = _export([model, "-o", tmp_path / "a.onnx", "--custom-objects",
                            "no_such_library_xyz"], capsys)
    assert code == 2 and "ModuleNotFoundError" in err


# ---------------------------------------------------------------- Keras limitations

def test_keras3_h5_with_ops_calls_says_resave_as_keras(keras3, tmp_path, capsys):
    model = _small_model(keras3, lambda x: keras3.ops.relu(x + 3.0))
    model.save(tmp_path / "ops.h5")
    code, _, err = _export([tmp_path / "ops.h5", "-o", tmp_path / "a.onnx"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "keras.ops calls saved as layers" in err and "re-save the model as .keras" in err
    assert "--custom-objects" not in err
    model.save(tmp_path / "ops.keras")  # the way out works
    code, _report, err = _export([tmp_path / "ops.keras", "-o", tmp_path / "b.onnx"], capsys)
    assert code == 0, err


# ---------------------------------------------------------------- softmax at the end

def test_softmax_output_is_exported_and_judged_as_probabilities(keras3, tmp_path, capsys):
    from ocr_deploy.runtime import Segmenter

    model = _small_model(keras3, lambda x: keras3.layers.Softmax()(x))
    model.save(tmp_path / "probs.keras")
    code, report, err = _export([tmp_path / "probs.keras", "-o", tmp_path / "p.onnx",
                                 "--argmax"], capsys)
    assert code == 0, err
    (probs,) = [o for o in report["parity"]["outputs"] if o["kind"] == "probabilities"]
    assert probs["name"] == "probabilities" and probs["scale"] <= 1.0
    assert probs["max_rel_err"] <= 1e-4
    names = [o.name for o in onnx.load(str(tmp_path / "p.onnx")).graph.output]
    assert sorted(names) == ["labels", "probabilities"]
    meta = read_metadata(tmp_path / "p.onnx")
    assert meta.outputs["probabilities"]["kind"] == "probabilities"
    with Segmenter.open(tmp_path / "p.onnx") as seg:  # the runtime takes it
        image = np.random.default_rng(0).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
        scores = seg.predict_scores(image)
        assert scores.shape == (SIZE, SIZE, 4)
        np.testing.assert_allclose(scores.sum(-1), 1.0, atol=1e-5)


# ---------------------------------------------------------------- parity input range

def test_parity_input_range_follows_the_model(keras3, tmp_path, capsys):
    rescaled = _small_model(keras3, lambda x: x)
    image = keras3.Input((SIZE, SIZE, 3))
    rescaled = keras3.Model(image, rescaled(keras3.layers.Rescaling(1 / 255)(image)))
    plain = _small_model(keras3, lambda x: x)
    cases = {"rescaled": (rescaled, [], "model preprocessing layers"),
             "plain": (plain, [], "assumed ImageNet"),
             "flags": (plain, ["--mean", "127,127,127", "--std", "64,64,64"], "flags or card")}
    for name, (model, extra, source) in cases.items():
        model.save(tmp_path / f"{name}.keras")
        code, report, err = _export([tmp_path / f"{name}.keras", "-o",
                                     tmp_path / f"{name}.onnx", *extra], capsys)
        assert code == 0, err
        inputs = report["metadata"]["parity"]["inputs"]
        assert inputs["source"].startswith(source), inputs
    assert inputs["mean"] == [127.0] * 3 and inputs["std"] == [64.0] * 3


def test_parity_failure_names_the_input_range_flags(keras3, tmp_path, capsys):
    model = _small_model(keras3, lambda x: x)
    model.save(tmp_path / "m.keras")
    code, _, err = _export([tmp_path / "m.keras", "-o", tmp_path / "m.onnx", "--atol", "-1",
                            "--rtol", "0"], capsys)  # an impossible tolerance
    assert code == 3 and len(err.strip().splitlines()) == 1
    assert "parity inputs were (pixel - mean" in err and "--mean R,G,B --std R,G,B" in err


# ---------------------------------------------------------------- converter checks

def test_run_check_names_the_failing_node():
    from ocr_deploy.export.convert import ConvertOptions, run_check

    shape = helper.make_tensor("shape", TensorProto.INT64, [3], [1, -1, 5])  # 5 does not divide
    graph = helper.make_graph(
        [helper.make_node("Reshape", [INPUT_NAME, "shape"], ["logits"], name="split_heads")],
        "g", [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", 4, 4, 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, None)], [shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    problem = run_check(model, ConvertOptions(input_hw=(4, 4)))
    assert problem is not None and "split_heads" in problem


def test_batch_dimension_naming_skips_rank0_values():
    from ocr_deploy.export.convert import _name_batch_dimension

    graph = helper.make_graph(
        [helper.make_node("Identity", [INPUT_NAME], ["logits"]),
         helper.make_node("Constant", [], ["scalar"], value_float=1.0)],
        "g", [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, 4]),
         helper.make_tensor_value_info("scalar", TensorProto.FLOAT, [])])
    model = helper.make_model(graph)
    _name_batch_dimension(model)
    assert model.graph.output[0].type.tensor_type.shape.dim[0].dim_param == "batch"


# ---------------------------------------------------------------- quiet stderr

@pytest.mark.slow
def test_user_code_importing_tensorflow_gets_the_settings_and_stderr_stays_clean(
        keras3_h5, tmp_path):
    record = tmp_path / "env.json"
    user_file = tmp_path / "layers_first.py"
    user_file.write_text(textwrap.dedent(f"""
        import json, os
        import tensorflow  # before ocr-export would have imported it
        json.dump({{k: os.environ.get(k) for k in
                   ("TF_ENABLE_ONEDNN_OPTS", "TF_CPP_MIN_LOG_LEVEL")}}, open({str(record)!r}, "w"))
    """))
    env = {k: v for k, v in __import__("os").environ.items()
           if k not in ("TF_ENABLE_ONEDNN_OPTS", "TF_CPP_MIN_LOG_LEVEL")}
    done = subprocess.run([str(OCR_EXPORT), str(keras3_h5), "-o", str(tmp_path / "q.onnx"),
                           "--custom-objects", str(user_file)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(record.read_text()) == {"TF_ENABLE_ONEDNN_OPTS": "0",
                                              "TF_CPP_MIN_LOG_LEVEL": "3"}
    noise = [line for line in done.stderr.splitlines()
             if not line.startswith(("[", "      "))]
    assert noise == [], noise


# ---------------------------------------------------------------- model shapes of all kinds

def test_dict_outputs_and_label_map_outputs(keras3, tmp_path, capsys):
    image = keras3.Input((SIZE, SIZE, 3))
    scores = keras3.layers.Conv2D(4, 3, padding="same")(image)
    aux = keras3.layers.Conv2D(4, 1, strides=2)(scores)
    keras3.Model(image, {"seg": scores, "aux": aux}).save(tmp_path / "dict.keras")
    code, report, err = _export([tmp_path / "dict.keras", "-o", tmp_path / "d.onnx"], capsys)
    assert code == 0, err
    assert report["logits_output"] == "seg" and report["aux_outputs"] == ["aux"]
    keras3.Model(image, keras3.ops.argmax(scores, axis=-1)).save(tmp_path / "argmax.keras")
    code, _, err = _export([tmp_path / "argmax.keras", "-o", tmp_path / "a.onnx"], capsys)
    assert code == 2 and "without its final argmax" in err and "--argmax" in err


def test_tf_keras_lambda_gets_its_names_from_custom_objects(keras3, tmp_path, capsys):
    script = textwrap.dedent(f"""
        import tf_keras as keras2
        SCALE = 3.0  # the author's global, used by the Lambda
        image = keras2.Input(({SIZE}, {SIZE}, 3))
        x = keras2.layers.Conv2D(4, 3, padding="same")(image)
        x = keras2.layers.Lambda(lambda t: t * SCALE)(x)
        keras2.Model(image, x).save({str(tmp_path / "lambda.h5")!r})
    """)
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True,
                   timeout=300)
    args = [tmp_path / "lambda.h5", "-o", tmp_path / "l.onnx", "--trust-model"]
    code, _, err = _export(args, capsys)
    assert code == 2 and "name 'SCALE' is not defined" in err and "--custom-objects" in err
    names = tmp_path / "names.py"
    names.write_text("SCALE = 3.0\n")
    code, _, err = _export([*args, "--custom-objects", names], capsys)
    assert code == 0, err


# ---------------------------------------------------------------- batch and size limits

def test_batch_written_into_the_model(keras3, tmp_path, capsys):
    """A seed-style reshape with the batch written as 1, and a fixed-batch input: both are
    exported with a fixed batch (a warning, and the metadata says so)."""
    from ocr_deploy.tf_env import import_tensorflow, import_tf_keras

    tf, keras2 = import_tensorflow(), import_tf_keras()
    image = keras2.Input((SIZE, SIZE, 3))
    x = keras2.layers.Conv2D(8, 3, padding="same")(image)
    query = tf.reshape(x, [1, SIZE * SIZE, 8])  # the author's batch of one
    key = tf.reshape(keras2.layers.Conv2D(8, 1, strides=4)(x), [1, -1, 8])
    scores = tf.nn.softmax(tf.matmul(query, key, transpose_b=True) * 8 ** -0.5, axis=-1)
    context = tf.reshape(tf.matmul(scores, key), [1, SIZE, SIZE, 8])
    keras2.Model(image, keras2.layers.Conv2D(4, 1)(context)).save(tmp_path / "one.h5")
    code, report, err = _export([tmp_path / "one.h5", "-o", tmp_path / "one.onnx"], capsys)
    assert code == 0, err
    assert "fixed batch of 1" in err and "fails in TensorFlow with a batch of 2" in err
    assert report["metadata"]["tools"]["batch"] == "fixed 1"
    assert onnx.load(str(tmp_path / "one.onnx")).graph.input[0].type.tensor_type.shape \
        .dim[0].dim_value == 1
    fixed = keras3.Input((SIZE, SIZE, 3), batch_size=3)
    keras3.Model(fixed, keras3.layers.Conv2D(4, 3, padding="same")(fixed)).save(
        tmp_path / "three.keras")
    code, report, err = _export([tmp_path / "three.keras", "-o", tmp_path / "three.onnx"],
                                capsys)  # 4 parity images in batches of 3
    assert code == 0, err
    assert report["metadata"]["tools"]["batch"] == "fixed 3" and report["parity"]["samples"] == 4


def test_input_size_the_model_cannot_take(keras3, tmp_path, capsys):
    image = keras3.Input((None, None, 3))
    coarse = keras3.layers.UpSampling2D(8)(keras3.layers.Conv2D(4, 3, strides=8,
                                                                 padding="same")(image))
    fine = keras3.layers.Conv2D(4, 1)(image)
    keras3.Model(image, keras3.layers.Add()([coarse, fine])).save(tmp_path / "m8.keras")
    code, _, err = _export([tmp_path / "m8.keras", "-o", tmp_path / "a.onnx", "--input-size",
                            "30x30"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "trace at 30x30" in err and "Dimensions must be equal" in err
    code, _, err = _export([tmp_path / "m8.keras", "-o", tmp_path / "b.onnx", "--input-size",
                            "32x32"], capsys)
    assert code == 0, err


def test_tf_keras_h5_whose_tfoplambda_does_not_reload(tmp_path, capsys):
    from ocr_deploy.tf_env import import_tensorflow, import_tf_keras

    tf, keras2 = import_tensorflow(), import_tf_keras()
    image = keras2.Input((SIZE, SIZE, 3))
    x = tf.reshape(keras2.layers.Conv2D(8, 3, padding="same")(image), [-1, SIZE * SIZE, 8])
    x = tf.nn.softmax(tf.einsum("bnd,bmd->bnm", x, x[:, :16]))
    model = keras2.Model(image, tf.reshape(x, [-1, SIZE, SIZE, 16]))
    model.save(tmp_path / "einsum.h5")
    code, _, err = _export([tmp_path / "einsum.h5", "-o", tmp_path / "a.onnx"], capsys)
    assert code == 2 and "save_format='tf'" in err
    model.save(tmp_path / "einsum_savedmodel", save_format="tf")  # the way out
    code, _, err = _export([tmp_path / "einsum_savedmodel", "-o", tmp_path / "b.onnx"], capsys)
    assert code == 0, err


def test_a_model_without_an_image_input(keras3, tmp_path, capsys):
    vector = keras3.Input((10,))
    keras3.Model(vector, keras3.layers.Dense(3)(vector)).save(tmp_path / "mlp.keras")
    code, _, err = _export([tmp_path / "mlp.keras", "-o", tmp_path / "a.onnx"], capsys)
    assert code == 2 and "an image input [batch, height, width, channels]" in err


@pytest.mark.slow
def test_tf_keras_model_with_custom_layers_written_against_tf_keras(tmp_path):
    """The blog case: a tf.keras 2.x model whose custom layer subclasses tf.keras.layers.Layer;
    a fresh ocr-export makes tf.keras mean tf_keras for the --custom-objects file."""
    layers_file = tmp_path / "blog_layers.py"
    layers_file.write_text(textwrap.dedent("""
        import tensorflow as tf

        class Double(tf.keras.layers.Layer):
            def call(self, x):
                return x * 2.0
    """))
    script = textwrap.dedent(f"""
        import os, sys
        os.environ["TF_USE_LEGACY_KERAS"] = "1"  # tf.keras 2.x, as the author had
        sys.path.insert(0, {str(tmp_path)!r})
        import tensorflow as tf
        from blog_layers import Double
        image = tf.keras.Input(({SIZE}, {SIZE}, 3))
        x = Double()(tf.keras.layers.Conv2D(4, 3, padding="same")(image))
        tf.keras.Model(image, x).save({str(tmp_path / "blog.h5")!r})
    """)
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True,
                   timeout=300)
    env = {k: v for k, v in __import__("os").environ.items() if k != "TF_USE_LEGACY_KERAS"}
    done = subprocess.run([str(OCR_EXPORT), str(tmp_path / "blog.h5"), "-o",
                           str(tmp_path / "blog.onnx"), "--custom-objects", str(layers_file),
                           "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["parity"]["passed"]
