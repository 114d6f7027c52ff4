"""Tests for busutils.uncertainty: the plain bootstrap, DeLong's interval, Holm, power of an AUC comparison."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from busutils.paired_auc import delong_test
from busutils.evaluate import bootstrap_ci
from busutils.uncertainty import (
    auc_correlation,
    auc_difference_power,
    bootstrap_aucs,
    delong_interval,
    detectable_auc_difference,
    hanley_mcneil_se,
    holm,
    rank_auc,
    simulated_auc_power,
)


def scored(n: int = 150, seed: int = 0, separation: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    return y, (rng.random(n) + separation * y) / (1 + separation)


# -- the plain bootstrap -------------------------------------------------------------------


def test_rank_auc_equals_scikit_learn_with_ties():
    y, s = scored(80, seed=3)
    assert rank_auc(y, s) == pytest.approx(roc_auc_score(y, s))
    tied = np.round(s, 1)  # many ties: they count one half
    assert rank_auc(y, tied) == pytest.approx(roc_auc_score(y, tied))


@pytest.mark.parametrize("with_groups", [False, True])
def test_the_loop_gives_the_interval_the_chapters_report(with_groups):
    y, s = scored(150)
    groups = np.arange(150) // 3 if with_groups else None
    aucs = bootstrap_aucs(y, s, groups=groups, n_boot=500, seed=4)
    reported = bootstrap_ci(y, s, ("benign", "malignant"), n_boot=500, seed=4, groups=groups)["auc"]
    # the same random draws, resample by resample: the same percentile interval
    assert np.quantile(aucs, [0.025, 0.975]) == pytest.approx(reported)


def test_copies_resampled_as_one_group_widen_the_interval():
    y, s = scored(60, seed=1)
    y4, s4 = np.repeat(y, 4), np.repeat(s, 4)  # every image four times, as augmented copies would be
    as_images = bootstrap_aucs(y4, s4, n_boot=800, seed=0)
    as_groups = bootstrap_aucs(y4, s4, groups=np.repeat(np.arange(60), 4), n_boot=800, seed=0)
    width = lambda a: np.subtract(*np.quantile(a, [0.975, 0.025]))  # noqa: E731
    assert width(as_groups) > 1.6 * width(as_images)  # about twice (sqrt 4) as wide
    assert width(as_groups) == pytest.approx(width(bootstrap_aucs(y, s, n_boot=800, seed=0)), rel=0.25)


def test_resamples_without_both_classes_are_skipped():
    y = np.array([1, 0, 0, 0, 0, 0])
    s = np.linspace(0, 1, 6)
    aucs = bootstrap_aucs(y, s, n_boot=200, seed=0)
    assert 0 < len(aucs) < 200 and np.all((aucs >= 0) & (aucs <= 1))


def test_bootstrap_aucs_refuses_mismatched_scores():
    with pytest.raises(ValueError, match="one value per label"):
        bootstrap_aucs([0, 1, 1], [0.1, 0.2])


# -- DeLong ---------------------------------------------------------------------------------


def test_delong_variance_from_placements_counted_by_hand():
    y = np.array([1, 1, 1, 0, 0, 0, 0])
    s = np.array([0.9, 0.4, 0.7, 0.5, 0.1, 0.7, 0.2])
    pos, neg = s[y == 1], s[y == 0]
    wins = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10, v01 = wins.mean(axis=1), wins.mean(axis=0)
    found = delong_interval(y, s)
    assert found["auc"] == pytest.approx(roc_auc_score(y, s))
    assert found["se"] == pytest.approx(math.sqrt(v10.var(ddof=1) / 3 + v01.var(ddof=1) / 4))


def test_delong_standard_error_agrees_with_the_bootstrap_on_many_images():
    y, s = scored(600, seed=2)
    found = delong_interval(y, s)
    assert np.std(bootstrap_aucs(y, s, n_boot=1500, seed=1)) == pytest.approx(found["se"], rel=0.1)
    assert found["low"] < found["auc"] < found["high"]


def test_auc_correlation_is_one_for_one_model_and_small_for_unrelated_ones():
    y, s = scored(400, seed=5)
    assert auc_correlation(y, s, s) == pytest.approx(1.0)
    other = np.random.default_rng(9).random(400) + 0.5 * y
    assert abs(auc_correlation(y, s, other)) < 0.25
    assert 0.2 < auc_correlation(y, s, s + 0.3 * np.random.default_rng(1).random(400)) <= 1.0


# -- Holm -----------------------------------------------------------------------------------


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04: times 3, 2, 1 -> 0.03, 0.06, 0.04, which may not fall: 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5]) == pytest.approx([0.5])
    assert holm([0.4, 0.9]) == pytest.approx([0.8, 0.9])
    assert holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])  # never above 1


def test_holm_lies_between_the_raw_p_values_and_bonferroni():
    p = np.random.default_rng(0).random(7) ** 3
    adjusted = holm(p)
    assert np.all(adjusted >= p) and np.all(adjusted <= np.minimum(1, 7 * p) + 1e-12)
    assert np.all(np.diff(adjusted[np.argsort(p)]) >= 0)  # keeps the order of the p-values


@pytest.mark.parametrize("bad", [[], [0.2, 1.5], [np.nan]])
def test_holm_refuses_what_is_not_a_list_of_p_values(bad):
    with pytest.raises(ValueError, match="p_values"):
        holm(bad)


# -- power ----------------------------------------------------------------------------------


def test_hanley_mcneil_matches_the_spread_of_simulated_aucs():
    # Hanley & McNeil derived their formula for exponentially distributed scores; AUC = 1 / (1 + rate)
    rng = np.random.default_rng(0)
    auc, m, n = 0.85, 40, 60
    aucs = [roc_auc_score(np.r_[np.ones(m), np.zeros(n)],
                          np.r_[rng.exponential(auc / (1 - auc), m), rng.exponential(1.0, n)])
            for _ in range(3000)]
    assert np.std(aucs) == pytest.approx(hanley_mcneil_se(auc, m, n), rel=0.06)


def test_power_is_alpha_for_equal_aucs_and_grows_with_images_and_difference():
    assert auc_difference_power(0.9, 0.9, 50, 50, alpha=0.05) == pytest.approx(0.05)
    small = auc_difference_power(0.9, 0.95, 50, 50)
    assert auc_difference_power(0.9, 0.95, 500, 500) > small
    assert auc_difference_power(0.9, 0.97, 50, 50) > small
    assert auc_difference_power(0.9, 0.95, 50, 50, correlation=0.8) > small  # pairing helps


def test_power_formula_agrees_with_a_simulation_of_delong_tests():
    simulated = simulated_auc_power(0.85, 0.92, 60, 90, score_correlation=0.5, n_sim=400, seed=0)
    analytic = auc_difference_power(0.85, 0.92, 60, 90, correlation=simulated["auc_correlation"])
    assert simulated["power"] == pytest.approx(analytic, abs=0.1)
    null = simulated_auc_power(0.85, 0.85, 60, 90, n_sim=400, seed=1)
    assert null["power"] < 0.1  # about alpha when nothing differs


def test_detectable_difference_has_the_asked_power():
    d = detectable_auc_difference(0.9, 135, 165, correlation=0.5, power=0.8)
    assert 0 < d < 0.1
    assert auc_difference_power(0.9, 0.9 + d, 135, 165, correlation=0.5) == pytest.approx(0.8, abs=1e-6)
    assert detectable_auc_difference(0.9, 1350, 1650, correlation=0.5) < d
    assert math.isnan(detectable_auc_difference(0.95, 3, 3))  # no model can be shown better on six images
    # the first rise that reaches the power, even where the formula's power falls again near 1
    rises = np.linspace(0.0005, 0.0299, 300)
    powers = [auc_difference_power(0.97, 0.97 + d, 135, 165, correlation=0.8) for d in rises]
    first = rises[np.argmax(np.array(powers) >= 0.8)]
    assert detectable_auc_difference(0.97, 135, 165, correlation=0.8) == pytest.approx(first, abs=2e-4)


def test_power_arguments_are_checked():
    with pytest.raises(ValueError, match="auc"):
        hanley_mcneil_se(1.2, 10, 10)
    with pytest.raises(ValueError, match="positive whole"):
        hanley_mcneil_se(0.8, 0, 10)
    with pytest.raises(ValueError, match="correlation"):
        auc_difference_power(0.8, 0.9, 10, 10, correlation=1.0)



@pytest.mark.slow
def test_spread_over_seeds_changes_one_thing_at_a_time():
    from busutils.data import phantom_dataset
    from busutils.profiles import get_profile
    from busutils.uncertainty import spread_over_seeds

    settings = get_profile("quick", image_size=32, phantom_n=60, augment_copies=2, epochs=2, weights="none",
                           precision="float32", n_boot=100)
    data = phantom_dataset(60, image_size=32, seed=0)
    training = spread_over_seeds(data, settings, [0, 1], vary="training")
    split = spread_over_seeds(data, settings, [0, 1], vary="split")
    assert [row["seed"] for row in training] == [0, 1] and {row["vary"] for row in split} == {"split"}
    assert training[0]["auc"] == pytest.approx(split[0]["auc"])  # seed 0 is one and the same run
    assert training[0]["n_test"] == training[1]["n_test"]  # one test part for every training seed
    for row in training + split:
        assert row["low"] <= row["auc"] <= row["high"] and row["weights"].startswith("random")
    with pytest.raises(ValueError, match="vary"):
        spread_over_seeds(data, settings, [0], vary="folds")


@pytest.fixture
def fake_training(monkeypatch) -> list[int]:
    """``spread_over_seeds`` without training: each run it trains is recorded (its seed) and scores
    AUC 0.5 [0.4, 0.6]; returns the list of seeds trained."""
    import busutils.experiment as experiment

    trained = []
    run = SimpleNamespace(model=None, weights_used="random")
    monkeypatch.setattr(experiment, "train_model", lambda *a, seed, **k: trained.append(seed) or run)
    monkeypatch.setattr(experiment, "metrics_of_model", lambda model, part, **k: {
        "metrics": {"auc": 0.5}, "ci95": {"auc": (0.4, 0.6)}})
    return trained


def test_spread_over_seeds_trains_no_run_that_it_is_given(fake_training):
    """Seed 0 varying the split is seed 0 varying the training (the slow test above shows the two
    give one AUC): given the rows of the first call, the second trains only the runs it lacks."""
    from busutils.data import phantom_dataset
    from busutils.profiles import get_profile
    from busutils.uncertainty import spread_over_seeds

    trained = fake_training
    data = phantom_dataset(40, image_size=32, seed=0)
    settings = get_profile("quick", image_size=32, weights="none")
    earlier = [{"seed": 0, "vary": "training", "auc": 0.9, "low": 0.8, "high": 0.95, "n_test": 12,
                "weights": "random"}]
    rows = spread_over_seeds(data, settings, [0, 1, 2], vary="split", reuse=earlier)
    assert [(r["seed"], r["vary"]) for r in rows] == [(0, "split"), (1, "split"), (2, "split")]
    assert rows[0]["auc"] == 0.9 and rows[1]["auc"] == 0.5
    assert trained == [0, 0]  # splits 1 and 2, each trained with seed 0; split 0 not trained again


def test_spread_over_seeds_takes_a_saved_seed_zero_run_and_trains_again_on_a_mismatch(fake_training):
    """A chapter's saved run of split 0 trained with seed 0 stands for that run (chapter 05 reuses
    chapter 03's); a record of another seed, other settings or other images is not used."""
    from dataclasses import replace

    from busutils.data import phantom_dataset
    from busutils.experiment import seen_images, split_dataset
    from busutils.precision import choose_precision
    from busutils.profiles import as_dict, get_profile
    from busutils.uncertainty import spread_over_seeds

    trained = fake_training
    data = phantom_dataset(40, image_size=32, seed=0)
    settings = get_profile("quick", image_size=32, weights="none")
    split = split_dataset(data, test_size=settings.test_size, val_size=settings.val_size, seed=0)
    saved = {"model": "vgg16-transfer", "profile": as_dict(settings), "seed": 0,
             "data": {"task": split.train.task}, "seen": seen_images(split), "weights": "random (seed 0)",
             "training": {"used": {"precision": choose_precision(settings.precision)}},
             "test": {"metrics": {"auc": 0.9}, "ci95": {"auc": [0.8, 0.95]}}}

    rows = spread_over_seeds(data, settings, [0, 1], vary="training", saved=saved)
    assert trained == [1]  # seed 0 is the saved run
    assert rows[0] == {"seed": 0, "vary": "training", "auc": 0.9, "low": 0.8, "high": 0.95,
                       "n_test": len(split.test), "weights": "random (seed 0)"}
    assert rows[1]["auc"] == 0.5

    other_split = split_dataset(data, test_size=settings.test_size, val_size=settings.val_size, seed=1)
    for mismatch in ({"seed": 1}, {"profile": as_dict(replace(settings, l2=1e-3))},
                     {"seen": seen_images(other_split)}, {"model": "baseline"}):
        trained.clear()
        rows = spread_over_seeds(data, settings, [0, 1], vary="training", saved={**saved, **mismatch})
        assert trained == [0, 1] and rows[0]["auc"] == 0.5, mismatch  # trained, not taken from the record


def test_compare_pairs_adjusts_the_delong_p_values_of_every_pair():
    from busutils.uncertainty import compare_pairs

    y, s = scored(160, seed=11)
    rng = np.random.default_rng(0)
    scores = {"weak": s + rng.random(160), "good": s, "also good": s + 0.05 * rng.random(160)}
    table = compare_pairs(y, scores, n_boot=300, seed=0)
    assert list(table.index) == ["good − weak", "also good − weak", "also good − good"]
    row = table.loc["good − weak"]
    test = delong_test(y, scores["good"], scores["weak"])
    assert row["AUC difference"] == pytest.approx(test["difference"]) and row["p (DeLong)"] == test["p_value"]
    np.testing.assert_allclose(table["p (DeLong, Holm)"], holm(table["p (DeLong)"]))
    assert (table["CI low"] <= table["AUC difference"]).all() and (table["AUC difference"] <= table["CI high"]).all()
    with pytest.raises(ValueError, match="two or more"):
        compare_pairs(y, {"one": s})


def test_comparison_limits_say_what_one_capped_seed_cannot_show():
    from busutils.uncertainty import comparison_limits

    said = " ".join(comparison_limits(3, [0], {"baseline_epochs": 10}, profile_folds=5))
    assert "cannot show how much a result moves" in said and "baseline_epochs = 10" in said
    assert "67%" in said and "80%" in said and "not a finding" in said
    full = " ".join(comparison_limits(5, [0, 1, 2], {}, profile_folds=5))
    assert "cannot" not in full and "Nothing was cut short" in full


def test_summarise_spread_by_hand():
    from busutils.uncertainty import summarise_spread

    rows = [{"auc": 0.8, "low": 0.7, "high": 0.9}, {"auc": 0.9, "low": 0.85, "high": 0.95}]
    found = summarise_spread(rows)
    assert found["runs"] == 2 and found["mean AUC"] == pytest.approx(0.85)
    assert found["SD over seeds"] == pytest.approx(np.std([0.8, 0.9], ddof=1))
    assert found["mean half-width of one interval"] == pytest.approx(0.075)
    with pytest.raises(ValueError, match="two runs"):
        summarise_spread(rows[:1])
