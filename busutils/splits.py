"""Group-aware, stratified splits, and a "new images" split.

Every split keeps each duplicate group (see :mod:`busutils.duplicates`) on one side, so no
near-copy of a test image is ever trained on, and keeps the class balance of each side close
to the whole.  They are thin wrappers of scikit-learn's ``StratifiedGroupKFold``.

A group-aware split still puts look-alikes on both sides: images of one machine, one depth,
one kind of lesion, too unlike to be near-duplicates, alike enough to be easy.
:func:`new_images_split` holds out instead the images least like all the others, so that its
test part measures what a model does on images unlike any it trained on.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse.csgraph import connected_components
from sklearn.model_selection import StratifiedGroupKFold

from .duplicates import MAX_DISTANCE, hamming_distances, perceptual_hashes, pixel_correlations


def _check(labels: np.ndarray, groups: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {labels.shape}")
    groups = np.arange(len(labels)) if groups is None else np.asarray(groups)
    if groups.shape != labels.shape:
        raise ValueError(f"groups has shape {groups.shape}, labels {labels.shape}: they must match")
    return labels, groups


def group_kfold(
    labels: np.ndarray, groups: np.ndarray | None = None, *, n_splits: int = 5, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n_splits`` (train, test) index pairs, stratified by label and never splitting a group."""
    labels, groups = _check(labels, groups)
    if n_splits < 2:
        raise ValueError(f"n_splits must be at least 2, got {n_splits}")
    n_groups = len(np.unique(groups))
    if n_groups < n_splits:
        raise ValueError(f"only {n_groups} groups of images: cannot make {n_splits} folds")
    # StratifiedGroupKFold(shuffle=True) stratifies only from scikit-learn 1.8 on (before, its
    # shuffled folds were random groups: scikit-learn PR 32540), and Colab has an older release.
    # Renumbering the groups by the permutation 1.8 draws, then splitting without shuffling,
    # gives 1.8's folds on every release.
    _, index = np.unique(groups, return_inverse=True)
    order = np.arange(index.max() + 1)
    np.random.RandomState(seed).shuffle(order)
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    splitter = StratifiedGroupKFold(n_splits=n_splits)
    return [(np.sort(tr), np.sort(te)) for tr, te in splitter.split(np.zeros(len(labels)), labels, rank[index])]


def check_fold_count(labels: np.ndarray, groups: np.ndarray | None = None, *, n_splits: int = 5,
                     class_names: tuple[str, ...] | None = None) -> None:
    """Raise ``ValueError`` unless ``n_splits`` group-aware folds can each test every class.

    ``n_splits`` must be an integer of at least 2 and at most the number of duplicate groups
    holding images of each class: with fewer groups, some fold would test no image of that
    class, and its AUC would be undefined.  Cheap: run it before training anything.
    """
    labels, groups = _check(labels, groups)
    if isinstance(n_splits, bool) or int(n_splits) != n_splits or n_splits < 2:
        raise ValueError(f"folds must be an integer of at least 2, got {n_splits}")
    n_groups = len(np.unique(groups))
    if n_groups < n_splits:
        raise ValueError(f"only {n_groups} groups of images: cannot make {n_splits} folds "
                         "(near-duplicates share a fold); use fewer folds")
    for label in np.unique(labels):
        k = len(np.unique(groups[labels == label]))
        if k < n_splits:
            name = class_names[label] if class_names is not None else label
            raise ValueError(f"class {name!r} has images in only {k} duplicate group(s): cannot make {n_splits} "
                             f"folds that each test it (its AUC would be undefined); use {max(k, 2)} folds or "
                             "fewer, or more data")


def assign_folds(labels: np.ndarray, groups: np.ndarray | None = None, *, n_splits: int = 5, seed: int = 0) -> np.ndarray:
    """The test fold (0 … ``n_splits``-1) of every item."""
    folds = np.full(len(labels), -1, dtype=np.int64)
    for k, (_, test) in enumerate(group_kfold(labels, groups, n_splits=n_splits, seed=seed)):
        folds[test] = k
    return folds


def group_train_test_split(
    labels: np.ndarray, groups: np.ndarray | None = None, *, test_size: float = 0.3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices, stratified, groups kept whole, the test part ``test_size`` of the data.

    The data are cut into ``d`` stratified, group-aware folds, ``d`` the smallest number of
    folds (up to 20) of which ``test_size`` is a whole number, and ``test_size * d`` of them form
    the test part: 3 of 10 for the paper's 70/30.
    """
    if not 0 < test_size < 1:
        raise ValueError(f"test_size must be between 0 and 1, got {test_size}")
    labels, groups = _check(labels, groups)
    whole = [d for d in range(2, 21) if abs(test_size * d - round(test_size * d)) < 1e-9]
    n_splits = min(whole[0] if whole else 20, len(np.unique(groups)))
    n_test = min(n_splits - 1, max(1, round(test_size * n_splits)))
    folds = group_kfold(labels, groups, n_splits=n_splits, seed=seed)
    test = np.sort(np.concatenate([folds[k][1] for k in range(n_test)]))
    return np.setdiff1d(np.arange(len(labels)), test), test


def check_disjoint(groups: np.ndarray, first: np.ndarray, second: np.ndarray) -> None:
    """Raise ``ValueError`` if any duplicate group has members on both sides of a split."""
    groups = np.asarray(groups)
    shared = np.intersect1d(groups[np.asarray(first, dtype=int)], groups[np.asarray(second, dtype=int)])
    if len(shared):
        raise ValueError(f"{len(shared)} duplicate group(s) on both sides of the split, e.g. group {shared[0]}")


def count_leaks(groups: np.ndarray, train: np.ndarray, test: np.ndarray) -> int:
    """Test images whose duplicate group has a member in the training part: what a split by image leaks.

    With the groups of :func:`busutils.duplicates.groups_from_hashes` this is 0 exactly when
    :func:`count_hash_leaks` is.
    """
    groups = np.asarray(groups)
    return int(np.isin(groups[np.asarray(test, dtype=int)], groups[np.asarray(train, dtype=int)]).sum())


def leaked_pairs(groups: np.ndarray, train: np.ndarray, test: np.ndarray) -> list[tuple[int, int]]:
    """Every test image with a near-duplicate in the training part, paired with one such
    training image: ``(test index, training index)`` pairs, in the order of ``test``.

    The images :func:`count_leaks` counts, to look at.
    """
    groups = np.asarray(groups)
    first_in_train: dict = {}
    for i in np.asarray(train, dtype=int):
        first_in_train.setdefault(groups[i], int(i))
    return [(int(t), first_in_train[groups[t]]) for t in np.asarray(test, dtype=int) if groups[t] in first_in_train]


def random_split_leaks(
    labels: np.ndarray, groups: np.ndarray, *, test_size: float = 0.3, repeats: int = 20, seed: int = 0
) -> np.ndarray:
    """Leaked test images (see :func:`count_leaks`) of ``repeats`` stratified splits made image by image."""
    from sklearn.model_selection import train_test_split

    index = np.arange(len(labels))
    return np.array([
        count_leaks(groups, *train_test_split(index, test_size=test_size, random_state=seed + r, stratify=labels))
        for r in range(repeats)
    ])


def count_hash_leaks(hashes: np.ndarray, train: np.ndarray, test: np.ndarray, max_distance: int = MAX_DISTANCE) -> int:
    """Test images whose perceptual hash is within ``max_distance`` bits of a training image's.

    Unlike :func:`count_leaks` this does not trust the groups: it checks every test-training
    pair, so it shows what a grouping lets through.
    """
    distances = hamming_distances(np.asarray(hashes, dtype=np.uint64))
    close = distances[np.ix_(np.asarray(test, dtype=int), np.asarray(train, dtype=int))] <= max_distance
    return int(close.any(axis=1).sum())


#: What "alike" means for :func:`new_images_split`: stated in every split it makes.
NEW_IMAGES_SIMILARITY = "Pearson correlation of the pixels at 64x64 (busutils.duplicates.pixel_correlations)"
_THRESHOLD_STEP = 0.005  # thresholds tried, in correlation


def new_images_split(
    images: np.ndarray,
    labels: np.ndarray,
    hashes: np.ndarray | None = None,
    *,
    test_size: float = 0.3,
    seed: int = 0,
    max_similarity: float | None = None,
    max_distance: int = MAX_DISTANCE,
    groups: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Rest and test indices, the test part made of images unlike every image of the rest.

    Two images are *alike* when their pixels at 64 px correlate at ``threshold`` or more, or
    when their perceptual hashes are near-duplicates (at most ``max_distance`` bits apart).
    Images of one ``groups`` entry (e.g. ``Dataset.groups``: near-duplicates and one patient's
    images) count as alike too.  Images joined by a chain of alike pairs form a cluster; the
    test part is made of whole clusters other than the largest, so that no test image is alike
    any image of the rest.  The threshold is the lowest (the strictest: the test images as
    unlike the rest as possible) at which such clusters hold ``test_size`` of every class, to 2%
    (at least one image); ``seed`` draws which of the clusters at that threshold fill each
    class's share.  The threshold is not allowed above ``max_similarity``, by default the
    median, over all images, of the correlation with their nearest neighbour: every test image
    is then less like its nearest image in the rest than the typical image is like its own.

    Returns sorted ``(rest, test)`` indices and a JSON-ready record: the similarity, the
    threshold, the ceiling it was allowed, the largest correlation and the smallest hash
    distance between a test image and an image of the rest.  Raises ``ValueError`` when no
    threshold up to the ceiling gives such a part (e.g. every image has a close look-alike).
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(f"labels must give one label per image: {len(images)} images, labels of shape {labels.shape}")
    if not 0 < test_size < 1:
        raise ValueError(f"test_size must be between 0 and 1, got {test_size}")
    classes, labels = np.unique(labels, return_inverse=True)
    per_class = np.bincount(labels)
    if len(classes) < 2 or per_class.min() < 2:
        raise ValueError(f"a new-images split needs two images of each of two classes or more; got {per_class.tolist()} "
                         f"images of classes {classes.tolist()}")
    hashes = perceptual_hashes(images) if hashes is None else np.asarray(hashes, dtype=np.uint64)
    correlations = pixel_correlations(images)
    near = hamming_distances(hashes) <= max_distance
    if groups is not None:
        _, groups = _check(labels, groups)
        near |= groups[:, None] == groups[None, :]
    np.fill_diagonal(correlations, -1.0)
    nearest = correlations.max(axis=1)
    ceiling = float(np.median(nearest)) if max_similarity is None else float(max_similarity)
    quota = np.maximum(1, np.round(test_size * per_class)).astype(int)
    slack = np.maximum(1, (0.02 * quota).astype(int))
    start = np.floor(nearest.min() / _THRESHOLD_STEP) * _THRESHOLD_STEP
    best = np.zeros_like(quota)
    for threshold in np.append(np.round(np.arange(start, ceiling, _THRESHOLD_STEP), 6), ceiling):
        _, clusters = connected_components((correlations >= threshold) | near, directed=False)
        chosen, taken = _fill(clusters, labels, quota, np.random.default_rng(seed))
        best = np.maximum(best, taken)
        if np.all(taken >= quota - slack):
            break
    else:
        short = ", ".join(f"{best[c]} of the {quota[c]} images of class {classes[c]} asked for"
                          for c in range(len(classes)) if best[c] < quota[c] - slack[c])
        raise ValueError(f"no new-images part of {test_size:.0%} of each class: up to a correlation of {ceiling:.3f} "
                         f"(the ceiling), only {short} are unlike every image outside their cluster. Hold out "
                         "less (test_size), allow more alike images (max_similarity), or use the group-aware split")
    test = np.flatnonzero(np.isin(clusters, chosen))
    rest = np.setdiff1d(np.arange(len(labels)), test)
    cross = np.ix_(test, rest)
    record = {
        "similarity": NEW_IMAGES_SIMILARITY,
        "threshold": float(threshold),
        "ceiling": ceiling,
        "max_correlation": float(correlations[cross].max()),
        "min_hash_distance": int(hamming_distances(hashes)[cross].min()),
        "max_distance": int(max_distance),
        "nearest_neighbour_median": float(np.median(nearest)),
    }
    return rest, test, record


def _fill(clusters: np.ndarray, labels: np.ndarray, quota: np.ndarray,
          rng: np.random.Generator) -> tuple[list[int], np.ndarray]:
    """Whole clusters, in an order drawn by ``rng``, the largest never, each taken while no class
    exceeds its quota; returns the clusters taken and the images of each class they hold."""
    sizes = np.bincount(clusters)
    counts = np.zeros((len(sizes), len(quota)), dtype=int)
    np.add.at(counts, (clusters, labels), 1)
    taken, chosen = np.zeros_like(quota), []
    for cluster in rng.permutation(len(sizes)):
        if cluster != np.argmax(sizes) and np.all(taken + counts[cluster] <= quota):
            taken += counts[cluster]
            chosen.append(int(cluster))
            if np.array_equal(taken, quota):
                break
    return chosen, taken
