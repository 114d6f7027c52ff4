"""Tests for busutils.paired_auc: DeLong's paired AUC test and the paired bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from busutils.paired_auc import delong_test, describe_difference, paired_bootstrap_auc


def brute_force_delong(y, a, b):
    """DeLong et al. (1988) straight from the definitions: a double loop over all pairs."""
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    m, n = len(pos), len(neg)
    v10 = np.zeros((2, m))
    v01 = np.zeros((2, n))
    for r, s in enumerate((a, b)):
        for i, p in enumerate(pos):
            for j, q in enumerate(neg):
                psi = 1.0 if s[p] > s[q] else 0.5 if s[p] == s[q] else 0.0
                v10[r, i] += psi / n
                v01[r, j] += psi / m
    s10, s01 = np.cov(v10), np.cov(v01)  # 2 x 2 covariance matrices, denominators m-1 and n-1
    contrast = np.array([1.0, -1.0])
    var = contrast @ s10 @ contrast / m + contrast @ s01 @ contrast / n
    return v10.mean(axis=1), var


# 5 malignant, 6 benign; model A has ties within and across classes.
Y = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
A = np.array([0.9, 0.8, 0.8, 0.4, 0.3, 0.8, 0.5, 0.3, 0.2, 0.1, 0.1])
B = np.array([0.7, 0.9, 0.4, 0.6, 0.2, 0.5, 0.6, 0.1, 0.3, 0.2, 0.05])


def test_delong_matches_brute_force_on_a_hand_made_case():
    (auc_a, auc_b), var = brute_force_delong(Y, A, B)
    result = delong_test(Y, A, B)
    assert result["auc_a"] == pytest.approx(auc_a, abs=1e-12)
    assert result["auc_b"] == pytest.approx(auc_b, abs=1e-12)
    assert result["se"] ** 2 == pytest.approx(var, abs=1e-12)
    assert result["difference"] == pytest.approx(auc_a - auc_b, abs=1e-12)
    assert result["z"] == pytest.approx((auc_a - auc_b) / math.sqrt(var))
    assert (result["n"], result["n_positive"], result["note"]) == (11, 5, None)


def test_delong_matches_brute_force_on_random_tied_scores():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 40)
    a = np.round(0.3 * y + rng.random(40), 1)  # rounding makes many ties
    b = np.round(0.1 * y + rng.random(40), 1)
    (auc_a, auc_b), var = brute_force_delong(y, a, b)
    result = delong_test(y, a, b)
    assert result["se"] ** 2 == pytest.approx(var, abs=1e-12)
    assert (result["auc_a"], result["auc_b"]) == pytest.approx((auc_a, auc_b), abs=1e-12)


def test_aucs_equal_sklearn_with_ties():
    # ties across classes count 1/2, as in sklearn
    y = np.array([0, 1, 0, 1, 1, 0])
    a = np.array([0.5, 0.5, 0.2, 0.9, 0.2, 0.1])
    b = np.array([0.3, 0.3, 0.3, 0.3, 0.8, 0.3])
    for result in (delong_test(y, a, b), paired_bootstrap_auc(y, a, b, n_boot=50)):
        assert result["auc_a"] == pytest.approx(roc_auc_score(y, a))
        assert result["auc_b"] == pytest.approx(roc_auc_score(y, b))
    # by hand, positives .5 .9 .2 vs negatives .5 .2 .1: 2.5 + 3 + 1.5 pairs won of 9
    assert delong_test(y, a, b)["auc_a"] == pytest.approx(7 / 9)


def test_identical_predictions_give_p_one():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 50)
    s = rng.random(50)
    result = delong_test(y, s, s.copy())
    assert (result["difference"], result["se"], result["p_value"]) == (0.0, 0.0, 1.0)
    assert "zero variance" in result["note"]
    boot = paired_bootstrap_auc(y, s, s, n_boot=200)
    assert (boot["difference"], boot["ci95"], boot["p_value"]) == (0.0, (0.0, 0.0), 1.0)


def test_zero_variance_with_different_aucs_is_flagged():
    y = np.array([0, 0, 1, 1])
    perfect, reversed_ = np.array([0.1, 0.2, 0.8, 0.9]), np.array([0.9, 0.8, 0.2, 0.1])
    result = delong_test(y, perfect, reversed_)
    assert result["difference"] == 1.0 and result["p_value"] == 0.0
    assert "degenerate" in result["note"]


def simulate(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A strong model (AUC ~0.92) and a weak one (AUC ~0.64) on the same cases."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    shared = rng.normal(size=n)  # case difficulty seen by both models: correlated scores
    strong = 2.0 * y + shared + 0.5 * rng.normal(size=n)
    weak = 0.5 * y + shared + 0.5 * rng.normal(size=n)
    return y, strong, weak


def test_clearly_better_model_is_detected():
    y, strong, weak = simulate(300, seed=3)
    result = delong_test(y, strong, weak)
    assert result["difference"] > 0.15
    assert result["p_value"] < 0.01
    assert delong_test(y, weak, strong)["p_value"] == pytest.approx(result["p_value"])
    assert delong_test(y, weak, strong)["difference"] == pytest.approx(-result["difference"])
    boot = paired_bootstrap_auc(y, strong, weak, n_boot=1000)
    assert boot["p_value"] < 0.01
    assert 0 < boot["ci95"][0] < boot["difference"] < boot["ci95"][1]
    # the bootstrap standard error agrees with DeLong's
    assert (boot["ci95"][1] - boot["ci95"][0]) / (2 * 1.96) == pytest.approx(result["se"], rel=0.2)


def test_models_of_equal_skill_are_not_called_different():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 300)
    a = y + rng.normal(size=300)
    b = y + rng.normal(size=300)
    assert delong_test(y, a, b)["p_value"] > 0.05
    assert paired_bootstrap_auc(y, a, b, n_boot=500)["p_value"] > 0.05


def test_bootstrap_resamples_whole_groups():
    # 60 cases, each present as 5 identical copies: only 60 independent observations.
    y0, strong, weak = simulate(60, seed=5)
    y, a, b = (np.repeat(v, 5) for v in (y0, strong, weak))
    groups = np.repeat(np.arange(60), 5)
    naive = paired_bootstrap_auc(y, a, b, n_boot=500)
    grouped = paired_bootstrap_auc(y, a, b, groups=groups, n_boot=500)
    reference = paired_bootstrap_auc(y0, strong, weak, n_boot=500)
    width = {k: r["ci95"][1] - r["ci95"][0] for k, r in
             {"naive": naive, "grouped": grouped, "reference": reference}.items()}
    assert width["grouped"] > 1.8 * width["naive"]
    assert width["grouped"] == pytest.approx(width["reference"], rel=0.3)
    assert (grouped["unit"], grouped["n_units"], naive["unit"]) == ("group", 60, "image")


def test_bootstrap_is_deterministic_for_a_seed():
    y, a, b = simulate(80, seed=6)
    assert paired_bootstrap_auc(y, a, b, n_boot=300, seed=1) == paired_bootstrap_auc(y, a, b, n_boot=300, seed=1)
    assert paired_bootstrap_auc(y, a, b, n_boot=300, seed=1) != paired_bootstrap_auc(y, a, b, n_boot=300, seed=2)


@pytest.mark.parametrize(
    "y, a, b, match",
    [
        ([0, 1, 0, 1], [0.1, 0.2, 0.3], [0.1, 0.2, 0.3, 0.4], "score_a must have one score per label"),
        ([0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4], [0.1, np.nan, 0.3, 0.4], "score_b contains nan"),
        ([0, 1, 0, 0], [0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4], "at least two cases of each class"),
        ([0, 1, 2, 1], [0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4], "y_true has labels outside"),
    ],
)
def test_input_validation_names_the_argument(y, a, b, match):
    with pytest.raises(ValueError, match=match):
        delong_test(y, a, b)
    with pytest.raises(ValueError, match=match):
        paired_bootstrap_auc(y, a, b, n_boot=10)


def test_bootstrap_argument_checks():
    y, a, b = simulate(20, seed=0)
    with pytest.raises(ValueError, match="n_boot must be a positive integer"):
        paired_bootstrap_auc(y, a, b, n_boot=0)
    with pytest.raises(ValueError, match="groups must be 1-D"):
        paired_bootstrap_auc(y, a, b, groups=np.arange(5))


def test_describe_difference_follows_the_numbers():
    y, strong, weak = simulate(300, seed=3)
    better = describe_difference(paired_bootstrap_auc(y, strong, weak, n_boot=500), "strong", "weak")
    assert better.startswith("Strong ranks these test images better than weak") and "95% CI" in better
    worse = describe_difference(delong_test(y, weak, strong), "weak", "strong")
    assert worse.startswith("Strong ranks these test images better than weak") and "CI" not in worse
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 300)
    a, b = y + rng.normal(size=300), y + rng.normal(size=300)
    unsure = describe_difference(delong_test(y, a, b), "a", "b")
    assert unsure.startswith("These test images cannot tell a from b") and "does not make the two equal" in unsure
    assert describe_difference(delong_test(y, a, a), "a", "a copy").startswith("A and a copy rank these test images alike")
    with pytest.raises(ValueError, match="result lacks"):
        describe_difference({"auc_a": 0.5}, "a", "b")
    with pytest.raises(ValueError, match="alpha must be between 0 and 1"):
        describe_difference(delong_test(y, a, b), "a", "b", alpha=5)
