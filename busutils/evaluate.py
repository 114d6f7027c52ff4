"""Honest evaluation of classifier predictions, independent of Keras.

Everything here takes plain numpy arrays -- true labels and predicted probabilities -- so
the same code scores a Keras model, a scikit-learn model or a table of predictions loaded
from disk.  Point estimates are computed with :mod:`sklearn.metrics`; uncertainty comes from
a percentile bootstrap (:func:`bootstrap_ci`) that can resample whole groups of
near-duplicate images, so that confidence intervals are not too narrow.

Conventions
-----------
* Labels are integers ``0 .. k-1`` indexing ``class_names`` (class names are accepted too).
* In the binary case the *positive* class is ``class_names[1]`` -- for this book
  ``("benign", "malignant")``, so sensitivity is the fraction of malignant lesions found.
* A binary prediction is positive when ``score >= threshold``: the convention of
  :func:`sklearn.metrics.roc_curve`, so an operating point read off the ROC curve is
  reproduced exactly.
* Multiclass predictions are the arg-max of the probabilities.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm
from sklearn.exceptions import UndefinedMetricWarning

from busutils.records import to_jsonable

__all__ = [
    "PAPER_TABLE1",
    "binary_metrics",
    "multiclass_metrics",
    "classification_metrics",
    "bootstrap_ci",
    "metrics_with_ci",
    "metrics_table",
    "format_metric",
    "UnreliableIntervalWarning",
    "MIN_UNITS_PER_CLASS",
]

#: Table 1 of Hijab et al. (2019), test-set accuracy and AUC (the paper reports nothing else).
PAPER_TABLE1: dict[str, dict[str, float]] = {
    "baseline": {"accuracy": 0.79, "auc": 0.81},
    "vgg16-transfer": {"accuracy": 0.9511, "auc": 0.97},
    "vgg16-finetune": {"accuracy": 0.9739, "auc": 0.98},
}

BINARY_SCALARS = ("accuracy", "auc", "sensitivity", "specificity", "precision", "f1")

_PROB_TOL = 1e-6  # slack for float32 probabilities that land a hair outside [0, 1]

#: Fewer resampling units (images, or groups) of a class than this and a bootstrap interval is
#: not worth printing: a resample's sensitivity can then take only a handful of values, and
#: with a single positive every usable resample holds that same image, so the AUC interval
#: collapses to a point however uncertain the AUC is.
MIN_UNITS_PER_CLASS = 10


class UnreliableIntervalWarning(UserWarning):
    """A bootstrap confidence interval rests on too few images or groups of a class to mean much."""


# --------------------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------------------


def _check_class_names(class_names: Sequence[str]) -> list[str]:
    if isinstance(class_names, str) or not isinstance(class_names, Iterable):
        raise TypeError(f"class_names must be a sequence of names, got {class_names!r}")
    names = [str(c) for c in class_names]
    if len(names) < 2:
        raise ValueError(f"class_names needs at least two classes, got {names}")
    if len(set(names)) != len(names):
        raise ValueError(f"class_names has duplicates: {names}")
    return names


def _check_labels(y_true: Any, n_classes: int, class_names: Sequence[str] | None = None) -> np.ndarray:
    """Return ``y_true`` as a 1-D int array with values in ``0 .. n_classes-1``."""
    y = np.asarray(y_true)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"y_true must be 1-D (one label per image), got shape {y.shape}")
    if y.size == 0:
        raise ValueError("y_true is empty")
    if y.dtype.kind in "USO":  # class names given as strings
        if class_names is None:
            raise ValueError("y_true holds strings: pass class_names to map them to labels")
        index = {name: i for i, name in enumerate(class_names)}
        unknown = sorted({str(v) for v in y} - set(index))
        if unknown:
            raise ValueError(f"y_true contains names not in class_names {list(class_names)}: {unknown}")
        return np.array([index[str(v)] for v in y], dtype=np.int64)
    if y.dtype.kind == "b":
        y = y.astype(np.int64)
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise ValueError("y_true must hold integer class labels, found non-integer values")
    elif y.dtype.kind not in "iu":
        raise ValueError(f"y_true must hold integer class labels, got dtype {y.dtype}")
    y = y.astype(np.int64)
    bad = (y < 0) | (y >= n_classes)
    if np.any(bad):
        raise ValueError(
            f"y_true has labels outside 0..{n_classes - 1} (there are {n_classes} classes): "
            f"{sorted(set(y[bad].tolist()))[:10]}"
        )
    return y


def _check_probabilities(y_score: Any, n: int, name: str = "y_score") -> np.ndarray:
    s = np.asarray(y_score, dtype=np.float64)
    if s.shape[:1] != (n,):
        raise ValueError(
            f"y_true and {name} have different lengths: {n} vs {s.shape[0] if s.ndim else 'scalar'}"
        )
    if not np.all(np.isfinite(s)):
        raise ValueError(f"{name} contains nan or inf")
    lo, hi = float(s.min()), float(s.max())
    if lo < -_PROB_TOL or hi > 1 + _PROB_TOL:
        raise ValueError(
            f"{name} must hold probabilities in [0, 1], found values in [{lo:.4g}, {hi:.4g}] "
            "(apply a sigmoid/softmax to logits first)"
        )
    return np.clip(s, 0.0, 1.0)


def _check_threshold(threshold: float) -> float:
    threshold = float(threshold)
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    return threshold


def _check_rows(p: np.ndarray, k: int, name: str) -> np.ndarray:
    """``p`` as ``(n, k)`` probabilities whose rows sum to 1 (softmax output), renormalised."""
    if p.ndim != 2 or p.shape[1] != k:
        raise ValueError(f"{name} for {k} classes must have shape (n, {k}); got {p.shape}")
    sums = p.sum(axis=1)
    if not np.allclose(sums, 1.0, atol=1e-3):
        raise ValueError(
            f"{name} rows must be probabilities summing to 1 (softmax output); "
            f"row sums range over [{sums.min():.4g}, {sums.max():.4g}]"
        )
    return p / sums[:, None]


def _prepare(y_true: Any, y_score: Any, class_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Validate inputs; return labels, scores (1-D if binary, 2-D otherwise) and names."""
    names = _check_class_names(class_names)
    k = len(names)
    y = _check_labels(y_true, k, names)
    s = _check_probabilities(y_score, len(y))
    if k == 2:
        if s.ndim == 2 and s.shape[1] == 1:
            s = s[:, 0]
        elif s.ndim == 2 and s.shape[1] == 2:
            s = s[:, 1]  # softmax output: probability of the positive class
        elif s.ndim != 1:
            raise ValueError(
                f"y_score for two classes must have shape (n,), (n, 1) or (n, 2); got {s.shape}"
            )
        if names[0].lower() == "malignant":
            warnings.warn(
                f"class_names={names}: the positive class is class_names[1] ({names[1]!r}), so "
                "'sensitivity' refers to it, not to 'malignant'",
                UserWarning,
                stacklevel=3,
            )
    else:
        s = _check_rows(s, k, "y_score")
    return y, s, names


# --------------------------------------------------------------------------------------
# Point estimates (scikit-learn)
# --------------------------------------------------------------------------------------


def binary_metrics(y_true: Any, y_score: Any, threshold: float = 0.5) -> dict[str, Any]:
    """Accuracy, ROC AUC, sensitivity, specificity, precision and F1 of a binary classifier.

    ``y_true`` holds 0/1 labels (1 = positive = malignant) and ``y_score`` the predicted
    probability of class 1, shape ``(n,)``; an image is called positive when
    ``y_score >= threshold``.  The confusion matrix is a nested list, rows = true class,
    columns = predicted class, ``[[TN, FP], [FN, TP]]``.

    Degenerate inputs do not crash: if ``y_true`` holds one class only the AUC is ``nan``
    (with an ``UndefinedMetricWarning``), and ratios with a zero denominator are 0
    (scikit-learn's ``zero_division=0``).
    """
    y = _check_labels(y_true, 2)
    s = _check_probabilities(y_score, len(y))
    if s.ndim != 1:
        raise ValueError(
            f"y_score must be 1-D (probability of class 1), got shape {s.shape}; "
            "use classification_metrics for (n, 1) or (n, 2) scores"
        )
    threshold = _check_threshold(threshold)
    y_pred = (s >= threshold).astype(np.int64)
    n_pos = int(y.sum())
    if 0 < n_pos < len(y):
        auc = float(skm.roc_auc_score(y, s))
    else:
        warnings.warn(
            f"y_true contains only class {int(y[0])}: ROC AUC is undefined and reported as nan",
            UndefinedMetricWarning,
            stacklevel=2,
        )
        auc = math.nan
    return {
        "accuracy": float(skm.accuracy_score(y, y_pred)),
        "auc": auc,
        "sensitivity": float(skm.recall_score(y, y_pred, pos_label=1, zero_division=0)),
        "specificity": float(skm.recall_score(y, y_pred, pos_label=0, zero_division=0)),
        "precision": float(skm.precision_score(y, y_pred, pos_label=1, zero_division=0)),
        "f1": float(skm.f1_score(y, y_pred, pos_label=1, zero_division=0)),
        "confusion_matrix": skm.confusion_matrix(y, y_pred, labels=[0, 1]).tolist(),
        "n": int(len(y)),
        "n_positive": n_pos,
        "threshold": threshold,
    }


def multiclass_metrics(y_true: Any, y_prob: Any, class_names: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro one-vs-rest AUC, macro F1, confusion matrix and per-class recall.

    ``y_prob`` has shape ``(n, k)`` (softmax output); the prediction is its arg-max.  When
    ``"malignant"`` is one of ``class_names`` the result also has ``sensitivity`` and
    ``specificity`` of malignant-vs-rest -- the clinically relevant question even when a
    model distinguishes more classes.  Per-class recalls are under ``per_class_recall``
    (a dict by class name) and, flattened, as ``recall_<name>``.
    """
    names = _check_class_names(class_names)
    k = len(names)
    y = _check_labels(y_true, k, names)
    p = _check_rows(_check_probabilities(y_prob, len(y), name="y_prob"), k, "y_prob")
    labels = list(range(k))
    y_pred = p.argmax(axis=1)
    present = np.bincount(y, minlength=k) > 0
    if present.all():
        auc = float(skm.roc_auc_score(y, p, multi_class="ovr", average="macro", labels=labels))
    else:
        missing = [names[i] for i in range(k) if not present[i]]
        warnings.warn(
            f"y_true has no examples of {missing}: macro one-vs-rest AUC is undefined, reported as nan",
            UndefinedMetricWarning,
            stacklevel=2,
        )
        auc = math.nan
    recalls = skm.recall_score(y, y_pred, labels=labels, average=None, zero_division=0)
    cm = skm.confusion_matrix(y, y_pred, labels=labels)
    out: dict[str, Any] = {
        "accuracy": float(skm.accuracy_score(y, y_pred)),
        "auc": auc,
        "f1": float(skm.f1_score(y, y_pred, labels=labels, average="macro", zero_division=0)),
        "confusion_matrix": cm.tolist(),
        "n": int(len(y)),
        "per_class_recall": {name: float(r) for name, r in zip(names, recalls)},
    }
    out.update({f"recall_{name}": float(r) for name, r in zip(names, recalls)})
    if "malignant" in names:
        m = names.index("malignant")
        vs_rest = _malignant_vs_rest(cm.astype(np.float64)[None], m)
        out["sensitivity"] = float(vs_rest["sensitivity"][0])
        out["specificity"] = float(vs_rest["specificity"][0])
        out["n_positive"] = int(np.sum(y == m))
    return out


def classification_metrics(
    y_true: Any, y_score: Any, class_names: Sequence[str], threshold: float = 0.5
) -> dict[str, Any]:
    """Metrics for any number of classes.

    With two classes, ``y_score`` may be the positive-class probability ``(n,)``, a sigmoid
    output ``(n, 1)`` or a softmax output ``(n, 2)``, and :func:`binary_metrics` is used;
    with more classes ``y_score`` is ``(n, k)`` and :func:`multiclass_metrics` is used.
    """
    y, s, names = _prepare(y_true, y_score, class_names)
    if len(names) == 2:
        return binary_metrics(y, s, threshold=threshold)
    return multiclass_metrics(y, s, names)


# --------------------------------------------------------------------------------------
# Vectorised metrics on weighted (bootstrap-resampled) data
# --------------------------------------------------------------------------------------
#
# A bootstrap resample is described by a weight per original prediction: how many times it
# was drawn.  With ``w`` of shape (B, n), every metric of B resamples is a few matrix
# products -- no Python loop over resamples.  With w = 1 they equal scikit-learn's values
# (tested), which is how we know the fast path is right.


def _weighted_auc(w: np.ndarray, y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """ROC AUC (ties count 1/2, as in scikit-learn) for each row of weights ``w``."""
    order = np.argsort(s, kind="stable")
    s_sorted = s[order]
    ends = np.r_[np.flatnonzero(np.diff(s_sorted)), len(s) - 1]  # last index of each tie block
    pos = (y[order] == 1).astype(np.float64)
    w_sorted = w[:, order]
    cum_pos = np.cumsum(w_sorted * pos, axis=1)[:, ends]
    cum_neg = np.cumsum(w_sorted * (1.0 - pos), axis=1)[:, ends]
    n_pos_block = np.diff(cum_pos, axis=1, prepend=0.0)
    n_neg_block = np.diff(cum_neg, axis=1, prepend=0.0)
    below = cum_neg - n_neg_block  # negatives scored strictly lower than the block
    pairs = np.sum(n_pos_block * (below + 0.5 * n_neg_block), axis=1)
    total = cum_pos[:, -1] * cum_neg[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, pairs / np.where(total > 0, total, 1.0), np.nan)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, 0 where den == 0 (scikit-learn's zero_division=0)."""
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def _binary_from_weights(w: np.ndarray, y: np.ndarray, s: np.ndarray, threshold: float) -> dict[str, np.ndarray]:
    pred = s >= threshold
    pos = y == 1
    tp = w @ (pos & pred).astype(np.float64)
    fn = w @ (pos & ~pred).astype(np.float64)
    fp = w @ (~pos & pred).astype(np.float64)
    tn = w @ (~pos & ~pred).astype(np.float64)
    return {
        "accuracy": _ratio(tp + tn, tp + tn + fp + fn),
        "auc": _weighted_auc(w, y, s),
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "precision": _ratio(tp, tp + fp),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
    }


def _malignant_vs_rest(cm: np.ndarray, m: int) -> dict[str, np.ndarray]:
    """Sensitivity/specificity of class ``m`` vs the rest from confusion matrices (B, k, k)."""
    rows = cm.sum(axis=2)
    rest_true = rows.sum(axis=1) - rows[:, m]
    rest_pred_rest = rest_true - (cm[:, :, m].sum(axis=1) - cm[:, m, m])
    return {"sensitivity": _ratio(cm[:, m, m], rows[:, m]), "specificity": _ratio(rest_pred_rest, rest_true)}


def _multiclass_from_weights(w: np.ndarray, y: np.ndarray, p: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    k = len(names)
    pred = p.argmax(axis=1)
    onehot = np.zeros((len(y), k * k))
    onehot[np.arange(len(y)), y * k + pred] = 1.0
    cm = (w @ onehot).reshape(-1, k, k)  # (B, true, predicted)
    diag = np.diagonal(cm, axis1=1, axis2=2)
    rows, cols = cm.sum(axis=2), cm.sum(axis=1)
    recall = _ratio(diag, rows)
    out = {
        "accuracy": _ratio(diag.sum(axis=1), rows.sum(axis=1)),
        "auc": np.mean([_weighted_auc(w, (y == c).astype(np.int64), p[:, c]) for c in range(k)], axis=0),
        "f1": _ratio(2 * diag, rows + cols).mean(axis=1),
    }
    out.update({f"recall_{name}": recall[:, c] for c, name in enumerate(names)})
    if "malignant" in names:
        out.update(_malignant_vs_rest(cm, names.index("malignant")))
    return out


def _scalar_keys(names: list[str]) -> tuple[str, ...]:
    """Names of the scalar metrics reported for these classes (those that get a CI)."""
    if len(names) == 2:
        return BINARY_SCALARS
    keys = ("accuracy", "auc", "f1", *(f"recall_{name}" for name in names))
    return keys + (("sensitivity", "specificity") if "malignant" in names else ())


def _resample_weights(rng: np.random.Generator, group_index: np.ndarray, n_groups: int, size: int) -> np.ndarray:
    """Weights (size, n): each resample draws ``n_groups`` groups with replacement and every
    image counts as many times as its group was drawn (images = groups of one)."""
    draws = rng.integers(0, n_groups, size=(size, n_groups))
    offsets = (np.arange(size) * n_groups)[:, None]
    counts = np.bincount((draws + offsets).ravel(), minlength=size * n_groups).reshape(size, n_groups)
    return counts[:, group_index].astype(np.float64)


def _group_index(groups: Any, n: int) -> tuple[np.ndarray, int]:
    if groups is None:
        return np.arange(n), n
    g = np.asarray(groups)
    if g.ndim != 1 or len(g) != n:
        raise ValueError(f"groups must be 1-D with one entry per prediction ({n}); got shape {g.shape}")
    _, index = np.unique(g, return_inverse=True)
    return index.ravel(), int(index.max()) + 1


def _too_few_units(y: np.ndarray, group_index: np.ndarray, names: list[str], unit: str) -> str | None:
    """Why a bootstrap over these units is unreliable, or ``None`` if every class has enough."""
    units = [len(np.unique(group_index[y == c])) for c in range(len(names))]
    scarce = [f"{count} {unit}{'' if count == 1 else 's'} of class {name!r}"
              for name, count in zip(names, units) if count < MIN_UNITS_PER_CLASS]
    if not scarce:
        return None
    return (f"{' and '.join(scarce)}, where at least {MIN_UNITS_PER_CLASS} of each class are needed: "
            "the bootstrap intervals do not show the real uncertainty")


def _bootstrap(
    y: np.ndarray,
    s: np.ndarray,
    names: list[str],
    *,
    n_boot: int,
    alpha: float,
    seed: int,
    groups: Any,
    threshold: float,
) -> tuple[dict[str, tuple[float, float]], int, int, str | None]:
    """Bootstrap CIs, the number of usable resamples and of resampled units, and why the CIs
    are unreliable (``None`` if they are not), from inputs already checked by :func:`_prepare`."""
    if int(n_boot) != n_boot or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    threshold = _check_threshold(threshold)
    k, n = len(names), len(y)
    group_index, n_groups = _group_index(groups, n)
    unreliable = _too_few_units(y, group_index, names, "image" if groups is None else "group")
    if unreliable:
        warnings.warn(unreliable, UnreliableIntervalWarning, stacklevel=3)
    rng = np.random.default_rng(seed)
    class_onehot = np.eye(k)[y]
    chunk = max(1, min(int(n_boot), 2_000_000 // max(n, 1)))  # bound memory to ~16 MB per array
    collected: dict[str, list[np.ndarray]] = {}
    done = 0
    while done < n_boot:
        size = min(chunk, int(n_boot) - done)
        w = _resample_weights(rng, group_index, n_groups, size)
        ok = np.all(w @ class_onehot > 0, axis=1)  # skip resamples missing a class
        w = w[ok]
        if len(w):
            batch = _binary_from_weights(w, y, s, threshold) if k == 2 else _multiclass_from_weights(w, y, s, names)
            for key, values in batch.items():
                collected.setdefault(key, []).append(values)
        done += size
    n_valid = sum(len(v) for v in next(iter(collected.values()), []))
    keys = _scalar_keys(names)
    if n_valid < 0.5 * n_boot:
        warnings.warn(
            f"only {n_valid} of {n_boot} bootstrap resamples contained every class; "
            "the confidence intervals are unreliable (too few examples of a class?)",
            UndefinedMetricWarning,
            stacklevel=3,
        )
    ci: dict[str, tuple[float, float]] = {}
    for key in keys:
        if n_valid == 0:
            ci[key] = (math.nan, math.nan)
            continue
        values = np.concatenate(collected[key])
        lo, hi = np.quantile(values, [alpha / 2, 1 - alpha / 2])
        ci[key] = (float(lo), float(hi))
    return ci, n_valid, n_groups, unreliable


def bootstrap_ci(
    y_true: Any,
    y_score: Any,
    class_names: Sequence[str],
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    groups: Any = None,
    threshold: float = 0.5,
) -> dict[str, tuple[float, float]]:
    """Percentile-bootstrap ``1 - alpha`` confidence intervals for every scalar metric.

    Each of ``n_boot`` resamples draws the test images with replacement -- or, when
    ``groups`` gives a group id per image (e.g. patients, or near-duplicates: the duplicate
    groups a split keeps whole, or their small pieces from
    :func:`busutils.duplicates.bootstrap_groups`, which differ only where look-alikes chain),
    draws whole groups, so that copies of one lesion move together.  Images of one group are not
    independent evidence; treating them as such makes intervals falsely narrow.  Resamples
    that lack a class are skipped (AUC, sensitivity, ... are undefined there).  Results are
    deterministic for a given ``seed``.  With fewer than :data:`MIN_UNITS_PER_CLASS` images
    (or groups) of a class the intervals mean little, and an
    :class:`UnreliableIntervalWarning` says so.

    Returns ``{metric: (low, high)}`` for the scalar metrics of
    :func:`classification_metrics` (``(nan, nan)`` if no resample was usable).
    """
    y, s, names = _prepare(y_true, y_score, class_names)
    ci, _, _, _ = _bootstrap(y, s, names, n_boot=n_boot, alpha=alpha, seed=seed, groups=groups, threshold=threshold)
    return ci


# --------------------------------------------------------------------------------------
# Everything a chapter stores, and the table it ends with
# --------------------------------------------------------------------------------------


def metrics_with_ci(
    y_true: Any,
    y_score: Any,
    class_names: Sequence[str],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    groups: Any = None,
    threshold: float = 0.5,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """Metrics, bootstrap confidence intervals and (binary) ROC curve, ready for JSON.

    Returns ``{"metrics": ..., "ci95": {metric: [low, high]}, "roc": {"fpr", "tpr",
    "thresholds"} or None, "class_names": [...], "bootstrap": {...}}`` made of plain
    Python numbers and lists; undefined values (``nan``) are ``None``, and so is the first
    ROC threshold (scikit-learn's ``inf``, "predict nothing positive").  ``ci95`` holds the
    ``1 - alpha`` intervals (95 % by default); ``bootstrap["reliable"]`` is false, with the
    ``reason``, when too few images or groups of a class make them meaningless (see
    :func:`bootstrap_ci`).
    """
    y, s, names = _prepare(y_true, y_score, class_names)
    metrics = binary_metrics(y, s, threshold=threshold) if len(names) == 2 else multiclass_metrics(y, s, names)
    ci, n_valid, n_units, unreliable = _bootstrap(
        y, s, names, n_boot=n_boot, alpha=alpha, seed=seed, groups=groups, threshold=threshold
    )
    roc = None
    if len(names) == 2 and 0 < y.sum() < len(y):
        fpr, tpr, thresholds = skm.roc_curve(y, s)
        roc = {"fpr": fpr, "tpr": tpr, "thresholds": thresholds}
    return to_jsonable(
        {
            "metrics": metrics,
            "ci95": ci,
            "roc": roc,
            "class_names": names,
            "bootstrap": {
                "n_boot": int(n_boot),
                "n_valid": n_valid,
                "alpha": alpha,
                "seed": seed,
                "unit": "image" if groups is None else "group",
                "n_units": n_units,
                "reliable": unreliable is None,
                "reason": unreliable,
            },
        }
    )


TABLE_COLUMNS = {"accuracy": "accuracy", "auc": "AUC", "sensitivity": "sensitivity", "specificity": "specificity"}


def _fmt(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def format_metric(metrics: Mapping[str, Any], key: str, digits: int = 3) -> str:
    """``metrics[key]`` for printing: a number, or ``"n/a"`` and why when it is undefined.

    ``metrics`` is the ``"metrics"`` part of :func:`metrics_with_ci` (undefined values
    there are ``None``).  The AUC, the one metric that can be undefined, needs every class
    among the test images.
    """
    value = metrics.get(key)
    if isinstance(value, (bool, int, np.integer)):
        return str(value)
    text = _fmt(value, digits)
    if text == "n/a" and key == "auc":
        return "n/a (the AUC needs every class among the test images)"
    return text


def _cell(value: Any, ci: Any, digits: int) -> str:
    text = _fmt(value, digits)
    if ci is None or text == "n/a":
        return text
    lo, hi = ci
    if lo is None or hi is None or (isinstance(lo, float) and math.isnan(lo)):
        return text
    return f"{text} [{_fmt(lo, digits)}, {_fmt(hi, digits)}]"


def metrics_table(
    results: Mapping[str, Mapping[str, Any]],
    include_paper: bool | Iterable[str] = True,
    *,
    digits: int = 2,
) -> pd.DataFrame:
    """The comparison table each chapter ends with.

    ``results`` maps a run name (e.g. ``"baseline (this run)"``) to the output of
    :func:`metrics_with_ci` (or a JSON file of it read back, or a bare metrics dict).
    Each cell reads ``"0.83 [0.76, 0.89]"``: point estimate and 95 % CI.  The rows of
    :data:`PAPER_TABLE1` follow as ``"<model> (paper)"`` -- all of them, or only the names
    given in ``include_paper`` -- with accuracy and AUC as printed in the paper and empty
    cells for what it does not report.
    """
    rows: dict[str, dict[str, str]] = {}
    for run, result in results.items():
        metrics = result.get("metrics", result)
        cis = result.get("ci95") or {}
        rows[str(run)] = {
            col: (_cell(metrics[key], cis.get(key), digits) if key in metrics else "")
            for key, col in TABLE_COLUMNS.items()
        }
    if include_paper is True:
        paper = list(PAPER_TABLE1)
    elif include_paper is False:
        paper = []
    else:
        paper = list(include_paper)
        unknown = [p for p in paper if p not in PAPER_TABLE1]
        if unknown:
            raise ValueError(f"include_paper: unknown models {unknown}; choose from {list(PAPER_TABLE1)}")
    for model in paper:
        reported = PAPER_TABLE1[model]
        rows[f"{model} (paper)"] = {
            col: (f"{reported[key]:.4g}" if key in reported else "") for key, col in TABLE_COLUMNS.items()
        }
    table = pd.DataFrame.from_dict(rows, orient="index", columns=list(TABLE_COLUMNS.values()))
    table.index.name = "model"
    return table
