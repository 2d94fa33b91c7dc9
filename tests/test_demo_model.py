"""The shipped demo model: it loads with Keras 3, matches its card, and segments well."""

from __future__ import annotations

import numpy as np
import pytest
from train_demo import DEFAULT_OUT, predict_labels

from ocr_deploy.demo import synthetic
from ocr_deploy.metrics import mean_iou
from ocr_deploy.model_card import ModelCard

VAL_IMAGES = 64


@pytest.fixture(scope="session")
def demo_model():
    from ocr_deploy.tf_env import import_keras3

    keras = import_keras3()
    import ocr_deploy.model.layers  # noqa: F401  (registers the OCR layers)

    return keras.models.load_model(DEFAULT_OUT, compile=False)


def test_shipped_files_exist_and_are_small():
    assert DEFAULT_OUT.is_file()
    assert DEFAULT_OUT.stat().st_size < 4_000_000
    assert ModelCard.path_for(DEFAULT_OUT).is_file()


def test_card_matches_the_dataset():
    card = ModelCard.load(ModelCard.path_for(DEFAULT_OUT))
    assert card.class_names == list(synthetic.CLASS_NAMES)
    assert card.palette == [list(c) for c in synthetic.PALETTE]
    assert card.mean == list(synthetic.MEAN) and card.std == list(synthetic.STD)
    assert card.notes["val_miou"] >= 0.90
    assert {"train_command", "epochs", "seed"} <= card.notes.keys()


def test_model_signature(demo_model):
    assert demo_model.input_shape == (None, 96, 96, 3)
    aux, logits = demo_model.output_shape
    assert aux == (None, 24, 24, len(synthetic.CLASS_NAMES))
    assert logits == (None, 96, 96, len(synthetic.CLASS_NAMES))


def test_validation_miou(demo_model):
    images, labels = synthetic.validation_split(VAL_IMAGES)
    miou, per_class = mean_iou(predict_labels(demo_model, images), labels,
                               len(synthetic.CLASS_NAMES))
    assert miou >= 0.90, per_class
    assert np.nanmin(per_class) >= 0.80, per_class
