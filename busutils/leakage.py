"""How much of a reported score can leakage add?  The protocol the paper's text describes
against an honest one, and a 2x2 design that separates two leaks.

Read as written, Hijab et al. (2019) augmented their images ``K`` times and *then* divided
the copies 70/30 (Section III.A); whether their Table 1 was measured on that split is not
known (:data:`busutils.paper.LEAK_VERDICT`).  Under such a split most test items have copies
of themselves in training, and the test checks recognition of images already seen, not
diagnosis of new ones.  The honest protocol splits the *images* first (keeping near-duplicate
groups together), augments only the training images, and tests on untouched originals.

The two protocols differ in two ways at once: *when* the images are augmented (copies of a
test image can reach training only if augmentation comes before the split) and *how* the
images are split (near-duplicate images can sit on both sides only if the split ignores
duplicate groups).  :func:`design_experiment` crosses the two, a 2x2 design that tests on
untouched originals in every cell, and :func:`design_effects` sets each leak's effect apart.

Copies are indexed on a flattened ``(image, copy)`` grid: item ``i * n_copies + k`` is
copy ``k`` of image ``i``, and copy 0 is the original.  :func:`leakage_experiment` and
:func:`design_experiment` run on precomputed features of such a grid, so they take seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from sklearn.base import clone
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

from busutils.evaluate import _check_labels
from busutils.splits import group_train_test_split

__all__ = [
    "AUGMENT",
    "SPLIT",
    "augmented_features",
    "copies_in_both",
    "design_effects",
    "design_experiment",
    "design_split",
    "honest_split",
    "leakage_experiment",
    "leakage_gap",
    "paper_protocol_split",
    "plot_design",
    "plot_leakage",
]


def _check_split_args(n_copies: int, test_size: float) -> None:
    if int(n_copies) != n_copies or n_copies < 1:
        raise ValueError(f"n_copies must be a positive integer, got {n_copies}")
    if not 0 < test_size < 1:
        raise ValueError(f"test_size must be between 0 and 1, got {test_size}")


def paper_protocol_split(
    n_images: int, n_copies: int, *, test_size: float = 0.3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The split the paper's text describes: all ``n_images * n_copies`` augmented copies
    shuffled and cut ``1 - test_size`` / ``test_size``, ignoring which image each copy came
    from.  Returns sorted (train, test) indices into the flattened grid."""
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


def _fit_and_test(classifier: Any, x: np.ndarray, y: np.ndarray, train: np.ndarray,
                  test: np.ndarray) -> tuple[float, float]:
    """A fresh clone of ``classifier`` fitted on the rows ``train``: its AUC and accuracy on ``test``.

    On one BLAS thread: these fits are small (a few thousand rows of a thousand features),
    and BLAS threads cost more in waking and waiting than they save.  On 2 cores, one thread
    fitted the chapter's logistic regression 6x faster and its MLP 1.1x faster; with the
    cores shared by other work, as in CI, 10x and 2.2x.
    """
    with threadpool_limits(limits=1, user_api="blas"):
        model = clone(classifier).fit(x[train], y[train])
        scores, predicted = _positive_scores(model, x[test]), model.predict(x[test])
    return float(roc_auc_score(y[test], scores)), float(accuracy_score(y[test], predicted))


def augmented_features(
    images: Any, n_copies: int, extract: Callable[[np.ndarray], Any], *, kind: str = "paper", seed: int = 0
) -> np.ndarray:
    """Features of ``n_copies`` augmented copies of every image: ``(n_images, n_copies, d)``.

    Copy 0 is the original (:func:`busutils.augment.augmented_copies`, with augmentation
    ``kind``); ``extract`` maps greyscale ``uint8`` images ``(m, h, w)`` to one feature
    vector each, ``(m, d)`` -- e.g. ``FrozenVGG16(...).pooled``.  The result is what
    :func:`leakage_experiment` takes.
    """
    from busutils.augment import augmented_copies

    copies = augmented_copies(images, n_copies, kind, seed=seed)
    n, k = copies.shape[:2]
    flat = np.asarray(extract(copies.reshape(n * k, *copies.shape[2:])))
    if flat.ndim != 2 or len(flat) != n * k:
        raise ValueError(f"extract must return one feature vector per image, shape ({n * k}, d); "
                         f"got {flat.shape} for {n * k} images")
    return flat.reshape(n, k, flat.shape[1])


def _experiment_inputs(features: Any, labels: Any, groups: Any, classifier: Any):
    """Validated inputs of an experiment on a (n_images, n_copies, d) feature grid: the flattened
    features and labels (one row per copy), the labels per image, and the number of copies."""
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
    return feats.reshape(-1, d), np.repeat(y_image, n_copies), y_image, n_copies


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
    x, y, y_image, n_copies = _experiment_inputs(features, labels, groups, classifier)
    rows = []
    for seed in seeds:
        splits = {
            "paper": paper_protocol_split(len(y_image), n_copies, test_size=test_size, seed=seed),
            "honest": honest_split(y_image, groups, n_copies, test_size=test_size, seed=seed),
        }
        for protocol, (train, test) in splits.items():
            auc, accuracy = _fit_and_test(classifier, x, y, train, test)
            rows.append({
                "protocol": protocol,
                "seed": seed,
                "auc": auc,
                "accuracy": accuracy,
                "n_train": len(train),
                "n_test": len(test),
                "leaked": copies_in_both(train, test, n_copies),
            })
    return pd.DataFrame(rows)


#: The two factors of the 2x2 design and their levels, the leaking level second.
AUGMENT = ("after", "before")  # augment after the split (copies follow their image) or before it
SPLIT = ("by group", "by image")  # split the images by duplicate group, or image by image


def _image_split(labels: np.ndarray, groups: Any, split: str, test_size: float, seed: int):
    if split == "by group":
        return group_train_test_split(labels, groups, test_size=test_size, seed=seed)
    index = np.arange(len(labels))
    train, test = train_test_split(index, test_size=test_size, random_state=seed, stratify=labels)
    return np.sort(train), np.sort(test)


def design_split(
    labels: Any, groups: Any, n_copies: int, *, augment: str, split: str, test_size: float = 0.3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """One cell of the 2x2 design: sorted (train, test) indices into the flattened grid.

    The images are split ``"by group"`` (near-duplicate groups kept whole, stratified) or
    ``"by image"`` (stratified, groups ignored); the test part is always the untouched
    original (copy 0) of each test image, so that every cell tests the same kind of item.
    ``augment="after"``: training holds every copy of the training images, as in the honest
    protocol.  ``augment="before"``: training holds the originals of the training images and
    each augmented copy (1 to ``n_copies - 1``) of *every* image with probability
    ``1 - test_size``, as a random cut of all the copies would deal it -- the paper's protocol
    as its test originals meet it.
    """
    _check_split_args(n_copies, test_size)
    if augment not in AUGMENT:
        raise ValueError(f"augment must be one of {AUGMENT}, got {augment!r}")
    if split not in SPLIT:
        raise ValueError(f"split must be one of {SPLIT}, got {split!r}")
    y = np.asarray(labels)
    images_train, images_test = _image_split(y, groups, split, test_size, seed)
    test = images_test * n_copies
    if augment == "after":
        train = (images_train[:, None] * n_copies + np.arange(n_copies)).ravel()
        return np.sort(train), np.sort(test)
    rng = np.random.default_rng([seed, 7])  # its own stream: the image split stays that of "after"
    augmented = (np.arange(len(y))[:, None] * n_copies + np.arange(1, n_copies)).ravel()
    kept = augmented[rng.random(len(augmented)) < 1 - test_size]
    return np.sort(np.r_[images_train * n_copies, kept]), np.sort(test)


def _near_duplicates_in_training(groups: Any, train_images: np.ndarray, test_images: np.ndarray) -> int:
    """Test images with another image of their duplicate group among the training images."""
    if groups is None:
        return 0
    groups = np.asarray(groups)
    in_train = set(groups[train_images].tolist())
    return int(sum(groups[i] in in_train for i in test_images))


def design_experiment(
    features: Any,
    labels: Any,
    groups: Any,
    classifier: Any,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    test_size: float = 0.3,
) -> pd.DataFrame:
    """Train and test ``classifier`` in each cell of the 2x2 design (:func:`design_split`), once per seed.

    ``features``, ``labels``, ``groups`` and ``classifier`` as in :func:`leakage_experiment`.
    Returns one row per (augment, split, seed): ``augment`` ("after" or "before"), ``split``
    ("by group" or "by image"), ``seed``, ``auc``, ``accuracy``, ``n_train``, ``n_test``,
    ``copies_leaked`` (test originals with an augmented copy of themselves in training) and
    ``duplicates_leaked`` (test originals with a near-duplicate image among the training
    images).  The four cells of a seed share the seed's image split where they can (the two
    "by group" cells, and the two "by image" cells), so their differences are paired.
    """
    x, y, y_image, n_copies = _experiment_inputs(features, labels, groups, classifier)
    rows = []
    for seed in seeds:
        for augment in AUGMENT:
            for split in SPLIT:
                train, test = design_split(y_image, groups, n_copies, augment=augment, split=split,
                                           test_size=test_size, seed=seed)
                auc, accuracy = _fit_and_test(classifier, x, y, train, test)
                train_images = np.unique(train[train % n_copies == 0] // n_copies)
                rows.append({
                    "augment": augment,
                    "split": split,
                    "seed": seed,
                    "auc": auc,
                    "accuracy": accuracy,
                    "n_train": len(train),
                    "n_test": len(test),
                    "copies_leaked": copies_in_both(train, test, n_copies),
                    "duplicates_leaked": _near_duplicates_in_training(groups, train_images, test // n_copies),
                })
    return pd.DataFrame(rows)


def design_effects(runs: pd.DataFrame, metric: str = "auc", by: str = "classifier") -> pd.DataFrame:
    """Each leak's effect on ``metric``, from the runs of :func:`design_experiment`.

    For every value of ``by`` (e.g. the classifier's name) and every seed, the four cells give
    the effect of augmenting *before* the split (before minus after, averaged over the two
    splits), the effect of splitting *by image* (by image minus by group, averaged over the two
    augmentations), and their interaction (how much the one leak's effect changes with the
    other).  Returns one row per value of ``by``: the mean of ``metric`` in each cell
    (``after/by group``...), each effect's mean over the seeds with its smallest and largest
    value (``augment_before_mean``, ``_min``, ``_max``; ``split_by_image_...``;
    ``interaction_mean``) and the number of seeds.
    """
    needed = {"augment", "split", "seed", metric}
    missing = sorted(needed - set(runs.columns))
    if missing:
        raise ValueError(f"runs lacks column(s) {missing}: pass the table design_experiment returns")
    table = runs if by in runs.columns else runs.assign(**{by: "all"})
    rows = []
    for name, part in table.groupby(by, sort=False):
        wide = part.pivot_table(index="seed", columns=["augment", "split"], values=metric, aggfunc="mean")
        cells = [(a, s) for a in AUGMENT for s in SPLIT]
        if any(cell not in wide.columns for cell in cells) or wide[cells].isna().any().any():
            raise ValueError(f"{by}={name!r}: every seed needs a run in each of the four cells")
        c = {cell: wide[cell] for cell in cells}
        effects = {
            "augment_before": ((c["before", "by group"] - c["after", "by group"])
                               + (c["before", "by image"] - c["after", "by image"])) / 2,
            "split_by_image": ((c["after", "by image"] - c["after", "by group"])
                               + (c["before", "by image"] - c["before", "by group"])) / 2,
            "interaction": (c["before", "by image"] - c["before", "by group"])
                           - (c["after", "by image"] - c["after", "by group"]),
        }
        row = {by: name, **{f"{a}/{s}": c[a, s].mean() for a, s in cells}}
        for effect, values in effects.items():
            row[f"{effect}_mean"] = values.mean()
            if effect != "interaction":
                row[f"{effect}_min"], row[f"{effect}_max"] = values.min(), values.max()
        row["seeds"] = len(wide)
        rows.append(row)
    return pd.DataFrame(rows).set_index(by)


def leakage_gap(runs: pd.DataFrame, metric: str = "auc", by: str = "classifier") -> pd.DataFrame:
    """How much the paper's protocol inflates ``metric``, from the runs of :func:`leakage_experiment`.

    ``runs`` holds its rows, with a column ``by`` (e.g. the classifier's name) when it
    gathers several experiments.  Returns one row per value of ``by``: the mean and
    standard deviation of ``metric`` over the seeds under each protocol (``paper_mean``,
    ``paper_sd``, ``honest_mean``, ``honest_sd``), the gap -- paper minus honest, seed by
    seed, since both protocols of a seed use the same data -- as ``gap_mean``, ``gap_min``
    and ``gap_max``, the number of seeds, and ``leaked_share``: the mean share of the
    paper protocol's test items with a copy of their image in training.
    """
    needed = {"protocol", "seed", metric, "leaked", "n_test"}
    missing = sorted(needed - set(runs.columns))
    if missing:
        raise ValueError(f"runs lacks column(s) {missing}: pass the table leakage_experiment returns")
    table = runs if by in runs.columns else runs.assign(**{by: "all"})
    rows = []
    for name, part in table.groupby(by, sort=False):
        wide = part.pivot(index="seed", columns="protocol", values=metric)
        if set(wide.columns) != {"paper", "honest"} or wide.isna().any().any():
            raise ValueError(f"{by}={name!r}: every seed needs one 'paper' and one 'honest' run")
        gap = wide["paper"] - wide["honest"]
        paper = part[part.protocol == "paper"]
        rows.append({
            by: name,
            "paper_mean": wide["paper"].mean(),
            "paper_sd": wide["paper"].std(ddof=1) if len(wide) > 1 else float("nan"),
            "honest_mean": wide["honest"].mean(),
            "honest_sd": wide["honest"].std(ddof=1) if len(wide) > 1 else float("nan"),
            "gap_mean": gap.mean(),
            "gap_min": gap.min(),
            "gap_max": gap.max(),
            "seeds": len(wide),
            "leaked_share": float((paper["leaked"] / paper["n_test"]).mean()),
        })
    return pd.DataFrame(rows).set_index(by)


PROTOCOL_LABELS = {"paper": "paper's protocol (augment, then split)", "honest": "honest (split, then augment)"}


def plot_leakage(runs: pd.DataFrame, metric: str = "auc", by: str = "classifier", ax: Axes | None = None) -> Axes:
    """Each run's ``metric`` under both protocols, side by side for every value of ``by``.

    One dot per seed, a bar at the mean: the distance between the two bars of a classifier
    is its leakage gap, the spread of its dots what a different split would have given.
    """
    if by not in runs.columns or metric not in runs.columns:
        raise ValueError(f"runs needs the columns {by!r} and {metric!r}; it has {list(runs.columns)}")
    names = list(dict.fromkeys(runs[by]))
    if ax is None:
        _, ax = plt.subplots(figsize=(2.2 * len(names) + 2.5, 4))
    for shift, (protocol, label) in zip((-0.17, 0.17), PROTOCOL_LABELS.items()):
        color = "tab:red" if protocol == "paper" else "tab:blue"
        for x, name in enumerate(names):
            values = runs.loc[(runs[by] == name) & (runs.protocol == protocol), metric].to_numpy()
            ax.scatter(np.full(len(values), x + shift), values, color=color, alpha=0.6, s=25,
                       label=label if x == 0 else None)
            ax.hlines(values.mean(), x + shift - 0.12, x + shift + 0.12, color=color, linewidth=2.5)
    ax.set_xticks(range(len(names)), names)
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_xlabel(by)
    ax.set_ylabel(f"{'AUC' if metric == 'auc' else metric} on the test part")
    ax.set_title(f"Test {'AUC' if metric == 'auc' else metric} under the two protocols (dots: seeds; bars: means)")
    ax.legend(loc="best", fontsize=8)
    return ax


DESIGN_COLORS = {("after", "by group"): "tab:blue", ("after", "by image"): "tab:cyan",
                 ("before", "by group"): "tab:orange", ("before", "by image"): "tab:red"}


def plot_design(runs: pd.DataFrame, metric: str = "auc", by: str = "classifier", ax: Axes | None = None) -> Axes:
    """Each run of :func:`design_experiment`: the four cells side by side for every value of ``by``.

    One dot per seed, a bar at the mean; the leftmost cell of each group (augment after the
    split, split by group) is the honest protocol, the rightmost has both leaks.
    """
    if by not in runs.columns or metric not in runs.columns:
        raise ValueError(f"runs needs the columns {by!r} and {metric!r}; it has {list(runs.columns)}")
    names = list(dict.fromkeys(runs[by]))
    if ax is None:
        _, ax = plt.subplots(figsize=(2.6 * len(names) + 2.5, 4))
    shifts = np.linspace(-0.3, 0.3, len(DESIGN_COLORS))
    for shift, ((augment, split), color) in zip(shifts, DESIGN_COLORS.items()):
        for x, name in enumerate(names):
            chosen = (runs[by] == name) & (runs.augment == augment) & (runs.split == split)
            values = runs.loc[chosen, metric].to_numpy()
            label = f"augment {augment} the split, split {split}" if x == 0 else None
            ax.scatter(np.full(len(values), x + shift), values, color=color, alpha=0.6, s=22, label=label)
            if len(values):
                ax.hlines(values.mean(), x + shift - 0.07, x + shift + 0.07, color=color, linewidth=2.5)
    ax.set_xticks(range(len(names)), names)
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_xlabel(by)
    name = "AUC" if metric == "auc" else metric
    ax.set_ylabel(f"{name} on the untouched test originals")
    ax.set_title(f"Test {name} in the four cells of the design (dots: seeds; bars: means)")
    ax.legend(loc="best", fontsize=7)
    return ax
