"""One experiment, end to end: split, train one of the three models, evaluate, save.

The chapters call these steps one at a time, with prose in between; the command line
(``python -m busutils train`` / ``evaluate``) and the cross-validation run them in a row.
Every split is group-aware: near-duplicates never straddle training, validation and test.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from . import __version__
from .augment import make_augmentation
from .data import Dataset, load_dataset
from .evaluate import classification_metrics, evaluate_predictions
from .models import MODEL_NAMES, build_model, classifier_head, compile_for, count_params, feature_extractor
from .profiles import Profile, as_dict, get_profile
from .results import Timer, environment_info, read_json, write_json_atomic
from .splits import check_disjoint, count_leaks, group_kfold, group_train_test_split
from .train import TrainResult, extract_features, fit, predict_scores, save_model_atomic, set_seed, to_model_input

MODEL_FILE = "model.keras"
RESULTS_FILE = "results.json"


@dataclass
class Split:
    """Training, validation and test parts of a data set, with the indices they came from."""

    train: Dataset
    val: Dataset
    test: Dataset
    index: dict[str, np.ndarray]

    def sizes(self) -> dict[str, dict[str, int]]:
        """Images per class in each part."""
        return {"train": self.train.counts(), "val": self.val.counts(), "test": self.test.counts()}


def split_dataset(
    dataset: Dataset, *, test_size: float = 0.3, val_size: float = 0.2, seed: int = 0,
    test_index: np.ndarray | None = None,
) -> Split:
    """Hold out a test part, then carve a validation part from the rest, both by duplicate group.

    ``test_index`` fixes the test part (e.g. one cross-validation fold) instead of drawing it.
    A data set that comes with its own test part (a ``test/`` folder, BreastMNIST's test
    split) keeps it, with a warning if near-duplicates of its images are in the other parts.
    """
    groups = dataset.groups
    given = test_index is None and dataset.subsets is not None and bool((dataset.subsets == "test").any())
    if given:
        test_index = np.flatnonzero(dataset.subsets == "test")
        leaks = count_leaks(groups, np.flatnonzero(dataset.subsets != "test"), test_index)
        if leaks:
            warnings.warn(f"{dataset.source}: the data set's own test part has {leaks} image(s) with a "
                          "near-duplicate outside it; its test scores will be optimistic", stacklevel=2)
    if test_index is None:
        rest, test = group_train_test_split(dataset.labels, groups, test_size=test_size, seed=seed)
    else:
        test = np.sort(np.asarray(test_index, dtype=int))
        rest = np.setdiff1d(np.arange(len(dataset)), test)
    inner_train, inner_val = group_train_test_split(dataset.labels[rest], groups[rest], test_size=val_size, seed=seed + 1)
    train, val = rest[inner_train], rest[inner_val]
    check_disjoint(groups, train, val)
    if not given:  # a test part that came with the data is kept as it is, leaks and all (warned above)
        check_disjoint(groups, train, test)
        check_disjoint(groups, val, test)
    index = {"train": train, "val": val, "test": test}
    return Split(dataset.take(train), dataset.take(val), dataset.take(test), index)


@dataclass
class Trained:
    """A trained model that takes images, how it was trained, and where its weights came from."""

    name: str
    model: keras.Model
    result: TrainResult
    weights_used: str
    head_result: TrainResult | None = None  # the classifier trained on bottleneck features first

    def summary(self) -> dict:
        """The facts a results file records about training."""
        out = {
            "model": self.name,
            "weights": self.weights_used,
            "parameters": count_params(self.model),
            "best_epoch": self.result.best_epoch,
            "epochs_run": self.result.epochs_run,
            "monitor": self.result.monitor,
            "class_weight": self.result.class_weight,
            "history": self.result.history,
            "train_seconds": round(self.result.seconds, 2),
        }
        if self.head_result is not None:
            out["head"] = {
                "best_epoch": self.head_result.best_epoch,
                "epochs_run": self.head_result.epochs_run,
                "history": self.head_result.history,
                "train_seconds": round(self.head_result.seconds, 2),
            }
        return out


def _weights_arg(weights: str | None) -> str | None:
    return None if weights in (None, "none", "random") else weights


def _head_on_features(base_model: keras.Model, split: Split, settings: Profile, n_classes: int, seed: int, verbose) -> tuple[keras.Model, TrainResult]:
    """Train the classifier head on VGG16 bottleneck features computed once (the paper's approach 2)."""
    extractor = feature_extractor(base_model, pooling="avg")
    features = {part: extract_features(extractor, to_model_input(getattr(split, part).images), batch_size=settings.batch_size)
                for part in ("train", "val")}
    head = classifier_head(features["train"].shape[1:], n_classes, seed=seed)
    compile_for(head, n_classes, keras.optimizers.Adam(settings.learning_rate))
    result = fit(
        head, (features["train"], split.train.labels), (features["val"], split.val.labels),
        epochs=max(settings.epochs, 50), batch_size=settings.batch_size, patience=max(settings.patience, 10),
        seed=seed, verbose=verbose,
    )
    return head, result


def train_model(
    name: str,
    split: Split,
    settings: Profile,
    *,
    seed: int = 0,
    weights: str | None = None,
    verbose: int | str = 2,
) -> Trained:
    """Train ``name`` ("baseline", "vgg16-transfer" or "vgg16-finetune") on ``split`` with ``settings``.

    * baseline: the small CNN, trained on augmented images with Adam;
    * vgg16-transfer: VGG16 features computed once for every image, a small classifier on top;
    * vgg16-finetune: the classifier first, on the same bottleneck features, then block 5 and
      the classifier trained together by SGD on augmented images, all else frozen.
    """
    if name not in ("baseline", "vgg16-transfer", "vgg16-finetune"):
        raise ValueError(f"unknown model {name!r}; use 'baseline', 'vgg16-transfer' or 'vgg16-finetune'")
    set_seed(seed)
    n_classes = len(split.train.class_names)
    shape = (settings.image_size, settings.image_size, 3)
    weights = _weights_arg(settings.weights if weights is None else weights)
    if name == "baseline":
        model, used = build_model(name, shape, n_classes, learning_rate=settings.learning_rate, seed=seed)
        head_result, epochs = None, settings.epochs
    else:
        options = {"learning_rate": settings.learning_rate} if name == "vgg16-transfer" else {
            "learning_rate": settings.finetune_learning_rate, "momentum": settings.momentum}
        model, used = build_model(name, shape, n_classes, weights=weights, strict=settings.strict_weights,
                                  seed=seed, **options)
        head, head_result = _head_on_features(model, split, settings, n_classes, seed, verbose)
        model.get_layer("head").set_weights(head.get_weights())
        if name == "vgg16-transfer":
            return Trained(name, model, head_result, used)
        epochs = settings.finetune_epochs
    result = fit(model, (to_model_input(split.train.images), split.train.labels),
                 (to_model_input(split.val.images), split.val.labels), epochs=epochs,
                 batch_size=settings.batch_size, augmentation=make_augmentation(settings.augmentation, seed=seed),
                 patience=settings.patience, reduce_lr_patience=settings.reduce_lr_patience, seed=seed,
                 verbose=verbose)
    return Trained(name, model, result, used, head_result=head_result)



def evaluate_model(model: keras.Model, dataset: Dataset, *, n_boot: int = 1000, seed: int = 0, batch_size: int = 32) -> dict:
    """Metrics of ``model`` on ``dataset`` with 95% bootstrap CIs (resampling duplicate groups)."""
    scores = predict_scores(model, to_model_input(dataset.images), batch_size=batch_size)
    out = evaluate_predictions(dataset.labels, scores, list(dataset.class_names), n_boot=n_boot, seed=seed,
                               groups=dataset.groups)
    out["scores"] = np.asarray(scores).tolist()
    out["labels"] = dataset.labels.tolist()
    out["ids"] = list(dataset.ids)
    return out


def data_summary(dataset: Dataset, split: Split | None = None) -> dict:
    """Where the data came from and how it was divided, for results files."""
    out = {
        "source": dataset.source,
        "layout": dataset.layout,
        "task": dataset.task,
        "class_names": list(dataset.class_names),
        "is_phantom": dataset.is_phantom,
        "n": len(dataset),
        "counts": dataset.counts(),
        "image_size": dataset.image_size,
    }
    if split is not None:
        out["split"] = split.sizes()
    return out


def make_results(
    trained: Trained, dataset: Dataset, split: Split, settings: Profile, *, seed: int = 0,
    timings: dict[str, float] | None = None,
) -> dict:
    """Evaluate a trained model on the test part and gather everything a results file records.

    Test metrics come with 95% bootstrap CIs; training metrics (no CIs) show how much the
    model fits its own training images better than unseen ones.
    """
    timings = dict(timings or {})
    with Timer("evaluate", into=timings):
        test = evaluate_model(trained.model, split.test, n_boot=settings.n_boot, seed=seed, batch_size=settings.batch_size)
        train_scores = predict_scores(trained.model, to_model_input(split.train.images), batch_size=settings.batch_size)
        train_metrics = classification_metrics(split.train.labels, train_scores, list(dataset.class_names))
    timings.setdefault("train", round(trained.result.seconds + (trained.head_result.seconds if trained.head_result else 0), 2))
    return {
        "model": trained.name,
        "busutils": __version__,
        "seed": seed,
        "profile": as_dict(settings),
        "data": data_summary(dataset, split),
        "weights": trained.weights_used,
        "training": trained.summary(),
        "train_metrics": train_metrics,
        "test": test,
        "timings": timings,
        "environment": environment_info(),
    }


def run_experiment(
    name: str,
    dataset: Dataset,
    settings: Profile,
    *,
    seed: int = 0,
    weights: str | None = None,
    verbose: int | str = 2,
) -> tuple[Trained, dict]:
    """Split, train and evaluate one model; returns the trained model and a results dictionary."""
    timings: dict[str, float] = {}
    with Timer("split", into=timings):
        split = split_dataset(dataset, test_size=settings.test_size, val_size=settings.val_size, seed=seed)
    with Timer("train", into=timings):
        trained = train_model(name, split, settings, seed=seed, weights=weights, verbose=verbose)
    return trained, make_results(trained, dataset, split, settings, seed=seed, timings=timings)


def run_label(results: dict, where: str = "this run") -> str:
    """A table row name for a run: ``"<model> (<where>)"``, flagged when VGG16 was not pre-trained."""
    random = str(results["weights"]).startswith("random (imagenet")
    return f"{results['model']} ({where}{', RANDOM weights' if random else ''})"


def collect_results(results_dir: str | Path, reference: dict, names: tuple[str, ...] = MODEL_NAMES) -> dict[str, dict]:
    """Test results of the runs saved in ``results_dir`` with the same profile and data as ``reference``.

    Keys come from :func:`run_label`, so that a table never passes random features off as
    transfer learning.
    """
    runs = {}
    for name in names:
        path = Path(results_dir) / f"{name}.json"
        if not path.exists():
            continue
        saved = read_json(path)
        if saved["profile"] != reference["profile"] or saved["data"]["source"] != reference["data"]["source"]:
            continue
        runs[run_label(saved, "this book")] = saved["test"]
    return runs


def cross_validate(
    name: str, dataset: Dataset, settings: Profile, *, folds: int = 5, seed: int = 0, weights: str | None = None,
    verbose: int | str = 0,
) -> dict:
    """Group-aware stratified k-fold cross-validation: one model per fold, metrics per fold and pooled."""
    per_fold, scores, labels, groups = [], [], [], []
    for k, (_, test) in enumerate(group_kfold(dataset.labels, dataset.groups, n_splits=folds, seed=seed)):
        split = split_dataset(dataset, val_size=settings.val_size, seed=seed + k, test_index=test)
        trained = train_model(name, split, settings, seed=seed + k, weights=weights, verbose=verbose)
        fold_scores = predict_scores(trained.model, to_model_input(split.test.images), batch_size=settings.batch_size)
        metrics = classification_metrics(split.test.labels, fold_scores, list(dataset.class_names))
        per_fold.append({"fold": k, "n_test": len(test), **{k2: metrics.get(k2) for k2 in ("accuracy", "auc", "sensitivity", "specificity")}})
        scores.append(fold_scores)
        labels.append(split.test.labels)
        groups.append(split.test.groups)
    pooled = evaluate_predictions(np.concatenate(labels), np.concatenate(scores), list(dataset.class_names),
                                  n_boot=settings.n_boot, seed=seed, groups=np.concatenate(groups))
    summary = {}
    for key in ("accuracy", "auc", "sensitivity", "specificity"):
        values = np.array([f[key] for f in per_fold if f[key] is not None], dtype=float)
        summary[key] = {"mean": float(values.mean()), "std": float(values.std(ddof=1))} if len(values) > 1 else None
    return {"folds": folds, "per_fold": per_fold, "summary": summary, "pooled": pooled}


def train_run(
    *,
    data: str | Path | None,
    model: str,
    profile: str = "quick",
    out: str | Path,
    task: str = "benign-malignant",
    seed: int = 0,
    weights: str | None = None,
    epochs: int | None = None,
    folds: int = 0,
    verbose: int | str = 2,
) -> dict:
    """Train, evaluate and save a run folder: ``model.keras`` and ``results.json`` (both written atomically)."""
    settings = get_profile(profile, epochs=epochs)
    if folds and folds < 2:
        raise ValueError(f"--folds must be 0 (off) or at least 2, got {folds}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    dataset = load_dataset(data, task=task, image_size=settings.image_size, phantom_n=settings.phantom_n, seed=seed)
    trained, results = run_experiment(model, dataset, settings, seed=seed, weights=weights, verbose=verbose)
    if folds:
        results["cross_validation"] = cross_validate(model, dataset, settings, folds=folds, seed=seed, weights=weights)
    out.mkdir(parents=True, exist_ok=True)
    save_model_atomic(trained.model, out / MODEL_FILE)
    write_json_atomic(out / RESULTS_FILE, results)
    return results


def evaluate_run(run: str | Path, *, data: str | Path | None = None, out: str | Path | None = None, n_boot: int = 1000) -> dict:
    """Evaluate a saved run's model on other data, all of it used as test data."""
    from . import models  # noqa: F401  (registers the custom layers for loading)

    run = Path(run)
    model_path, results_path = run / MODEL_FILE, run / RESULTS_FILE
    for path in (model_path, results_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: is {run} a run folder written by 'python -m busutils train'?")
    saved = read_json(results_path)
    task, size = saved["data"]["task"], saved["data"]["image_size"]
    dataset = load_dataset(data, task=task, image_size=size, seed=saved.get("seed", 0) + 1000)
    if list(dataset.class_names) != saved["data"]["class_names"]:
        raise ValueError(f"{data}: classes {dataset.class_names} differ from the model's {saved['data']['class_names']}")
    model = keras.models.load_model(model_path)
    result = evaluate_model(model, dataset, n_boot=n_boot)
    result.update(model=saved["model"], run=str(run), weights=saved.get("weights"), data=data_summary(dataset),
                  environment=environment_info())
    write_json_atomic(Path(out) if out else run / "evaluation.json", result)
    return result
