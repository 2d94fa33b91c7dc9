"""The synthetic demo dataset: deterministic, stable splits, all classes, valid labels."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ocr_deploy.demo import synthetic


@pytest.fixture(scope="module")
def val16():
    return synthetic.validation_split(16)


def test_same_seed_gives_identical_arrays(val16):
    images, labels = synthetic.validation_split(16)
    np.testing.assert_array_equal(images, val16[0])
    np.testing.assert_array_equal(labels, val16[1])


def test_sample_depends_only_on_seed_and_index(val16):
    images, labels = synthetic.make_dataset(4, synthetic.VALIDATION_SEED, start=10)
    np.testing.assert_array_equal(images, val16[0][10:14])
    np.testing.assert_array_equal(labels, val16[1][10:14])


def test_splits_differ(val16):
    train_images, _ = synthetic.train_split(16)
    assert synthetic.TRAIN_SEED != synthetic.VALIDATION_SEED
    assert not any(np.array_equal(t, v) for t in train_images for v in val16[0])


def test_shapes_dtypes_and_label_range(val16):
    images, labels = val16
    assert images.shape == (16, 96, 96, 3) and images.dtype == np.uint8
    assert labels.shape == (16, 96, 96) and labels.dtype == np.uint8
    assert labels.max() < len(synthetic.CLASS_NAMES)
    assert all((label > 0).any() for label in labels)  # every image has an object


def test_every_class_appears(val16):
    counts = np.bincount(val16[1].ravel(), minlength=len(synthetic.CLASS_NAMES))
    assert (counts > 0).all(), counts


def test_other_sizes():
    images, labels = synthetic.make_dataset(2, seed=1, height=64, width=128)
    assert images.shape == (2, 64, 128, 3) and labels.shape == (2, 64, 128)


def test_constants_match_classes():
    assert len(synthetic.PALETTE) == len(synthetic.CLASS_NAMES) == 5
    assert synthetic.MEAN == synthetic.STD == (127.5, 127.5, 127.5)


def test_normalize_maps_to_unit_range():
    values = synthetic.normalize(np.array([[[0, 127, 255]]], np.uint8))
    assert values.dtype == np.float32
    np.testing.assert_allclose(values, [[[-1.0, -0.5 / 127.5, 1.0]]], rtol=1e-6)


def test_write_samples_round_trips(tmp_path, val16):
    paths = synthetic.write_samples(tmp_path, 3)
    assert paths == sorted(tmp_path.glob("*.png"))
    for i, path in enumerate(paths):
        np.testing.assert_array_equal(np.asarray(Image.open(path).convert("RGB")), val16[0][i])
        label = np.asarray(Image.open(tmp_path / "labels" / path.name))
        np.testing.assert_array_equal(label, val16[1][i])
