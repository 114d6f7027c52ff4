"""Tests for busutils.finetuning: the freezing loop, the recompile, per-layer learning rates, the sweep."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from busutils.finetuning import LayerwiseSGD, finetune_sweep, freeze_except, recompile_matters, weight_change


def two_layers(seed: int = 0) -> keras.Model:
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(3, name="first", kernel_initializer=keras.initializers.GlorotUniform(seed))(inputs)
    outputs = keras.layers.Dense(1, name="last", kernel_initializer=keras.initializers.GlorotUniform(seed + 1))(hidden)
    return keras.Model(inputs, outputs)


def data(seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(16, 4)).astype("float32")
    return x, x[:, :1] * 2.0


def test_freeze_except_leaves_only_the_named_layers_trainable():
    model = two_layers()
    assert freeze_except(model, ["last"]) == ["last"]
    assert [w.path for w in model.trainable_weights] == ["last/kernel", "last/bias"]
    with pytest.raises(ValueError, match="no layer"):
        freeze_except(model, ["block5_conv1"])


def test_keras_reads_the_trainable_flags_when_it_compiles():
    assert recompile_matters() == {"frozen, not recompiled": True, "frozen, recompiled": False}


def test_layerwise_sgd_scales_the_step_of_the_named_layer_only():
    x, y = data()
    steps = {}
    for name, optimizer in (("plain", keras.optimizers.SGD(0.1)),
                            ("layer-wise", LayerwiseSGD(0.1, multipliers={"first": 0.25}))):
        model = two_layers()
        start = [w.copy() for w in model.get_weights()]
        model.compile(optimizer=optimizer, loss="mse")
        model.train_on_batch(x, y)
        steps[name] = [after - before for before, after in zip(start, model.get_weights())]
    first_kernel, last_kernel = 0, 2
    np.testing.assert_allclose(steps["layer-wise"][first_kernel], 0.25 * steps["plain"][first_kernel], atol=1e-7)
    np.testing.assert_allclose(steps["layer-wise"][last_kernel], steps["plain"][last_kernel], atol=1e-7)
    with pytest.raises(ValueError, match="positive"):
        LayerwiseSGD(0.1, multipliers={"first": 0.0})


def test_a_layer_name_covers_the_layers_it_begins():
    optimizer = LayerwiseSGD(0.1, multipliers={"head": 0.5, "head_output": 2.0, "block5_conv1": 0.1})
    assert optimizer.factor("head_dense") == 0.5
    assert optimizer.factor("head_output") == 2.0  # the longest name wins
    assert optimizer.factor("block5_conv1") == 0.1 and optimizer.factor("block5_conv2") == 1.0


def test_weight_change_by_hand():
    before = [np.array([3.0, 0.0]), np.array([4.0])]
    assert weight_change(before, [np.array([3.0, 1.0]), np.array([4.0])]) == pytest.approx(1 / 5)
    assert weight_change(before, before) == 0.0
    with pytest.raises(ValueError, match="same arrays"):
        weight_change(before, before[:1])


@pytest.mark.slow
def test_a_sweep_starts_every_run_from_the_same_weights_and_steps_in_proportion():
    from busutils.data import phantom_dataset
    from busutils.experiment import split_dataset, train_model
    from busutils.models import finetune_layer_names
    from busutils.profiles import get_profile

    settings = get_profile("quick", image_size=32, phantom_n=60, augment_copies=2, batch_size=64, epochs=1,
                           weights="none", precision="float32")
    split = split_dataset(phantom_dataset(60, image_size=32, seed=0), seed=0)
    trained = train_model("vgg16-transfer", split, settings, seed=0, verbose=0)
    start = [w.copy() for w in trained.model.get_weights()]
    runs = finetune_sweep(trained.frozen, split, settings,
                          {"small": 1e-4, "ten times larger": 1e-3,  # steps well above float32's resolution
                           "layer-wise": {"block5_conv1": 1e-5, "block5_conv2": 1e-4, "block5_conv3": 1e-3}},
                          trainable=finetune_layer_names("block5"), epochs=1, seed=0)
    assert list(runs) == ["small", "ten times larger", "layer-wise"]
    assert len({run["initial_auc"] for run in runs.values()}) == 1  # one start for all
    for after, before in zip(trained.model.get_weights(), start):
        np.testing.assert_array_equal(after, before)  # the model gets its start back
    # one batch holds every training image: one epoch is one step, -learning_rate * gradient, from one start
    small, large = runs["small"]["change"], runs["ten times larger"]["change"]
    for layer in ("block5_conv1", "block5_conv2", "block5_conv3"):
        assert large[layer] / small[layer] == pytest.approx(10, rel=0.01)
    layerwise = runs["layer-wise"]["change"]
    assert layerwise["block5_conv1"] == pytest.approx(small["block5_conv1"] / 10, rel=0.01)
    assert layerwise["block5_conv2"] == pytest.approx(small["block5_conv2"], rel=0.01)
    assert layerwise["block5_conv3"] == pytest.approx(large["block5_conv3"], rel=0.01)
    assert len(runs["small"]["history"]["val_auc"]) == 1
