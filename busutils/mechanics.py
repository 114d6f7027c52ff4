"""What Keras and scikit-learn compute when a classifier trains and is scored, written out.

Each function here is a few lines of numpy that a chapter can show on the page, and each is
tested against the library it explains: :func:`binary_cross_entropy` against Keras' loss (with
class weights), :func:`balanced_class_weights` against scikit-learn's, :func:`adam_update`
against ``keras.optimizers.Adam``, :func:`roc_points` against ``sklearn.metrics.roc_curve``.
The book trains with the libraries; these are for reading.

Labels are 0/1 with 1 = malignant; a score is the predicted probability of malignant.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .evaluate import _check_labels

__all__ = [
    "adam_update",
    "balanced_class_weights",
    "best_logistic_loss",
    "binary_cross_entropy",
    "fit_logistic",
    "roc_points",
]

EPSILON = 1e-7  # Keras' fuzz factor: probabilities are kept this far from 0 and 1


def binary_cross_entropy(y_true: Any, p: Any, sample_weight: Any = None) -> float:
    """What a sigmoid classifier minimises: ``-log`` of the true class's probability.

    A malignant image scored ``p`` costs ``-log(p)``, a benign one ``-log(1 - p)``:
    nothing for a confident right answer, without bound for a confident wrong one.  The
    loss is the mean over the images, each weighted by ``sample_weight`` (Keras turns
    ``class_weight`` into these, and divides by the number of images, not by the sum of
    the weights).
    """
    y = _check_labels(y_true, 2).astype(np.float64)
    p = np.clip(np.asarray(p, dtype=np.float64), EPSILON, 1 - EPSILON)
    w = np.ones_like(y) if sample_weight is None else np.asarray(sample_weight, float)
    if p.shape != y.shape or w.shape != y.shape:
        raise ValueError(f"p and sample_weight need one value per label, {y.shape}; "
                         f"got {p.shape} and {w.shape}")
    losses = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    return float(np.mean(w * losses))


def balanced_class_weights(labels: Any, n_classes: int = 2) -> dict[int, float]:
    """Weights that make every class count as much in the loss: ``n / (k * n_c)`` for class c.

    With n images, k classes and n_c images of class c, the weights of class c's images add up
    to ``n / k`` for every class.  A class half as frequent gets twice the weight.
    """
    y = _check_labels(labels, n_classes)
    counts = np.bincount(y, minlength=n_classes)
    if np.any(counts == 0):
        raise ValueError(f"every class needs at least one image; counts per class are {counts.tolist()}")
    return {c: float(len(y) / (n_classes * counts[c])) for c in range(n_classes)}


def adam_update(w: np.ndarray, grad: np.ndarray, m: np.ndarray, v: np.ndarray,
                step: int, *, learning_rate: float = 1e-3, beta_1: float = 0.9,
                beta_2: float = 0.999, epsilon: float = EPSILON
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One step of Adam (Kingma & Ba 2015), as ``keras.optimizers.Adam`` takes it.

    ``m`` and ``v`` are running means of each weight's gradient and squared gradient;
    the step is ``m / sqrt(v)``, so every weight moves by about ``learning_rate``
    whatever the scale of its own gradient.  ``step`` counts from 1.  Returns the new
    weights, ``m`` and ``v``.
    """
    if int(step) != step or step < 1:
        raise ValueError(f"step counts from 1, got {step}")
    m = beta_1 * m + (1 - beta_1) * grad
    v = beta_2 * v + (1 - beta_2) * grad ** 2
    # bias correction: m and v start at 0 and would be too small in the first steps
    rate = learning_rate * np.sqrt(1 - beta_2 ** step) / (1 - beta_1 ** step)
    return w - rate * m / (np.sqrt(v) + epsilon), m, v


def fit_logistic(x: Any, y_true: Any, *, optimizer: str = "adam", learning_rate: float = 1e-3,
                 steps: int = 200) -> np.ndarray:
    """Train a logistic regression on ``x`` by full-batch gradient steps; its loss before each step.

    ``optimizer`` is ``"sgd"`` (every weight moves by ``learning_rate`` times its gradient) or
    ``"adam"`` (:func:`adam_update`).  With inputs on very different scales, one learning rate
    suits no weight under SGD, while Adam scales each weight's step by its own gradient history.
    The losses are :func:`binary_cross_entropy`; a step that overflows ends the run (the rest is
    ``nan``).
    """
    x = np.asarray(x, dtype=np.float64)
    y = _check_labels(y_true, 2).astype(np.float64)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"x must be (n, features) with one row per label ({len(y)}); got {x.shape}")
    if optimizer not in ("sgd", "adam"):
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a positive whole number, got {steps}")
    x1 = np.column_stack([x, np.ones(len(x))])  # the last weight is the bias
    w, m, v = np.zeros(x1.shape[1]), np.zeros(x1.shape[1]), np.zeros(x1.shape[1])
    losses = np.full(int(steps), np.nan)
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(int(steps)):
            p = 1 / (1 + np.exp(-(x1 @ w)))
            losses[t] = binary_cross_entropy(y, p)
            grad = x1.T @ (p - y) / len(y)  # the gradient of the mean loss
            if optimizer == "sgd":
                w = w - learning_rate * grad
            else:
                w, m, v = adam_update(w, grad, m, v, t + 1, learning_rate=learning_rate)
            if not np.all(np.isfinite(w)):
                break
    return losses


def best_logistic_loss(x: Any, y_true: Any) -> float:
    """The lowest cross-entropy a logistic regression on ``x`` can reach: the floor :func:`fit_logistic` aims at.

    Found by scikit-learn's solver (no penalty), which uses second derivatives and so does not
    care how the inputs are scaled.
    """
    from sklearn.linear_model import LogisticRegression

    y = _check_labels(y_true, 2)
    model = LogisticRegression(C=np.inf, max_iter=100_000, tol=1e-10).fit(np.asarray(x, dtype=np.float64), y)
    return binary_cross_entropy(y, model.predict_proba(np.asarray(x, dtype=np.float64))[:, 1])


def roc_points(y_true: Any, scores: Any) -> dict[str, np.ndarray]:
    """The ROC curve by hand: for each distinct score, from the highest, call every image scored
    at least that malignant and count.

    The true positive rate (sensitivity) is the share of malignant images called malignant, the
    false positive rate (1 - specificity) the share of benign ones.  The curve starts at (0, 0),
    a threshold above every score, and ends at (1, 1).  Returns ``thresholds``, ``fpr`` and
    ``tpr``; the same points as ``sklearn.metrics.roc_curve(..., drop_intermediate=False)``.
    """
    y = _check_labels(y_true, 2)
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != y.shape:
        raise ValueError(f"scores must have one value per label, shape {y.shape}; got {s.shape}")
    if y.min() == y.max():
        raise ValueError("y_true holds one class only: a ROC curve needs malignant and benign images")
    thresholds = np.r_[np.inf, np.unique(s)[::-1]]
    tpr = np.array([np.mean(s[y == 1] >= t) for t in thresholds])
    fpr = np.array([np.mean(s[y == 0] >= t) for t in thresholds])
    return {"thresholds": thresholds, "fpr": fpr, "tpr": tpr}
