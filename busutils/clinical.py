"""From a calibrated probability to a clinical decision: the BI-RADS 3/4 boundary, predictive values, net benefit.

A radiologist who finds a breast lesion on ultrasound reports a BI-RADS category.  Category 3,
"probably benign", means a likelihood of malignancy of at most 2 %, and short-interval
follow-up; above 2 % (category 4) a biopsy is recommended (ACR BI-RADS Atlas, 5th edition,
2013).  A model's probability of malignancy can be held to the same boundary -- if it is a
probability (calibrated, see :mod:`busutils.operating_point`) at the prevalence where it is used.

* :func:`shift_prevalence` moves calibrated probabilities from the prevalence of the data they
  were calibrated on to another (Bayes' rule on the odds);
* :func:`predictive_values` and :func:`predictive_value_bands`: the share of cancers among the
  lesions a threshold calls malignant (PPV), and of benign lesions among those it calls
  benign (NPV), at any prevalence, with bands; :func:`cancers_among_benign_calls` counts the
  cancers a "probably benign" call would defer;
* :func:`net_benefit`: the decision curve of Vickers & Elkin (2006).

Conventions as in :mod:`busutils.evaluate`: labels 0/1 with 1 = malignant; a case is called
malignant when its probability is ``>= threshold``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.stats import binomtest

from .evaluate import _check_labels, _check_probabilities

__all__ = ["BIRADS3_MAX", "cancers_among_benign_calls", "net_benefit", "predictive_value_bands",
           "predictive_values", "shift_prevalence"]

#: Largest likelihood of malignancy of BI-RADS category 3, "probably benign" (ACR 2013).
BIRADS3_MAX = 0.02


def _check_fraction(value: Any, name: str, *, closed: bool = False) -> np.ndarray:
    v = np.asarray(value, dtype=np.float64)
    low_ok = v >= 0 if closed else v > 0
    high_ok = v <= 1 if closed else v < 1
    if not np.all(np.isfinite(v) & low_ok & high_ok):
        interval = "[0, 1]" if closed else "(0, 1)"
        raise ValueError(f"{name} must lie in {interval}, got {np.atleast_1d(v)[:5].tolist()}")
    return v


def shift_prevalence(p: Any, from_prevalence: float, to_prevalence: float) -> np.ndarray:
    """Probabilities calibrated at ``from_prevalence`` as they would be at ``to_prevalence``.

    The likelihood ratio of what the model saw stays; only the prior changes: the odds are
    multiplied by ``(to / (1 - to)) / (from / (1 - from))``.  Right when the images of each class
    look the same in the new setting and only their proportion differs.
    """
    p = _check_fraction(p, "p", closed=True)
    a, b = (float(_check_fraction(x, name)) for x, name in ((from_prevalence, "from_prevalence"),
                                                           (to_prevalence, "to_prevalence")))
    ratio = (b / (1 - b)) / (a / (1 - a))
    odds = p / np.where(p < 1, 1 - p, 1.0) * ratio
    return np.where(p < 1, odds / (1 + odds), 1.0)


def predictive_values(sensitivity: Any, specificity: Any, prevalence: Any) -> dict[str, np.ndarray]:
    """PPV and NPV of a test with this sensitivity and specificity where ``prevalence`` of lesions are malignant.

    ``PPV = se * pi / (se * pi + (1 - sp) * (1 - pi))``: the share of cancers among the lesions
    called malignant; ``NPV = sp * (1 - pi) / (sp * (1 - pi) + (1 - se) * pi)``: the share of benign
    lesions among those called benign.  Sensitivity and specificity do not depend on the
    prevalence; the predictive values do, strongly.  Arrays broadcast; an undefined value
    (nothing called malignant, or benign) is ``nan``.
    """
    se = _check_fraction(sensitivity, "sensitivity", closed=True)
    sp = _check_fraction(specificity, "specificity", closed=True)
    pi = _check_fraction(prevalence, "prevalence", closed=True)
    called_malignant = se * pi + (1 - sp) * (1 - pi)
    called_benign = sp * (1 - pi) + (1 - se) * pi
    with np.errstate(invalid="ignore", divide="ignore"):
        ppv = np.where(called_malignant > 0, se * pi / called_malignant, np.nan)
        npv = np.where(called_benign > 0, sp * (1 - pi) / called_benign, np.nan)
    return {"ppv": ppv, "npv": npv}


def _wilson(successes: int, trials: int, level: float) -> tuple[float, float]:
    """Wilson's interval for a proportion; ``(nan, nan)`` with no trials."""
    if trials == 0:
        return math.nan, math.nan
    found = binomtest(int(successes), int(trials)).proportion_ci(confidence_level=level, method="wilson")
    return float(found.low), float(found.high)


def predictive_value_bands(y_true: Any, p: Any, threshold: float, prevalences: Any, *,
                           level: float = 0.95) -> dict[str, Any]:
    """PPV and NPV at each of ``prevalences``, from this test part's sensitivity and specificity, with bands.

    The sensitivity and specificity at ``threshold`` are measured on ``(y_true, p)``, each with
    Wilson's ``level`` interval; both predictive values rise with both, so the bands are the
    predictive values at the intervals' ends.  Wilson's interval stays honest at the edges: no
    cancer missed among 40 still leaves a sensitivity interval down to about 0.91, where a
    bootstrap would see no uncertainty at all.  Images count as independent.  Returns
    ``prevalence``, ``sensitivity``, ``specificity``, ``ppv``, ``npv`` and ``ppv_low``,
    ``ppv_high``, ``npv_low``, ``npv_high``.
    """
    y = _check_labels(y_true, 2)
    s = _check_probabilities(p, len(y), name="p")
    if s.ndim != 1:
        raise ValueError(f"p must be 1-D (probability of malignant), got shape {s.shape}")
    if y.min() == y.max():
        raise ValueError("y_true holds one class only: sensitivity and specificity need both")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    pi = _check_fraction(prevalences, "prevalences", closed=True).reshape(-1)
    called = s >= float(threshold)
    tp, n_pos = int((called & (y == 1)).sum()), int((y == 1).sum())
    tn, n_neg = int((~called & (y == 0)).sum()), int((y == 0).sum())
    se, sp = tp / n_pos, tn / n_neg
    (se_low, se_high), (sp_low, sp_high) = _wilson(tp, n_pos, level), _wilson(tn, n_neg, level)
    point = predictive_values(se, sp, pi)
    low, high = predictive_values(se_low, sp_low, pi), predictive_values(se_high, sp_high, pi)
    return {"prevalence": pi, "sensitivity": se, "specificity": sp, "ppv": point["ppv"],
            "npv": point["npv"], "ppv_low": low["ppv"], "ppv_high": high["ppv"], "npv_low": low["npv"],
            "npv_high": high["npv"]}


def cancers_among_benign_calls(y_true: Any, p: Any, threshold: float, *, level: float = 0.95) -> dict[str, Any]:
    """Of the lesions called benign (``p < threshold``), how many are malignant: count, share, Wilson interval.

    The share is one minus the NPV at this test part's own prevalence; BI-RADS 3 allows at most
    2 %.  With no cancer among n benign calls the interval still reaches about 4 / n: a few
    dozen lesions cannot show a rate below 2 %.
    """
    y = _check_labels(y_true, 2)
    s = _check_probabilities(p, len(y), name="p")
    benign = s < float(threshold)
    n, cancers = int(benign.sum()), int((benign & (y == 1)).sum())
    low, high = _wilson(cancers, n, level)
    return {"called_benign": n, "malignant": cancers, "share": cancers / n if n else math.nan,
            "low": low, "high": high}


def net_benefit(y_true: Any, p: Any, thresholds: Any) -> dict[str, np.ndarray]:
    """Decision curve (Vickers & Elkin 2006): net benefit of biopsy by the model, for all, for none.

    At a threshold probability ``t`` a biopsy is worth doing when the chance of cancer is at
    least ``t``: a clinician who chooses ``t`` weighs a missed cancer ``(1 - t) / t`` times a
    needless biopsy.  Net benefit counts true positives per patient minus false positives per
    patient weighted by ``t / (1 - t)``:
    ``TP / n - FP / n * t / (1 - t)``.  Biopsy for all has ``pi - (1 - pi) * t / (1 - t)``
    (``pi`` the prevalence), biopsy for none 0.  A model is worth using at ``t`` where its curve
    lies above both.  ``p`` must be calibrated probabilities.
    """
    y = _check_labels(y_true, 2)
    s = _check_probabilities(p, len(y), name="p")
    if s.ndim != 1:
        raise ValueError(f"p must be 1-D (probability of malignant), got shape {s.shape}")
    t = _check_fraction(thresholds, "thresholds").reshape(-1)
    called = s[None, :] >= t[:, None]
    n = len(y)
    tp = (called & (y == 1)).sum(axis=1) / n
    fp = (called & (y == 0)).sum(axis=1) / n
    weight = t / (1 - t)
    prevalence = y.mean()
    return {"threshold": t, "model": tp - fp * weight, "all": prevalence - (1 - prevalence) * weight,
            "none": np.zeros_like(t)}
