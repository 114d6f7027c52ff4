"""Settings profiles: ``quick`` for a laptop CPU and CI, ``paper`` for the paper's settings.

A third, ``smoke``, is for the tests alone: tiny images, one or two epochs, few copies, random
weights, so that executing a chapter proves its code runs, in seconds; its numbers mean nothing.

This module is the one place where profiles live: the chapters (through their ``profile``
parameter), the command line (``--profile``), the benchmarks and the tests all read them from
here, and the appendix "The paper and this book, side by side" renders them next to what the
paper says (:mod:`busutils.paper`).  The ``paper`` profile follows Hijab et al. (2019) wherever
the paper is explicit (50 epochs, batch 20, learning rate 0.001, SGD for fine-tuning, 24 copies
per image); every other value is the book's choice, named there, such as holding out 30% of the
images (the paper's images were split 1,000/300; its 70/30 is of the augmented copies) and
augmenting after the split.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace


@dataclass(frozen=True)
class Profile:
    """Every setting an experiment depends on."""

    name: str
    # data and splits
    image_size: int  # images are resized to image_size x image_size
    test_size: float  # held-out test fraction (a group-aware, stratified split)
    val_size: float  # validation fraction carved, group-aware, from the training part
    balance_classes: bool  # weight the loss so that each class counts equally
    batch_size: int
    # augmentation: applied to training images only, after the split
    augmentation: str  # "paper", "light" or "none" (see busutils.augment)
    augment_copies: int  # copies of each training image made offline for the VGG16 models (copy 0 = the original)
    # baseline CNN (approach 1)
    baseline_epochs: int  # maximum epochs
    baseline_learning_rate: float
    baseline_optimizer: str  # also trains the classifier head of approaches 2 and 3
    dropout: float  # before the output layer of every model
    l2: float  # weight decay of the baseline CNN's kernels
    # model selection
    patience: int | None  # early stopping after this many epochs without a better validation score (None: never)
    restore_best: bool  # keep the weights of the best validation epoch (else those of the last)
    reduce_lr_patience: int  # halve the learning rate after this many epochs without progress (0: never)
    # VGG16 as a frozen feature extractor (approach 2)
    head_epochs: int
    head_learning_rate: float
    head_features: str  # the blocks whose averaged outputs the head reads: "block5" (the paper's) or "block4+block5"
    head_hidden: int  # units of the head's hidden layer (0: a linear classifier)
    head_l2: float  # weight decay of the head's dense kernels (strong: it reads a thousand features of a few hundred images)
    head_augmentation: bool  # train the head on the features of every augmented copy (else originals only)
    # VGG16 fine-tuned (approach 3)
    finetune_layers: str  # "block5" (its three conv layers), "block5_conv3" (the last one only), "block4+block5"...
    finetune_epochs: int
    finetune_learning_rate: float  # SGD
    momentum: float  # SGD momentum
    finetune_clipnorm: float | None  # cap on the norm of each fine-tuning step's gradients (None: no cap)
    finetune_mode: str  # "cached": frozen layers run once per copy; "online": the whole network every batch
    # weights and arithmetic
    weights: str  # "imagenet" (from $VGG16_WEIGHTS or Keras), a file, or "none"
    strict_weights: bool  # fail when ImageNet weights are unavailable (True) or go on with random ones
    precision: str  # "auto" (bfloat16 where the hardware computes it natively), "float32", ...
    # evaluation and the book
    n_boot: int  # bootstrap resamples for confidence intervals
    folds: int  # k of the group-aware k-fold cross-validation
    phantom_n: int  # images in the synthetic phantom when no real data are given
    chapter_timeout: int  # seconds before a chapter's execution is stopped as hung


PROFILES: dict[str, Profile] = {
    "paper": Profile(
        name="paper",
        image_size=224,
        test_size=0.3,
        val_size=0.2,
        balance_classes=True,
        batch_size=20,
        augmentation="paper",
        augment_copies=24,
        baseline_epochs=50,
        baseline_learning_rate=1e-3,
        baseline_optimizer="adam",
        dropout=0.5,
        l2=1e-4,
        patience=None,
        restore_best=True,
        reduce_lr_patience=0,
        head_epochs=50,
        head_learning_rate=1e-3,
        head_features="block5",
        head_hidden=256,
        head_l2=1e-4,
        head_augmentation=True,
        finetune_layers="block5_conv3",
        finetune_epochs=50,
        finetune_learning_rate=1e-4,
        momentum=0.9,
        finetune_clipnorm=10.0,
        finetune_mode="cached",
        weights="imagenet",
        strict_weights=True,
        precision="auto",
        n_boot=2000,
        folds=5,
        phantom_n=1300,
        chapter_timeout=4 * 3600,
    ),
    "quick": Profile(
        name="quick",
        image_size=128,
        test_size=0.3,
        val_size=0.2,
        balance_classes=True,
        batch_size=32,
        augmentation="light",
        augment_copies=4,
        baseline_epochs=60,
        baseline_learning_rate=1e-3,
        baseline_optimizer="adam",
        dropout=0.5,
        l2=1e-4,
        patience=20,
        restore_best=True,
        reduce_lr_patience=5,
        head_epochs=100,
        head_learning_rate=1e-3,
        head_features="block4+block5",
        head_hidden=64,
        head_l2=1e-2,
        head_augmentation=True,
        finetune_layers="block5",
        finetune_epochs=10,
        finetune_learning_rate=1e-4,
        momentum=0.9,
        finetune_clipnorm=10.0,
        finetune_mode="cached",
        weights="imagenet",
        strict_weights=False,
        precision="auto",
        n_boot=2000,
        folds=5,
        phantom_n=400,
        chapter_timeout=1800,
    ),
    "smoke": Profile(
        name="smoke",
        image_size=32,
        test_size=0.3,
        val_size=0.2,
        balance_classes=True,
        batch_size=16,
        augmentation="light",
        augment_copies=2,
        baseline_epochs=2,
        baseline_learning_rate=1e-3,
        baseline_optimizer="adam",
        dropout=0.5,
        l2=1e-4,
        patience=None,
        restore_best=True,
        reduce_lr_patience=0,
        head_epochs=2,
        head_learning_rate=1e-3,
        head_features="block4+block5",
        head_hidden=8,
        head_l2=1e-2,
        head_augmentation=True,
        finetune_layers="block5",
        finetune_epochs=1,
        finetune_learning_rate=1e-3,
        momentum=0.9,
        finetune_clipnorm=10.0,
        finetune_mode="cached",
        weights="none",
        strict_weights=False,
        precision="auto",
        n_boot=50,
        folds=2,
        phantom_n=72,
        chapter_timeout=900,
    ),
}

#: The profiles the book itself runs and shows (``smoke`` is the tests' own).
BOOK_PROFILES = ("quick", "paper")

#: ``get_profile(name, epochs=N)`` sets the maximum epochs of every training stage to N.
EPOCH_FIELDS = ("baseline_epochs", "head_epochs", "finetune_epochs")


def default_profile() -> str:
    """``"paper"`` where a GPU is visible (e.g. a Colab GPU runtime), ``"quick"`` otherwise."""
    from .precision import gpu_compute_capabilities

    return "paper" if gpu_compute_capabilities() else "quick"


def get_profile(name: str | Profile | None = None, **overrides) -> Profile:
    """The named profile with any settings in ``overrides`` replaced (``None`` values ignored).

    ``name=None`` picks :func:`default_profile`.  ``epochs=N`` caps every training stage
    (baseline, classifier head, fine-tuning) at N epochs.  The precision is, in this order,
    ``precision=`` given here, then ``$BUSUTILS_PRECISION``, then the profile's.
    """
    if name is None:
        name = default_profile()
    profile = name if isinstance(name, Profile) else PROFILES.get(name)
    if profile is None:
        raise ValueError(f"profile={name!r} is not known; use one of {sorted(PROFILES)}")
    from .precision import precision_from_environment

    overrides = {k: v for k, v in overrides.items() if v is not None}
    from_environment = precision_from_environment()
    if from_environment is not None:
        overrides.setdefault("precision", from_environment)
    epochs = overrides.pop("epochs", None)
    if epochs is not None:
        if int(epochs) < 1:
            raise ValueError(f"epochs must be at least 1, got {epochs}")
        overrides.update({field: int(epochs) for field in EPOCH_FIELDS})
    known = {f.name for f in fields(Profile)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown profile setting(s) {unknown}; known: {sorted(known)} and 'epochs'")
    return replace(profile, **overrides)


_NEW_IMAGES = "new-images selection"
_NOT_STUDIED = "not studied anew: the book's default (see the appendix on the paper)"

#: What chose each studied setting of the ``quick`` profile.  A *new-images selection* is a part
#: of the images least like the rest, held out three times inside the images that neither test
#: part of the book uses (``scripts/choose_quick_settings.py``); no setting was chosen on a test
#: part.
QUICK_CHOSEN_BY: dict[str, str] = {
    "image_size": "the time budget, and the new-images selection: with blocks 4 and 5, 224 px did better "
                  "than 128 px, for three times the arithmetic, which the quick book cannot spend on a "
                  "laptop's CPU; 96 px did worse than 128 px for every model, the baseline CNN most "
                  "(its mean selection AUC 0.81 against 0.87)",
    "head_features": f"{_NEW_IMAGES}: blocks 4 and 5 did better than block 5 alone, at 128 and at 224 px",
    "head_hidden": f"{_NEW_IMAGES}: 64 units did better than a linear classifier, and than the linear probe",
    "head_l2": f"{_NEW_IMAGES}: 1e-2 against 1e-3, with 64 units",
    "finetune_learning_rate": f"{_NEW_IMAGES}: 1e-4 and 1e-3 scored alike (fine-tuning added little "
                              "over the classifier alone at either); the smaller moves the pre-trained "
                              "weights less, as the paper profile and the Keras recipe do",
    "finetune_epochs": f"{_NEW_IMAGES}: 20 epochs did no better than 10",
    "l2": f"{_NEW_IMAGES}: the baseline's weight decay, 1e-4 and 1e-3 alike; an ensemble of three seeds "
          "gained about 0.01 over one model, for three times the training, so the book trains one",
}


def choice_table(settings: Profile | None = None) -> "pd.DataFrame":
    """The ``quick`` profile's studied settings, their values, and what chose each (:data:`QUICK_CHOSEN_BY`).

    ``settings`` (default: the ``quick`` profile) gives the values shown, e.g. a profile a reader
    changed; settings it changed from ``quick`` say so.
    """
    import pandas as pd

    settings = PROFILES["quick"] if settings is None else settings
    rows = {}
    for name, why in QUICK_CHOSEN_BY.items():
        value, quick = getattr(settings, name), getattr(PROFILES["quick"], name)
        rows[name] = {"value": value, "what chose it": why if value == quick else "changed for this run"}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("setting")


def as_dict(profile: Profile) -> dict:
    """The profile as a plain dictionary, for results files."""
    return asdict(profile)
