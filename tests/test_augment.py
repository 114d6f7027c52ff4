"""Tests for busutils.augment: training-only, shape/label preserving, reproducible."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from matplotlib.figure import Figure

from busutils.augment import (
    RandomRightAngleRotation,
    augmentation_grid,
    augmented_copies,
    light_augmentation,
    make_augmentation,
    paper_augmentation,
)

KINDS = ["paper", "light"]


def _images(n: int = 4, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype("float32")


def _np(x) -> np.ndarray:
    return keras.ops.convert_to_numpy(x)


@pytest.mark.parametrize("kind", KINDS)
def test_shapes_and_dtype_are_kept(kind):
    aug = make_augmentation(kind, seed=0)
    batch = _images()
    out = _np(aug(batch, training=True))
    assert out.shape == batch.shape and out.dtype == np.float32
    single = _np(aug(batch[0], training=True))
    assert single.shape == batch[0].shape and single.dtype == np.float32


@pytest.mark.parametrize("kind", KINDS)
def test_labels_untouched_in_tf_data_pipeline(kind):
    aug = make_augmentation(kind, seed=0)
    images, labels = _images(6), np.array([0, 1, 2, 1, 0, 2])
    ds = tf.data.Dataset.from_tensor_slices((images, labels)).batch(4)
    ds = ds.map(lambda x, y: (aug(x, training=True), y))
    seen_labels, seen_images = [], []
    for x, y in ds:
        assert x.dtype == tf.float32
        seen_images.append(x.numpy())
        seen_labels += y.numpy().tolist()
    assert seen_labels == labels.tolist()
    assert np.concatenate(seen_images).shape == images.shape


@pytest.mark.parametrize("kind", KINDS)
def test_identity_at_inference(kind):
    aug = make_augmentation(kind, seed=0)
    batch = _images()
    np.testing.assert_array_equal(_np(aug(batch, training=False)), batch)


@pytest.mark.parametrize("kind", KINDS)
def test_augmentation_changes_images_in_training(kind):
    batch = _images(8)
    out = _np(make_augmentation(kind, seed=0)(batch, training=True))
    assert not np.allclose(out, batch)
    assert np.all(out >= 0) and np.all(out <= 255)


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_output(kind):
    batch = _images(4)
    a = _np(make_augmentation(kind, seed=3)(batch, training=True))
    b = _np(make_augmentation(kind, seed=3)(batch, training=True))
    c = _np(make_augmentation(kind, seed=4)(batch, training=True))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_paper_augmentation_covers_the_paper_list():
    names = {type(l).__name__ for l in paper_augmentation(0).layers}
    assert names == {"RandomRightAngleRotation", "RandomFlip", "RandomTranslation", "RandomShear", "RandomZoom"}
    flip = next(l for l in paper_augmentation(0).layers if isinstance(l, keras.layers.RandomFlip))
    assert flip.mode == "horizontal"
    assert all(
        l.fill_mode == "nearest" for l in paper_augmentation(0).layers if hasattr(l, "fill_mode")
    )
    assert "RandomRightAngleRotation" not in {type(l).__name__ for l in paper_augmentation(rotate90=False).layers}


def test_light_augmentation_never_rotates():
    names = {type(l).__name__ for l in light_augmentation(0).layers}
    assert not names & {"RandomRightAngleRotation", "RandomRotation", "RandomShear"}
    assert {"RandomFlip", "RandomBrightness", "RandomContrast"} <= names


def test_make_augmentation_kinds():
    assert make_augmentation(None) is None
    assert make_augmentation("none") is None
    with pytest.raises(ValueError, match="paper"):
        make_augmentation("heavy")


# --------------------------------------------------------------------------- right angles


def test_right_angle_rotation_gives_only_exact_rotations():
    batch = _images(32, size=16)
    out = _np(RandomRightAngleRotation(seed=0)(batch, training=True))
    turns = []
    for original, rotated in zip(batch, out):
        matches = [k for k in range(4) if np.array_equal(rotated, np.rot90(original, k, axes=(0, 1)))]
        assert len(matches) == 1
        turns.append(matches[0])
    assert set(turns) == {0, 1, 2, 3}  # 32 draws: all four angles appear (seeded)


def test_right_angle_rotation_single_image_and_inference():
    layer = RandomRightAngleRotation(seed=1)
    image = _images(1, size=8)[0]
    out = _np(layer(image, training=True))
    assert any(np.array_equal(out, np.rot90(image, k)) for k in range(4))
    np.testing.assert_array_equal(_np(layer(image, training=False)), image)


def test_right_angle_rotation_rejects_non_square():
    with pytest.raises(ValueError, match="square"):
        RandomRightAngleRotation()(np.zeros((2, 16, 24, 3), "float32"), training=True)


def test_right_angle_rotation_is_serialisable():
    layer = RandomRightAngleRotation(seed=5, name="r")
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(clone, RandomRightAngleRotation) and clone.seed == 5 and clone.name == "r"


# --------------------------------------------------------------------------- figure


def test_augmentation_grid_figure():
    image = _images(1, size=32)[0]
    aug = paper_augmentation(0)
    fig = augmentation_grid(image, aug, n=5, title="paper")
    assert isinstance(fig, Figure)
    with_images = [ax for ax in fig.axes if ax.images]
    assert len(with_images) == 6
    assert with_images[0].get_title() == "original"
    np.testing.assert_array_equal(with_images[0].images[0].get_array(), image.astype("uint8"))
    assert fig._suptitle.get_text() == "paper"


def test_augmentation_grid_is_reproducible_and_leaves_pipeline_state_alone():
    image = _images(1, size=32)[0]
    aug = paper_augmentation(0)
    reference = _np(paper_augmentation(0)(_images(4), training=True))

    def panels(fig):
        return [np.asarray(ax.images[0].get_array()) for ax in fig.axes if ax.images]

    first = panels(augmentation_grid(image, aug, n=4, seed=11))
    second = panels(augmentation_grid(image, aug, n=4, seed=11))
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    # the pipeline continues as if the figures had never been drawn
    np.testing.assert_array_equal(_np(aug(_images(4), training=True)), reference)


def test_augmentation_grid_accepts_kind_and_greyscale():
    grey = _images(1, size=32)[0, ..., 0]
    fig = augmentation_grid(grey, "light", n=3)
    assert len([ax for ax in fig.axes if ax.images]) == 4


@pytest.mark.parametrize("kind", KINDS)
def test_augmented_copies_depend_on_their_image_only(kind):
    grey = np.random.default_rng(1).integers(0, 256, size=(3, 24, 24), dtype=np.uint8)
    copies = augmented_copies(grey, 3, kind, seed=0)
    assert copies.shape == (3, 3, 24, 24) and copies.dtype == np.uint8
    np.testing.assert_array_equal(copies[:, 0], grey)  # copy 0 is the original
    assert all(not np.array_equal(copies[i, k], grey[i]) for i in range(3) for k in (1, 2))
    alone = augmented_copies(grey[2:], 3, kind, seed=0)  # the same image in another batch
    np.testing.assert_array_equal(alone[0], copies[2])
    assert not np.array_equal(augmented_copies(grey[2:], 3, kind, seed=1)[0], copies[2])
    np.testing.assert_array_equal(augmented_copies(grey, 1, kind)[:, 0], grey)
