"""From scores to decisions: choosing a threshold, and checking and fixing calibration.

A classifier's AUC says nothing about where to cut its scores.  For a lesion already found
(a diagnostic work-up, not screening), the cut is chosen for a target sensitivity (miss few
cancers) on *validation* data, then frozen and reported with its confidence interval on the
test data.  And a "probability" of 0.9 is
only a probability if, among cases scored 0.9, nine in ten are malignant: the
reliability curve and the Brier score check that, and a recalibration map fitted on
validation data repairs it.

Conventions as in :mod:`busutils.evaluate`: labels 0/1 with 1 = malignant, scores are
the probability of class 1, and a case is called positive when ``score >= threshold``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.calibration import calibration_curve
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from scipy.stats import binomtest
from sklearn.metrics import brier_score_loss

from busutils.evaluate import _check_labels, _check_probabilities, metrics_with_ci

__all__ = [
    "Recalibration",
    "brier_score",
    "expected_calibration_error",
    "fit_recalibration",
    "reliability_curve",
    "reliability_intervals",
    "sensitivity_specificity",
    "threshold_for_sensitivity",
]

_CLIP = 1e-6  # scores are kept this far from 0 and 1 before taking their logit


def _check(y_true: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    y = _check_labels(y_true, 2)
    s = _check_probabilities(scores, len(y), name="scores")
    if s.ndim != 1:
        raise ValueError(f"scores must be 1-D (probability of class 1), got shape {s.shape}")
    return y, s


def threshold_for_sensitivity(y_true: Any, scores: Any, target: float = 0.95) -> float:
    """The highest threshold whose sensitivity on these data is at least ``target``.

    Highest, because among thresholds meeting the target it has the best specificity.
    Choose it on validation data: on the test data it would be tuned to the answers.
    It is one of the positives' scores: the ``k``-th highest, for the smallest ``k`` with
    ``k / n_positive >= target``.
    """
    y, s = _check(y_true, scores)
    target = float(target)
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target must be a sensitivity in (0, 1], got {target}")
    positives = np.sort(s[y == 1])[::-1]
    if len(positives) == 0:
        raise ValueError("y_true has no positive (malignant) cases: sensitivity is undefined")
    k = np.arange(1, len(positives) + 1)
    return float(positives[k[k / len(positives) >= target][0] - 1])


def sensitivity_specificity(
    y_true: Any, scores: Any, threshold: float, *, groups: Any = None, n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Sensitivity and specificity at a fixed ``threshold``, with 95 % bootstrap CIs.

    The bootstrap is :func:`busutils.evaluate.bootstrap_ci`'s, resampling whole ``groups``
    of near-duplicates when given.  Returns ``threshold``, ``sensitivity``,
    ``specificity``, ``ci95`` (``{"sensitivity": [lo, hi], "specificity": [lo, hi]}``),
    ``confusion_matrix`` (``[[TN, FP], [FN, TP]]``), ``n`` and ``n_positive``.
    """
    y, s = _check(y_true, scores)
    result = metrics_with_ci(
        y, s, ("benign", "malignant"), n_boot=n_boot, seed=seed, groups=groups, threshold=threshold
    )
    m = result["metrics"]
    return {
        "threshold": m["threshold"],
        "sensitivity": m["sensitivity"],
        "specificity": m["specificity"],
        "ci95": {key: result["ci95"][key] for key in ("sensitivity", "specificity")},
        "confusion_matrix": m["confusion_matrix"],
        "n": m["n"],
        "n_positive": m["n_positive"],
    }


def brier_score(y_true: Any, scores: Any) -> float:
    """Mean squared difference between score and outcome: 0 is perfect, 0.25 is a coin."""
    y, s = _check(y_true, scores)
    return float(brier_score_loss(y, s))


def reliability_curve(
    y_true: Any, scores: Any, n_bins: int = 10, strategy: str = "quantile"
) -> dict[str, np.ndarray]:
    """Observed fraction of positives against mean score, per bin of scores.

    ``strategy="quantile"`` gives bins of equal counts (steadier with few cases),
    ``"uniform"`` bins of equal width.  Returns ``mean_score``, ``fraction_positive`` and
    ``count`` for the non-empty bins, from :func:`sklearn.calibration.calibration_curve`;
    a calibrated model has ``fraction_positive == mean_score``.
    """
    y, s = _check(y_true, scores)
    if int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins}")
    if strategy not in ("quantile", "uniform"):
        raise ValueError(f"strategy must be 'quantile' or 'uniform', got {strategy!r}")
    fraction, mean_score = calibration_curve(y, s, n_bins=int(n_bins), strategy=strategy)
    # the bins calibration_curve uses (its documented edges), to count the cases in each
    if strategy == "quantile":
        edges = np.percentile(s, np.linspace(0, 100, int(n_bins) + 1))
    else:
        edges = np.linspace(0.0, 1.0, int(n_bins) + 1)
    count = np.bincount(np.searchsorted(edges[1:-1], s), minlength=int(n_bins))
    count = count[count > 0]
    if len(count) != len(fraction):  # pragma: no cover - would mean sklearn changed its bins
        raise RuntimeError("bin counts do not match sklearn's calibration_curve")
    return {"mean_score": mean_score, "fraction_positive": fraction, "count": count}


def expected_calibration_error(y_true: Any, scores: Any, n_bins: int = 10, strategy: str = "quantile") -> float:
    """Count-weighted mean gap ``|fraction_positive - mean_score|`` over the bins of
    :func:`reliability_curve` (Naeini et al. 2015): 0 for a calibrated model."""
    curve = reliability_curve(y_true, scores, n_bins=n_bins, strategy=strategy)
    gaps = np.abs(curve["fraction_positive"] - curve["mean_score"])
    return float(np.sum(curve["count"] * gaps) / np.sum(curve["count"]))


def _logit(s: np.ndarray) -> np.ndarray:
    s = np.clip(s, _CLIP, 1.0 - _CLIP)
    return np.log(s) - np.log1p(-s)


@dataclass(frozen=True)
class Recalibration:
    """A fitted map from a model's scores to calibrated probabilities (see :func:`fit_recalibration`)."""

    method: str
    model: Any

    def transform(self, scores: Any) -> np.ndarray:
        """Calibrated probabilities of class 1 for ``scores``."""
        s = np.asarray(scores, dtype=np.float64)
        if s.ndim != 1:
            raise ValueError(f"scores must be 1-D (probability of class 1), got shape {s.shape}")
        s = _check_probabilities(s, len(s), name="scores")
        if self.method == "platt":
            return self.model.predict_proba(_logit(s)[:, None])[:, 1]
        return np.clip(self.model.predict(s), 0.0, 1.0)


def fit_recalibration(y_val: Any, s_val: Any, method: str = "platt") -> Recalibration:
    """Fit a map from scores to calibrated probabilities on VALIDATION data only.

    Fitting it on the test data would grade the model with its own answer key.
    ``method="platt"``: a logistic regression on the logit of the score, i.e.
    ``p = sigmoid(a * logit(s) + b)`` (Platt 1999, with his smoothed targets
    ``(N+ + 1) / (N+ + 2)`` and ``1 / (N- + 2)`` so that separable data still give a
    finite fit); two parameters, keeps the ranking, fine with little data.
    ``method="isotonic"``: the best non-decreasing step function (sklearn's
    ``IsotonicRegression``); more flexible, needs more data, can create ties.
    The returned object's ``transform(scores)`` applies the map.
    """
    y, s = _check(y_val, s_val)
    if method not in ("platt", "isotonic"):
        raise ValueError(f"method must be 'platt' or 'isotonic', got {method!r}")
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == len(y):
        raise ValueError("y_val must contain both classes to fit a recalibration")
    if method == "isotonic":
        return Recalibration(method, IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(s, y))
    # Each case enters twice, as a positive with weight t and a negative with weight 1 - t.
    t = np.where(y == 1, (n_pos + 1) / (n_pos + 2), 1.0 / (len(y) - n_pos + 2))
    z = _logit(s)
    model = LogisticRegression(C=np.inf).fit(
        np.r_[z, z][:, None], np.r_[np.ones(len(y)), np.zeros(len(y))], sample_weight=np.r_[t, 1.0 - t]
    )
    return Recalibration(method, model)


def reliability_intervals(
    y_true: Any, scores: Any, n_bins: int = 10, strategy: str = "quantile", level: float = 0.95
) -> dict[str, np.ndarray]:
    """:func:`reliability_curve` with a Wilson ``level`` interval on each bin's fraction of positives.

    A bin of 20 images with 4 malignant says "20 %" with an interval of about 8 % to 42 %: a
    curve drawn through a few dozen test images wanders off the diagonal by chance, and the
    intervals show how far.  Adds ``low`` and ``high`` to the curve's arrays.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    curve = reliability_curve(y_true, scores, n_bins=n_bins, strategy=strategy)
    bounds = [binomtest(int(round(f * n)), int(n)).proportion_ci(confidence_level=level, method="wilson")
              for f, n in zip(curve["fraction_positive"], curve["count"])]
    return {**curve, "low": np.array([b.low for b in bounds]), "high": np.array([b.high for b in bounds])}
