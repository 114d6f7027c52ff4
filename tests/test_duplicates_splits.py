"""Planted near-duplicates are found, reported, and never split."""

from __future__ import annotations

import numpy as np
import pytest

from busutils.data import load_folder
from busutils.duplicates import duplicate_groups, duplicate_report, hamming_distances, perceptual_hashes
from busutils.phantom import make_phantom
from busutils.splits import assign_folds, check_disjoint, group_kfold, group_train_test_split


@pytest.fixture(scope="module")
def planted():
    """60 phantom images plus near-copies of a few of them (noise, brightness), one under the other label."""
    images, names, _ = make_phantom(60, size=96, seed=3)
    labels = (names == "malignant").astype(int)
    rng = np.random.default_rng(0)
    copies, copy_labels, sources = [], [], []
    for k, source in enumerate([0, 5, 9, 14, 20, 33]):
        noisy = np.clip(images[source].astype(float) * 1.05 + rng.normal(0, 3, images[source].shape), 0, 255)
        copies.append(noisy.astype(np.uint8))
        copy_labels.append(1 - labels[source] if k == 0 else labels[source])  # first copy under the other label
        sources.append(source)
    all_images = np.concatenate([images, np.stack(copies)])
    all_labels = np.concatenate([labels, copy_labels])
    return all_images, all_labels, sources


def test_hashes_are_64_bit_and_distance_symmetric(planted):
    images, _, _ = planted
    hashes = perceptual_hashes(images[:10])
    assert hashes.dtype == np.uint64
    distances = hamming_distances(hashes)
    assert (np.diag(distances) == 0).all() and (distances == distances.T).all() and distances.max() <= 64


def test_planted_duplicates_are_found_and_distinct_images_are_not(planted):
    images, labels, sources = planted
    groups = duplicate_groups(images)
    for k, source in enumerate(sources):
        assert groups[60 + k] == groups[source]
    report = duplicate_report(labels, groups)
    assert any({sources[0], 60} <= set(g) for g in report.cross_label)
    # Distinct phantom images are (nearly) never mistaken for copies of each other.
    originals_grouped = {i for g in report.groups for i in g if i < 60 and len([j for j in g if j < 60]) > 1}
    assert len(originals_grouped) <= 4


def test_splits_keep_every_group_on_one_side(planted):
    images, labels, _ = planted
    groups = duplicate_groups(images)
    train, test = group_train_test_split(labels, groups, test_size=0.3, seed=1)
    assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == len(labels)
    check_disjoint(groups, train, test)
    for train, test in group_kfold(labels, groups, n_splits=5, seed=2):
        check_disjoint(groups, train, test)
    folds = assign_folds(labels, groups, n_splits=4, seed=0)
    assert set(folds) == {0, 1, 2, 3}
    for g in np.unique(groups):
        assert len(set(folds[groups == g])) == 1


def test_splits_are_stratified_and_deterministic():
    labels = np.array([0] * 70 + [1] * 30)
    train, test = group_train_test_split(labels, test_size=0.3, seed=0)
    assert abs(labels[test].mean() - 0.3) < 0.05
    again, _ = group_train_test_split(labels, test_size=0.3, seed=0)
    np.testing.assert_array_equal(train, again)
    other, _ = group_train_test_split(labels, test_size=0.3, seed=1)
    assert not np.array_equal(train, other)


def test_check_disjoint_detects_a_leak():
    groups = np.array([0, 0, 1, 2])
    with pytest.raises(ValueError, match="both sides"):
        check_disjoint(groups, [0, 2], [1, 3])


def test_split_arguments_are_validated():
    with pytest.raises(ValueError, match="test_size"):
        group_train_test_split(np.zeros(10), test_size=1.5)
    with pytest.raises(ValueError, match="n_splits"):
        group_kfold(np.zeros(10), n_splits=1)
    with pytest.raises(ValueError, match="groups"):
        group_kfold(np.zeros(10), np.zeros(9))


def test_real_busi_cross_label_duplicates(busi_dir):
    data = load_folder(busi_dir, task="three-class", image_size=128)
    report = duplicate_report(data.labels, data.groups)
    cross = [{data.ids[i] for i in g} for g in report.cross_label]
    assert len(cross) >= 3
    assert any({"benign/benign (433).png", "malignant/malignant (145).png"} <= g for g in cross)
    train, test = group_train_test_split(data.labels, data.groups, seed=0)
    check_disjoint(data.groups, train, test)


def test_count_leaks_sees_what_a_random_split_leaks(planted):
    from sklearn.model_selection import train_test_split

    from busutils.splits import count_leaks

    images, labels, sources = planted
    groups = duplicate_groups(images)
    index = np.arange(len(labels))
    assert count_leaks(groups, [0, 1, 2], [60]) == 1  # image 60 is a copy of image 0
    train, test = group_train_test_split(labels, groups, seed=0)
    assert count_leaks(groups, train, test) == 0
    leaks = [count_leaks(groups, *train_test_split(index, test_size=0.3, random_state=s)) for s in range(20)]
    assert max(leaks) > 0


def test_random_split_leaks_counts_each_repeat(planted):
    from busutils.splits import random_split_leaks

    images, labels, _ = planted
    groups = duplicate_groups(images)
    leaks = random_split_leaks(labels, groups, repeats=7, seed=1)
    assert leaks.shape == (7,) and leaks.max() > 0
    np.testing.assert_array_equal(leaks, random_split_leaks(labels, groups, repeats=7, seed=1))
    assert random_split_leaks(labels, np.arange(len(labels)), repeats=3).sum() == 0  # no duplicates, no leaks
