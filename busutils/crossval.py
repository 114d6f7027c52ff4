"""Group-aware k-fold cross-validation of one model or several, then paired tests.

The book's one cross-validation driver: ``python -m busutils compare``, ``train --folds`` and
chapter 07 all run :func:`compare_models`, so the same model, seed and folds give the same
numbers wherever they are asked for.

One held-out split is a noisy measure: another draw of the test part gives another number.
Cross-validation tests every image once, on k folds; and when *every* model is trained and
tested on the *same* folds, with the same seeds and the same validation parts, each image gets
one out-of-fold score from each model, so that two models can be compared image by image
(:mod:`busutils.paired_auc`) instead of through two separate confidence intervals.

Every fold of one seed trains with that seed: the folds differ in their data only, and the
augmented copies of an image (and so the cached activations of VGG16's frozen layers,
:mod:`busutils.cache`) are the same in every fold.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Sequence
from contextlib import contextmanager

import keras
import numpy as np
import pandas as pd

from . import __version__
from .paired_auc import delong_test, paired_bootstrap_auc
from .data import Dataset
from .duplicates import bootstrap_groups
from .evaluate import PAPER_TABLE1, classification_metrics, metrics_with_ci
from .experiment import Split, data_summary, split_dataset, train_model
from .models import MODEL_NAMES
from .profiles import Profile, as_dict
from .progress import progress
from .records import Timer, environment_info
from .splits import check_fold_count, group_kfold

__all__ = ["check_folds", "compare_models", "paired_table", "summary_table"]

FOLD_METRICS = ("auc", "accuracy", "sensitivity", "specificity")


def _check_arguments(dataset: Dataset, models: Sequence[str], seeds: Sequence[int]) -> None:
    unknown = [m for m in models if m not in MODEL_NAMES]
    if not models or unknown:
        raise ValueError(f"models must name one or more of {', '.join(MODEL_NAMES)}; got {list(models)}")
    if len(set(models)) != len(models):
        raise ValueError(f"models names a model twice: {list(models)}")
    if len(models) > 1 and len(dataset.class_names) != 2:
        raise ValueError(f"task {dataset.task!r} has {len(dataset.class_names)} classes; the comparison tests "
                         "ROC AUCs of two classes: use task='benign-malignant' (or 'breastmnist'), or "
                         "cross-validate one model at a time")
    if not seeds or len(set(seeds)) != len(seeds) or any(int(s) != s for s in seeds):
        raise ValueError(f"seeds must be one or more different integers, got {list(seeds)}")


def check_folds(dataset: Dataset, folds: int, seeds: Sequence[int] = (0,)) -> dict[int, list[tuple[np.ndarray, np.ndarray]]]:
    """The (train, test) index pairs of every fold for every seed, or ``ValueError`` before any training.

    ``folds`` must be an integer of at least 2, no larger than the number of duplicate groups
    of any class (:func:`busutils.splits.check_fold_count`).  :func:`compare_models` calls it
    first; ``train --folds`` calls it before it trains its main run.
    """
    try:
        check_fold_count(dataset.labels, dataset.groups, n_splits=folds, class_names=dataset.class_names)
    except ValueError as error:
        raise ValueError(f"{dataset.source}: {error}") from None
    return {int(seed): group_kfold(dataset.labels, dataset.groups, n_splits=int(folds), seed=int(seed))
            for seed in seeds}


@contextmanager
def _quiet_retracing():
    """Silence TensorFlow's advice against tracing new functions in a loop: a cross-validation
    builds new models in a loop on purpose."""
    logger = logging.getLogger("tensorflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _finite(value) -> float | None:
    """A metric as a float, or ``None`` when it is undefined (``None``, NaN or infinite)."""
    return None if value is None or not np.isfinite(value) else float(value)


def _spread(values: list[float | None]) -> dict:
    """Mean, standard deviation (over folds and seeds), smallest and largest of the defined values,
    and how many were undefined (a fold that tests one class has no AUC): those are counted,
    never averaged."""
    v = np.array([x for x in values if x is not None], dtype=float)
    undefined = len(values) - len(v)
    if len(v) == 0:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0, "n_undefined": undefined}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else None,
            "min": float(v.min()), "max": float(v.max()), "n": int(len(v)), "n_undefined": undefined}


def _train_and_test(name: str, split: Split, settings: Profile, *, seed: int, weights: str | None,
                    where: str = "") -> tuple[np.ndarray, dict, str]:
    """Train ``name`` on one fold's training part; its scores and metrics on the fold, and its weights."""
    with Timer() as timer:
        trained = train_model(name, split, settings, seed=seed, weights=weights, verbose=0)
    # Through the VGG16 models' cached front: every image of a fold's test part is a training image of
    # the other folds, so its activations are cached already and only the trained layers run.
    scores = trained.predict(split.test.images, batch_size=settings.batch_size,
                             what=f"{trained.describe()}, {where or f'seed {seed}'}")
    metrics = classification_metrics(split.test.labels, scores, list(split.test.class_names))
    record = {"n_test": len(split.test), "test_leaks": split.test_leaks, "train_seconds": round(timer.elapsed, 2),
              "fit_seconds": round(trained.seconds, 2), "diverged": trained.diverged,
              **{key: _finite(metrics.get(key)) for key in FOLD_METRICS}}
    keras.utils.clear_session()  # the fold's model is no longer needed: free its memory
    return scores, record, trained.weights_used


def compare_models(
    dataset: Dataset,
    settings: Profile,
    *,
    models: Sequence[str] = MODEL_NAMES,
    folds: int = 5,
    seeds: Sequence[int] = (0,),
    weights: str | None = None,
    log: Callable[[str], None] | None = print,
) -> dict:
    """Train and test every model in ``models`` on the same group-aware folds, for every seed.

    For each seed the data are cut into ``folds`` stratified folds that keep duplicate groups
    whole (:func:`busutils.splits.group_kfold`); each fold is the test part once, a validation
    part is carved by group from the rest, and every model trains on the same training and
    validation parts.  ``log`` gets one line per trained model (``None``: silent).  Every
    check (models, seeds, the folds against the groups, :func:`check_folds`) is made before any
    training.  One model may be cross-validated on a task of more than two classes; comparing
    several needs two.

    Returns a JSON-ready dict: ``"protocol"``, ``"data"``, ``"profile"``; per model
    (``"models"``) its fold metrics (``None`` where undefined, e.g. the AUC of a fold holding
    one class), their mean and spread over the defined ones with the number undefined, the
    pooled out-of-fold metrics with bootstrap CIs resampling duplicate groups (an image's scores
    under several seeds move together), the weights it used, its training time and the number
    of test images with a near-duplicate in training (``"test_leaks"``, 0 by construction);
    ``"predictions"`` (id, seed, fold, label, group, bootstrap group and each model's score, one
    row per image and seed); and ``"paired"``, for each pair of models, DeLong's test per seed
    and a paired bootstrap over duplicate groups of the difference of pooled out-of-fold AUCs.
    """
    from .runs import run_label  # imported here: runs (train --folds) imports this module

    models, seeds = list(models), [int(s) for s in seeds]
    _check_arguments(dataset, models, seeds)
    plan = check_folds(dataset, folds, seeds)
    units = bootstrap_groups(dataset.hashes)
    rows = {"id": [], "seed": [], "fold": [], "label": [], "group": [], "bootstrap_group": []}
    scores = {m: [] for m in models}
    per_fold = {m: [] for m in models}
    weights_used = {m: set() for m in models}
    bar = progress(total=len(seeds) * folds * len(models), unit="model",
                   desc=f"cross-validation: {len(models)} model(s) x {folds} folds x {len(seeds)} seed(s)")
    with Timer() as total, _quiet_retracing(), bar:
        for seed in seeds:
            for k, (_, test) in enumerate(plan[seed]):
                split = split_dataset(dataset, val_size=settings.val_size, seed=seed, test_index=test)
                rows["id"] += list(split.test.ids)
                rows["seed"] += [seed] * len(test)
                rows["fold"] += [k] * len(test)
                rows["label"] += split.test.labels.tolist()
                rows["group"] += split.test.groups.tolist()
                rows["bootstrap_group"] += units[split.index["test"]].tolist()
                for name in models:
                    fold_scores, record, used = _train_and_test(name, split, settings, seed=seed, weights=weights,
                                                                where=f"seed {seed}, fold {k + 1}/{folds}")
                    scores[name] += fold_scores.tolist()
                    per_fold[name].append({"seed": seed, "fold": k, **record})
                    weights_used[name].add(used)
                    bar.update()
                    if log:
                        auc = "n/a (one class)" if record["auc"] is None else f"{record['auc']:.3f}"
                        log(f"seed {seed}, fold {k + 1}/{folds}: {name} trained in {record['train_seconds']:.0f} s, "
                            f"test AUC {auc} on {len(test)} images")
    labels, groups = np.array(rows["label"]), np.array(rows["bootstrap_group"])
    results = {}
    for name in models:
        weights_text = "; ".join(sorted(weights_used[name]))
        leaks = sum(f["test_leaks"] for f in per_fold[name])
        diverged = sum(bool(f["diverged"]) for f in per_fold[name])
        where = f"{folds}-fold CV" + (f", DIVERGED in {diverged} of {len(per_fold[name])} trainings" if diverged else "")
        results[name] = {
            "label": run_label({"model": name, "weights": weights_text, "data": {"test_leaks": leaks}}, where),
            "weights": weights_text,
            "test_leaks": leaks,
            "train_seconds": round(sum(f["train_seconds"] for f in per_fold[name]), 1),
            "fit_seconds": round(sum(f["fit_seconds"] for f in per_fold[name]), 1),
            "per_fold": per_fold[name],
            "summary": {key: _spread([f[key] for f in per_fold[name]]) for key in FOLD_METRICS},
            "pooled": metrics_with_ci(labels, np.array(scores[name]), list(dataset.class_names),
                                      n_boot=settings.n_boot, seed=seeds[0], groups=groups),
        }
    paired, seed_of = [], np.array(rows["seed"])
    for first, second in itertools.combinations(models, 2):  # a - b: the later model minus the earlier
        a, b = np.array(scores[second]), np.array(scores[first])
        delong = [{"seed": s, **delong_test(labels[seed_of == s], a[seed_of == s], b[seed_of == s])} for s in seeds]
        bootstrap = paired_bootstrap_auc(labels, a, b, groups=groups, n_boot=settings.n_boot, seed=seeds[0])
        paired.append({"a": second, "b": first, "delong": delong, "bootstrap": bootstrap})
    return {
        "protocol": {
            "models": models, "folds": folds, "seeds": seeds, "n_boot": settings.n_boot,
            "splits": "group-aware stratified k-fold (busutils.splits.group_kfold), the same folds, "
                      "validation parts and seeds for every model",
            "bootstrap": "resamples the pieces of duplicate groups (busutils.duplicates.bootstrap_groups), "
                         "the same piece under every seed",
        },
        "data": data_summary(dataset),
        "profile": as_dict(settings),
        "models": results,
        "predictions": {**rows, "scores": scores},
        "paired": paired,
        "seconds": round(total.elapsed, 1),
        "busutils": __version__,
        "environment": environment_info(),
    }


def _mean_sd(summary: dict, digits: int) -> str:
    undefined = summary.get("n_undefined", 0)
    note = f" ({undefined} of {summary['n'] + undefined} folds undefined)" if undefined else ""
    if summary["mean"] is None:
        return "n/a" + note
    sd = "n/a" if summary["std"] is None else f"{summary['std']:.{digits}f}"
    return f"{summary['mean']:.{digits}f} ± {sd}{note}"


def _with_ci(pooled: dict, key: str, digits: int) -> str:
    value, (low, high) = pooled["metrics"][key], pooled["ci95"][key]
    if value is None:
        return "n/a"
    if low is None or high is None:
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def summary_table(result: dict, *, include_paper: bool = True, digits: int = 2) -> pd.DataFrame:
    """One row per model of :func:`compare_models`: AUC and accuracy over the folds (mean ± SD)
    and pooled out of fold (with 95 % CI), and the paper's Table 1 beside them.

    Rows are named by :func:`busutils.runs.run_label`, so that random VGG16 weights are flagged.
    """
    rows = {}
    for name, model in result["models"].items():
        row = {}
        for key, text in (("auc", "AUC"), ("accuracy", "accuracy")):
            row[(text, "folds: mean ± SD")] = _mean_sd(model["summary"][key], digits)
            row[(text, "pooled [95% CI]")] = _with_ci(model["pooled"], key, digits)
            if include_paper:
                reported = PAPER_TABLE1.get(name, {}).get(key)
                row[(text, "paper")] = "" if reported is None else f"{reported:.4g}"
        rows[model["label"]] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    table.index.name = "model"
    return table


def _p(value: float) -> str:
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def paired_table(result: dict, *, digits: int = 3) -> pd.DataFrame:
    """One row per pair of models of :func:`compare_models`: the difference of pooled
    out-of-fold AUCs with its paired-bootstrap 95 % CI and p-value, and DeLong's p-value
    (one per seed)."""
    rows = {}
    for pair in result["paired"]:
        boot = pair["bootstrap"]
        low, high = boot["ci95"]
        rows[f"{pair['a']} − {pair['b']}"] = {
            "AUC difference": f"{boot['difference']:+.{digits}f}",
            "95% CI (bootstrap)": f"[{low:+.{digits}f}, {high:+.{digits}f}]",
            "p (bootstrap)": _p(boot["p_value"]),
            "p (DeLong)": "; ".join(_p(d["p_value"]) for d in pair["delong"]),
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "pair (a − b)"
    return table
