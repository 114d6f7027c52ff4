"""How much of a reported score is leakage?  The paper's protocol against an honest one.

Hijab et al. (2019) augmented every image ``K`` times and *then* split the copies at
random 70/30, so most test images have copies of themselves in training: the test checks
recognition of images already seen, not diagnosis of new ones.  The honest protocol splits
the *images* first (keeping near-duplicate groups together), augments only the training
images, and tests on untouched originals.

Copies are indexed on a flattened ``(image, copy)`` grid: item ``i * n_copies + k`` is
copy ``k`` of image ``i``, and copy 0 is the original.  :func:`leakage_experiment` runs
both protocols on precomputed features of such a grid, so the comparison takes seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import train_test_split

from busutils.evaluate import _check_labels
from busutils.splits import group_train_test_split

__all__ = ["copies_in_both", "honest_split", "leakage_experiment", "paper_protocol_split"]


def _check_split_args(n_copies: int, test_size: float) -> None:
    if int(n_copies) != n_copies or n_copies < 1:
        raise ValueError(f"n_copies must be a positive integer, got {n_copies}")
    if not 0 < test_size < 1:
        raise ValueError(f"test_size must be between 0 and 1, got {test_size}")


def paper_protocol_split(
    n_images: int, n_copies: int, *, test_size: float = 0.3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The paper's split: all ``n_images * n_copies`` augmented copies shuffled and cut
    ``1 - test_size`` / ``test_size``, ignoring which image each copy came from.
    Returns sorted (train, test) indices into the flattened grid."""
    _check_split_args(n_copies, test_size)
    if int(n_images) != n_images or n_images < 2:
        raise ValueError(f"n_images must be an integer >= 2, got {n_images}")
    train, test = train_test_split(np.arange(n_images * n_copies), test_size=test_size, random_state=seed)
    return np.sort(train), np.sort(test)


def honest_split(
    labels: Any, groups: Any, n_copies: int, *, test_size: float = 0.3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The honest split: images split first, stratified and group-aware
    (:func:`busutils.splits.group_train_test_split`); train holds every copy of the
    training images, test only copy 0 (the original) of each test image.

    ``labels`` and ``groups`` have one entry per image.  Returns sorted (train, test)
    indices into the flattened grid.
    """
    _check_split_args(n_copies, test_size)
    images_train, images_test = group_train_test_split(labels, groups, test_size=test_size, seed=seed)
    train = (images_train[:, None] * n_copies + np.arange(n_copies)).ravel()
    return np.sort(train), np.sort(images_test * n_copies)


def copies_in_both(train: Any, test: Any, n_copies: int) -> int:
    """Test items whose image has a copy (or is itself) in the training part."""
    _check_split_args(n_copies, 0.5)
    train_images = np.asarray(train, dtype=np.int64) // n_copies
    return int(np.isin(np.asarray(test, dtype=np.int64) // n_copies, train_images).sum())


def _positive_scores(model: Any, x: np.ndarray) -> np.ndarray:
    if hasattr(model, "predict_proba"):
        return model.predict_proba(x)[:, list(model.classes_).index(1)]
    return model.decision_function(x)


def leakage_experiment(
    features: Any,
    labels: Any,
    groups: Any,
    classifier: Any,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    test_size: float = 0.3,
) -> pd.DataFrame:
    """Train and test ``classifier`` under both protocols, once per seed.

    ``features`` has shape ``(n_images, n_copies, d)`` (copy 0 the original, e.g. CNN
    features of the augmented images), ``labels`` (0/1) and ``groups`` one entry per
    image (``groups=None``: every image its own group).  ``classifier`` is any
    scikit-learn-style estimator, cloned afresh for every run.  Returns one row per
    (protocol, seed): ``protocol`` ("paper" or "honest"), ``seed``, ``auc``,
    ``accuracy``, ``n_train``, ``n_test`` and ``leaked`` (test items with a copy of their
    image in training).
    """
    feats = np.asarray(features, dtype=np.float64)
    if feats.ndim != 3:
        raise ValueError(f"features must have shape (n_images, n_copies, d), got {feats.shape}")
    n_images, n_copies, d = feats.shape
    y_image = _check_labels(labels, 2)
    if len(y_image) != n_images:
        raise ValueError(f"labels has {len(y_image)} entries for {n_images} images in features")
    if groups is not None and np.shape(groups) != (n_images,):
        raise ValueError(f"groups must have one entry per image ({n_images}), got shape {np.shape(groups)}")
    if not hasattr(classifier, "fit"):
        raise TypeError(f"classifier must be a scikit-learn-style estimator with fit(), got {classifier!r}")
    x, y = feats.reshape(-1, d), np.repeat(y_image, n_copies)
    rows = []
    for seed in seeds:
        splits = {
            "paper": paper_protocol_split(n_images, n_copies, test_size=test_size, seed=seed),
            "honest": honest_split(y_image, groups, n_copies, test_size=test_size, seed=seed),
        }
        for protocol, (train, test) in splits.items():
            model = clone(classifier).fit(x[train], y[train])
            rows.append({
                "protocol": protocol,
                "seed": seed,
                "auc": float(roc_auc_score(y[test], _positive_scores(model, x[test]))),
                "accuracy": float(accuracy_score(y[test], model.predict(x[test]))),
                "n_train": len(train),
                "n_test": len(test),
                "leaked": copies_in_both(train, test, n_copies),
            })
    return pd.DataFrame(rows)
