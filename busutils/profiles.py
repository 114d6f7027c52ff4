"""Settings profiles: ``quick`` for a laptop CPU and CI, ``paper`` for the paper's settings on a GPU.

This module is the one place where profiles live: the chapters (through their ``profile``
parameter), the command line (``--profile``) and the tests all read them from here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class Profile:
    """Every setting an experiment depends on."""

    name: str
    image_size: int  # images are resized to image_size x image_size
    batch_size: int
    epochs: int  # maximum epochs; early stopping may end sooner
    learning_rate: float  # Adam, for the baseline and the classifier heads
    finetune_learning_rate: float  # SGD, for fine-tuning block 5
    momentum: float  # SGD momentum for fine-tuning
    finetune_epochs: int
    patience: int  # early-stopping patience, in epochs without a better validation score
    reduce_lr_patience: int  # halve the learning rate after this many epochs without progress (0: never)
    augmentation: str  # "paper", "light" or "none" (see busutils.augment)
    weights: str  # "imagenet", a local file, or "none"
    strict_weights: bool  # fail when ImageNet weights are unavailable (True) or go on with random ones
    test_size: float  # held-out test fraction (a group-aware, stratified split)
    val_size: float  # validation fraction carved, group-aware, from the training part
    n_boot: int  # bootstrap resamples for confidence intervals
    phantom_n: int  # images in the synthetic phantom when no real data are given
    folds: int  # k of the group-aware k-fold cross-validation


PROFILES: dict[str, Profile] = {
    # The paper: 224x224, batch 20, learning rate 0.001, 50 epochs, its augmentation list,
    # ImageNet weights required, SGD with momentum for fine-tuning.
    "paper": Profile(
        name="paper",
        image_size=224,
        batch_size=20,
        epochs=50,
        learning_rate=1e-3,
        finetune_learning_rate=1e-4,
        momentum=0.9,
        finetune_epochs=50,
        patience=20,
        reduce_lr_patience=0,  # the paper kept its learning rate constant
        augmentation="paper",
        weights="imagenet",
        strict_weights=True,
        test_size=0.3,
        val_size=0.2,
        n_boot=2000,
        phantom_n=1300,
        folds=5,
    ),
    # A laptop CPU or CI: smaller images, fewer epochs, ultrasound-aware augmentation, and
    # random VGG16 weights (loudly) when ImageNet weights cannot be downloaded.
    "quick": Profile(
        name="quick",
        image_size=128,
        batch_size=32,
        epochs=60,
        learning_rate=1e-3,
        finetune_learning_rate=1e-3,
        momentum=0.9,
        finetune_epochs=6,
        patience=15,
        reduce_lr_patience=5,
        augmentation="light",
        weights="imagenet",
        strict_weights=False,
        test_size=0.3,
        val_size=0.2,
        n_boot=1000,
        phantom_n=400,
        folds=5,
    ),
}


def get_profile(name: str | Profile, **overrides) -> Profile:
    """The named profile, with any settings in ``overrides`` replaced (``None`` values ignored)."""
    profile = name if isinstance(name, Profile) else PROFILES.get(name)
    if profile is None:
        raise ValueError(f"profile={name!r} is not known; use one of {sorted(PROFILES)}")
    fields = set(asdict(profile))
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown profile setting(s) {unknown}; known: {sorted(fields)}")
    return replace(profile, **{k: v for k, v in overrides.items() if v is not None})


def as_dict(profile: Profile) -> dict:
    """The profile as a plain dictionary, for results files."""
    return asdict(profile)
