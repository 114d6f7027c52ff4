"""Fine-tuning on cached activations trains what fine-tuning through the whole network trains,
and the offline augmentation behind the cache only ever sees training images."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from busutils import experiment
from busutils.data import phantom_dataset
from busutils.cache import image_digests
from busutils.experiment import split_dataset, train_model
from busutils.frozen import FrozenVGG16
from busutils.models import BLOCK5, chain
from busutils.profiles import get_profile
from busutils.train import to_model_input

tf = pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def batch():
    data = phantom_dataset(8, image_size=32, seed=3)
    return data.images, data.labels.astype("float32")[:, None]


def block5_gradients(model: keras.Model, forward, inputs, labels) -> list[np.ndarray]:
    """Gradients of the binary cross-entropy w.r.t. block 5's kernels (dropout off)."""
    kernels = [model.get_layer(name).kernel for name in BLOCK5]
    with tf.GradientTape() as tape:
        loss = keras.losses.binary_crossentropy(labels, forward(inputs, training=False))
        loss = keras.ops.mean(loss)
    return [g.numpy() for g in tape.gradient(loss, [k.value for k in kernels])]


def test_cached_and_uncached_fine_tuning_give_the_same_block5_gradients(batch, monkeypatch, tmp_path):
    monkeypatch.setenv("BUSUTILS_CACHE", str(tmp_path))
    images, labels = batch
    frozen = FrozenVGG16(get_profile("quick", image_size=32, finetune_layers="block5", weights="none",
                                     precision="float32"), name="vgg16-finetune", seed=0)
    model = frozen.model
    front, back = chain(model, until="block4_pool"), chain(model, after="block4_pool")
    whole = block5_gradients(model, model, to_model_input(images), labels)
    assert all(np.abs(g).max() > 0 for g in whole)  # a real gradient, not a saturated output

    maps = keras.ops.convert_to_numpy(front(to_model_input(images), training=False))
    for exact, cached in zip(whole, block5_gradients(model, back, maps, labels)):
        np.testing.assert_allclose(cached, exact, rtol=1e-5, atol=1e-7 * np.abs(exact).max())

    stored = frozen.activations(images)  # through the cache's float16 storage
    assert stored.dtype == np.float16 and frozen.layer == "block4_pool"
    for exact, cached in zip(whole, block5_gradients(model, back, stored.astype(np.float32), labels)):
        np.testing.assert_allclose(cached, exact, rtol=0, atol=0.02 * np.abs(exact).max())


@pytest.mark.parametrize("name", ["vgg16-transfer", "vgg16-finetune"])
def test_offline_augmentation_never_touches_validation_or_test_images(name, monkeypatch, tmp_path):
    monkeypatch.setenv("BUSUTILS_CACHE", str(tmp_path))
    asked = []
    real = experiment.augmented_copies

    def spy(images, *args, **kwargs):
        asked.append(np.array(images))
        return real(images, *args, **kwargs)

    monkeypatch.setattr(experiment, "augmented_copies", spy)
    data = phantom_dataset(60, image_size=32, seed=5)
    split = split_dataset(data, seed=0)
    settings = get_profile("quick", image_size=32, epochs=1, batch_size=16, augment_copies=3,
                           finetune_mode="cached", n_boot=20)
    train_model(name, split, settings, weights="none", verbose=0)
    seen = image_digests(np.concatenate(asked))
    assert sorted(seen) == sorted(image_digests(split.train.images))  # each training image, once
    held_out = set(image_digests(split.val.images)) | set(image_digests(split.test.images))
    assert held_out and not held_out & set(seen)
