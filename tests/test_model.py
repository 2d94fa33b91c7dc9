"""The Keras 3 OCRNet: structure, file round trips, and the files' identification."""

from __future__ import annotations

import numpy as np

from ocr_deploy.export.model_file import identify


def test_outputs_and_configurable_sizes(keras3_model, small_config):
    aux, logits = keras3_model.outputs
    assert tuple(aux.shape) == (None, 16, 16, 4)
    assert tuple(logits.shape) == (None, 64, 64, 4)
    names = {layer.name: layer for layer in keras3_model.layers}
    assert names["conv3x3_ocr_conv"].filters == small_config.mid_channels
    assert names["f_pixel2_conv"].filters == small_config.key_channels
    assert type(names["spatial_gather"]).__name__ == "SpatialGather"
    assert type(names["object_attention"]).__name__ == "ObjectAttention"


def test_spatial_gather_softmax_is_over_pixels(keras3):
    from ocr_deploy.model.layers import SpatialGather

    rng = np.random.default_rng(0)
    pixels = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
    regions = rng.normal(size=(2, 3, 4, 2)).astype(np.float32)
    out = np.asarray(SpatialGather()([pixels, regions]))
    weights = np.exp(regions.reshape(2, 12, 2))
    weights /= weights.sum(axis=1, keepdims=True)  # softmax over the 12 pixels
    expected = np.einsum("bpk,bpc->bkc", weights, pixels.reshape(2, 12, 5))[:, :, None, :]
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_object_attention_matches_reference_formula(keras3):
    from ocr_deploy.model.layers import ObjectAttention

    rng = np.random.default_rng(1)
    q = rng.normal(size=(1, 2, 3, 4)).astype(np.float32)
    k = rng.normal(size=(1, 5, 1, 4)).astype(np.float32)
    v = rng.normal(size=(1, 5, 1, 6)).astype(np.float32)
    out = np.asarray(ObjectAttention()([q, k, v]))
    sim = q.reshape(1, 6, 4) @ k[:, :, 0].transpose(0, 2, 1) * 4 ** -0.5
    sim = np.exp(sim - sim.max(-1, keepdims=True))
    sim /= sim.sum(-1, keepdims=True)
    np.testing.assert_allclose(out, (sim @ v[:, :, 0]).reshape(1, 2, 3, 6), rtol=1e-5,
                               atol=1e-6)


def test_h5_and_keras_round_trip(keras3, keras3_model, keras3_h5, keras3_zip, images):
    expected = keras3_model.predict(images, verbose=0)[1]
    for path in (keras3_h5, keras3_zip):
        loaded = keras3.saving.load_model(path, compile=False)
        np.testing.assert_allclose(loaded.predict(images, verbose=0)[1], expected, atol=1e-5)


def test_identify_reads_the_writer_without_loading(keras3_h5, keras3_zip, blog_h5,
                                                   saved_model_dir):
    assert identify(keras3_h5).flavour == "keras3"
    assert identify(keras3_zip).flavour == "keras3"
    blog = identify(blog_h5)
    assert blog.flavour == "tf_keras" and blog.keras_version.startswith("2.")
    assert "TFOpLambda" in blog.serialized_classes
    assert identify(saved_model_dir).format == "savedmodel"
