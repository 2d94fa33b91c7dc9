"""Session-scoped models for the tests.

Two kinds: the hand-built artifacts of ``tests/artifacts.py`` (``nhwc_onnx``, ``nchw_onnx``,
``many_classes_onnx``, ``grey_onnx``, ``probabilities_onnx``: no TensorFlow), and real Keras
models saved in every supported format and exported through TensorFlow, for the tests where
the Keras model or the exporter's output is the point. Models are small (64x64 inputs, few
channels) so that the whole suite runs in CI time. Session fixtures are per process: under
pytest-xdist each worker builds its own, in its own ``tmp_path_factory`` folder.

A test needs TensorFlow when it carries the ``tensorflow`` marker or uses one of
``TENSORFLOW_FIXTURES``; where TensorFlow is not installed such a test is skipped with the
reason (``-m "not tensorflow"`` deselects them). Nothing here imports TensorFlow at import
time.
"""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path

import artifacts
import numpy as np
import pytest

SIZE = 64
# fixtures that build, load or export Keras models: here, and demo_onnx (test_build.py),
# exported (test_attention_pass.py), demo_model (test_demo_model.py)
TENSORFLOW_FIXTURES = {"keras3", "small_config", "keras3_model", "keras3_h5", "keras3_zip",
                       "saved_model_dir", "blog_h5", "classifier_h5", "lambda_h5",
                       "custom_layer_model", "exported_nhwc_onnx", "exported_nchw_onnx",
                       "demo_onnx", "exported", "demo_model"}
NO_TENSORFLOW = importlib.util.find_spec("tensorflow") is None


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config, items):
    for item in items:
        if TENSORFLOW_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.tensorflow)
        if NO_TENSORFLOW and item.get_closest_marker("tensorflow"):
            item.add_marker(pytest.mark.skip(reason="needs TensorFlow, which is not installed "
                                             "here (pip install 'ocr-deploy[export]')"))


@pytest.fixture(scope="session")
def keras3():
    from ocr_deploy.tf_env import import_keras3

    return import_keras3()


@pytest.fixture(scope="session")
def small_config():
    from ocr_deploy.model.ocrnet import OCRNetConfig

    return OCRNetConfig(num_classes=4, input_height=SIZE, input_width=SIZE, backbone_width=4,
                        mid_channels=16, key_channels=8)


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def keras3_model(keras3, small_config):
    """A Keras 3 OCRNet built from the project's layers (random weights, fixed seed)."""
    from ocr_deploy.model.ocrnet import build_ocrnet

    keras3.utils.set_random_seed(1)
    return build_ocrnet(small_config)


@pytest.fixture(scope="session")
def keras3_h5(keras3_model, models_dir) -> Path:
    path = models_dir / "ocrnet_k3.h5"
    keras3_model.save(path)
    return path


@pytest.fixture(scope="session")
def keras3_zip(keras3_model, models_dir) -> Path:
    path = models_dir / "ocrnet_k3.keras"
    keras3_model.save(path)
    return path


@pytest.fixture(scope="session")
def saved_model_dir(keras3_model, models_dir) -> Path:
    path = models_dir / "ocrnet_savedmodel"
    keras3_model.export(str(path), verbose=False)
    return path


@pytest.fixture(scope="session")
def blog_h5(models_dir) -> Path:
    """The seed blog's style: tf_keras with raw TF ops (TFOpLambda layers)."""
    from blog_style import build_blog_style_ocrnet

    from ocr_deploy.tf_env import import_tf_keras

    import_tf_keras().utils.set_random_seed(2)
    path = models_dir / "blog_ocrnet.h5"
    build_blog_style_ocrnet(num_classes=4, input_size=(SIZE, SIZE), channels=16,
                            key_channels=8).save(path)
    return path


@pytest.fixture(scope="session")
def classifier_h5(keras3, models_dir) -> Path:
    image = keras3.Input((SIZE, SIZE, 3))
    x = keras3.layers.Conv2D(4, 3)(image)
    x = keras3.layers.GlobalAveragePooling2D()(x)
    path = models_dir / "classifier.h5"
    keras3.Model(image, keras3.layers.Dense(10)(x)).save(path)
    return path


@pytest.fixture(scope="session")
def lambda_h5(keras3, models_dir) -> Path:
    image = keras3.Input((SIZE, SIZE, 3))
    x = keras3.layers.Conv2D(4, 1)(image)
    x = keras3.layers.Lambda(lambda t: t * 2.0)(x)
    path = models_dir / "lambda.h5"
    keras3.Model(image, x).save(path)
    return path


CUSTOM_LAYER_SOURCE = textwrap.dedent('''
    import keras

    class TimesTwo(keras.layers.Layer):
        """A user's own layer, not registered with Keras."""

        def call(self, x):
            return x * 2.0
''')


@pytest.fixture(scope="session")
def custom_layer_model(keras3, models_dir) -> tuple[Path, Path]:
    """(model.keras using a user layer, the .py file defining it), the module unimported."""
    module_path = models_dir / "my_layers.py"
    module_path.write_text(CUSTOM_LAYER_SOURCE)
    spec = importlib.util.spec_from_file_location("fixture_my_layers", module_path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["fixture_my_layers"] = module
    spec.loader.exec_module(module)
    image = keras3.Input((SIZE, SIZE, 3))
    x = module.TimesTwo()(keras3.layers.Conv2D(4, 1)(image))
    path = models_dir / "custom.keras"
    keras3.Model(image, x).save(path)
    del sys.modules["fixture_my_layers"]  # loading must now find it through the user's file
    return path, module_path


@pytest.fixture(scope="session")
def onnx_session():
    """Make an ONNX Runtime CPU session for a path."""
    import onnxruntime as ort

    def make(path):
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    return make


@pytest.fixture(scope="session")
def images():
    """Seeded uint8-range float images, batch of 3."""
    return np.random.default_rng(5).integers(0, 256, (3, SIZE, SIZE, 3)).astype(np.float32)


def _artifact(variant: str, fixture: str, doc: str):
    """A session fixture building ``artifacts.VARIANTS[variant]`` in its own folder."""
    def make(tmp_path_factory) -> Path:
        return artifacts.build(variant, tmp_path_factory.mktemp(f"artifact_{variant}"))

    make.__doc__ = doc
    return pytest.fixture(scope="session", name=fixture)(make)


nhwc_onnx = _artifact("nhwc", "nhwc_onnx", "NHWC, logits and in-graph labels, a model card.")
nchw_onnx = _artifact("nchw_labels", "nchw_onnx",
                      "NCHW, labels only, normalisation in the graph, no card.")
many_classes_onnx = _artifact("many_classes", "many_classes_onnx", "300 classes, 16x16.")
grey_onnx = _artifact("grey", "grey_onnx", "A greyscale (1-channel) input, 16x16.")
probabilities_onnx = _artifact("probabilities", "probabilities_onnx",
                               "Ends in a softmax: probabilities and labels.")
batch2_onnx = _artifact("nhwc_batch2", "batch2_onnx",
                        "nhwc (its weights) with a fixed batch of 2.")


@pytest.fixture(scope="session")
def exported_nhwc_onnx(keras3_h5, tmp_path_factory):
    """``keras3_h5`` exported by ocr-export as the ``nhwc`` artifact is built."""
    return artifacts.exported("nhwc", keras3_h5, tmp_path_factory.mktemp("exported_nhwc"))


@pytest.fixture(scope="session")
def exported_nchw_onnx(keras3_h5, tmp_path_factory):
    """``keras3_h5`` exported by ocr-export as the ``nchw_labels`` artifact is built."""
    return artifacts.exported("nchw_labels", keras3_h5,
                              tmp_path_factory.mktemp("exported_nchw_labels"))


@pytest.fixture(scope="module")
def segmenter(nhwc_onnx):
    """A runtime Segmenter on ``nhwc_onnx`` (ONNX Runtime CPU)."""
    from ocr_deploy.runtime import Segmenter

    with Segmenter.open(nhwc_onnx) as seg:
        yield seg


@pytest.fixture
def sim():
    """SIMULATED: the CUDA runtime on host memory with the TensorRT stand-in installed
    (tests/cuda_sim.py, tests/tensorrt_standin.py): our logic, not CUDA or TensorRT."""
    import cuda_sim
    import tensorrt_standin

    with cuda_sim.simulated() as runtime, tensorrt_standin.installed():
        yield runtime
    assert not runtime.faults, runtime.faults


@pytest.fixture
def engine(tmp_path):
    """A stand-in engine file (batch up to 8) for the simulated tests."""
    import tensorrt_standin

    size = tensorrt_standin.SIM_SIZE
    return tensorrt_standin.write_engine(tmp_path / "copy.engine", size, size, 8,
                                         device=tensorrt_standin.SIM_DEVICE)
