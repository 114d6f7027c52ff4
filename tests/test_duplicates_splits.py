"""Planted near-duplicates are found, reported, and never split; planted look-alikes stay out of a
new-images test part."""

from __future__ import annotations

import numpy as np
import pytest
import sklearn

from busutils.data import load_folder
from scipy.sparse.csgraph import connected_components

from busutils.data import phantom_dataset
from busutils.duplicates import (
    MAX_DISTANCE,
    bootstrap_groups,
    distance_gap,
    duplicate_groups,
    duplicate_report,
    groups_from_hashes,
    hamming_distances,
    perceptual_hashes,
    pixel_correlations,
)
from busutils.phantom import make_phantom
from busutils.splits import (
    assign_folds,
    check_disjoint,
    check_fold_count,
    count_hash_leaks,
    group_kfold,
    group_train_test_split,
    new_images_split,
)

# The largest bootstrap unit we accept on data without copies.  BUSI's true near-copy groups
# (frames of one lesion) hold at most 5 images; a unit of unrelated images more than twice that
# size means chaining (connected components of 72 images on the phantom at 224 px).
MAX_LOOKALIKE_GROUP = 10


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


def test_group_folds_are_stratified_on_every_scikit_learn_release():
    """Groups of one to three same-class images: each fold holds its share of each class.

    scikit-learn before 1.8 dealt StratifiedGroupKFold's shuffled groups at random (malignant
    shares of 0.07 to 0.73 in these folds); the Colab stand-in test runs this on Colab's release."""
    sizes = np.random.default_rng(1).integers(1, 4, 150)
    groups = np.repeat(np.arange(150), sizes)
    labels = np.repeat((np.arange(150) % 5 < 2).astype(int), sizes)  # 40% malignant
    firsts = set()
    for seed in range(5):
        folds = group_kfold(labels, groups, n_splits=10, seed=seed)
        shares = [labels[test].mean() for _, test in folds]
        assert np.max(np.abs(np.array(shares) - labels.mean())) < 0.05, shares
        firsts.add(tuple(folds[0][1]))
    assert len(firsts) == 5  # the seed still decides which groups share a fold


@pytest.mark.skipif(tuple(int(p) for p in sklearn.__version__.split(".")[:2]) < (1, 8),
                    reason="scikit-learn's own shuffle stratifies from 1.8 on")
def test_group_folds_are_scikit_learns_shuffled_folds():
    from sklearn.model_selection import StratifiedGroupKFold

    rng = np.random.default_rng(0)
    labels, groups = rng.integers(0, 2, 200), rng.integers(0, 70, 200)
    ours = group_kfold(labels, groups, n_splits=5, seed=3)
    theirs = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=3).split(np.zeros(200), labels, groups)
    for (train, test), (their_train, their_test) in zip(ours, theirs):
        np.testing.assert_array_equal(test, np.sort(their_test))


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


def lookalike_hashes(n: int, dim: int = 12, seed: int = 0) -> np.ndarray:
    """Hashes of ``n`` unrelated images drawn from a ``dim``-dimensional family of look-alikes.

    Each image is a random point in the family; its hash sets the 32 of 64 random projections
    above their median, as a perceptual hash does.  Nearby points get similar hashes, so close
    pairs are common, but no image is a copy of another.
    """
    rng = np.random.default_rng(seed)
    projections = rng.normal(size=(n, dim)) @ rng.normal(size=(dim, 64))
    bits = projections > np.median(projections, axis=1, keepdims=True)
    return np.packbits(bits, axis=1).view(">u8").ravel().astype(np.uint64)


def test_lookalikes_chain_into_groups_that_the_bootstrap_cuts_into_small_units():
    hashes = lookalike_hashes(1300)
    distances = hamming_distances(hashes)
    groups = groups_from_hashes(hashes)
    assert np.bincount(groups).max() > 100  # joining every close pair chains hundreds of images ...
    i, j = np.nonzero(np.triu(distances <= MAX_DISTANCE, k=1))
    assert np.array_equal(groups[i], groups[j])  # ... so that no close pair is ever split
    units = bootstrap_groups(hashes)
    assert np.bincount(units).max() <= MAX_LOOKALIKE_GROUP  # the bootstrap resamples small pieces
    for g in np.flatnonzero(np.bincount(units) > 1):
        members = np.flatnonzero(units == g)
        assert distances[np.ix_(members, members)].max() <= 2 * MAX_DISTANCE
        assert len(set(groups[members])) == 1  # each piece inside one duplicate group
    assert not distance_gap(hashes)["has_gap"]


@pytest.mark.slow
def test_phantom_lookalikes_are_cut_into_small_bootstrap_units():
    dataset = phantom_dataset(1300, image_size=224)
    assert np.bincount(bootstrap_groups(dataset.hashes)).max() <= MAX_LOOKALIKE_GROUP
    assert not distance_gap(dataset.hashes)["has_gap"]


def chain_dataset(n_chains: int = 3, length: int = 6, n_other: int = 60, seed: int = 0):
    """Unrelated images plus chains of images whose hashes are 8 bits apart link by link.

    Each link flips 8 bits no earlier link flipped, so images two links apart are 16 bits apart,
    beyond the 10-bit threshold: only neighbours in a chain are near-duplicates, and a chain
    spans far more than twice the threshold.
    """
    from busutils.data import Dataset

    rng = np.random.default_rng(seed)
    bits = []
    for _ in range(n_chains):
        start = rng.random(64) < 0.5
        for link in range(length):
            flipped = start.copy()
            flipped[:8 * link] ^= True
            bits.append(flipped)
    bits += list(rng.random((n_other, 64)) < 0.5)
    hashes = np.packbits(np.array(bits), axis=1).view(">u8").ravel().astype(np.uint64)
    n = len(hashes)
    labels = rng.permutation(np.arange(n) % 3 == 0).astype(np.int64)
    return Dataset(images=np.zeros((n, 8, 8), np.uint8), labels=labels, class_names=("benign", "malignant"),
                   ids=[f"image {i}" for i in range(n)], source="chains", layout="test", task="benign-malignant",
                   hash_values=hashes)


def test_every_pair_within_the_threshold_stays_on_one_side_of_every_split():
    from busutils.experiment import split_dataset

    data = chain_dataset()
    distances = hamming_distances(data.hashes)
    i, j = np.nonzero(np.triu(distances <= MAX_DISTANCE, k=1))
    links = {(a, b) for a, b in zip(i.tolist(), j.tolist())}
    assert links == {(c * 6 + k, c * 6 + k + 1) for c in range(3) for k in range(5)}  # the chains' links only
    assert set(distances[i, j].tolist()) == {8}
    # The cut pieces would split the chains: a split by them could put a link across ...
    units = bootstrap_groups(data.hashes)
    assert any(units[a] != units[b] for a, b in links)

    def one_side(*parts):
        """Every link's two images in the same part of a split (the parts cover every image)."""
        side = np.full(len(data), -1)
        for k, part in enumerate(parts):
            side[part] = k
        assert (side >= 0).all()
        return all(side[a] == side[b] for a, b in links)

    # ... the duplicate groups, which every split keeps whole, never do.
    for seed in range(5):
        train, test = group_train_test_split(data.labels, data.groups, test_size=0.3, seed=seed)
        assert one_side(train, test) and count_hash_leaks(data.hashes, train, test) == 0
        for train, test in group_kfold(data.labels, data.groups, n_splits=4, seed=seed):
            assert one_side(train, test) and count_hash_leaks(data.hashes, train, test) == 0
        split = split_dataset(data, seed=seed)
        assert one_side(split.index["train"], split.index["val"], split.index["test"])
        assert split.test_leaks == 0
    folds = assign_folds(data.labels, data.groups, n_splits=5, seed=0)
    assert all(folds[a] == folds[b] for a, b in links)


def test_chains_of_copies_stay_together():
    """A sweep of frames: each a slightly moved, brightened, re-speckled copy of the one before."""
    images, _, _ = make_phantom(80, size=96, seed=3)
    rng = np.random.default_rng(0)
    frames, chains = [], []
    for source in [0, 7, 21, 40]:
        frame, chain = images[source].astype(float), [source]
        for _ in range(4):
            frame = np.roll(frame, 1, axis=1) * 1.02 + rng.normal(0, 3, frame.shape)
            frames.append(np.clip(frame, 0, 255).astype(np.uint8))
            chain.append(len(images) + len(frames) - 1)
        chains.append(chain)
    hashes = perceptual_hashes(np.concatenate([images, np.stack(frames)]))
    distances = hamming_distances(hashes)
    ends = [distances[chain[0], chain[-1]] for chain in chains]
    assert max(ends) > MAX_DISTANCE  # the first and last frames are no longer near-duplicates ...
    groups = groups_from_hashes(hashes)
    for chain in chains:
        assert len(set(groups[chain])) == 1  # ... but the sweep is one group
    assert np.bincount(groups).max() == 5  # and nothing else joined it


def test_distance_gap_between_copies_and_unrelated_images():
    rng = np.random.default_rng(1)
    # 300 unrelated hashes with 32 of 64 bits set: pairs differ in 32 +- 6 bits
    bits = np.argsort(rng.random((300, 64)), axis=1) < 32
    # and 40 copies, each with one or two set bits moved (2 or 4 bits apart from its original)
    copies = bits[:40].copy()
    for k, row in enumerate(copies):
        ones, zeros = rng.choice(np.flatnonzero(row), 2, replace=False), rng.choice(np.flatnonzero(~row), 2, replace=False)
        moved = 1 + k % 2
        row[ones[:moved]], row[zeros[:moved]] = False, True
    hashes = np.packbits(np.concatenate([bits, copies]), axis=1).view(">u8").ravel().astype(np.uint64)
    gap = distance_gap(hashes)
    assert gap["histogram"][2] == 20 and gap["histogram"][4] == 20 and sum(gap["histogram"]) == 340 * 339 // 2
    assert gap["has_gap"] and gap["gap"][0] == 6 and gap["gap"][1] >= 15
    assert gap["threshold_in_gap"] and gap["below_bulk"]
    assert not distance_gap(hashes, max_distance=4)["threshold_in_gap"]  # 4 bits is inside the copies' peak
    assert not distance_gap(hashes, max_distance=30)["below_bulk"]  # 30 bits reaches into the bulk
    assert not distance_gap(hashes[:300])["has_gap"]  # unrelated images only: nothing to separate


def test_real_busi_groups_and_gap(busi_dir):
    data = load_folder(busi_dir, task="three-class", image_size=128)
    report = duplicate_report(data.labels, data.groups)
    assert (len(report.groups), report.n_duplicated_images, len(report.cross_label)) == (114, 252, 5)
    assert max(len(g) for g in report.groups) == 5
    gap = distance_gap(data.hashes)
    assert gap["has_gap"] and gap["threshold_in_gap"] and gap["gap"] == [6, 13]
    for train, test in group_kfold(data.labels, data.groups, n_splits=5, seed=0):
        assert count_hash_leaks(data.hashes, train, test) == 0  # no test image has a near-copy in training


def test_count_hash_leaks_checks_every_pair():
    hashes = np.array([0b0, 0b111, 0b1111_1111_1111, 2**64 - 1], dtype=np.uint64)  # 0, 3, 12, 64 bits set
    assert count_hash_leaks(hashes, [0], [1, 2, 3]) == 1  # only image 1 is within 10 bits of image 0
    assert count_hash_leaks(hashes, [0], [1, 2, 3], max_distance=12) == 2
    assert count_hash_leaks(hashes, [0, 1, 2], [3]) == 0


def test_leaked_pairs_names_each_leaked_test_image_and_a_training_copy():
    from busutils.splits import count_leaks, leaked_pairs

    groups = np.array([0, 0, 1, 2, 2, 3, 2])
    train, test = [0, 3, 6], [1, 2, 4, 5]
    assert leaked_pairs(groups, train, test) == [(1, 0), (4, 3)]  # 4's first training copy is 3
    assert len(leaked_pairs(groups, train, test)) == count_leaks(groups, train, test)
    assert leaked_pairs(groups, [0, 2], [3, 5]) == []


@pytest.fixture(scope="module")
def lookalikes():
    """150 phantom images plus 15 planted look-alikes: an image moved 3 pixels sideways, brighter and
    re-speckled, under the same label.  Alike as a whole picture, yet often more than 10 hash bits
    from its original: a near-duplicate check alone lets such pairs straddle a split."""
    images, names, _ = make_phantom(150, size=64, seed=5)
    labels = (names == "malignant").astype(np.int64)
    rng = np.random.default_rng(0)
    sources = list(range(0, 150, 10))
    copies = [np.clip(np.roll(images[s].astype(float), 3, axis=1) * 1.1 + rng.normal(0, 8, images[s].shape), 0, 255)
              for s in sources]
    pairs = [(source, 150 + k) for k, source in enumerate(sources)]
    return (np.concatenate([images, np.stack(copies).astype(np.uint8)]),
            np.concatenate([labels, labels[sources]]), pairs)


def test_new_images_split_puts_no_planted_lookalike_of_a_training_image_into_its_test_part(lookalikes):
    images, labels, pairs = lookalikes
    hashes = perceptual_hashes(images)
    distances = hamming_distances(hashes)
    assert any(distances[a, b] > MAX_DISTANCE for a, b in pairs)  # beyond the near-duplicate threshold
    straddled = 0
    for seed in range(5):  # so a group-aware split puts some of them on both sides
        _, test = group_train_test_split(labels, groups_from_hashes(hashes), seed=seed)
        straddled += sum((a in test) != (b in test) for a, b in pairs)
    assert straddled > 0
    correlations = pixel_correlations(images)
    in_test = 0
    for seed in range(3):
        rest, test, record = new_images_split(images, labels, hashes, test_size=0.3, seed=seed)
        assert all(correlations[a, b] >= record["threshold"] for a, b in pairs)  # every planted pair is alike
        assert all((a in test) == (b in test) for a, b in pairs)  # and never straddles the split
        in_test += sum(a in test for a, _ in pairs)
        assert len(np.intersect1d(rest, test)) == 0 and len(rest) + len(test) == len(labels)
        assert correlations[np.ix_(test, rest)].max() == pytest.approx(record["max_correlation"])
        assert record["max_correlation"] < record["threshold"] <= record["ceiling"]
        assert record["min_hash_distance"] > MAX_DISTANCE == record["max_distance"]
        quota = np.round(0.3 * np.bincount(labels))
        assert np.all(np.abs(np.bincount(labels[test]) - quota) <= np.maximum(1, 0.02 * quota))  # stratified
        again = new_images_split(images, labels, hashes, test_size=0.3, seed=seed)
        np.testing.assert_array_equal(again[1], test)  # deterministic by seed
        assert again[2] == record
    assert in_test > 0  # look-alike pairs did fall into test parts: together


def test_new_images_split_refuses_data_that_cannot_give_such_a_part(lookalikes):
    images, labels, _ = lookalikes
    rng = np.random.default_rng(1)
    copies = np.clip(images[0].astype(float) + rng.normal(0, 2, (20, *images[0].shape)), 0, 255).astype(np.uint8)
    with pytest.raises(ValueError, match="no new-images part.*group-aware split"):
        new_images_split(copies, np.arange(20) % 2)  # every image a copy of every other
    with pytest.raises(ValueError, match="no new-images part"):
        new_images_split(images, labels, max_similarity=0.0)  # every image alike another at 0
    with pytest.raises(ValueError, match="two images of each"):
        new_images_split(images[:5], np.array([0, 0, 0, 0, 1]))
    with pytest.raises(ValueError, match="test_size"):
        new_images_split(images, labels, test_size=1.0)
    with pytest.raises(ValueError, match="one label per image"):
        new_images_split(images, labels[:-1])


def test_split_dataset_builds_new_images_test_and_validation_parts(lookalikes):
    from busutils.data import Dataset
    from busutils.experiment import data_summary, split_dataset

    images, labels, pairs = lookalikes
    data = Dataset(images=images, labels=labels, class_names=("benign", "malignant"),
                   ids=[f"image {i}" for i in range(len(labels))], source="planted", layout="test",
                   task="benign-malignant")
    split = split_dataset(data, test_size=0.3, val_size=0.2, seed=0, test_part="new-images")
    side = np.full(len(labels), "")
    for part, index in split.index.items():
        side[index] = part
    assert (side != "").all()
    assert all(side[a] == side[b] for a, b in pairs)  # no planted look-alike across any two parts
    assert split.test_leaks == 0 and split.test_part.startswith("new images")
    correlations = pixel_correlations(images)
    for part, rest in (("test", np.concatenate([split.index["train"], split.index["val"]])),
                       ("val", split.index["train"])):
        assert correlations[np.ix_(split.index[part], rest)].max() < split.new_images[part]["threshold"]
    assert abs(len(split.val) - 0.2 * (len(split.train) + len(split.val))) <= 2
    summary = data_summary(data, split)
    assert summary["new_images"] == split.new_images and summary["test_leaks"] == 0
    with pytest.raises(ValueError, match="test_part"):
        split_dataset(data, test_part="hardest")
    with pytest.raises(ValueError, match="chooses its own test part"):
        split_dataset(data, test_part="new-images", test_index=np.arange(10))


def test_real_busi_new_images_split(busi_dir):
    data = load_folder(busi_dir, image_size=128)
    rest, test, record = new_images_split(data.images, data.labels, data.hashes, test_size=0.3, seed=0)
    assert np.all(np.abs(np.bincount(data.labels[test]) - np.round(0.3 * np.bincount(data.labels))) <= 2)
    assert record["max_correlation"] < record["threshold"] < record["nearest_neighbour_median"]
    assert count_hash_leaks(data.hashes, rest, test) == 0


def test_folds_are_checked_against_the_groups_of_each_class():
    labels = np.array([0] * 10 + [1] * 4)
    groups = np.array(list(range(10)) + [10, 10, 11, 12])  # the 4 malignant images in 3 groups
    check_fold_count(labels, groups, n_splits=3)
    with pytest.raises(ValueError, match="class 'malignant' has images in only 3 duplicate group.*use 3 folds"):
        check_fold_count(labels, groups, n_splits=4, class_names=("benign", "malignant"))
    with pytest.raises(ValueError, match="only 13 groups of images: cannot make 14 folds"):
        check_fold_count(labels, groups, n_splits=14)
    for bad in (1, 2.5, True):
        with pytest.raises(ValueError, match="at least 2"):
            check_fold_count(labels, groups, n_splits=bad)


def test_nearest_correlation_finds_each_images_closest_other():
    from busutils.duplicates import nearest_correlation

    rng = np.random.default_rng(0)
    others = rng.integers(0, 256, size=(5, 32, 32), dtype=np.uint8)
    copy_of_third = others[2].copy()
    unlike = rng.integers(0, 256, size=(32, 32), dtype=np.uint8)
    found = nearest_correlation(np.stack([copy_of_third, unlike]), others)
    assert found[0] == pytest.approx(1.0)
    assert found[1] < 0.5
    with pytest.raises(ValueError, match="must both hold images"):
        nearest_correlation(others[:0], others)
