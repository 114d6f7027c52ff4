"""An audit of a data folder for readers who bring their own images.

``python -m busutils data DIR`` prints it; :func:`audit` returns the same facts as a
JSON-ready dictionary: the layout found, counts per class, the number of patients where the
data set names them, the files skipped and why, the near-duplicate groups and the groups whose
members disagree on the label.
``python -m busutils split DIR`` lists the cross-validation fold of every file
(:func:`fold_table`), cut as ``train --folds`` and ``compare`` cut them.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .data import Dataset, load_dataset, load_folder
from .duplicates import MAX_DISTANCE, duplicate_groups, duplicate_report
from .images import ImageWarning
from .profiles import get_profile
from .splits import assign_folds, check_fold_count


def _load_all(root: str | Path, image_size: int) -> tuple[Dataset, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ImageWarning)
        dataset = load_dataset(root, task=None, image_size=image_size)
    notes = sorted({str(w.message) for w in caught if not str(w.message).startswith("skipped ")})
    return dataset, notes


def audit(root: str | Path, *, max_distance: int = MAX_DISTANCE, image_size: int = 128) -> dict:
    """Everything a reader should know about a data folder before training on it."""
    dataset, notes = _load_all(root, image_size)
    groups = duplicate_groups(dataset.images, max_distance)
    report = duplicate_report(dataset.labels, groups)

    def describe(members: list[int]) -> list[dict]:
        return [{"file": dataset.ids[i], "class": dataset.class_names[dataset.labels[i]]} for i in members]

    return {
        "root": str(Path(root)),
        "layout": dataset.layout,
        "n_images": len(dataset),
        "counts": dataset.counts(),
        "n_patients": None if dataset.patient_ids is None else len(np.unique(dataset.patient_ids)),
        "skipped": [{"file": s.path, "reason": s.reason} for s in dataset.skipped],
        "conversions": notes,
        "max_distance": max_distance,
        "duplicate_groups": [describe(g) for g in report.groups],
        "cross_label_groups": [describe(g) for g in report.cross_label],
        "n_duplicated_images": report.n_duplicated_images,
    }


def format_audit(result: dict) -> str:
    """The audit as text for the terminal."""
    lines = [
        f"Data folder: {result['root']}",
        f"Layout: {result['layout']}",
        f"Images: {result['n_images']}",
    ]
    lines += [f"  {name}: {count}" for name, count in result["counts"].items()]
    if result.get("n_patients") is not None:
        lines.append(f"Patients: {result['n_patients']} (named by the data set; splits keep each one's images together)")
    lines.append(f"Skipped files: {len(result['skipped'])}")
    lines += [f"  {s['file']}: {s['reason']}" for s in result["skipped"][:50]]
    if len(result["skipped"]) > 50:
        lines.append(f"  ... and {len(result['skipped']) - 50} more (use --json for all)")
    if result["conversions"]:
        lines.append(f"Converted on reading: {len(result['conversions'])}")
        lines += [f"  {note}" for note in result["conversions"][:20]]
    lines.append(
        f"Near-duplicate groups (hash distance <= {result['max_distance']} bits): "
        f"{len(result['duplicate_groups'])}, holding {result['n_duplicated_images']} images"
    )
    lines.append(f"Groups whose images disagree on the label: {len(result['cross_label_groups'])}")
    for group in result["cross_label_groups"]:
        lines.append("  " + "  <->  ".join(f"{m['file']} [{m['class']}]" for m in group))
    return "\n".join(lines)


def fold_table(root: str | Path, *, n_splits: int = 5, seed: int = 0, task: str = "benign-malignant",
               profile: str | None = "quick") -> dict:
    """Each file's cross-validation fold, as ``train --folds`` and ``compare`` cut them.

    The same images (those of ``task``), the same image size (``profile``'s), the same duplicate
    groups and the same seed give the same folds: stratified by class, every pair of
    near-duplicates in one fold.
    """
    settings = get_profile(profile)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ImageWarning)  # unreadable files are listed under "skipped"
        dataset = load_folder(root, task=task, image_size=settings.image_size)
    check_fold_count(dataset.labels, dataset.groups, n_splits=n_splits, class_names=dataset.class_names)
    folds = assign_folds(dataset.labels, dataset.groups, n_splits=n_splits, seed=seed)
    return {
        "root": str(Path(root)),
        "layout": dataset.layout,
        "task": dataset.task,
        "image_size": settings.image_size,
        "folds": n_splits,
        "seed": seed,
        "max_distance": MAX_DISTANCE,
        "files": [
            {
                "file": dataset.ids[i],
                "class": dataset.class_names[dataset.labels[i]],
                "fold": int(folds[i]),
                "group": int(dataset.groups[i]),
            }
            for i in range(len(dataset))
        ],
        "fold_counts": {
            str(k): {name: int(np.sum((folds == k) & (dataset.labels == c))) for c, name in enumerate(dataset.class_names)}
            for k in range(n_splits)
        },
        "skipped": [{"file": s.path, "reason": s.reason} for s in dataset.skipped if s.reason != "segmentation mask"],
    }
