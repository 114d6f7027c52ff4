"""Helpers for the book *Breast ultrasound classification with transfer learning*.

One package shared by every chapter: data loading (:mod:`busutils.data`), a synthetic
phantom (:mod:`busutils.phantom`), near-duplicate detection (:mod:`busutils.duplicates`),
group-aware splits (:mod:`busutils.splits`), augmentation, model factories, training and
evaluation.  Not for clinical use.
"""

__version__ = "0.1.0"
