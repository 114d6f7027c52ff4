"""busutils.checks: each exercise's self-check passes right work, fails wrong work with a hint,
calls empty work "not yet", and never prints an answer."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.stats import beta

from busutils import checks
from busutils.paired_auc import delong_test
from busutils.operating_point import threshold_for_sensitivity


def _states(report: checks.Report) -> dict[str, bool | None]:
    return {c.part: c.passed for c in report.checks}


def test_a_report_shows_ticks_and_carries_the_values_as_json():
    report = checks.Report("x")
    report.add("1", True, "done")
    report.add("2", None, "not yet: do it")
    report.values["auc"] = np.float64(0.75)
    bundle = report._repr_mimebundle_()
    assert bundle["text/plain"].splitlines() == ["✓ part 1: done", "… part 2: not yet: do it", "1 of 2 checks pass."]
    data = bundle[checks.REPORT_MIME]
    assert json.loads(json.dumps(data)) == {"exercise": "x", "passed": False, "values": {"auc": 0.75},
                                            "checks": [{"part": "1", "passed": True, "message": "done"},
                                                       {"part": "2", "passed": None, "message": "not yet: do it"}]}
    report.checks[1] = checks.Check("2", True, "done too")
    assert report.passed and report.text().endswith("2 of 2 checks pass: well done.")
    notebook = {"cells": [{"cell_type": "code", "outputs": [{"output_type": "execute_result", "data": bundle}]},
                          {"cell_type": "markdown", "source": "x"}]}
    assert checks.reports_in(notebook) == [data]


# --------------------------------------------------------------------------- 01


def _audit(counts, skipped=(), conversions=(), groups=()):
    return {"counts": dict(counts), "skipped": list(skipped), "conversions": list(conversions),
            "duplicate_groups": [list(g) for g in groups], "cross_label_groups": [list(g) for g in groups]}


CLEAN = _audit({"benign": 12, "malignant": 6, "normal": 4})
BROKEN = _audit({"benign": 11, "malignant": 8, "normal": 4},
                skipped=[{"file": "/f/benign/benign (3).png", "reason": "corrupt or truncated image"}],
                conversions=["/f/malignant/malignant (2) mask.png: 1-bit black-and-white image"],
                groups=[[{"file": "benign/benign (5).png", "class": "benign"},
                         {"file": "malignant/malignant (7).jpg", "class": "malignant"}]])


def test_the_audit_check_follows_each_fault():
    assert _states(checks.audit_exercise("/f", CLEAN)) == {"1": None, "2": None, "3": None, "d": None}
    done = checks.audit_exercise("/f", CLEAN, BROKEN, dict(CLEAN))
    assert done.passed and done.values["broken_counts"] == {"benign": 11, "malignant": 8, "normal": 4}
    half = _audit(BROKEN["counts"], skipped=BROKEN["skipped"])
    states = _states(checks.audit_exercise("/f", CLEAN, half, BROKEN))
    assert states == {"1": True, "2": False, "3": False, "d": False}


# --------------------------------------------------------------------------- 02


def _runs(rng, n=40):
    labels = rng.integers(0, 2, n)
    ids = [f"img{i}" for i in range(n)]
    runs = {}
    for shift, kind in enumerate(checks.KINDS):
        scores = labels + rng.normal(scale=1 + shift, size=n)
        auc = float(delong_test(labels, scores, scores)["auc_a"])
        runs[kind] = {"test": {"ids": ids, "labels": labels.tolist(), "scores": scores.tolist(),
                               "metrics": {"auc": auc}},
                      "train_metrics": {"auc": min(1.0, auc + 0.1)}, "seed": 0,
                      "profile": {"augmentation": kind, "image_size": 64}}
    return runs, SimpleNamespace(test=SimpleNamespace(ids=ids))


def test_the_augmentation_check_wants_one_change_and_the_right_pair():
    rng = np.random.default_rng(0)
    runs, split = _runs(rng)
    curves = {k: [0.5, 0.6] for k in checks.KINDS}
    assert _states(checks.augmentation_exercise({}, {}, split)) == {"1": None, "2": None, "3": None}
    aucs = {k: r["test"]["metrics"]["auc"] for k, r in runs.items()}
    best, worst = max(aucs, key=aucs.get), min(aucs, key=aucs.get)
    paired = delong_test(runs[best]["test"]["labels"], runs[best]["test"]["scores"], runs[worst]["test"]["scores"])
    report = checks.augmentation_exercise(runs, curves, split, paired)
    assert report.passed and report.values["delong_p"] == pytest.approx(paired["p_value"])
    other = [k for k in checks.KINDS if k not in (best, worst)][0]
    wrong_pair = delong_test(runs[best]["test"]["labels"], runs[best]["test"]["scores"], runs[other]["test"]["scores"])
    assert _states(checks.augmentation_exercise(runs, curves, split, wrong_pair))["3"] is False
    runs["none"]["profile"]["image_size"] = 128  # a second change
    assert _states(checks.augmentation_exercise(runs, curves, split, paired))["1"] is False


# --------------------------------------------------------------------------- 03


def _trained(n_trainable, cut, start):
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(n_trainable)])
    return SimpleNamespace(model=model, settings={"frozen_until": cut},
                           result=SimpleNamespace(best_epoch=1, initial_score=start))


def test_the_unfreeze_check_wants_one_classifier_and_one_block_more():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 30)
    split = SimpleNamespace(test=type("Part", (), {"labels": labels, "__len__": lambda self: 30})())
    trained = {"block5": _trained(2, "block4_pool", 0.7), "block4+block5": _trained(3, "block3_pool", 0.7)}
    scores = {c: labels + rng.normal(size=30) for c in checks.CHOICES}
    paired = delong_test(labels, scores["block4+block5"], scores["block5"])
    report = checks.unfreeze_exercise(trained, split, scores, paired)
    assert report.passed and report.values["trainable_block4+block5"] == 15
    trained["block5"].result.initial_score = 0.6  # another starting classifier
    assert _states(checks.unfreeze_exercise(trained, split, scores, paired))["1"] is False
    assert _states(checks.unfreeze_exercise({}, split)) == {"1": None, "2": None, "4": None}


# --------------------------------------------------------------------------- 04


def test_the_three_class_check_wants_the_floor_and_a_trivial_model_evaluated_alike():
    labels = np.array([0, 1, 1, 1, 2, 2, 1, 0])
    split = SimpleNamespace(test=type("Part", (), {"labels": labels, "class_names": ("normal", "benign", "malignant"),
                                                   "__len__": lambda self: 8})())
    evaluation = {"metrics": {"confusion_matrix": np.eye(3, dtype=int) * [2, 4, 2], "accuracy": 1.0, "auc": 1.0,
                              "per_class_recall": {"normal": 1.0, "benign": 1.0, "malignant": 1.0}}}
    trivial = {"metrics": {"auc": 0.5, "per_class_recall": {"normal": 0.0, "benign": 1.0, "malignant": 0.0}}}
    assert checks.three_class_exercise(split, evaluation, trivial, 0.5).passed
    assert _states(checks.three_class_exercise(split, evaluation, trivial, 0.375))["3"] is False
    assert _states(checks.three_class_exercise(split)) == {"1": None, "3": None, "3b": None}


# --------------------------------------------------------------------------- 05


def test_the_shortcut_check_keeps_unmarked_images_unchanged():
    rng = np.random.default_rng(2)
    labels = np.r_[np.zeros(20, int), np.ones(20, int)]
    masks = np.zeros((40, 4, 4), bool)
    masks[::3, 0, 0] = True
    area = masks.mean(axis=(1, 2))
    scores = labels + rng.normal(size=40)
    masked = scores.copy()
    marked = masks.any(axis=(1, 2))
    masked[marked] += 0.1
    auc = float(delong_test(labels, area, area)["auc_a"])
    report = checks.shortcut_exercise(labels, area, scores, masks, auc, masked, scores + 0.01)
    assert report.passed and report.values["share_marked"] == pytest.approx(marked.mean())
    moved = masked.copy()
    moved[~marked] += 0.1  # an unmarked image cannot change when its marks are painted over
    assert _states(checks.shortcut_exercise(labels, area, scores, masks, 0.3, moved)) == {
        "2": False, "3": False, "4": None}


# --------------------------------------------------------------------------- 06


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def test_the_operating_point_check_recomputes_every_part():
    rng = np.random.default_rng(3)
    y_val, y_test = rng.integers(0, 2, 80), rng.integers(0, 2, 80)
    val = {"labels": y_val, "scores": _sigmoid(y_val + rng.normal(size=80))}
    test = {"labels": y_test, "scores": _sigmoid(y_test + rng.normal(size=80))}
    chosen = threshold_for_sensitivity(val["labels"], val["scores"], 0.9)
    thresholds = np.clip(rng.normal(loc=chosen, scale=0.05, size=200), 0, 1)
    s1 = np.asarray(test["scores"])[y_test == 1]
    below = float(np.mean([np.mean(s1 >= t) < 0.9 for t in thresholds]))
    n = int(y_val.sum())
    found = int(np.sum(np.asarray(val["scores"])[y_val == 1] >= chosen))
    bound = float(beta.ppf(0.05, found, n - found + 1))
    cautious = float(np.quantile(thresholds, 0.05))
    needed = checks.validation_images_needed(0.9)
    report = checks.operating_point_exercise(val, test, 0.9, chosen, thresholds, below, needed, bound,
                                             min(cautious, chosen))
    assert _states(report)["1"] and _states(report)["2"] and _states(report)["3"]
    assert report.values["needed"] == needed == 29  # 0.9 ** 28 > 0.05 >= 0.9 ** 29
    assert checks.validation_images_needed(0.95) == 59
    wrong = checks.operating_point_exercise(val, test, 0.9, chosen + 0.05, thresholds, below + 0.1, needed + 1, bound)
    assert _states(wrong) == {"1": False, "2": False, "3": False, "4": None}
    assert _states(checks.operating_point_exercise(val, test, 0.9)) == {"1": None, "2": None, "3": None, "4": None}
    with pytest.raises(ValueError, match="between 0 and 1"):
        checks.validation_images_needed(1.0)


def test_no_message_gives_a_number_away():
    """A hint names the step to revisit; a number in a message would be an answer."""
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 60)
    val = test = {"labels": y, "scores": _sigmoid(y + rng.normal(size=60))}
    wrong = [checks.operating_point_exercise(val, test, 0.95, 9.0, [0.1] * 200, 0.7, 3, 0.2, 5.0),
             checks.audit_exercise("/f", CLEAN, _audit({}), _audit({}))]
    for report in wrong:
        for check in report.checks:
            shown = re.sub(r"0\.05 \*\* \(1 / n\)|one-sided 95%|100 finite|part \d", "", check.message)
            assert not re.search(r"\d\.\d", shown), check.message
