"""Tests for busutils.leakage: the augment-then-split protocol against the honest one, and the 2x2 design."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.svm import LinearSVC

import pandas as pd

from busutils.augment import augmented_copies
from busutils.leakage import (
    AUGMENT,
    SPLIT,
    augmented_features,
    copies_in_both,
    design_effects,
    design_experiment,
    design_split,
    honest_split,
    leakage_experiment,
    leakage_gap,
    paper_protocol_split,
    plot_design,
    plot_leakage,
)
from busutils.splits import check_disjoint


def nothing_to_learn(n_images: int = 300, n_copies: int = 5, d: int = 8, seed: int = 0):
    """Random features and coin-flip labels.  Images come in near-duplicate pairs (one
    group, one label, almost the same features), and each image's augmented copies are
    near-identical to it.  No feature says anything about the label."""
    rng = np.random.default_rng(seed)
    groups = np.arange(n_images) // 2
    labels = rng.integers(0, 2, n_images // 2)[groups]
    lesion = rng.normal(size=(n_images // 2, d))[groups]
    images = lesion + 0.01 * rng.normal(size=(n_images, d))
    features = images[:, None, :] + 0.01 * rng.normal(size=(n_images, n_copies, d))
    return features, labels, groups


def test_paper_split_covers_the_grid_once():
    train, test = paper_protocol_split(10, 4, test_size=0.3, seed=0)
    assert len(test) == 12 and len(train) == 28
    assert np.array_equal(np.sort(np.r_[train, test]), np.arange(40))
    assert np.array_equal(train, np.sort(train))
    other, _ = paper_protocol_split(10, 4, test_size=0.3, seed=1)
    assert not np.array_equal(train, other)


def test_copies_in_both_by_hand():
    # 3 copies per image: items 0-2 are image 0, 3-5 image 1, 6-8 image 2
    assert copies_in_both(train=[0, 1, 4], test=[2, 5, 6, 7], n_copies=3) == 2  # items 2 and 5
    assert copies_in_both(train=[0, 1, 2], test=[3, 6], n_copies=3) == 0


def test_honest_split_keeps_images_and_groups_apart():
    features, labels, groups = nothing_to_learn(n_images=60, n_copies=4)
    for seed in range(3):
        train, test = honest_split(labels, groups, 4, seed=seed)
        assert copies_in_both(train, test, 4) == 0
        assert np.all(test % 4 == 0)  # originals only
        train_images = np.unique(train // 4)
        assert np.array_equal(np.sort(train), (train_images[:, None] * 4 + np.arange(4)).ravel())
        assert len(train_images) + len(test) == 60  # every image on exactly one side
        check_disjoint(groups, train_images, test // 4)  # raises if a group straddles


def test_paper_protocol_leaks_and_honest_does_not():
    features, labels, groups = nothing_to_learn()
    table = leakage_experiment(features, labels, groups, KNeighborsClassifier(n_neighbors=1))
    assert list(table.columns) == ["protocol", "seed", "auc", "accuracy", "n_train", "n_test", "leaked"]
    assert len(table) == 6 and set(table["seed"]) == {0, 1, 2}
    mean = table.groupby("protocol")[["auc", "accuracy"]].mean()
    # nearly every test copy has a sibling in training: 1-NN "recognises" it
    assert mean.loc["paper", "auc"] > 0.95 and mean.loc["paper", "accuracy"] > 0.95
    # coin flips cannot be predicted from unseen lesions
    assert mean.loc["honest", "auc"] == pytest.approx(0.5, abs=0.12)
    paper, honest = table[table.protocol == "paper"], table[table.protocol == "honest"]
    assert (paper["n_test"] == 450).all() and (paper["n_train"] == 1050).all()
    assert (paper["leaked"] > 0.97 * paper["n_test"]).all()  # 1 - 0.3**4 of them, on average
    assert (honest["leaked"] == 0).all()
    assert (honest["n_train"] == 5 * (300 - honest["n_test"])).all()
    # splitting images but not duplicate groups leaks through the near-identical pairs
    no_groups = leakage_experiment(features, labels, None, KNeighborsClassifier(n_neighbors=1))
    assert no_groups[no_groups.protocol == "honest"]["auc"].mean() > 0.7


def test_leakage_experiment_without_groups_and_with_decision_function():
    features, labels, _ = nothing_to_learn(n_images=80, n_copies=3)
    table = leakage_experiment(features, labels, None, LinearSVC(), seeds=(4,))
    assert list(table["protocol"]) == ["paper", "honest"]
    assert table["auc"].between(0, 1).all()
    # the estimator passed in is cloned, never fitted itself
    model = LogisticRegression()
    leakage_experiment(features, labels, None, model, seeds=(0,))
    assert not hasattr(model, "coef_")


class BlasThreadsAtFit(LogisticRegression):
    """A logistic regression that notes how many threads each BLAS library had when it was fitted."""

    seen: list[int] = []

    def fit(self, x, y):
        from threadpoolctl import threadpool_info

        BlasThreadsAtFit.seen.extend(pool["num_threads"] for pool in threadpool_info()
                                     if pool["user_api"] == "blas")
        return super().fit(x, y)


@pytest.mark.parametrize("experiment", [leakage_experiment, design_experiment])
def test_the_experiments_fit_on_one_blas_thread_and_give_the_threads_back(experiment):
    from threadpoolctl import threadpool_info, threadpool_limits

    features, labels, groups = nothing_to_learn(n_images=80, n_copies=3)
    BlasThreadsAtFit.seen = []
    with threadpool_limits(limits=2, user_api="blas"):
        experiment(features, labels, groups, BlasThreadsAtFit(), seeds=(0,))
        after = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
    assert BlasThreadsAtFit.seen and set(BlasThreadsAtFit.seen) == {1}
    assert set(after) == {2}


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda f, y, g: leakage_experiment(f[0], y, g, KNeighborsClassifier()), "features must have shape"),
        (lambda f, y, g: leakage_experiment(f, y[:-1], g, KNeighborsClassifier()), "labels has 39 entries"),
        (lambda f, y, g: leakage_experiment(f, y, g[:-1], KNeighborsClassifier()), "groups must have one entry"),
        (lambda f, y, g: leakage_experiment(f, y + 1, g, KNeighborsClassifier()), "y_true has labels outside"),
        (lambda f, y, g: paper_protocol_split(10, 0), "n_copies must be a positive integer"),
        (lambda f, y, g: paper_protocol_split(10, 2, test_size=30), "test_size must be between 0 and 1"),
        (lambda f, y, g: honest_split(y, g, 2, test_size=1.0), "test_size must be between 0 and 1"),
    ],
)
def test_errors_name_the_argument(call, match):
    features, labels, groups = nothing_to_learn(n_images=40, n_copies=2)
    with pytest.raises(ValueError, match=match):
        call(features, labels, groups)


def test_classifier_must_be_an_estimator():
    features, labels, groups = nothing_to_learn(n_images=40, n_copies=2)
    with pytest.raises(TypeError, match="classifier must be a scikit-learn-style estimator"):
        leakage_experiment(features, labels, groups, "knn")


def pixel_stats(images: np.ndarray) -> np.ndarray:
    """A cheap stand-in for a CNN: mean, standard deviation and top-left pixel of each image."""
    flat = images.reshape(len(images), -1).astype(np.float64)
    return np.column_stack([flat.mean(axis=1), flat.std(axis=1), flat[:, 0]])


def test_augmented_features_puts_each_copy_in_its_place():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 32, 32), dtype=np.uint8)
    images[:, :16] //= 4  # a darker top half: rotations and flips move it
    features = augmented_features(images, 3, pixel_stats, kind="paper", seed=5)
    assert features.shape == (3, 3, 3)
    np.testing.assert_allclose(features[:, 0], pixel_stats(images))  # copy 0 is the original
    copies = augmented_copies(images, 3, "paper", seed=5)
    for i in range(3):
        np.testing.assert_allclose(features[i], pixel_stats(copies[i]))
    assert not np.allclose(features[:, 1], features[:, 0])  # the copies are augmented
    plain = augmented_features(images, 2, pixel_stats, kind="none")
    np.testing.assert_allclose(plain[:, 1], plain[:, 0])
    with pytest.raises(ValueError, match=r"extract must return one feature vector per image, shape \(6, d\)"):
        augmented_features(images, 2, lambda x: x.mean(axis=(1, 2)), kind="none")


def test_leakage_gap_by_hand():
    rows = []
    for name, paper, honest in (("1-NN", (0.9, 0.8), (0.6, 0.7)), ("linear", (0.8, 0.8), (0.8, 0.7))):
        for seed in (0, 1):
            rows.append({"classifier": name, "protocol": "paper", "seed": seed, "auc": paper[seed],
                         "leaked": 90 + 5 * seed, "n_test": 100})
            rows.append({"classifier": name, "protocol": "honest", "seed": seed, "auc": honest[seed],
                         "leaked": 0, "n_test": 30})
    gap = leakage_gap(pd.DataFrame(rows))
    assert list(gap.index) == ["1-NN", "linear"]
    assert gap.loc["1-NN", "paper_mean"] == pytest.approx(0.85)
    assert gap.loc["1-NN", "honest_sd"] == pytest.approx(np.std([0.6, 0.7], ddof=1))
    assert gap.loc["1-NN", ["gap_mean", "gap_min", "gap_max"]].tolist() == pytest.approx([0.2, 0.1, 0.3])
    assert gap.loc["linear", ["gap_mean", "gap_min", "gap_max"]].tolist() == pytest.approx([0.05, 0.0, 0.1])
    assert gap.loc["linear", "leaked_share"] == pytest.approx(0.925) and gap.loc["linear", "seeds"] == 2
    one = leakage_gap(pd.DataFrame(rows[:2]).drop(columns="classifier"))  # one seed, no column
    assert list(one.index) == ["all"] and np.isnan(one.loc["all", "paper_sd"])
    assert one.loc["all", "gap_mean"] == pytest.approx(0.3)
    with pytest.raises(ValueError, match=r"runs lacks column\(s\) \['leaked'\]"):
        leakage_gap(pd.DataFrame(rows).drop(columns="leaked"))
    with pytest.raises(ValueError, match="every seed needs one 'paper' and one 'honest' run"):
        leakage_gap(pd.DataFrame(rows[:3]))


def test_plot_leakage_shows_every_seed_and_both_means():
    import matplotlib
    from matplotlib.collections import PathCollection

    matplotlib.use("Agg")
    features, labels, groups = nothing_to_learn(n_images=60, n_copies=3)
    runs = pd.concat([
        leakage_experiment(features, labels, groups, KNeighborsClassifier(1), seeds=(0, 1)).assign(classifier="1-NN"),
        leakage_experiment(features, labels, groups, LogisticRegression(), seeds=(0, 1)).assign(classifier="LR"),
    ])
    ax = plot_leakage(runs)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1-NN", "LR"]
    dots = np.concatenate([c.get_offsets()[:, 1] for c in ax.collections if isinstance(c, PathCollection)])
    assert sorted(dots) == pytest.approx(sorted(runs["auc"]))  # one dot per run
    assert ax.get_ylabel() == "AUC on the test part" and ax.get_title()
    assert len(ax.get_legend().get_texts()) == 2
    with pytest.raises(ValueError, match="runs needs the columns 'model'"):
        plot_leakage(runs, by="model")


def test_the_honest_cell_of_the_design_is_the_honest_split():
    _, labels, groups = nothing_to_learn(n_images=60, n_copies=4)
    for seed in range(2):
        assert all(np.array_equal(a, b) for a, b in zip(
            design_split(labels, groups, 4, augment="after", split="by group", seed=seed),
            honest_split(labels, groups, 4, seed=seed)))


@pytest.mark.parametrize("augment", AUGMENT)
@pytest.mark.parametrize("split", SPLIT)
def test_each_cell_of_the_design_tests_originals_and_leaks_only_what_it_should(augment, split):
    _, labels, groups = nothing_to_learn(n_images=300, n_copies=5)
    train, test = design_split(labels, groups, 5, augment=augment, split=split, seed=3)
    assert np.all(test % 5 == 0) and len(np.intersect1d(train, test)) == 0  # originals, never trained on
    test_images, train_originals = test // 5, train[train % 5 == 0] // 5
    assert len(test_images) + len(train_originals) == 300  # every original on one side
    siblings = np.isin(train // 5, test_images)  # augmented copies of test images in training
    if augment == "after":
        assert not siblings.any() and len(train) == 5 * len(train_originals)
    else:  # each copy is dealt as a random 70/30 cut of all copies would deal it
        assert siblings.sum() / (4 * len(test_images)) == pytest.approx(0.7, abs=0.06)
    crossing = np.isin(groups[test_images], groups[train_originals]).sum()
    if split == "by group":
        assert crossing == 0
    else:
        assert crossing > 10  # pairs of near-duplicates split by a random cut of the images
    assert np.bincount(labels[test_images]).tolist() == pytest.approx(np.bincount(labels).tolist() * np.array(0.3), abs=2)


def test_the_design_separates_the_two_leaks():
    features, labels, groups = nothing_to_learn()
    runs = design_experiment(features, labels, groups, KNeighborsClassifier(n_neighbors=1))
    assert len(runs) == 12 and list(runs.columns[:3]) == ["augment", "split", "seed"]
    mean = runs.groupby(["augment", "split"])["auc"].mean()
    assert mean["after", "by group"] == pytest.approx(0.5, abs=0.12)  # coin flips: nothing to learn
    assert mean["after", "by image"] > 0.7  # the near-duplicate of a test image answers for it
    assert mean["before", "by group"] > 0.9 and mean["before", "by image"] > 0.9  # its own copies do
    leaks = runs.groupby(["augment", "split"])[["copies_leaked", "duplicates_leaked"]].sum()
    assert leaks.loc[("after", "by group")].tolist() == [0, 0]
    assert leaks.loc[("after", "by image"), "copies_leaked"] == 0 < leaks.loc[("after", "by image"), "duplicates_leaked"]
    assert leaks.loc[("before", "by group"), "duplicates_leaked"] == 0 < leaks.loc[("before", "by group"), "copies_leaked"]
    effects = design_effects(runs.assign(classifier="1-NN")).loc["1-NN"]
    assert effects["augment_before_mean"] > 0.2 and effects["split_by_image_mean"] > 0.1
    assert effects["interaction_mean"] < 0  # once its own copies leak, a near-duplicate adds little
    assert effects["seeds"] == 3 and effects["augment_before_min"] <= effects["augment_before_mean"]


def test_design_effects_by_hand():
    cells = {("after", "by group"): 0.6, ("after", "by image"): 0.7,
             ("before", "by group"): 0.9, ("before", "by image"): 0.95}
    rows = [{"augment": a, "split": s, "seed": seed, "auc": value + 0.01 * seed}
            for seed in (0, 1) for (a, s), value in cells.items()]
    effects = design_effects(pd.DataFrame(rows)).loc["all"]
    assert effects["after/by group"] == pytest.approx(0.605)
    assert effects["augment_before_mean"] == pytest.approx(((0.9 - 0.6) + (0.95 - 0.7)) / 2)
    assert effects["split_by_image_mean"] == pytest.approx(((0.7 - 0.6) + (0.95 - 0.9)) / 2)
    assert effects["interaction_mean"] == pytest.approx((0.95 - 0.9) - (0.7 - 0.6))
    with pytest.raises(ValueError, match="every seed needs a run in each of the four cells"):
        design_effects(pd.DataFrame(rows[:3]))
    with pytest.raises(ValueError, match=r"runs lacks column\(s\) \['split'\]"):
        design_effects(pd.DataFrame(rows).drop(columns="split"))


def test_design_split_names_a_wrong_level():
    _, labels, groups = nothing_to_learn(n_images=40, n_copies=2)
    with pytest.raises(ValueError, match="augment must be one of"):
        design_split(labels, groups, 2, augment="during", split="by group")
    with pytest.raises(ValueError, match="split must be one of"):
        design_split(labels, groups, 2, augment="after", split="by patient")


def test_plot_design_shows_every_run():
    import matplotlib
    from matplotlib.collections import PathCollection

    matplotlib.use("Agg")
    features, labels, groups = nothing_to_learn(n_images=60, n_copies=3)
    runs = design_experiment(features, labels, groups, KNeighborsClassifier(1), seeds=(0, 1)).assign(classifier="1-NN")
    ax = plot_design(runs)
    dots = np.concatenate([c.get_offsets()[:, 1] for c in ax.collections if isinstance(c, PathCollection)])
    assert sorted(dots) == pytest.approx(sorted(runs["auc"]))
    assert len(ax.get_legend().get_texts()) == 4 and ax.get_title()
