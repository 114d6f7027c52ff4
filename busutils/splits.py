"""Group-aware, stratified splits.

Every split keeps each duplicate group (see :mod:`busutils.duplicates`) on one side, so no
near-copy of a test image is ever trained on, and keeps the class balance of each side close
to the whole.  They are thin wrappers of scikit-learn's ``StratifiedGroupKFold``.
"""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from .duplicates import MAX_DISTANCE, hamming_distances


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
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return [(np.sort(tr), np.sort(te)) for tr, te in splitter.split(np.zeros(len(labels)), labels, groups)]


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
    """Test images with a near-duplicate in the training part: what a split by image leaks."""
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
