"""One experiment, end to end: split, train one of the three models, evaluate.

The chapters call these steps one at a time, with prose in between; the command line and the
cross-validation run them in a row (:mod:`busutils.runs` saves them).  Every split is
group-aware: near-duplicates never straddle training, validation and test.  For the two VGG16
models the frozen layers run once per image (and per augmented copy), through
:class:`busutils.frozen.FrozenVGG16`; only the layers that learn run at every epoch.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import keras
import numpy as np

from . import __version__
from .augment import augmented_copies, make_augmentation
from .cache import image_digests
from .data import Dataset
from .evaluate import classification_metrics, metrics_with_ci
from .frozen import FrozenVGG16
from .models import MODEL_NAMES, build_model, count_params
from .precision import precision_scope
from .profiles import Profile, as_dict
from .records import Timer, environment_info
from .splits import check_disjoint, count_hash_leaks, group_train_test_split, new_images_split
from .train import TrainResult, fit, predict_scores, set_seed


@dataclass
class Split:
    """Training, validation and test parts of a data set, with the indices they came from.

    ``test_part`` says how the test part was chosen; ``test_leaks`` counts test images with a
    near-duplicate (hashes within :data:`busutils.duplicates.MAX_DISTANCE` bits) in the training
    or validation part, checked pair by pair: 0 unless a leaking test part that came with the
    data was kept on purpose.  ``new_images`` records, for a new-images split, how unlike the
    rest its test and validation parts are (:func:`busutils.splits.new_images_split`).
    """

    train: Dataset
    val: Dataset
    test: Dataset
    index: dict[str, np.ndarray]
    test_part: str = "group-aware split"
    test_leaks: int = 0
    new_images: dict | None = None

    def sizes(self) -> dict[str, dict[str, int]]:
        """Images per class in each part."""
        return {"train": self.train.counts(), "val": self.val.counts(), "test": self.test.counts()}


TEST_PARTS = ("group-aware", "new-images")


def split_dataset(
    dataset: Dataset, *, test_size: float = 0.3, val_size: float = 0.2, seed: int = 0,
    test_index: np.ndarray | None = None, keep_given_test: bool = False, test_part: str = "group-aware",
) -> Split:
    """Hold out a test part, then carve a validation part from the rest, both by duplicate group.

    ``test_part="group-aware"`` draws both parts at random, stratified, keeping duplicate
    groups whole.  ``test_part="new-images"`` holds out instead the images least like all the
    others, and carves the validation part the same way inside the rest, for choosing models by
    what holds on new images (:func:`busutils.splits.new_images_split`; it raises
    ``ValueError`` for data that cannot give such parts); a test part that came with the data
    is then not used.

    ``test_index`` fixes the test part (e.g. one cross-validation fold) instead of drawing it.
    A data set that comes with its own test part (a ``test/`` folder, BreastMNIST's test split)
    keeps it when no near-duplicate of its images lies outside it.  If some do, the data are
    re-split by group (with a warning), unless ``keep_given_test=True``: then the given part is
    kept and the number of leaking images is recorded (``Split.test_leaks``) for every table.
    """
    if test_part not in TEST_PARTS:
        raise ValueError(f"test_part={test_part!r}: use one of {', '.join(TEST_PARTS)}")
    if test_part == "new-images":
        if test_index is not None or keep_given_test:
            raise ValueError("test_part='new-images' chooses its own test part: do not pass test_index or "
                             "keep_given_test with it")
        return _new_images_split(dataset, test_size=test_size, val_size=val_size, seed=seed)
    groups = dataset.groups
    how, leaks = "group-aware split", 0
    given = test_index is None and dataset.subsets is not None and bool((dataset.subsets == "test").any())
    if given:
        given_test = np.flatnonzero(dataset.subsets == "test")
        leaks = count_hash_leaks(dataset.hashes, np.flatnonzero(dataset.subsets != "test"), given_test)
        if not leaks:
            test_index, how = given_test, "the data set's own test part"
        elif keep_given_test:
            test_index, how = given_test, f"the data set's own test part, kept with {leaks} leaking image(s)"
            warnings.warn(f"{dataset.source}: its own test part has {leaks} image(s) with a near-duplicate "
                          "outside it, kept as asked: its test scores will be optimistic", stacklevel=2)
        else:
            how = f"group-aware re-split (the data set's own test part leaked {leaks} image(s))"
            warnings.warn(f"{dataset.source}: its own test part has {leaks} image(s) with a near-duplicate "
                          "outside it; the data are re-split by duplicate group instead", stacklevel=2)
            leaks = 0
    if test_index is None:
        rest, test = group_train_test_split(dataset.labels, groups, test_size=test_size, seed=seed)
    else:
        test = np.sort(np.asarray(test_index, dtype=int))
        rest = np.setdiff1d(np.arange(len(dataset)), test)
    inner_train, inner_val = group_train_test_split(dataset.labels[rest], groups[rest], test_size=val_size, seed=seed + 1)
    train, val = rest[inner_train], rest[inner_val]
    check_disjoint(groups, train, val)
    if not leaks:
        check_disjoint(groups, train, test)
        check_disjoint(groups, val, test)
    return _make_split(dataset, train, val, test, how)


def _new_images_split(dataset: Dataset, *, test_size: float, val_size: float, seed: int) -> Split:
    """:func:`split_dataset` with ``test_part="new-images"``."""
    rest, test, test_record = new_images_split(dataset.images, dataset.labels, dataset.hashes,
                                               test_size=test_size, seed=seed, groups=dataset.groups)
    inner_train, inner_val, val_record = new_images_split(dataset.images[rest], dataset.labels[rest],
                                                          dataset.hashes[rest], test_size=val_size, seed=seed + 1,
                                                          groups=dataset.groups[rest])
    train, val = rest[inner_train], rest[inner_val]
    for first, second in ((train, val), (train, test), (val, test)):
        check_disjoint(dataset.groups, first, second)
    text = (f"new images: no test image correlates at {test_record['threshold']:.3f} or more with a training or "
            f"validation image (pixels at 64 px), nor is a near-duplicate of one; the validation part is chosen "
            f"the same way inside the rest (below {val_record['threshold']:.3f})")
    return _make_split(dataset, train, val, test, text, {"test": test_record, "val": val_record})


def _make_split(dataset: Dataset, train: np.ndarray, val: np.ndarray, test: np.ndarray, test_part: str,
                new_images: dict | None = None) -> Split:
    """The three parts, with the test images that have a near-duplicate in training or validation counted."""
    leaks = count_hash_leaks(dataset.hashes, np.concatenate([train, val]), test)
    index = {"train": train, "val": val, "test": test}
    return Split(dataset.take(train), dataset.take(val), dataset.take(test), index, test_part, leaks, new_images)


@dataclass
class Trained:
    """A trained model that takes images, how each stage of its training went, and its weights' origin."""

    name: str
    model: keras.Model
    stages: dict[str, TrainResult]  # "baseline", or "head" then (fine-tuning) "finetune"
    weights_used: str
    settings: dict = field(default_factory=dict)  # what really ran: precision, copies, cached layer...
    frozen: FrozenVGG16 | None = field(default=None, repr=False)  # the VGG16 models' cached front

    def predict(self, images: np.ndarray, *, batch_size: int = 32, what: str | None = None) -> np.ndarray:
        """Scores for ``images``, as :func:`busutils.train.predict_scores` of the whole model gives them.

        For the VGG16 models the frozen front's activations come from the disk cache (computed
        once per image in the whole book) and only the layers after it run, so scoring images
        whose activations some chapter has cached costs little; the scores then differ from the
        whole model's only by the rounding of the cached activations (stored as float16), the
        rounding the model was trained through.  ``what`` (default :meth:`describe`) names the
        model in the error raised for scores that are not finite.
        """
        what = what or self.describe()
        if self.frozen is None:
            return predict_scores(self.model, images, batch_size=batch_size, what=what)
        return self.frozen.predict(images, batch_size=batch_size, what=what)

    def describe(self) -> str:
        """The model, its last training stage and its precision, for messages."""
        return f"{self.name} (after its {list(self.stages)[-1]} stage, {self.settings.get('precision')})"

    @property
    def diverged(self) -> dict[str, int]:
        """The stages that diverged, with the epoch each stopped at (empty when none did)."""
        return {name: stage.diverged_epoch for name, stage in self.stages.items() if stage.diverged}

    @property
    def result(self) -> TrainResult:
        """The last stage: the one whose weights the model holds."""
        return list(self.stages.values())[-1]

    @property
    def seconds(self) -> float:
        return sum(stage.seconds for stage in self.stages.values())

    def summary(self) -> dict:
        """The facts a results file records about training."""
        return {
            "model": self.name,
            "weights": self.weights_used,
            "parameters": count_params(self.model),
            "stages": {name: stage.summary() for name, stage in self.stages.items()},
            "used": self.settings,
            "diverged": self.diverged,
            "train_seconds": round(self.seconds, 2),
        }


def train_model(
    name: str,
    split: Split,
    settings: Profile,
    *,
    seed: int = 0,
    weights: str | None = None,
    verbose: int | str = 2,
    copies_seed: int | None = None,
    frozen: FrozenVGG16 | None = None,
) -> Trained:
    """Train ``name`` ("baseline", "vgg16-transfer" or "vgg16-finetune") on ``split`` with ``settings``.

    * baseline: the small CNN, trained on training images augmented batch by batch;
    * vgg16-transfer: bottleneck features of every training image (and of its augmented copies,
      with ``head_augmentation``) computed once, a small classifier trained on them;
    * vgg16-finetune: that classifier first, then the unfrozen layers and the classifier
      together by SGD -- on cached activations of the augmented copies (``finetune_mode="cached"``,
      one copy of each image per epoch) or on images augmented online through the whole network
      (``"online"``, exact and slower).  The classifier alone stays a candidate: if fine-tuning
      never beats it on the validation part, it is kept.

    ``frozen`` is a :class:`busutils.frozen.FrozenVGG16` already built for ``name`` and
    ``settings`` (e.g. by a chapter that showed it first): that very model is trained.  The
    augmented copies are drawn with ``copies_seed`` (default: ``seed``): like the paper's one
    fixed augmented set, the same copies of an image serve every fold of a cross-validation.
    A stage whose loss stops being finite stops and keeps its last finite candidate; the
    returned :class:`Trained` says which (``diverged``).
    """
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; use one of {', '.join(MODEL_NAMES)}")
    set_seed(seed)
    n_classes = len(split.train.class_names)
    common = {"patience": settings.patience, "restore_best": settings.restore_best,
              "balance_classes": settings.balance_classes, "seed": seed, "verbose": verbose}
    if name == "baseline":
        with precision_scope(settings.precision) as policy:
            shape = (settings.image_size, settings.image_size, 3)
            model, used = build_model(name, shape, n_classes, learning_rate=settings.baseline_learning_rate,
                                      optimizer=settings.baseline_optimizer, dropout=settings.dropout,
                                      l2=settings.l2, seed=seed)
        result = fit(model, (split.train.images, split.train.labels), (split.val.images, split.val.labels),
                     epochs=settings.baseline_epochs, batch_size=settings.batch_size,
                     augmentation=make_augmentation(settings.augmentation, seed=seed),
                     reduce_lr_patience=settings.reduce_lr_patience, **common)
        used_settings = {"precision": policy, "augmentation": f"{settings.augmentation}, online (per batch)"}
        return Trained(name, model, {"baseline": result}, used, used_settings)

    if frozen is None:
        frozen = FrozenVGG16(settings, name=name, n_classes=n_classes, seed=seed, weights=weights)
    elif frozen.name != name or frozen.n_classes != n_classes:
        raise ValueError(f"frozen was built for {frozen.name} with {frozen.n_classes} classes, not {name} with "
                         f"{n_classes}")
    copies = settings.augment_copies if settings.augmentation != "none" else 1
    train_images = augmented_copies(split.train.images, copies, settings.augmentation,
                                    seed=seed if copies_seed is None else copies_seed)
    head_images = train_images if settings.head_augmentation else train_images[:, :1]
    head_result = frozen.train_head(head_images, split.train.labels, split.val, settings, seed=seed,
                                    verbose=verbose)
    used_settings = {"precision": frozen.policy, "frozen_until": frozen.layer,
                     "head_trained_on": f"{head_images.shape[1]} copies of each training image"
                                        + (f" ({settings.augmentation} augmentation, offline)" if head_images.shape[1] > 1 else "")}
    if name == "vgg16-transfer":
        return Trained(name, frozen.model, {"head": head_result}, frozen.weights_used, used_settings, frozen)

    if settings.finetune_mode == "cached":
        result = frozen.finetune(train_images, split.train.labels, split.val, settings, seed=seed, verbose=verbose)
        used_settings["finetune_trained_on"] = (f"cached {frozen.layer} activations of {copies} copies of each "
                                                "training image, one copy per epoch")
    elif settings.finetune_mode == "online":
        result = fit(frozen.model, (split.train.images, split.train.labels), (split.val.images, split.val.labels),
                     epochs=settings.finetune_epochs, batch_size=settings.batch_size,
                     augmentation=make_augmentation(settings.augmentation, seed=seed), keep_initial=True,
                     reduce_lr_patience=settings.reduce_lr_patience, **common)
        used_settings["finetune_trained_on"] = f"images through the whole network, {settings.augmentation} augmentation online"
    else:
        raise ValueError(f"finetune_mode={settings.finetune_mode!r}: use 'cached' or 'online'")
    return Trained(name, frozen.model, {"head": head_result, "finetune": result}, frozen.weights_used,
                   used_settings, frozen)


def metrics_of_model(model: keras.Model | Trained, dataset: Dataset, *, n_boot: int = 1000, seed: int = 0,
                     batch_size: int = 32, what: str | None = None) -> dict:
    """Metrics of ``model`` on ``dataset`` with 95% bootstrap CIs (resampling duplicate groups).

    ``model``: a Keras model, which scores the images whole (as a saved model does), or a
    :class:`Trained`, which scores them through its cached front (:meth:`Trained.predict`).
    """
    if isinstance(model, Trained):
        scores = model.predict(dataset.images, batch_size=batch_size, what=what)
    else:
        scores = predict_scores(model, dataset.images, batch_size=batch_size, what=what)
    out = metrics_with_ci(dataset.labels, scores, list(dataset.class_names), n_boot=n_boot, seed=seed,
                          groups=dataset.groups)
    out["scores"] = np.asarray(scores).tolist()
    out["labels"] = dataset.labels.tolist()
    out["ids"] = list(dataset.ids)
    out["groups"] = dataset.groups.tolist()
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
        out["test_part"] = split.test_part
        out["test_leaks"] = split.test_leaks
        if split.new_images is not None:
            out["new_images"] = split.new_images
    return out


def seen_images(split: Split) -> dict:
    """What a run has seen and held out: each part's image ids, pixel digests and perceptual hashes.

    ``evaluate`` uses it to score a saved model only on images it has never seen, nor a
    near-duplicate of.
    """
    def part(dataset: Dataset) -> dict:
        return {"ids": list(dataset.ids), "digests": image_digests(dataset.images),
                "hashes": [f"{int(h):016x}" for h in dataset.hashes]}

    return {"train": part(split.train), "val": part(split.val), "test": part(split.test)}


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
        # Test scores from the whole model, exactly as a reader's saved model gives them; training and
        # validation scores (for the train-test gap and for choosing thresholds) may read the cache.
        test = metrics_of_model(trained.model, split.test, n_boot=settings.n_boot, seed=seed,
                                batch_size=settings.batch_size, what=trained.describe())
        train_scores = trained.predict(split.train.images, batch_size=settings.batch_size)
        train_metrics = classification_metrics(split.train.labels, train_scores, list(dataset.class_names))
        val_scores = trained.predict(split.val.images, batch_size=settings.batch_size)
    val = {"scores": np.asarray(val_scores).tolist(), "labels": split.val.labels.tolist(), "ids": list(split.val.ids),
           "groups": split.val.groups.tolist()}
    timings.setdefault("train", round(trained.seconds, 2))
    return {
        "model": trained.name,
        "busutils": __version__,
        "seed": seed,
        "profile": as_dict(settings),
        "data": data_summary(dataset, split),
        "weights": trained.weights_used,
        "training": trained.summary(),
        "train_metrics": train_metrics,
        "val": val,  # validation predictions: for choosing a threshold or recalibrating, never for reporting
        "test": test,
        "seen": seen_images(split),
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
    keep_given_test: bool = False,
    test_part: str = "group-aware",
) -> tuple[Trained, dict]:
    """Split (``test_part`` as in :func:`split_dataset`), train and evaluate one model; returns the
    trained model and a results dictionary."""
    timings: dict[str, float] = {}
    with Timer("split", into=timings):
        split = split_dataset(dataset, test_size=settings.test_size, val_size=settings.val_size, seed=seed,
                              keep_given_test=keep_given_test, test_part=test_part)
    with Timer("train", into=timings):
        trained = train_model(name, split, settings, seed=seed, weights=weights, verbose=verbose)
    return trained, make_results(trained, dataset, split, settings, seed=seed, timings=timings)
