"""Tests for busutils.probe: a logistic regression on frozen features, its penalty chosen on validation."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from busutils.probe import linear_probe


def features(n: int, seed: int, informative: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Twenty features, the first one shifted by the label; the rest noise."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.35).astype(int)
    x = rng.standard_normal((n, 20)) * np.r_[1.0, np.full(19, 50.0)]  # scales far apart: the probe standardises
    x[:, 0] += informative * 2 * y
    return x, y


def test_the_probe_finds_the_informative_feature():
    x, y = features(120, 0)
    xv, yv = features(60, 1)
    xt, yt = features(200, 2)
    probe = linear_probe(x, y, xv, yv)
    assert set(probe.val_auc) == {float(c) for c in np.logspace(-4, 2, 13)}
    assert probe.val_auc[probe.C] == max(probe.val_auc.values())
    assert roc_auc_score(yt, probe.scores(xt)) > 0.8
    assert probe.scores(xt).shape == (200,) and np.all((probe.scores(xt) >= 0) & (probe.scores(xt) <= 1))


def test_validation_chooses_and_ties_go_to_the_simpler_model():
    x, y = features(80, 3)
    xv, yv = np.ones((40, 20)), np.arange(40) % 2  # every validation image alike: every C scores 0.5
    probe = linear_probe(x, y, xv, yv, Cs=[100.0, 0.01, 1.0])
    assert set(probe.val_auc.values()) == {0.5}
    assert probe.C == 0.01


def test_the_probe_refuses_bad_input():
    x, y = features(40, 4)
    with pytest.raises(ValueError, match="one class"):
        linear_probe(x, np.zeros(40, int), x, y)
    with pytest.raises(ValueError, match="width"):
        linear_probe(x, y, x[:, :5], y)
    with pytest.raises(ValueError, match="Cs"):
        linear_probe(x, y, x, y, Cs=[0.0])
