"""Tests for busutils.leakage: the paper's augment-then-split protocol against the honest one."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.svm import LinearSVC

from busutils.leakage import copies_in_both, honest_split, leakage_experiment, paper_protocol_split
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
