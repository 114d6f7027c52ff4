"""How sure are we?  Intervals, several tests at once, and what a test part of n images can tell apart.

* :func:`bootstrap_aucs` draws bootstrap resamples of a test part the plain way, one loop turn
  per resample, so that a chapter can show how a percentile interval is made (the fast,
  vectorised version the chapters report is :func:`busutils.evaluate.bootstrap_ci`);
* :func:`delong_interval` gives the AUC's standard error from its placement values (DeLong et
  al. 1988), and :func:`auc_correlation` how strongly two models' AUCs on the same images move
  together;
* :func:`holm` adjusts the p-values of several tests made at once (Holm 1979);
* :func:`hanley_mcneil_se`, :func:`auc_difference_power` and :func:`detectable_auc_difference`
  say, before any experiment, what difference of two AUCs a test part of a given size can
  detect (Hanley & McNeil 1982, 1983), and :func:`simulated_auc_power` checks them by
  simulation;
* :func:`spread_over_seeds` trains one model again with other seeds, to show what a single
  run's interval leaves out.

Labels are 0/1 with 1 = malignant; scores are ordered like the probability of malignant.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
import pandas as pd
from scipy.optimize import brentq
from scipy.stats import norm, rankdata

from .paired_auc import _check_pair, _placements, delong_test, paired_bootstrap_auc
from .evaluate import _check_labels, _group_index

__all__ = [
    "auc_correlation",
    "compare_pairs",
    "comparison_limits",
    "auc_difference_power",
    "bootstrap_aucs",
    "delong_interval",
    "detectable_auc_difference",
    "hanley_mcneil_se",
    "holm",
    "rank_auc",
    "simulated_auc_power",
    "spread_over_seeds",
    "summarise_spread",
]


def bootstrap_aucs(y_true: Any, scores: Any, *, groups: Any = None, n_boot: int = 2000,
                   seed: int = 0) -> np.ndarray:
    """The AUC of each bootstrap resample of a test part, for a percentile interval.

    A resample draws, with replacement, as many groups as the test part has and keeps
    every image of every group drawn (without ``groups`` each image is a group of its
    own), so that two copies of one lesion always travel together.  A resample that
    lacks a class has no AUC and is skipped.  The middle 95 % of the values returned is
    the 95 % percentile interval.
    """
    y = _check_labels(y_true, 2)
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != y.shape or int(n_boot) != n_boot or n_boot < 1:
        raise ValueError(f"scores need one value per label, {y.shape} (got {s.shape}), "
                         f"and n_boot a positive integer (got {n_boot})")
    group_index, n_groups = _group_index(groups, len(y))
    members = [np.flatnonzero(group_index == g) for g in range(n_groups)]
    rng = np.random.default_rng(seed)
    aucs = []
    for _ in range(int(n_boot)):
        drawn = rng.integers(0, n_groups, size=n_groups)  # groups, with replacement
        rows = np.concatenate([members[g] for g in drawn])
        if 0 < y[rows].sum() < len(rows):  # both classes present
            aucs.append(rank_auc(y[rows], s[rows]))
    return np.array(aucs)


def rank_auc(y: np.ndarray, s: np.ndarray) -> float:
    """The AUC as the share of (malignant, benign) pairs ranked the right way, ties counting half.

    From the ranks of all scores (Mann-Whitney): the malignant images' rank sum, less the
    smallest it could be, over the number of pairs.  Equals scikit-learn's ``roc_auc_score``.
    """
    positive = np.asarray(y) == 1
    m, n = int(positive.sum()), int((~positive).sum())
    ranks = rankdata(s)  # ties share their mean rank
    return float((ranks[positive].sum() - m * (m + 1) / 2) / (m * n))


def delong_interval(y_true: Any, scores: Any, *, level: float = 0.95) -> dict[str, float]:
    """The AUC with DeLong's standard error and a normal ``level`` interval (clipped to [0, 1]).

    The placement value of a malignant image is the share of benign images it outscores; of a
    benign image, the share of malignant images that outscore it.  The AUC is the mean of the
    first; its variance is ``var(V10) / m + var(V01) / n`` over the m malignant and n benign
    images.  Every image counts as independent evidence: with near-duplicates, prefer the
    bootstrap over groups.
    """
    y, s, _ = _check_pair(y_true, scores, scores)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    auc, v10, v01 = _placements(y, s)
    se = math.sqrt(np.var(v10, ddof=1) / len(v10) + np.var(v01, ddof=1) / len(v01))
    z = norm.ppf(0.5 + level / 2)
    return {"auc": auc, "se": se, "low": float(max(0.0, auc - z * se)), "high": float(min(1.0, auc + z * se)),
            "n_positive": len(v10), "n_negative": len(v01)}


def auc_correlation(y_true: Any, score_a: Any, score_b: Any) -> float:
    """Correlation of two models' AUC estimates on the same images, from their placement values.

    Near 1 when the two models find the same images hard; it is what makes a paired
    comparison more sensitive than two separate intervals (Hanley & McNeil 1983).
    """
    y, a, b = _check_pair(y_true, score_a, score_b)
    _, v10_a, v01_a = _placements(y, a)
    _, v10_b, v01_b = _placements(y, b)
    var_a = np.var(v10_a, ddof=1) / len(v10_a) + np.var(v01_a, ddof=1) / len(v01_a)
    var_b = np.var(v10_b, ddof=1) / len(v10_b) + np.var(v01_b, ddof=1) / len(v01_b)
    cov = np.cov(v10_a, v10_b)[0, 1] / len(v10_a) + np.cov(v01_a, v01_b)[0, 1] / len(v01_a)
    if var_a <= 0 or var_b <= 0:
        raise ValueError("a model ranks every pair of images alike: its AUC has no variance to correlate")
    return float(cov / math.sqrt(var_a * var_b))


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's adjusted p-values, in the order given: reject where the adjusted value is below alpha.

    Sorted from the smallest, the k-th of m p-values is multiplied by ``m - k + 1`` (and never
    falls below the one before it), so that the chance of any false rejection among all m
    tests stays at most alpha (Holm 1979).  Never less powerful than Bonferroni's ``m * p``.
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1 or len(p) == 0:
        raise ValueError(f"p_values must be a non-empty list of p-values, got shape {p.shape}")
    if np.any(~np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError(f"p_values must lie in [0, 1], got {p.tolist()}")
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return out


def compare_pairs(y_true: Any, scores: Mapping[str, Any], *, groups: Any = None, n_boot: int = 2000,
                  seed: int = 0) -> pd.DataFrame:
    """Every pair of models scored on the same images: AUC difference, DeLong's p-value, Holm's, a bootstrap CI.

    One row per pair ``"b - a"`` (a listed before b in ``scores``): the difference of the AUCs,
    its paired-bootstrap 95 % interval (whole ``groups`` resampled), DeLong's p-value for that
    pair alone, and the same p-value adjusted by :func:`holm` for all the pairs tested together.
    """
    names = list(scores)
    if len(names) < 2:
        raise ValueError(f"scores must hold two or more models to compare, got {names}")
    rows = {}
    for a, b in itertools.combinations(names, 2):
        test = delong_test(y_true, scores[b], scores[a])
        boot = paired_bootstrap_auc(y_true, scores[b], scores[a], groups=groups, n_boot=n_boot, seed=seed)
        rows[f"{b} − {a}"] = {"AUC difference": test["difference"], "CI low": boot["ci95"][0],
                              "CI high": boot["ci95"][1], "p (DeLong)": test["p_value"]}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table["p (DeLong, Holm)"] = holm(table["p (DeLong)"].to_numpy())
    table.index.name = "pair (b − a)"
    return table


def comparison_limits(folds: int, seeds: Sequence[int], caps: Mapping[str, int], *, profile_folds: int,
                      n_models: int = 3) -> list[str]:
    """What a cross-validated comparison run with these settings can and cannot show, in plain sentences.

    ``caps`` are the training settings capped below the profile's (e.g. ``{"baseline_epochs": 10}``).
    """
    said = [f"It can show how {n_models} models rank the same images when each is trained once per fold "
            f"({folds} folds): a paired comparison on these images, under these settings."]
    if len(seeds) < 2:
        said.append("It cannot show how much a result moves when only the training seed changes: one seed "
                    "was run, so the fold-to-fold spread mixes the test images' luck with training's.")
    if folds < profile_folds:
        said.append(f"With {folds} folds each model trains on {1 - 1 / folds:.0%} of the images (less its "
                    f"validation part), against {1 - 1 / profile_folds:.0%} with the profile's {profile_folds}: "
                    f"every row is weaker than a {profile_folds}-fold run would make it, and not necessarily "
                    "equally so for every model.")
    if caps:
        capped = ", ".join(f"{key} = {value}" for key, value in caps.items())
        said.append(f"It cannot rank approaches whose training was cut short ({capped}): a capped model "
                    "is handicapped, so a row that loses may only have stopped early. The ranking of capped "
                    "rows is not a finding about the approaches.")
    if len(seeds) >= 2 and folds >= profile_folds and not caps:
        said.append("Nothing was cut short: the rows compare the approaches as the profile trains them.")
    return said


def _check_sizes(n_positive: int, n_negative: int) -> None:
    if int(n_positive) != n_positive or int(n_negative) != n_negative or min(n_positive, n_negative) < 1:
        raise ValueError(f"n_positive and n_negative must be positive whole numbers, got {n_positive} "
                         f"and {n_negative}")


def hanley_mcneil_se(auc: float, n_positive: int, n_negative: int) -> float:
    """Standard error of an AUC measured on ``n_positive`` malignant and ``n_negative`` benign images.

    Hanley & McNeil (1982), before any data: ``Q1 = A / (2 - A)`` and ``Q2 = 2A^2 / (1 + A)``
    are the chances that two malignant images both outrank a benign one, and that one
    malignant image outranks two benign ones.
    """
    _check_sizes(n_positive, n_negative)
    if not 0.5 <= auc < 1.0:
        raise ValueError(f"auc must be in [0.5, 1), got {auc}")
    q1, q2 = auc / (2 - auc), 2 * auc ** 2 / (1 + auc)
    var = (auc * (1 - auc) + (n_positive - 1) * (q1 - auc ** 2)
           + (n_negative - 1) * (q2 - auc ** 2)) / (n_positive * n_negative)
    return math.sqrt(var)


def auc_difference_power(auc_a: float, auc_b: float, n_positive: int, n_negative: int, *,
                         correlation: float = 0.5, alpha: float = 0.05) -> float:
    """Chance that a two-sided test at ``alpha`` finds two true AUCs different on this many images.

    Both models are scored on the same images; ``correlation`` is that of their AUC estimates
    (:func:`auc_correlation` measures it): the standard error of the difference is
    ``sqrt(se_a^2 + se_b^2 - 2 r se_a se_b)`` with :func:`hanley_mcneil_se` (Hanley & McNeil 1983).
    """
    if not -1.0 < correlation < 1.0:
        raise ValueError(f"correlation must be in (-1, 1), got {correlation}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    se_a, se_b = (hanley_mcneil_se(a, n_positive, n_negative) for a in (auc_a, auc_b))
    se = math.sqrt(se_a ** 2 + se_b ** 2 - 2 * correlation * se_a * se_b)
    z = norm.ppf(1 - alpha / 2)
    shift = abs(auc_a - auc_b) / se
    return float(norm.cdf(shift - z) + norm.cdf(-shift - z))


def detectable_auc_difference(auc: float, n_positive: int, n_negative: int, *, correlation: float = 0.5,
                              alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest rise over ``auc`` that this many images detect with probability ``power``.

    ``nan`` when no second model, up to an AUC of 1, would be detected that often.  (Near an
    AUC of 1 the power of the formula can fall again: with a fixed correlation, the standard
    error of the difference grows back as one model's own error vanishes.  The first rise
    that reaches ``power`` is returned.)
    """
    if not 0.0 < power < 1.0:
        raise ValueError(f"power must be in (0, 1), got {power}")

    def gap(d: float) -> float:
        return auc_difference_power(auc, auc + d, n_positive, n_negative, correlation=correlation,
                                    alpha=alpha) - power

    rises = np.linspace(1e-9, (1.0 - 1e-9) - auc, 400)
    above = np.flatnonzero([gap(d) >= 0 for d in rises])
    if not len(above):
        return math.nan
    if above[0] == 0:
        return float(rises[0])
    return float(brentq(gap, rises[above[0] - 1], rises[above[0]]))


def simulated_auc_power(auc_a: float, auc_b: float, n_positive: int, n_negative: int, *,
                        score_correlation: float = 0.5, alpha: float = 0.05, n_sim: int = 500,
                        seed: int = 0) -> dict[str, float]:
    """Power of DeLong's test found by simulation, to check :func:`auc_difference_power`.

    Each simulated test part draws two models' scores from a binormal model (benign images
    N(0, 1), malignant N(d, 1) with ``d = sqrt(2) * Phi^-1(AUC)``; the two models' scores of an
    image correlated by ``score_correlation``) and runs :func:`busutils.paired_auc.delong_test`.
    Returns the share of significant tests (``power``) and the correlation of the simulated AUC
    estimates (``auc_correlation``), to feed the analytic formula.
    """
    _check_sizes(n_positive, n_negative)
    if int(n_sim) != n_sim or n_sim < 2:
        raise ValueError(f"n_sim must be a whole number of at least 2, got {n_sim}")
    rng = np.random.default_rng(seed)
    shift = np.sqrt(2) * norm.ppf([auc_a, auc_b])
    cov = [[1.0, score_correlation], [score_correlation, 1.0]]
    y = np.r_[np.ones(n_positive, int), np.zeros(n_negative, int)]
    significant, pairs = 0, []
    for _ in range(int(n_sim)):
        scores = rng.multivariate_normal([0.0, 0.0], cov, size=len(y)) + np.outer(y, shift)
        test = delong_test(y, scores[:, 0], scores[:, 1])
        significant += test["p_value"] < alpha
        pairs.append((test["auc_a"], test["auc_b"]))
    pairs = np.array(pairs)
    return {"power": significant / n_sim, "auc_correlation": float(np.corrcoef(pairs.T)[0, 1]),
            "n_sim": int(n_sim)}


def _split_and_training_seeds(vary: str, seed: int) -> tuple[int, int]:
    return (0, int(seed)) if vary == "training" else (int(seed), 0)


def _spread_row(seed: int, vary: str, test: Mapping[str, Any], n_test: int, weights: str) -> dict:
    """One row of :func:`spread_over_seeds` from a run's test result (``metrics_of_model``'s)."""
    low, high = test["ci95"]["auc"]
    return {"seed": int(seed), "vary": vary, "auc": test["metrics"]["auc"], "low": low, "high": high,
            "n_test": n_test, "weights": weights}


def _saved_seed_zero_row(saved: Mapping[str, Any], dataset, settings, model: str,
                         weights: str | None) -> dict | None:
    """The row :func:`spread_over_seeds` would get by training split 0 with seed 0, from a saved run
    of exactly that; ``None`` when ``saved`` is another run."""
    from dataclasses import replace

    from .experiment import split_dataset
    from .runs import reuse_mismatches

    if weights is not None:
        settings = replace(settings, weights=weights)
    split = split_dataset(dataset, test_size=settings.test_size, val_size=settings.val_size, seed=0)
    if reuse_mismatches(dict(saved), model, split, settings, 0):
        return None
    return _spread_row(0, "training", saved["test"], len(split.test), saved["weights"])


def spread_over_seeds(dataset, settings, seeds: Sequence[int], *, vary: str = "training",
                      model: str = "vgg16-transfer", weights: str | None = None,
                      reuse: Sequence[Mapping[str, Any]] = (),
                      saved: Mapping[str, Any] | None = None) -> list[dict]:
    """Train ``model`` once per seed and test it: how far the test AUC moves when only a seed changes.

    ``vary="training"``: one split (seed 0) and one set of augmented copies; the seed changes
    the weights' start, the dropout and the order of the batches.  ``vary="split"``: the seed
    draws another test and validation part (groups kept whole); training uses seed 0.
    Returns one row per seed: ``seed``, ``vary``, ``auc`` and its 95 % group-bootstrap
    interval (``low``, ``high``) on that run's test part, and ``n_test``.

    ``reuse``: rows an earlier call returned for the same data, settings and model.  A run
    they hold already (seed 0 is split 0 trained with seed 0 whichever seed varies) is taken
    from them, not trained a second time.  ``saved``: the record of a run an earlier chapter
    saved (:func:`busutils.runs.save_run`); when it is that seed-0 run (same model, settings,
    seed, images, weights and precision: :func:`busutils.runs.reuse_mismatches`), its test
    result stands for it, so that the book trains each model once.
    """
    from .crossval import _quiet_retracing
    from .experiment import metrics_of_model, split_dataset, train_model

    if vary not in ("training", "split"):
        raise ValueError(f"vary must be 'training' or 'split', got {vary!r}")
    if not len(seeds) or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be one or more different integers, got {list(seeds)}")
    done = {_split_and_training_seeds(row["vary"], row["seed"]): row for row in reuse}
    if saved is not None and (0, 0) not in done:
        row = _saved_seed_zero_row(saved, dataset, settings, model, weights)
        if row is not None:
            done[0, 0] = row
    rows = []
    with _quiet_retracing():  # a model per seed, built in a loop on purpose
        for seed in seeds:
            split_seed, train_seed = _split_and_training_seeds(vary, seed)
            if (split_seed, train_seed) in done:
                rows.append({**done[split_seed, train_seed], "seed": int(seed), "vary": vary})
                continue
            split = split_dataset(dataset, test_size=settings.test_size, val_size=settings.val_size,
                                  seed=split_seed)
            trained = train_model(model, split, settings, seed=train_seed, weights=weights, verbose=0,
                                  copies_seed=0)
            test = metrics_of_model(trained, split.test, n_boot=settings.n_boot, seed=0,
                                    batch_size=settings.batch_size)
            rows.append(_spread_row(seed, vary, test, len(split.test), trained.weights_used))
            keras.utils.clear_session()  # the run's model is no longer needed: free its memory
    return rows


def summarise_spread(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """How far the runs of :func:`spread_over_seeds` spread, against one run's interval.

    Returns the number of ``runs``, the ``mean AUC``, the standard deviation of the AUCs
    over the seeds (``SD over seeds``) and the mean half-width of the runs' 95 % intervals.
    """
    if len(rows) < 2:
        raise ValueError(f"a spread needs two runs or more, got {len(rows)}")
    aucs = np.array([row["auc"] for row in rows], dtype=float)
    half = np.mean([(row["high"] - row["low"]) / 2 for row in rows])
    return {"runs": len(rows), "mean AUC": float(aucs.mean()), "SD over seeds": float(aucs.std(ddof=1)),
            "mean half-width of one interval": float(half)}
