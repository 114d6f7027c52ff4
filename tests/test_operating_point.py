"""Tests for busutils.operating_point: threshold choice, calibration checks, recalibration."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_curve

from busutils.evaluate import binary_metrics, bootstrap_ci
from busutils.operating_point import (
    brier_score,
    expected_calibration_error,
    fit_recalibration,
    reliability_curve,
    sensitivity_specificity,
    threshold_for_sensitivity,
)


def sensitivity(y, s, threshold):
    return np.mean(s[y == 1] >= threshold)


def tied_scores(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    return y, np.round(np.clip(0.3 * y + 0.7 * rng.random(n), 0, 1), 2)


# -- threshold_for_sensitivity ---------------------------------------------------------


def test_threshold_by_hand():
    y = np.array([1, 1, 1, 1, 0, 0, 0])
    s = np.array([0.9, 0.8, 0.6, 0.3, 0.7, 0.4, 0.2])
    assert threshold_for_sensitivity(y, s, target=0.75) == 0.6  # 3 of 4 positives
    assert threshold_for_sensitivity(y, s, target=0.76) == 0.3  # needs all 4
    assert threshold_for_sensitivity(y, s, target=0.25) == 0.9


@pytest.mark.parametrize("target", [0.5, 0.8, 0.9, 0.95, 1.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_threshold_is_the_highest_that_reaches_the_target(target, seed):
    y, s = tied_scores(200, seed)
    t = threshold_for_sensitivity(y, s, target=target)
    assert sensitivity(y, s, t) >= target
    higher = np.unique(s)[np.unique(s) > t]
    if len(higher):  # the next score step up misses the target
        assert sensitivity(y, s, higher[0]) < target
    # the same operating point read off sklearn's ROC curve
    _, tpr, thresholds = roc_curve(y, s, drop_intermediate=False)
    assert t == thresholds[np.argmax(tpr >= target)]


def test_threshold_input_errors():
    with pytest.raises(ValueError, match="no positive"):
        threshold_for_sensitivity([0, 0, 0], [0.1, 0.5, 0.9])
    with pytest.raises(ValueError, match="target must be a sensitivity"):
        threshold_for_sensitivity([0, 1], [0.1, 0.9], target=95)
    with pytest.raises(ValueError, match="scores must hold probabilities"):
        threshold_for_sensitivity([0, 1], [0.1, 1.9])
    with pytest.raises(ValueError, match="y_true and scores have different lengths"):
        threshold_for_sensitivity([0, 1, 1], [0.1, 0.9])


# -- sensitivity_specificity -----------------------------------------------------------


def test_sensitivity_specificity_points_and_cis():
    y, s = tied_scores(150, seed=2)
    t = threshold_for_sensitivity(y, s, 0.9)
    result = sensitivity_specificity(y, s, t, n_boot=300, seed=3)
    point = binary_metrics(y, s, threshold=t)
    assert result["sensitivity"] == pytest.approx(point["sensitivity"])
    assert result["specificity"] == pytest.approx(point["specificity"])
    assert result["confusion_matrix"] == point["confusion_matrix"]
    ci = bootstrap_ci(y, s, ["benign", "malignant"], n_boot=300, seed=3, threshold=t)
    for key in ("sensitivity", "specificity"):
        assert tuple(result["ci95"][key]) == pytest.approx(ci[key])
        assert result["ci95"][key][0] <= result[key] <= result["ci95"][key][1]
    groups = np.arange(150) // 3
    grouped = sensitivity_specificity(y, s, t, groups=groups, n_boot=300, seed=3)
    ci = bootstrap_ci(y, s, ["benign", "malignant"], n_boot=300, seed=3, threshold=t, groups=groups)
    assert tuple(grouped["ci95"]["sensitivity"]) == pytest.approx(ci["sensitivity"])


# -- calibration -----------------------------------------------------------------------


def test_brier_score_by_hand():
    assert brier_score([0, 1], [0.2, 0.6]) == pytest.approx((0.2**2 + 0.4**2) / 2)
    assert brier_score([0, 1, 1], [0.0, 1.0, 1.0]) == 0.0


def test_reliability_curve_and_ece_by_hand():
    y = np.array([0, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.7, 0.9])
    curve = reliability_curve(y, s, n_bins=2, strategy="uniform")
    np.testing.assert_allclose(curve["mean_score"], [0.15, 0.8])
    np.testing.assert_allclose(curve["fraction_positive"], [0.5, 1.0])
    np.testing.assert_array_equal(curve["count"], [2, 2])
    # bins [0, .5) and [.5, 1]: gaps .35 and .2, two cases each
    assert expected_calibration_error(y, s, n_bins=2, strategy="uniform") == pytest.approx(0.275)


def test_reliability_curve_counts_with_empty_and_quantile_bins():
    rng = np.random.default_rng(0)
    s = rng.random(100)
    y = (rng.random(100) < s).astype(int)
    curve = reliability_curve(y, s, n_bins=4)  # quantile: equal counts
    np.testing.assert_array_equal(curve["count"], [25, 25, 25, 25])
    low = reliability_curve(y, 0.3 * s, n_bins=10, strategy="uniform")  # bins above .3 are empty
    assert len(low["count"]) == 3 and low["count"].sum() == 100


def miscalibrated(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, true probabilities and an overconfident model's scores sigmoid(3 * logit(p))."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.5, n)
    p = 1.0 / (1.0 + np.exp(-z))
    return (rng.random(n) < p).astype(int), p, 1.0 / (1.0 + np.exp(-3.0 * z))


def test_ece_is_small_for_a_calibrated_model_and_large_otherwise():
    y, p, s = miscalibrated(4000, seed=1)
    assert expected_calibration_error(y, p) < 0.03
    assert expected_calibration_error(y, s) > 0.08


@pytest.mark.parametrize("method", ["platt", "isotonic"])
@pytest.mark.parametrize("distortion", ["logit x 3", "p ** 3"])
def test_recalibration_fitted_on_one_half_helps_on_the_other(method, distortion):
    y, p, s = miscalibrated(4000, seed=2)
    if distortion == "p ** 3":
        s = p**3
    fit, held_out = slice(0, 2000), slice(2000, None)
    recal = fit_recalibration(y[fit], s[fit], method=method)
    assert recal.method == method
    fixed = recal.transform(s[held_out])
    assert fixed.shape == (2000,) and np.all((fixed >= 0) & (fixed <= 1))
    assert brier_score(y[held_out], fixed) < brier_score(y[held_out], s[held_out]) - 0.005
    assert expected_calibration_error(y[held_out], fixed) < 0.5 * expected_calibration_error(y[held_out], s[held_out])
    assert expected_calibration_error(y[held_out], fixed) < 0.06  # ~sampling noise of 10 bins


def test_platt_recovers_the_known_distortion():
    # scores are sigmoid(3 z) and the truth sigmoid(z): the true map is sigmoid(logit(s) / 3)
    y, _, s = miscalibrated(4000, seed=3)
    model = fit_recalibration(y, s, method="platt").model
    assert model.coef_[0, 0] == pytest.approx(1 / 3, abs=0.04)
    assert model.intercept_[0] == pytest.approx(0.0, abs=0.1)


def test_platt_keeps_the_ranking_and_survives_separable_data():
    y = np.array([0, 0, 0, 1, 1, 1])
    s = np.array([0.0, 0.1, 0.2, 0.8, 0.9, 1.0])  # perfectly separated, scores at 0 and 1
    fixed = fit_recalibration(y, s).transform(s)
    assert np.all(np.isfinite(fixed)) and np.all(np.diff(fixed) > 0)
    assert fixed[0] > 0.0 and fixed[-1] < 1.0  # smoothed targets: never certain


def test_recalibration_input_errors():
    with pytest.raises(ValueError, match="method must be 'platt' or 'isotonic'"):
        fit_recalibration([0, 1], [0.2, 0.8], method="beta")
    with pytest.raises(ValueError, match="y_val must contain both classes"):
        fit_recalibration([1, 1], [0.2, 0.8])
    with pytest.raises(ValueError, match="scores must be 1-D"):
        fit_recalibration([0, 1], [0.2, 0.8]).transform(np.ones((2, 2)) / 2)
    with pytest.raises(ValueError, match="strategy must be"):
        reliability_curve([0, 1], [0.2, 0.8], strategy="equal")
    with pytest.raises(ValueError, match="n_bins must be a positive integer"):
        expected_calibration_error([0, 1], [0.2, 0.8], n_bins=0)
