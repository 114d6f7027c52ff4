"""The frozen VGG16 front: one network built in one precision, its activations cached under a key
made from the network itself, its classifier and unfrozen layers trained on them."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from busutils.cache import ActivationStore
from busutils.data import phantom_dataset
from busutils.experiment import split_dataset, train_model
from busutils.frozen import CopiesSequence, FrozenVGG16, network_key
from busutils.models import count_params
from busutils.profiles import get_profile


def tiny_profile(**overrides):
    return get_profile("quick", **{"image_size": 32, "epochs": 1, "batch_size": 16, "patience": 2, "n_boot": 20,
                                   "augment_copies": 2, "weights": "none", "precision": "float32", **overrides})


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BUSUTILS_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def tiny_data():
    return phantom_dataset(60, image_size=32, seed=5)


def maps_folder(frozen: FrozenVGG16):
    return ActivationStore({"network": network_key(frozen.front)}, dtype="float16").folder


def test_copies_sequence_shows_one_copy_of_each_item_per_epoch_and_cycles():
    n, k = 10, 3
    x = np.stack([np.stack([np.full(2, 10 * i + c, np.float16) for c in range(k)]) for i in range(n)])
    data = CopiesSequence(x, np.arange(n) % 2, batch_size=4, seed=0)
    seen = []
    for _ in range(k):
        batches = [data[b] for b in range(len(data))]
        assert all(xb.dtype == np.float32 for xb, _ in batches)  # stored compact, served as the layers take it
        values = np.concatenate([xb[:, 0] for xb, _ in batches]).astype(int)
        labels = np.concatenate([yb for _, yb in batches])
        assert sorted(values // 10) == list(range(n))  # every item once
        np.testing.assert_array_equal(labels, (values // 10) % 2)  # labels travel with their items
        seen.append(dict(zip(values // 10, values % 10)))
        data.on_epoch_end()
    for item in range(n):
        assert sorted(epoch[item] for epoch in seen) == list(range(k))  # each copy once in k epochs


def test_the_model_shown_is_the_model_trained_with_the_profiles_head(tiny_data):
    settings = tiny_profile(head_hidden=8, head_features="block4+block5")
    frozen = FrozenVGG16(settings, name="vgg16-transfer", seed=0)
    shown = count_params(frozen.model)
    head = frozen.model.get_layer("head")
    assert head.get_layer("head_dense").units == 8 and head.input.shape[-1] == 1024
    trained = train_model("vgg16-transfer", split_dataset(tiny_data, seed=0), settings, verbose=0, frozen=frozen)
    assert trained.model is frozen.model and count_params(trained.model) == shown
    with pytest.raises(ValueError, match="built for vgg16-transfer"):
        train_model("vgg16-finetune", split_dataset(tiny_data, seed=0), settings, verbose=0, frozen=frozen)


def test_features_read_before_the_cached_layer_are_refused_by_name():
    settings = tiny_profile(finetune_layers="block5_conv3", head_features="block4+block5")
    with pytest.raises(ValueError, match="reads block4_pool, before block5_conv2"):
        FrozenVGG16(settings, name="vgg16-finetune")


def test_every_part_is_built_in_the_profiles_precision():
    frozen = FrozenVGG16(tiny_profile(precision="mixed_bfloat16"), name="vgg16-finetune")
    assert frozen.policy == "mixed_bfloat16"
    for part in (frozen.model, frozen.front, frozen.pooler, frozen.back):
        assert part.dtype_policy.name == "mixed_bfloat16"
    assert frozen.model.get_layer("block5_conv1").compute_dtype == "bfloat16"
    head = frozen.model.get_layer("head")
    assert {layer.compute_dtype for layer in head.layers[1:]} == {"float32"}  # the classifier stays exact


def test_the_cache_refuses_activations_of_a_network_whose_weights_or_policy_differ(tiny_data):
    """Two networks that a caller would both call "random VGG16" are not one network."""
    images = tiny_data.images[:4]
    first = FrozenVGG16(tiny_profile(), name="vgg16-finetune", seed=0)
    maps = first.activations(images)
    same = FrozenVGG16(tiny_profile(), name="vgg16-transfer", seed=0)  # the same front, another model
    assert maps_folder(same) == maps_folder(first)
    np.testing.assert_array_equal(same.activations(images), maps)
    for other in (FrozenVGG16(tiny_profile(), name="vgg16-finetune", seed=1),  # other weights, same label
                  FrozenVGG16(tiny_profile(precision="mixed_bfloat16"), name="vgg16-finetune", seed=0)):
        assert other.weights_used.split(" (")[0] == first.weights_used.split(" (")[0]
        assert maps_folder(other) != maps_folder(first)
        assert not np.array_equal(other.activations(images), maps)
    assert network_key(first.front) != network_key(FrozenVGG16(tiny_profile(image_size=48)).front)


def test_pooled_features_after_fine_tuning_are_not_filed_under_the_networks_from_before(tiny_data):
    settings = tiny_profile(finetune_learning_rate=0.05, finetune_clipnorm=None, patience=None, epochs=2)
    split = split_dataset(tiny_data, seed=0)
    trained = train_model("vgg16-finetune", split, settings, verbose=0)
    frozen = trained.frozen
    after = frozen.pooled(split.val.images)
    fresh = frozen.pooler.predict(frozen.activations(split.val.images).astype(np.float32), verbose=0)
    np.testing.assert_allclose(after, fresh, rtol=1e-4, atol=1e-4)  # computed anew, not read from before


def test_cached_fine_tuning_in_float16_scales_its_loss(tiny_data):
    settings = tiny_profile(precision="mixed_float16")
    frozen = FrozenVGG16(settings, name="vgg16-finetune")
    assert frozen.back.get_layer("block5_conv1").compute_dtype == "float16"
    back = frozen.compiled_back(settings)
    assert isinstance(back.optimizer, keras.optimizers.LossScaleOptimizer)
    split = split_dataset(tiny_data, seed=0)
    copies = np.stack([split.train.images] * 2, axis=1)
    frozen.train_head(copies, split.train.labels, split.val, settings, verbose=0)
    before = [w.copy() for w in frozen.model.get_layer("block5_conv3").get_weights()]
    result = frozen.finetune(copies, split.train.labels, split.val, settings, verbose=0)
    assert not result.diverged and np.isfinite(result.history["loss"]).all()
    moved = [not np.array_equal(a, b) for a, b in zip(before, frozen.model.get_layer("block5_conv3").get_weights())]
    assert result.best_epoch == 0 or all(moved)  # the scaled gradients reached block 5


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16", "mixed_float16"])
def test_cached_scores_match_the_whole_model_in_every_precision(tiny_data, precision):
    frozen = FrozenVGG16(tiny_profile(precision=precision), name="vgg16-transfer")
    frozen.train_head(np.stack([tiny_data.images[:30]] * 2, axis=1), tiny_data.labels[:30],
                      tiny_data.take(range(30, 40)), tiny_profile(precision=precision), verbose=0)
    from busutils.train import predict_scores

    whole = predict_scores(frozen.model, tiny_data.images[40:])
    cached = frozen.predict(tiny_data.images[40:])
    assert cached.dtype == whole.dtype == np.float64 and np.isfinite(cached).all()
    np.testing.assert_allclose(cached, whole, atol=0.01 if precision == "float32" else 0.03)
