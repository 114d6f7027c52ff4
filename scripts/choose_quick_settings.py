"""How the ``quick`` profile's settings were chosen: by what holds on new images, never on a test part.

Run on real data with the real weights::

    BUSI_DIR=... VGG16_WEIGHTS=... .venv/bin/python scripts/choose_quick_settings.py --out _build/choice.json

Both test parts the book reports are set aside first: the group-aware test part of chapters 02-04
(seed 0) and the new-images test part of the chapter on new images (seed 0).  On the images left,
a *selection part* is held out the way the new-images test part is (the images least like the
rest, :func:`busutils.splits.new_images_split`), three times with three seeds; every candidate
setting is trained on the rest of those images (with its own validation part for early stopping)
and scored on the selection part.  The settings with the best mean selection AUC, within the
book's time budget, are the ``quick`` profile's.  A logistic regression on the same VGG16
features (the linear probe) is the reference every VGG16 model must beat.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def held_out_parts(size: int):
    """The data at ``size`` px and the indices of both reported test parts (never used here)."""
    from busutils.data import load_dataset
    from busutils.experiment import split_dataset

    dataset = load_dataset(os.environ["BUSI_DIR"], image_size=size, seed=0)
    reported = np.union1d(split_dataset(dataset, seed=0).index["test"],
                          split_dataset(dataset, test_part="new-images", seed=0).index["test"])
    return dataset, reported


def selection_splits(dataset, reported, seeds):
    """For each seed, a split of the images outside both reported test parts: train, validation (early
    stopping) and a selection part of new images (its ``test``)."""
    from busutils.experiment import split_dataset

    rest = dataset.take(np.setdiff1d(np.arange(len(dataset)), reported))
    return rest, [split_dataset(rest, test_part="new-images", test_size=0.25, val_size=0.2, seed=s) for s in seeds]


def auc(labels, scores) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def linear_probe(frozen, split, copies) -> float:
    """Logistic regression (standardised features, balanced classes) on the pooled features the head reads."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = frozen.pooled(copies.reshape(-1, *copies.shape[2:]))
    y = np.repeat(split.train.labels, copies.shape[1])
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, class_weight="balanced", max_iter=5000))
    probe.fit(x, y)
    return auc(split.test.labels, probe.predict_proba(frozen.pooled(split.test.images))[:, 1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="JSON file for every candidate's selection AUCs")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 224])
    parser.add_argument("--part", choices=["transfer", "finetune", "baseline"], default="transfer")
    parser.add_argument("--finetune-from", default=None, help="JSON of the transfer settings fine-tuning starts from")
    parser.add_argument("--quick-only", action="store_true",
                        help="score the quick profile's own settings alone, e.g. to compare image sizes")
    args = parser.parse_args()
    if not os.environ.get("BUSI_DIR") or not os.environ.get("VGG16_WEIGHTS"):
        parser.error("set BUSI_DIR and VGG16_WEIGHTS: the choice is made on real images with the real weights")

    from busutils.augment import augmented_copies
    from busutils.experiment import train_model
    from busutils.frozen import FrozenVGG16
    from busutils.profiles import get_profile

    quick = get_profile("quick")

    def grid(*candidates, profile_values):
        """The candidates' combinations, or the quick profile's own values alone under --quick-only."""
        return [profile_values] if args.quick_only else list(itertools.product(*candidates))

    rows = json.loads(args.out.read_text()) if args.out.is_file() else []
    done = {json.dumps(r["settings"], sort_keys=True) for r in rows}

    def record(settings: dict, aucs: list[float], seconds: float, **extra) -> None:
        rows.append({"settings": settings, "aucs": aucs, "mean": float(np.mean(aucs)), "seconds": round(seconds, 1),
                     **extra})
        args.out.write_text(json.dumps(rows, indent=1))
        print(f"{np.mean(aucs):.3f} ({', '.join(f'{a:.3f}' for a in aucs)}) {seconds:.0f} s  {settings}", flush=True)

    for size in args.sizes:
        dataset, reported = held_out_parts(size)
        rest, splits = selection_splits(dataset, reported, args.seeds)
        print(f"{size} px: {len(dataset)} images, {len(reported)} in the reported test parts, {len(rest)} left; "
              f"selection parts of {[len(s.test) for s in splits]} images", flush=True)
        if args.part == "transfer":
            for features, hidden, l2 in grid(["block5", "block4+block5"], [0, 64], [1e-2, 1e-3],
                                             profile_values=(quick.head_features, quick.head_hidden, quick.head_l2)):
                overrides = dict(image_size=size, head_features=features, head_hidden=hidden, head_l2=l2)
                key = {"part": "transfer", **overrides}
                if json.dumps(key, sort_keys=True) in done:
                    continue
                settings = get_profile("quick", **overrides)
                start, aucs, probes = time.perf_counter(), [], []
                for seed, split in zip(args.seeds, splits):
                    trained = train_model("vgg16-transfer", split, settings, seed=seed, verbose=0)
                    aucs.append(auc(split.test.labels, trained.predict(split.test.images)))
                    copies = augmented_copies(split.train.images, settings.augment_copies, settings.augmentation,
                                              seed=seed)
                    probes.append(linear_probe(trained.frozen, split, copies))
                record(key, aucs, time.perf_counter() - start, linear_probe=probes,
                       linear_probe_mean=float(np.mean(probes)))
        elif args.part == "finetune":
            base = json.loads(args.finetune_from) if args.finetune_from else {}
            for lr, epochs in grid([1e-3, 1e-4], [10, 20],
                                   profile_values=(quick.finetune_learning_rate, quick.finetune_epochs)):
                overrides = dict(base, image_size=size, finetune_learning_rate=lr, finetune_epochs=epochs)
                key = {"part": "finetune", **overrides}
                if json.dumps(key, sort_keys=True) in done:
                    continue
                settings = get_profile("quick", **overrides)
                start, aucs, heads = time.perf_counter(), [], []
                for seed, split in zip(args.seeds, splits):
                    trained = train_model("vgg16-finetune", split, settings, seed=seed, verbose=0)
                    aucs.append(auc(split.test.labels, trained.predict(split.test.images)))
                    heads.append(trained.stages["finetune"].best_epoch)
                record(key, aucs, time.perf_counter() - start, best_epochs=heads)
        else:
            for l2, dropout in grid([1e-4, 1e-3], [0.5], profile_values=(quick.l2, quick.dropout)):
                overrides = dict(image_size=size, l2=l2, dropout=dropout)
                key = {"part": "baseline", **overrides}
                if json.dumps(key, sort_keys=True) in done:
                    continue
                settings = get_profile("quick", **overrides)
                start, aucs, members = time.perf_counter(), [], []
                for seed, split in zip(args.seeds, splits):
                    scores = []
                    for member in range(3):  # an ensemble of three seeds, and its first member alone
                        trained = train_model("baseline", split, settings, seed=100 * seed + member, verbose=0)
                        scores.append(trained.predict(split.test.images))
                    members.append(auc(split.test.labels, scores[0]))
                    aucs.append(auc(split.test.labels, np.mean(scores, axis=0)))
                record(key, aucs, time.perf_counter() - start, single_member=members,
                       single_member_mean=float(np.mean(members)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
