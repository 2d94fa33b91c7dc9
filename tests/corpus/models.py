"""The corpus entries: how each model is built and saved, and what ``ocr-export`` must do.

Models are small (inputs <= 128x128, truncated backbones) so the whole corpus exports in a
few minutes on 2 CPU cores. Every builder seeds Keras, builds with random weights (no
downloads) and saves into a folder the way a user would (.h5, .keras or SavedModel).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

SIZE = 96  # input side for the keras.applications backbones
K = 5  # classes


@dataclass
class CorpusModel:
    """One corpus entry.

    ``build(folder)`` writes the model file and returns ``(path, extra CLI arguments)``.
    ``expect`` is the exit code ``ocr-export`` must give; for a refusal (2 or 4),
    ``message`` lists words its one-line error must contain. ``fresh_process``: run
    ``ocr-export`` as a command (what it does before importing TensorFlow matters).
    """

    name: str
    writer: str  # "Keras 3" or "tf_keras"
    what: str
    build: Callable[[Path], tuple[Path, list[str]]]
    expect: int = 0
    message: list[str] = field(default_factory=list)
    output_kind: str = "logits"
    fresh_process: bool = False


# --------------------------------------------------------------------------- helpers

def _keras():
    from ocr_deploy.tf_env import import_keras3

    keras = import_keras3()
    keras.utils.set_random_seed(7)
    return keras


def _tap(model, stride: int, size: int = SIZE):
    """The output of the last rank-4 layer of ``model`` at ``size / stride`` resolution."""
    want = size // stride
    for layer in reversed(model.layers):
        shape = getattr(layer, "output", None)
        shape = getattr(shape, "shape", None)
        if shape is not None and len(shape) == 4 and shape[1] == want and shape[2] == want:
            return layer.output
    raise ValueError(f"no layer at stride {stride}")


def _randomize_bn(model) -> None:
    """Give BatchNormalization layers non-trivial statistics, as a trained model has."""
    import numpy as np

    rng = np.random.default_rng(3)
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape).astype("float32"),
                               rng.normal(0, 0.1, beta.shape).astype("float32"),
                               rng.normal(0, 0.1, mean.shape).astype("float32"),
                               rng.uniform(0.5, 1.5, var.shape).astype("float32")])


def _k3_ocr_head(keras, feats, *, d: int, style: str, projection: str, scale: str,
                 aux_first: bool, softmax_end: bool, upsample: int, name: str):
    """An OCR head on ``feats`` in Keras 3; returns the model outputs (aux + main).

    ``style``: "ops" (keras.ops calls) or "dot" (layers.Dot / Reshape / Softmax layers).
    ``scale``: "after" (scores * s), "const_first" (s * scores), "div" (scores / sqrt(d)),
    "before" (on Q before the first MatMul).
    """
    from keras import layers, ops

    height, width, channels = feats.shape[1], feats.shape[2], feats.shape[3]
    n = height * width
    s = d ** -0.5

    def cbr(x, filters, kernel=1):
        x = layers.Conv2D(filters, kernel, padding="same", use_bias=False)(x)
        return layers.ReLU()(layers.BatchNormalization()(x))

    def project(regions, filters):  # regions [B,K,M]
        if projection == "dense":
            return layers.ReLU()(layers.Dense(filters)(regions))
        x = layers.Reshape((K, 1, regions.shape[-1]))(regions)
        x = cbr(x, filters)
        return layers.Reshape((K, filters))(x)

    aux = layers.Conv2D(K, 1, name="aux_logits")(cbr(feats, channels))
    pixels = cbr(feats, 32, 3)
    query = cbr(cbr(pixels, d), d)
    if style == "ops":
        pr = ops.reshape(pixels, (-1, n, 32))
        sor = ops.softmax(ops.transpose(ops.reshape(aux, (-1, n, K)), (0, 2, 1)), axis=-1)
        regions = ops.matmul(sor, pr)  # [B,K,M]
        key, value = project(project(regions, d), d), project(regions, d)
        q = ops.reshape(query, (-1, n, d))
        if scale == "before":
            q = q * s
        scores = ops.matmul(q, ops.transpose(key, (0, 2, 1)))
        scores = {"after": lambda t: t * s, "const_first": lambda t: s * t,
                  "div": lambda t: t / (d ** 0.5), "before": lambda t: t}[scale](scores)
        context = ops.matmul(ops.softmax(scores, axis=-1), value)
        context = ops.reshape(context, (-1, height, width, d))
    else:
        pr = layers.Reshape((n, 32))(pixels)
        sor = layers.Softmax(axis=1)(layers.Reshape((n, K))(aux))  # over pixels
        regions = layers.Dot(axes=(1, 1))([sor, pr])  # [B,K,M]
        key, value = project(project(regions, d), d), project(regions, d)
        q = layers.Reshape((n, d))(query)
        if scale == "before":
            q = layers.Rescaling(s)(q)
        scores = layers.Dot(axes=(2, 2))([q, key])
        if scale != "before":
            scores = layers.Rescaling(s)(scores)
        context = layers.Dot(axes=(2, 1))([layers.Softmax()(scores), value])
        context = layers.Reshape((height, width, d))(context)
    context = cbr(context, 32)
    augmented = cbr(layers.Concatenate()([context, pixels]), 32)
    logits = layers.Conv2D(K, 1)(augmented)
    logits = layers.UpSampling2D(upsample, interpolation="bilinear")(logits)
    if softmax_end:
        logits = layers.Softmax(name=f"{name}_probs")(logits)
    else:
        logits = layers.Identity(name=f"{name}_logits")(logits)
    return [aux, logits] if aux_first else [logits, aux]


# --------------------------------------------------------------------------- Keras 3

def _resnet50_ops(folder: Path, suffix: str = ".keras"):
    keras = _keras()
    backbone = keras.applications.ResNet50(include_top=False, weights=None,
                                           input_shape=(SIZE, SIZE, 3))
    feats = _tap(backbone, 8)
    outputs = _k3_ocr_head(keras, feats, d=24, style="ops", projection="conv", scale="after",
                           aux_first=True, softmax_end=False, upsample=8, name="resnet")
    model = keras.Model(backbone.input, outputs)
    _randomize_bn(model)
    path = folder / f"resnet50_ops{suffix}"
    model.save(path)
    return path, ["--mean", "123.7,116.3,103.5", "--std", "58.4,57.1,57.4"]


def _resnet50_ops_h5(folder: Path):
    return _resnet50_ops(folder, ".h5")


def _mobilenetv3_dot(folder: Path):
    keras = _keras()
    backbone = keras.applications.MobileNetV3Small(
        input_shape=(SIZE, SIZE, 3), include_top=False, weights=None,
        include_preprocessing=True)
    feats = _tap(backbone, 8)
    outputs = _k3_ocr_head(keras, feats, d=16, style="dot", projection="dense",
                           scale="before", aux_first=False, softmax_end=False, upsample=8,
                           name="mnv3")
    model = keras.Model(backbone.input, outputs)
    path = folder / "mobilenetv3_dot.keras"
    model.save(path)
    return path, []


def _mobilenetv3_h5(folder: Path):
    """keras.applications MobileNetV3 writes ``x + 3.0`` (hard sigmoid) as keras.ops calls:
    Keras 3 saves the model as .h5 but cannot reload it."""
    keras = _keras()
    model = keras.applications.MobileNetV3Small(
        input_shape=(SIZE, SIZE, 3), include_top=False, weights=None,
        include_preprocessing=True)
    path = folder / "mobilenetv3.h5"
    model.save(path)
    return path, []


def _efficientnet_mha_softmax(folder: Path):
    keras = _keras()
    from keras import layers

    backbone = keras.applications.EfficientNetB0(include_top=False, weights=None,
                                                 input_shape=(SIZE, SIZE, 3))
    feats = _tap(backbone, 8)
    deep = _tap(backbone, 16)  # ordinary multi-head self-attention on the 1/16 features
    tokens = layers.Reshape((-1, deep.shape[-1]))(deep)
    tokens = layers.MultiHeadAttention(num_heads=2, key_dim=8)(tokens, tokens)
    deep = layers.Reshape((SIZE // 16, SIZE // 16, deep.shape[-1]))(tokens)
    deep = layers.UpSampling2D(2, interpolation="bilinear")(deep)
    feats = layers.Concatenate()([feats, layers.Conv2D(16, 1)(deep)])
    outputs = _k3_ocr_head(keras, feats, d=20, style="ops", projection="dense",
                           scale="const_first", aux_first=True, softmax_end=True, upsample=8,
                           name="effnet")
    model = keras.Model(backbone.input, outputs)
    path = folder / "efficientnet_mha.keras"
    model.save(path)
    return path, []


def _nested_dynamic_heads(folder: Path):
    """A nested Functional backbone, a dynamic input size, per-head attention written
    with dynamic-batch reshapes in the user's own (unregistered) layers."""
    keras = _keras()
    from keras import layers

    from corpus.layers import MultiHeadObjectAttention, RegionGather

    inner_in = keras.Input((None, None, 3))
    x = inner_in
    for filters in (16, 24, 32):
        x = layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu")(x)
    backbone = keras.Model(inner_in, x, name="backbone")
    image = keras.Input((None, None, 3), name="image")
    feats = backbone(image)
    aux = layers.Conv2D(K, 1, name="aux_logits")(feats)
    pixels = layers.Conv2D(32, 3, padding="same", activation="relu")(feats)
    regions = RegionGather()([pixels, aux])  # [B,K,32]
    query = layers.Conv2D(24, 1, activation="relu")(pixels)
    key = layers.Dense(24, activation="relu")(regions)
    value = layers.Dense(24, activation="relu")(regions)
    context = MultiHeadObjectAttention(heads=2)([query, key, value])
    logits = layers.Conv2D(K, 1)(layers.Concatenate()([context, pixels]))
    logits = layers.UpSampling2D(8, interpolation="bilinear", name="logits")(logits)
    model = keras.Model(image, [aux, logits])
    path = folder / "nested_dynamic.keras"
    model.save(path)
    library = folder / "my_layers.py"
    library.write_text("from corpus.layers import MultiHeadObjectAttention, RegionGather\n")
    return path, ["--input-size", "64x64", "--custom-objects", str(library)]


def _mixed_float16(folder: Path):
    keras = _keras()
    from ocr_deploy.model.ocrnet import OCRNetConfig, build_ocrnet

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = build_ocrnet(OCRNetConfig(num_classes=K, input_height=64, input_width=64,
                                          backbone_width=4, mid_channels=16, key_channels=8))
    finally:
        keras.config.set_dtype_policy(previous)
    path = folder / "ocrnet_mixed_float16.keras"
    model.save(path)
    return path, []


def _deeplabv3(folder: Path):
    _keras()  # seeded
    import keras_hub

    encoder = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 32, 32], stackwise_num_blocks=[1, 1, 1],
        stackwise_num_strides=[1, 2, 2], block_type="basic_block", image_shape=(None, None, 3))
    backbone = keras_hub.models.DeepLabV3Backbone(
        image_encoder=encoder, spatial_pyramid_pooling_key="P4", upsampling_size=4,
        dilation_rates=[2, 4], low_level_feature_key="P2", projection_filters=16,
        image_shape=(None, None, 3))
    model = keras_hub.models.DeepLabV3ImageSegmenter(backbone=backbone, num_classes=K)
    path = folder / "deeplabv3.keras"
    model.save(path)
    return path, ["--input-size", "64x64", "--custom-objects", "keras_hub"]


def _segformer(folder: Path):
    _keras()  # seeded
    import keras_hub

    encoder = keras_hub.models.MiTBackbone(
        layerwise_depths=[1, 1], num_layers=2, layerwise_num_heads=[1, 2],
        layerwise_sr_ratios=[4, 2], max_drop_path_rate=0.0, layerwise_patch_sizes=[7, 3],
        layerwise_strides=[4, 2], hidden_dims=[16, 32], image_shape=(64, 64, 3))
    backbone = keras_hub.models.SegFormerBackbone(image_encoder=encoder, projection_filters=16)
    model = keras_hub.models.SegFormerImageSegmenter(backbone=backbone, num_classes=K)
    path = folder / "segformer.keras"
    model.save(path)
    return path, ["--custom-objects", "keras_hub"]


# --------------------------------------------------------------------------- tf_keras

def _tfk_blog_resnet(folder: Path):
    """tf_keras ResNet50 under a blog-style TFOpLambda head (constant-first scale, D=24,
    Dense key/value, aux output last)."""
    from ocr_deploy.tf_env import import_tensorflow, import_tf_keras

    tf, keras = import_tensorflow(), import_tf_keras()
    keras.utils.set_random_seed(7)
    layers, backend = keras.layers, keras.backend
    backbone = keras.applications.ResNet50(include_top=False, weights=None,
                                           input_shape=(SIZE, SIZE, 3))
    feats = _tap(backbone, 8)
    h, w, d = feats.shape[1], feats.shape[2], 24

    def cbr(x, filters, kernel=1):
        x = layers.Conv2D(filters, kernel, padding="same")(x)
        return layers.Activation("relu")(layers.BatchNormalization()(x))

    aux = layers.Conv2D(K, 1, name="aux_logits")(cbr(feats, 32))
    pixels = cbr(feats, 32, 3)
    pr = tf.reshape(pixels, [-1, h * w, 32])
    sor = backend.softmax(tf.transpose(tf.reshape(aux, [-1, h * w, K]), [0, 2, 1]))
    regions = tf.matmul(sor, pr)
    key = layers.Dense(d, activation="relu")(layers.Dense(d, activation="relu")(regions))
    value = layers.Dense(d, activation="relu")(regions)
    query = tf.reshape(cbr(cbr(pixels, d), d), [-1, h * w, d])
    sim = backend.softmax(d ** -0.5 * tf.matmul(query, key, transpose_b=True))
    context = tf.reshape(tf.matmul(sim, value), [-1, h, w, d])
    logits = layers.Conv2D(K, 1)(cbr(layers.Concatenate()([cbr(context, 32), pixels]), 32))
    logits = tf.image.resize(logits, (SIZE, SIZE))
    model = keras.Model(backbone.input, [logits, aux])
    path = folder / "tfk_blog_resnet50.h5"
    model.save(path)
    return path, []


LEGACY_SCRIPT = """
import os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import tensorflow as tf
tf.keras.utils.set_random_seed(7)
from keras_unet_collection import models
model = models.{call}
model.save(sys.argv[1]{save_format})
"""


TRANSUNET_LAYERS = """\
from keras_unet_collection.activations import GELU
from keras_unet_collection.transformer_layers import patch_embedding, patch_extract
"""


def _legacy_library(call: str, filename: str, save_format: str = "",
                    custom_objects: str | None = None):
    """Build a keras-unet-collection model under legacy tf.keras in a fresh process;
    ``custom_objects``: the text of a --custom-objects file to write beside it."""

    def build(folder: Path):
        path = folder / filename
        script = LEGACY_SCRIPT.format(call=call, save_format=save_format)
        env = {**os.environ, "TF_USE_LEGACY_KERAS": "1"}
        subprocess.run([sys.executable, "-c", textwrap.dedent(script), str(path)], env=env,
                       check=True, capture_output=True, timeout=300)
        if custom_objects is None:
            return path, []
        library = folder / "unet_layers.py"
        library.write_text(custom_objects)
        return path, ["--custom-objects", str(library)]

    return build


SM_SCRIPT = """
import os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ["SM_FRAMEWORK"] = "tf.keras"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import tensorflow as tf
tf.keras.utils.set_random_seed(7)
import segmentation_models as sm
sm.{call}.save(sys.argv[1])
"""


def _segmentation_models(call: str, filename: str, extra: list[str]):
    """Build a segmentation-models (qubvel) model under legacy tf.keras in a fresh process."""

    def build(folder: Path):
        path = folder / filename
        env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "SM_FRAMEWORK": "tf.keras"}
        subprocess.run([sys.executable, "-c", SM_SCRIPT.format(call=call), str(path)],
                       env=env, check=True, capture_output=True, timeout=300)
        return path, list(extra)

    return build


UNET = ("unet_2d((64, 64, 3), [8, 16, 32], n_labels=5, stack_num_down=1, stack_num_up=1, "
        "activation='ReLU', output_activation='Softmax', batch_norm=True, pool='max', "
        "unpool=False, name='unet')")
ATT_UNET = ("att_unet_2d((64, 64, 3), [8, 16, 32], n_labels=5, stack_num_down=1, "
            "stack_num_up=1, activation='ReLU', atten_activation='ReLU', attention='add', "
            "output_activation=None, batch_norm=True, pool=False, unpool='bilinear', "
            "name='attunet')")
TRANSUNET = ("transunet_2d((64, 64, 3), [8, 16, 32], n_labels=5, stack_num_down=1, "
             "stack_num_up=1, embed_dim=32, num_mlp=32, num_heads=2, num_transformer=1, "
             "activation='ReLU', mlp_activation='GELU', output_activation=None, "
             "batch_norm=True, pool=True, unpool='bilinear', name='transunet')")


CORPUS: list[CorpusModel] = [
    CorpusModel("resnet50-ocr-ops", "Keras 3", "keras.applications ResNet50 (to 1/8), OCR "
                "head in keras.ops, conv K/V, scale after, D=24, aux first, ImageNet mean/std",
                _resnet50_ops),
    CorpusModel("resnet50-ocr-ops.h5", "Keras 3", "the same model saved as .h5 (Keras 3 "
                "cannot reload keras.ops calls from .h5)", _resnet50_ops_h5, expect=2,
                message=["keras.ops", ".keras"]),
    CorpusModel("mobilenetv3-ocr-dot", "Keras 3", "MobileNetV3Small with built-in "
                "preprocessing, OCR head in layers.Dot/Rescaling, Dense K/V, scale on Q, "
                "D=16, aux last", _mobilenetv3_dot),
    CorpusModel("mobilenetv3.h5", "Keras 3", "keras.applications MobileNetV3Small saved as "
                ".h5 (its x + 3.0 ops do not reload from .h5 in Keras 3)", _mobilenetv3_h5,
                expect=2, message=["keras.ops", ".keras"]),
    CorpusModel("efficientnet-mha-ocr-softmax", "Keras 3", "EfficientNetB0 (Rescaling + "
                "Normalization inside), MultiHeadAttention elsewhere, OCR head in ops with "
                "s * scores, D=20, softmax at the end", _efficientnet_mha_softmax,
                output_kind="probabilities"),
    CorpusModel("nested-dynamic-multihead", "Keras 3", "nested Functional backbone, dynamic "
                "input size, per-head rank-4 attention with reshape(x, [B,-1,heads,d]) in the "
                "user's own layers (--custom-objects)", _nested_dynamic_heads),
    CorpusModel("ocrnet-mixed-float16", "Keras 3", "the project's OCRNet built under the "
                "mixed_float16 policy", _mixed_float16),
    CorpusModel("keras-hub-deeplabv3", "Keras 3", "Keras-Hub DeepLabV3ImageSegmenter on a "
                "ResNet backbone, from configs, dynamic input size", _deeplabv3),
    CorpusModel("keras-hub-segformer", "Keras 3", "Keras-Hub SegFormerImageSegmenter on a "
                "MiT backbone, from configs", _segformer),
    CorpusModel("tfk-blog-resnet50", "tf_keras", "tf_keras ResNet50 (to 1/8) under a "
                "blog-style TFOpLambda OCR head, s * scores, D=24, Dense K/V, aux last",
                _tfk_blog_resnet),
    CorpusModel("sm-unet-resnet18", "tf_keras", "segmentation-models Unet on ResNet18 "
                "(image-classifiers), softmax output", _segmentation_models(
                    "Unet('resnet18', encoder_weights=None, input_shape=(64, 64, 3), "
                    "classes=4, activation='softmax')", "sm_unet.h5", []),
                output_kind="probabilities"),
    CorpusModel("sm-fpn-efficientnetb0", "tf_keras", "segmentation-models FPN on "
                "EfficientNetB0 (its FixedDropout layer: --custom-objects efficientnet.tfkeras)",
                _segmentation_models(
                    "FPN('efficientnetb0', encoder_weights=None, input_shape=(64, 64, 3), "
                    "classes=3, activation=None)", "sm_fpn.h5",
                    ["--custom-objects", "efficientnet.tfkeras"]), fresh_process=True),
    CorpusModel("sm-linknet-seresnet18", "tf_keras", "segmentation-models Linknet on "
                "SE-ResNet18 (Lambda layers: --trust-model), dynamic input size",
                _segmentation_models(
                    "Linknet('seresnet18', encoder_weights=None, input_shape=(None, None, 3), "
                    "classes=5, activation=None)", "sm_linknet.h5",
                    ["--trust-model", "--input-size", "64x64"])),
    CorpusModel("tfk-unet-collection-unet", "tf_keras", "keras-unet-collection unet_2d under "
                "legacy tf.keras, softmax output", _legacy_library(UNET, "unet.h5"),
                output_kind="probabilities"),
    CorpusModel("tfk-unet-collection-attunet", "tf_keras", "keras-unet-collection "
                "att_unet_2d (attention gates) as a tf_keras SavedModel",
                _legacy_library(ATT_UNET, "attunet_savedmodel", ", save_format='tf'")),
    CorpusModel("tfk-unet-collection-transunet", "tf_keras", "keras-unet-collection "
                "transunet_2d (ViT blocks, multi-head attention, patch extraction; its own "
                "tf.keras layers via --custom-objects, in a fresh ocr-export process)",
                _legacy_library(TRANSUNET, "transunet.h5", custom_objects=TRANSUNET_LAYERS),
                fresh_process=True),
]
