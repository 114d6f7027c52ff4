"""A linear probe: logistic regression on frozen features, the simplest transfer-learning baseline.

Before a network is trained on top of VGG16's features, a straight line through them sets the
bar: if a logistic regression on the same features does as well, the network's hidden layer,
dropout and epochs have added nothing.  The probe standardises each feature (with the training
images' means and spreads) and fits scikit-learn's ``LogisticRegression`` with balanced class
weights; the strength of its L2 penalty is chosen on the validation part, never on the test part.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from .evaluate import _check_labels

__all__ = ["LinearProbe", "linear_probe"]

#: Inverse penalty strengths tried, from a nearly constant model to a nearly unpenalised one.
DEFAULT_CS = tuple(float(c) for c in np.logspace(-4, 2, 13))


@dataclass(frozen=True)
class LinearProbe:
    """A fitted probe, its chosen ``C`` and the validation AUC of every ``C`` tried."""

    pipeline: Pipeline
    C: float
    val_auc: dict[float, float]

    def scores(self, features: Any) -> np.ndarray:
        """Probability of malignant for each row of ``features``."""
        return self.pipeline.predict_proba(np.asarray(features, dtype=np.float64))[:, 1]


def _check(x: Any, y: Any, part: str) -> tuple[np.ndarray, np.ndarray]:
    labels = _check_labels(y, 2)
    features = np.asarray(x, dtype=np.float64)
    if features.ndim != 2 or len(features) != len(labels):
        raise ValueError(f"{part} features must be (n, d) with one row per label ({len(labels)}); "
                         f"got {features.shape}")
    if labels.min() == labels.max():
        raise ValueError(f"{part} labels hold one class only: the probe needs malignant and benign images")
    return features, labels


def linear_probe(x_train: Any, y_train: Any, x_val: Any, y_val: Any, *,
                 Cs: Sequence[float] = DEFAULT_CS, balance_classes: bool = True) -> LinearProbe:
    """Fit a logistic regression on training features for each ``C``; keep the best on validation AUC.

    ``C`` is the inverse strength of the L2 penalty: small ``C``, weights held near zero.
    Ties go to the smaller ``C`` (the simpler model).  The chosen model is the one fitted on the
    training features alone: validation data choose, they do not train.
    """
    x_train, y_train = _check(x_train, y_train, "training")
    x_val, y_val = _check(x_val, y_val, "validation")
    if x_train.shape[1] != x_val.shape[1]:
        raise ValueError(f"training and validation features differ in width: {x_train.shape[1]} vs "
                         f"{x_val.shape[1]}")
    if not len(Cs) or any(c <= 0 for c in Cs):
        raise ValueError(f"Cs must be one or more positive numbers, got {list(Cs)}")
    weight = "balanced" if balance_classes else None
    best, val_auc = None, {}
    for c in sorted(float(c) for c in Cs):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, class_weight=weight, max_iter=5000))
        model.fit(x_train, y_train)
        val_auc[c] = float(roc_auc_score(y_val, model.predict_proba(x_val)[:, 1]))
        if best is None or val_auc[c] > val_auc[best[0]]:
            best = (c, model)
    return LinearProbe(best[1], best[0], val_auc)
