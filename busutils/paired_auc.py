"""Is model A better than model B?  Paired comparisons of two ROC AUCs.

Both models must be scored on the *same* test images.  The two AUCs are then correlated
(an image that is hard for one model tends to be hard for the other), so comparing their
two separate confidence intervals is wrong -- usually too conservative.  The tests here use
the pairing:

* :func:`delong_test` -- the asymptotic test of DeLong, DeLong & Clarke-Pearson (1988),
  computed from the structural components (placement values) with the fast algorithm of
  Sun & Xu (2014);
* :func:`paired_bootstrap_auc` -- a paired bootstrap that can resample whole groups of
  near-duplicate images, as :func:`busutils.evaluate.bootstrap_ci` does.

:func:`describe_difference` says what either result shows, in one sentence a chapter can
print: a conclusion drawn from the run, never written before it.

Scores are any real numbers ordered like the probability of class 1 (probabilities,
logits, ...); only their ranks matter.  Labels are 0/1 with 1 = malignant.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.stats import norm, rankdata

from busutils.evaluate import _check_labels, _group_index, _resample_weights, _weighted_auc

__all__ = ["delong_test", "describe_difference", "paired_bootstrap_auc"]


def _check_pair(y_true: Any, score_a: Any, score_b: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels and two finite score vectors of the same length, both classes present twice."""
    y = _check_labels(y_true, 2)
    scores = []
    for name, s in (("score_a", score_a), ("score_b", score_b)):
        s = np.asarray(s, dtype=np.float64)
        if s.shape != y.shape:
            raise ValueError(f"{name} must have one score per label, shape {y.shape}; got {s.shape}")
        if not np.all(np.isfinite(s)):
            raise ValueError(f"{name} contains nan or inf")
        scores.append(s)
    n_pos = int(y.sum())
    if n_pos < 2 or len(y) - n_pos < 2:
        raise ValueError(
            f"y_true needs at least two cases of each class to compare AUCs; it has {n_pos} "
            f"positive and {len(y) - n_pos} negative"
        )
    return y, scores[0], scores[1]


def _placements(y: np.ndarray, s: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """AUC and the placement values of the positives (V10) and negatives (V01).

    V10 of a positive is the fraction of negatives it outscores, V01 of a negative the
    fraction of positives that outscore it (ties count 1/2).  With midranks in the pooled
    sample (``rank``) and within the class (``rank_in_class``), ``rank - rank_in_class`` is
    the number of other-class cases below -- one O(n log n) sort (Sun & Xu 2014).
    """
    pos, neg = y == 1, y == 0
    m, n = int(pos.sum()), int(neg.sum())
    rank = rankdata(s)  # midranks: ties share the average rank
    v10 = (rank[pos] - rankdata(s[pos])) / n
    v01 = 1.0 - (rank[neg] - rankdata(s[neg])) / m
    return float(v10.mean()), v10, v01


def delong_test(y_true: Any, score_a: Any, score_b: Any) -> dict[str, Any]:
    """DeLong's test that two models scored on the same images have equal ROC AUC.

    Returns ``auc_a``, ``auc_b``, ``difference`` (a - b), its standard error ``se``, the
    statistic ``z``, the two-sided ``p_value``, ``n``, ``n_positive`` and ``note``
    (``None`` unless the variance is zero).  The variance of the difference is
    ``var(V10_a - V10_b) / m + var(V01_a - V01_b) / n`` over the m positives and n
    negatives -- DeLong et al. (1988), Biometrics 44:837.  When it is zero (identical
    scores, or two models that both rank every pair the same way) there is nothing to
    test: the p-value is 1 for equal AUCs (0 for unequal ones) and ``note`` says why.
    Each image counts as independent; with near-duplicates use
    :func:`paired_bootstrap_auc` with ``groups``.
    """
    y, a, b = _check_pair(y_true, score_a, score_b)
    auc_a, v10_a, v01_a = _placements(y, a)
    auc_b, v10_b, v01_b = _placements(y, b)
    difference = auc_a - auc_b
    var = np.var(v10_a - v10_b, ddof=1) / len(v10_a) + np.var(v01_a - v01_b, ddof=1) / len(v01_a)
    se = math.sqrt(max(float(var), 0.0))
    out = {"auc_a": auc_a, "auc_b": auc_b, "difference": difference, "se": se, "n": len(y),
           "n_positive": int(y.sum()), "note": None}
    if se < 1e-12:
        if abs(difference) < 1e-12:
            out.update(difference=0.0, z=0.0, p_value=1.0,
                       note="zero variance: the two models rank every pair of cases alike (identical scores?)")
        else:
            out.update(z=math.copysign(math.inf, difference), p_value=0.0,
                       note="zero variance: each model ranks all pairs alike but the AUCs differ; "
                            "the asymptotic test is degenerate, look at the data")
        return out
    z = difference / se
    return out | {"z": z, "p_value": float(2.0 * norm.sf(abs(z)))}


def paired_bootstrap_auc(
    y_true: Any,
    score_a: Any,
    score_b: Any,
    *,
    groups: Any = None,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Difference of two paired AUCs with a 95 % percentile-bootstrap CI and a p-value.

    Each resample draws the test images with replacement -- whole ``groups`` (e.g.
    near-duplicate clusters) when given, because copies of one lesion are not independent
    evidence -- and scores *both* models on it, so their correlation is kept.  Resamples
    lacking a class are skipped.  The two-sided p-value is twice the smaller fraction of
    resampled differences on either side of 0 (counting the observed data as one more
    resample, so it is never exactly 0).

    Returns ``auc_a``, ``auc_b``, ``difference`` (a - b), ``ci95`` (low, high),
    ``p_value``, ``n_boot``, ``n_valid``, ``unit`` ("image" or "group") and ``n_units``.
    """
    y, a, b = _check_pair(y_true, score_a, score_b)
    if int(n_boot) != n_boot or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot}")
    group_index, n_groups = _group_index(groups, len(y))
    rng = np.random.default_rng(seed)
    both = np.column_stack([1 - y, y]).astype(np.float64)
    chunk = max(1, min(int(n_boot), 2_000_000 // len(y)))  # bound memory, as in evaluate
    diffs, done = [], 0
    while done < n_boot:
        size = min(chunk, int(n_boot) - done)
        w = _resample_weights(rng, group_index, n_groups, size)
        w = w[np.all(w @ both > 0, axis=1)]
        diffs.append(_weighted_auc(w, y, a) - _weighted_auc(w, y, b))
        done += size
    d = np.concatenate(diffs)
    if len(d) == 0:
        raise ValueError("no bootstrap resample contained both classes: too few groups of one class")
    auc_a, auc_b = (float(_weighted_auc(np.ones((1, len(y))), y, s)[0]) for s in (a, b))
    below = (1 + np.sum(d <= 0)) / (len(d) + 1)
    above = (1 + np.sum(d >= 0)) / (len(d) + 1)
    lo, hi = np.quantile(d, [0.025, 0.975])
    return {
        "auc_a": auc_a,
        "auc_b": auc_b,
        "difference": auc_a - auc_b,
        "ci95": (float(lo), float(hi)),
        "p_value": float(min(1.0, 2.0 * min(below, above))),
        "n_boot": int(n_boot),
        "n_valid": int(len(d)),
        "unit": "image" if groups is None else "group",
        "n_units": n_groups,
    }


def describe_difference(result: dict[str, Any], name_a: str, name_b: str, *, alpha: float = 0.05) -> str:
    """One sentence on a paired comparison of two AUCs (:func:`paired_bootstrap_auc` or
    :func:`delong_test`): which model ranks the test images better, by how much, and whether
    these images can tell the two apart at level ``alpha``.

    The sentence follows the numbers, so that a chapter states what its own run showed: a
    difference is called real only when its p-value is below ``alpha``, and a p-value above
    it is read as "these images cannot tell", never as "equally good".
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    missing = sorted({"auc_a", "auc_b", "difference", "p_value"} - set(result))
    if missing:
        raise ValueError(f"result lacks {missing}: pass what paired_bootstrap_auc or delong_test returns")
    a, b, d, p = result["auc_a"], result["auc_b"], result["difference"], result["p_value"]
    interval = ""
    if "ci95" in result:
        low, high = result["ci95"]
        interval = f", 95% CI {low:+.3f} to {high:+.3f}"
    numbers = f"AUC {a:.3f} against {b:.3f}, a difference of {d:+.3f}{interval}, p = {p:.3f}"
    if abs(d) < 5e-4 and p >= alpha:
        sentence = f"{name_a} and {name_b} rank these test images alike ({numbers})."
    elif p < alpha:
        better, worse = (name_a, name_b) if d > 0 else (name_b, name_a)
        sentence = (f"{better} ranks these test images better than {worse} ({numbers}): more than "
                    "chance alone would often give on this many images.")
    else:
        sentence = (f"These test images cannot tell {name_a} from {name_b} ({numbers}): a difference "
                    "of this size is within what chance gives on this many images, which does not make "
                    "the two equal.")
    return sentence[0].upper() + sentence[1:]
