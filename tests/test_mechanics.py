"""Tests for busutils.mechanics: each hand-written piece equals what the library computes."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from sklearn.metrics import roc_curve

from busutils.mechanics import (adam_update, balanced_class_weights, best_logistic_loss, binary_cross_entropy,
                                fit_logistic, roc_points)
from busutils.train import class_weights


def labelled(n: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    return y, np.clip(0.25 + 0.5 * y + 0.3 * rng.standard_normal(n), 0.001, 0.999)


def test_cross_entropy_by_hand_and_as_keras_computes_it():
    assert binary_cross_entropy([1, 0], [0.8, 0.4]) == pytest.approx(-(np.log(0.8) + np.log(0.6)) / 2)
    y, p = labelled()
    keras_loss = keras.losses.BinaryCrossentropy()
    assert binary_cross_entropy(y, p) == pytest.approx(float(keras_loss(y[:, None], p[:, None])), rel=1e-5)
    weights = balanced_class_weights(y)
    w = np.array([weights[label] for label in y])
    assert binary_cross_entropy(y, p, w) == pytest.approx(
        float(keras_loss(y[:, None], p[:, None], sample_weight=w)), rel=1e-5)


def test_a_confident_wrong_answer_costs_much_more_than_a_hesitant_one():
    assert binary_cross_entropy([1], [0.01]) > 4 * binary_cross_entropy([1], [0.4])
    assert binary_cross_entropy([1], [0.0]) == pytest.approx(-np.log(1e-7))  # clipped as Keras does


def test_balanced_weights_equal_the_training_code_and_balance_the_classes():
    y, _ = labelled(50, seed=3)
    weights = balanced_class_weights(y)
    assert weights == pytest.approx(class_weights(y, 2))
    totals = [weights[c] * np.sum(y == c) for c in (0, 1)]
    assert totals == pytest.approx([25.0, 25.0])  # each class weighs n / k
    with pytest.raises(ValueError, match="at least one image"):
        balanced_class_weights([0, 0, 0])


def test_adam_update_takes_the_steps_keras_takes():
    rng = np.random.default_rng(0)
    w = rng.standard_normal(5)
    variable = keras.Variable(w.astype("float32"))
    optimizer = keras.optimizers.Adam(learning_rate=0.01)
    m, v = np.zeros(5), np.zeros(5)
    for step in range(1, 4):
        grad = rng.standard_normal(5) * np.array([1e-3, 1e-1, 1, 10, 1e3])
        optimizer.apply([keras.ops.convert_to_tensor(grad.astype("float32"))], [variable])
        w, m, v = adam_update(w, grad, m, v, step, learning_rate=0.01)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(variable), w, rtol=1e-5, atol=1e-6)


def test_adam_moves_every_weight_by_about_the_learning_rate_whatever_its_gradient():
    w, m, v = adam_update(np.zeros(3), np.array([1e-2, 1.0, 1e4]), np.zeros(3), np.zeros(3), 1,
                          learning_rate=0.1)
    assert np.abs(w) == pytest.approx([0.1, 0.1, 0.1], rel=1e-3)  # a millionfold range of gradients


def test_on_badly_scaled_inputs_adam_learns_where_sgd_diverges_or_crawls():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    x = np.column_stack([100 + 20 * y + 30 * rng.standard_normal(200), 0.1 * y + 0.2 * rng.random(200)])
    adam = fit_logistic(x, y, optimizer="adam", learning_rate=0.1, steps=1000)
    crawl = fit_logistic(x, y, optimizer="sgd", learning_rate=1e-4, steps=1000)
    jump = fit_logistic(x, y, optimizer="sgd", learning_rate=1e-2, steps=1000)
    best = best_logistic_loss(x, y)
    assert best <= adam.min() + 1e-9 and best <= crawl.min() + 1e-9  # no run goes below the floor
    assert adam[-1] - best < 0.1 * (adam[0] - best)
    assert crawl[-1] - best > 10 * (adam[-1] - best)
    assert np.isnan(jump).any() or np.nanmax(jump) > 2 * jump[0]  # too large a step for the large input
    with pytest.raises(ValueError, match="optimizer"):
        fit_logistic(x, y, optimizer="rmsprop")


def test_roc_points_are_scikit_learns():
    y, s = labelled(60, seed=2)
    s = np.round(s, 1)  # with ties
    mine = roc_points(y, s)
    fpr, tpr, thresholds = roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(mine["fpr"], fpr)
    np.testing.assert_allclose(mine["tpr"], tpr)
    np.testing.assert_allclose(mine["thresholds"][1:], thresholds[1:])
    assert mine["fpr"][0] == mine["tpr"][0] == 0 and mine["fpr"][-1] == mine["tpr"][-1] == 1
    with pytest.raises(ValueError, match="one class"):
        roc_points([1, 1], [0.2, 0.3])
