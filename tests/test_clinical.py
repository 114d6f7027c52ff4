"""Tests for busutils.clinical and the reliability intervals of busutils.operating_point."""

from __future__ import annotations

import numpy as np
import pytest

from busutils.clinical import (BIRADS3_MAX, cancers_among_benign_calls, net_benefit, predictive_value_bands,
                               predictive_values, shift_prevalence)
from busutils.operating_point import reliability_curve, reliability_intervals


def scored(n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.35).astype(int)
    return y, np.clip(0.2 + 0.5 * y + 0.25 * rng.standard_normal(n), 0, 1)


def test_birads_3_ends_at_two_percent():
    assert BIRADS3_MAX == 0.02


def test_shifting_the_prevalence_by_hand_and_back():
    assert shift_prevalence(0.5, 0.5, 0.2) == pytest.approx(0.2)  # no evidence either way: the prior
    p = np.array([0.0, 0.01, 0.3, 0.9, 1.0])
    moved = shift_prevalence(p, 0.32, 0.05)
    assert moved[0] == 0 and moved[-1] == 1 and np.all(moved[1:-1] < p[1:-1])
    np.testing.assert_allclose(shift_prevalence(moved, 0.05, 0.32), p, atol=1e-12)
    np.testing.assert_allclose(shift_prevalence(p, 0.3, 0.3), p)
    with pytest.raises(ValueError, match="to_prevalence"):
        shift_prevalence(p, 0.3, 0.0)


def test_predictive_values_by_hand():
    found = predictive_values(0.9, 0.8, 0.1)
    assert found["ppv"] == pytest.approx(0.09 / (0.09 + 0.18))
    assert found["npv"] == pytest.approx(0.72 / (0.72 + 0.01))
    curve = predictive_values(0.9, 0.8, np.linspace(0.01, 0.9, 50))
    assert np.all(np.diff(curve["ppv"]) > 0) and np.all(np.diff(curve["npv"]) < 0)
    assert np.isnan(predictive_values(0.0, 1.0, 0.3)["ppv"])  # nothing is called malignant


def test_bands_hold_the_test_parts_own_values():
    y, p = scored()
    prevalences = np.array([0.05, 0.2, 0.5])
    bands = predictive_value_bands(y, p, 0.4, prevalences)
    se, sp = np.mean(p[y == 1] >= 0.4), np.mean(p[y == 0] < 0.4)
    assert bands["sensitivity"] == pytest.approx(se) and bands["specificity"] == pytest.approx(sp)
    np.testing.assert_allclose(bands["ppv"], predictive_values(se, sp, prevalences)["ppv"])
    for key in ("ppv", "npv"):
        assert np.all(bands[f"{key}_low"] < bands[key]) and np.all(bands[key] < bands[f"{key}_high"])
    wider = predictive_value_bands(y[:60], p[:60], 0.4, prevalences)  # fewer images, wider bands
    assert np.all(wider["npv_high"] - wider["npv_low"] > bands["npv_high"] - bands["npv_low"])


def test_no_cancer_missed_still_leaves_uncertainty():
    y = np.r_[np.ones(40, int), np.zeros(60, int)]
    p = np.r_[np.full(40, 0.9), np.linspace(0.0, 0.8, 60)]
    bands = predictive_value_bands(y, p, 0.5, [0.3])
    assert bands["sensitivity"] == 1.0 and bands["npv"][0] == pytest.approx(1.0)
    assert bands["npv_low"][0] < 0.99  # Wilson: the sensitivity could be about 0.91
    found = cancers_among_benign_calls(y, p, 0.5)
    assert (found["called_benign"], found["malignant"], found["share"]) == (37, 0, 0.0)
    assert found["low"] == 0.0 and 0.08 < found["high"] < 0.1  # about 3.84 / (37 + 3.84)


def test_net_benefit_by_hand():
    y = np.array([1, 1, 0, 0, 0])
    p = np.array([0.9, 0.3, 0.6, 0.1, 0.05])
    curve = net_benefit(y, p, [0.2, 0.5])
    # t = 0.2: biopsy for 0.9, 0.3, 0.6 -> TP 2, FP 1 -> 2/5 - 1/5 * 0.25
    # t = 0.5: biopsy for 0.9, 0.6 -> TP 1, FP 1 -> 1/5 - 1/5 * 1
    np.testing.assert_allclose(curve["model"], [0.4 - 0.05, 0.0])
    np.testing.assert_allclose(curve["all"], [0.4 - 0.6 * 0.25, 0.4 - 0.6])
    np.testing.assert_allclose(curve["none"], 0)


def test_a_perfect_model_gains_the_prevalence_at_every_threshold():
    y = np.array([1, 0, 1, 0, 0])
    curve = net_benefit(y, y.astype(float), np.linspace(0.01, 0.9, 9))
    np.testing.assert_allclose(curve["model"], 0.4)
    with pytest.raises(ValueError, match="thresholds"):
        net_benefit(y, y.astype(float), [0.0, 0.5])


def test_reliability_intervals_are_wilson_intervals_around_each_bin():
    y, p = scored(300, seed=5)
    curve = reliability_intervals(y, p, n_bins=5)
    plain = reliability_curve(y, p, n_bins=5)
    np.testing.assert_allclose(curve["fraction_positive"], plain["fraction_positive"])
    assert np.all(curve["low"] <= curve["fraction_positive"]) and np.all(curve["fraction_positive"] <= curve["high"])
    # by hand: 4 malignant of 20 -> Wilson 95 % interval about [0.081, 0.416]
    y20 = np.r_[np.ones(4), np.zeros(16)].astype(int)
    one_bin = reliability_intervals(y20, np.full(20, 0.2), n_bins=1)
    assert (one_bin["low"][0], one_bin["high"][0]) == pytest.approx((0.0807, 0.4160), abs=1e-3)
    narrow = reliability_intervals(np.tile(y20, 10), np.full(200, 0.2), n_bins=1)
    assert narrow["high"][0] - narrow["low"][0] < one_bin["high"][0] - one_bin["low"][0]
