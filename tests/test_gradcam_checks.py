"""Tests for busutils.gradcam_checks: randomised copies, map similarity, the paths of a two-block head."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from busutils.gradcam import grad_cam
from busutils.gradcam_checks import (cascade_stages, heat_in_lesions, path_ablation, randomized_copy,
                                     rank_correlation, weighted_layers)
from busutils.models import baseline_cnn, chain, vgg16_transfer
from busutils.train import extract_features, to_model_input


def images(n: int = 3, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size), dtype=np.uint8)


def test_weighted_layers_run_from_the_output_back():
    model, _ = baseline_cnn((32, 32, 3), seed=0)
    assert weighted_layers(model) == ["output", "dense", "conv5", "conv4", "conv3", "conv2", "conv1"]
    vgg, _ = vgg16_transfer((32, 32, 3), weights="none", seed=0, hidden=4)
    assert weighted_layers(vgg)[:2] == ["head", "block5_conv3"] and weighted_layers(vgg)[-1] == "block1_conv1"


def test_the_cascade_randomises_one_more_block_at_each_step():
    vgg, _ = vgg16_transfer((32, 32, 3), weights="none", seed=0, hidden=4)
    stages = cascade_stages(vgg)
    assert [name for name, _ in stages] == ["trained", "random to head", "random to block5", "random to block4",
                                            "random to block3", "random to block2", "random to block1"]
    assert stages[0][1] == [] and stages[2][1] == ["head", "block5_conv3", "block5_conv2", "block5_conv1"]
    assert stages[-1][1] == weighted_layers(vgg)  # every layer at the end
    baseline, _ = baseline_cnn((32, 32, 3), seed=0)
    assert [name for name, _ in cascade_stages(baseline)][1:3] == ["random to output", "random to dense"]


def test_a_randomised_copy_changes_the_named_layers_and_nothing_else():
    model, _ = baseline_cnn((32, 32, 3), seed=0)
    kept = [w.copy() for w in model.get_weights()]
    copy = randomized_copy(model, ["output", "conv5"], seed=3)
    for before, after in zip(kept, model.get_weights()):
        np.testing.assert_array_equal(before, after)  # the trained model is untouched
    for layer in model.layers:
        mine, theirs = layer.get_weights(), copy.get_layer(layer.name).get_weights()
        same = all(np.array_equal(a, b) for a, b in zip(mine, theirs))
        assert same == (layer.name not in ("output", "conv5")) or not mine
    again = randomized_copy(model, ["output", "conv5"], seed=3)
    np.testing.assert_array_equal(again.get_layer("conv5").get_weights()[0], copy.get_layer("conv5").get_weights()[0])
    with pytest.raises(ValueError, match="no layer"):
        randomized_copy(model, ["block5_conv3"])


def test_randomising_the_weights_changes_the_maps():
    model, _ = baseline_cnn((32, 32, 3), seed=0)
    x = to_model_input(images(4))
    trained = grad_cam(model, x, class_index=1)
    unchanged = grad_cam(randomized_copy(model, [], seed=1), x, class_index=1)
    np.testing.assert_allclose(unchanged, trained, atol=1e-6)
    randomised = grad_cam(randomized_copy(model, seed=1), x, class_index=1)
    assert np.nanmean(rank_correlation(trained, randomised)) < 0.9


def test_rank_correlation_of_maps():
    rng = np.random.default_rng(0)
    maps = rng.random((3, 8, 8))
    assert rank_correlation(maps, maps) == pytest.approx([1, 1, 1])
    assert rank_correlation(maps, -maps) == pytest.approx([-1, -1, -1])
    assert rank_correlation(maps, maps ** 3) == pytest.approx([1, 1, 1])  # ranks only, not scales
    flat = maps.copy()
    flat[1] = 0.0  # a blank map orders no pixel
    assert rank_correlation(maps, flat)[1] == 0.0
    assert np.isnan(rank_correlation(flat, flat)[1])  # two blank maps: nothing to compare
    with pytest.raises(ValueError, match="same shape"):
        rank_correlation(maps, maps[:2])


def test_a_copy_with_nothing_randomised_scores_and_explains_as_the_model_does():
    model, _ = vgg16_transfer((32, 32, 3), weights="none", seed=0, hidden=4, features="block4+block5")
    x = to_model_input(images(4, seed=5))
    head = model.get_layer("head")
    head.get_layer("head_norm").adapt(extract_features(chain(model, until="features"), images(12, seed=6)))
    copy = randomized_copy(model, [], seed=0)  # the head's standardisation must come along
    np.testing.assert_allclose(copy.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grad_cam(copy, x, class_index=1), grad_cam(model, x, class_index=1), atol=1e-5)


def test_a_head_that_ignores_block4_loses_nothing_without_it():
    model, _ = vgg16_transfer((32, 32, 3), weights="none", seed=0, hidden=0, features="block4+block5")
    reference, test = images(12, seed=1), images(6, seed=2)
    features = extract_features(chain(model, until="features"), reference)
    head = model.get_layer("head")
    head.get_layer("head_norm").adapt(features)
    kernel, bias = head.get_layer("head_output").get_weights()
    kernel[:512] = 0.0  # the first 512 features, block 4's, are not read
    head.get_layer("head_output").set_weights([kernel, bias])
    scores = path_ablation(model, reference, test)
    assert list(scores) == ["all", "without block4", "without block5"]
    np.testing.assert_allclose(scores["without block4"], scores["all"], atol=1e-6)
    assert np.abs(scores["without block5"] - scores["all"]).max() > 1e-3
    baseline, _ = baseline_cnn((32, 32, 3), seed=0)
    with pytest.raises(ValueError, match="pooled VGG16 features"):
        path_ablation(baseline, reference, test)


@pytest.mark.parametrize("name", ["vgg16-transfer", "vgg16-finetune"])
def test_path_ablation_through_the_cached_front_scores_as_the_whole_network(tmp_path, monkeypatch, name):
    """Chapter 08 ablates the paths of its saved models with features from the activation cache."""
    from busutils.frozen import FrozenVGG16
    from busutils.profiles import get_profile

    monkeypatch.setenv("BUSUTILS_CACHE", str(tmp_path))
    settings = get_profile("smoke", image_size=32, head_hidden=4)
    saved = FrozenVGG16(settings, name=name, seed=0)
    reference, test = images(12, seed=1), images(6, seed=2)
    saved.model.get_layer("head").get_layer("head_norm").adapt(saved.pooled(reference))
    frozen = FrozenVGG16(settings, name=name, seed=1)  # other weights, until it is given the saved ones
    frozen.set_weights_from(saved.model)
    whole = path_ablation(saved.model, reference, test)
    cached = path_ablation(saved.model, reference, test, features=frozen.pooled)
    assert list(cached) == list(whole) == ["all", "without block4", "without block5"]
    for part in whole:  # equal but for the cached activations' rounding to float16
        np.testing.assert_allclose(cached[part], whole[part], atol=2e-3)
    assert np.abs(whole["without block5"] - whole["all"]).max() > 1e-3  # the ablation changes something


def test_heat_in_lesions_sets_trained_against_random_maps_and_the_lesions_share():
    from busutils.gradcam import mass_on_mask

    model, _ = baseline_cnn((32, 32, 3), seed=0)
    x = to_model_input(images(4))
    lesions = np.zeros((4, 32, 32), bool)
    lesions[:, 8:16, 8:24] = True  # an eighth of each image
    scores = np.array([0.9, 0.2, 0.7, 0.4])
    heat = heat_in_lesions({"cnn": model}, x, {"cnn": scores}, lesions, seed=3)
    assert list(heat.index) == [("cnn", "trained"), ("cnn", "random")]
    assert heat["lesion's share of the image"].tolist() == [0.125, 0.125]
    trained = grad_cam(model, x, class_index=scores >= 0.5)
    assert heat.loc[("cnn", "trained"), "heat inside the lesion"] == pytest.approx(
        np.nanmean(mass_on_mask(trained, lesions)))
    np.testing.assert_allclose(heat["ratio"], heat["heat inside the lesion"] / 0.125)
