"""Tests for busutils.evaluate: metrics, bootstrap CIs, JSON output and the comparison table."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.exceptions import UndefinedMetricWarning

from busutils.evaluate import (
    MIN_UNITS_PER_CLASS,
    PAPER_TABLE1,
    UnreliableIntervalWarning,
    _binary_from_weights,
    _multiclass_from_weights,
    _resample_weights,
    binary_metrics,
    bootstrap_ci,
    classification_metrics,
    metrics_with_ci,
    format_metric,
    metrics_table,
    multiclass_metrics,
)

BINARY = ["benign", "malignant"]
THREE = ["normal", "benign", "malignant"]


def make_binary(n: int, seed: int = 0, signal: float = 0.35) -> tuple[np.ndarray, np.ndarray]:
    """Labels and informative, tie-rich scores in [0, 1]."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = np.round(np.clip(signal * y + (1 - signal) * rng.random(n), 0, 1), 2)
    return y, s


def make_multiclass(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    p = rng.dirichlet([1.0, 1.0, 1.0], n)
    p[np.arange(n), y] += 0.6
    return y, p / p.sum(axis=1, keepdims=True)


# -- binary point estimates --------------------------------------------------------------

# Hand-built: 4 malignant (scores .9 .8 .6 .3) and 6 benign (scores .7 .4 .2 .2 .1 .1).
# At 0.5: TP = 3, FN = 1, FP = 1, TN = 5.
HAND_Y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
HAND_S = np.array([0.9, 0.8, 0.6, 0.3, 0.7, 0.4, 0.2, 0.2, 0.1, 0.1])


def test_binary_metrics_hand_computed():
    m = binary_metrics(HAND_Y, HAND_S)
    assert m["confusion_matrix"] == [[5, 1], [1, 3]]  # rows true, cols predicted
    assert m["accuracy"] == pytest.approx(8 / 10)
    assert m["sensitivity"] == pytest.approx(3 / 4)
    assert m["specificity"] == pytest.approx(5 / 6)
    assert m["precision"] == pytest.approx(3 / 4)
    assert m["f1"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))
    # AUC by counting pairs: each positive vs the 6 negatives it outranks.
    # .9 -> 6, .8 -> 6, .6 -> 5 (loses to .7), .3 -> 4 (loses to .7, .4) => 21 / 24
    assert m["auc"] == pytest.approx(21 / 24)
    assert (m["n"], m["n_positive"], m["threshold"]) == (10, 4, 0.5)


def test_binary_metrics_match_sklearn():
    y, s = make_binary(300, seed=3)
    m = binary_metrics(y, s, threshold=0.4)
    pred = (s >= 0.4).astype(int)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["auc"] == pytest.approx(skm.roc_auc_score(y, s))
    assert m["sensitivity"] == pytest.approx(skm.recall_score(y, pred))
    assert m["specificity"] == pytest.approx(skm.recall_score(y, pred, pos_label=0))
    assert m["precision"] == pytest.approx(skm.precision_score(y, pred))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert m["confusion_matrix"] == skm.confusion_matrix(y, pred).tolist()


def test_threshold_is_inclusive_like_roc_curve():
    m = binary_metrics([0, 1], [0.5, 0.5], threshold=0.5)
    assert m["confusion_matrix"] == [[0, 1], [0, 1]]


def test_one_class_only_gives_nan_auc_with_warning():
    with pytest.warns(UndefinedMetricWarning, match="only class 0"):
        m = binary_metrics([0, 0, 0], [0.1, 0.7, 0.2])
    assert math.isnan(m["auc"])
    assert m["sensitivity"] == 0.0  # zero division -> 0
    assert m["specificity"] == pytest.approx(2 / 3)


def test_no_positive_predictions_gives_zero_precision():
    m = binary_metrics([0, 1, 1], [0.1, 0.2, 0.3])
    assert m["precision"] == 0.0 and m["f1"] == 0.0 and m["sensitivity"] == 0.0


# -- multiclass --------------------------------------------------------------------------


def test_multiclass_metrics_match_sklearn():
    y, p = make_multiclass(240, seed=1)
    m = multiclass_metrics(y, p, THREE)
    pred = p.argmax(axis=1)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["auc"] == pytest.approx(skm.roc_auc_score(y, p, multi_class="ovr", average="macro"))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert m["confusion_matrix"] == skm.confusion_matrix(y, pred).tolist()
    recalls = skm.recall_score(y, pred, average=None)
    assert list(m["per_class_recall"]) == THREE
    assert list(m["per_class_recall"].values()) == pytest.approx(recalls)
    assert m["recall_benign"] == pytest.approx(recalls[1])
    # malignant vs rest
    assert m["sensitivity"] == pytest.approx(recalls[2])
    assert m["specificity"] == pytest.approx(np.mean(pred[y != 2] != 2))


def test_multiclass_without_malignant_has_no_sensitivity():
    y, p = make_multiclass(60)
    m = multiclass_metrics(y, p, ["a", "b", "c"])
    assert "sensitivity" not in m and "specificity" not in m


# -- classification_metrics dispatch and validation --------------------------------------


def test_classification_metrics_accepts_three_binary_shapes():
    y, s = make_binary(50)
    flat = classification_metrics(y, s, BINARY)
    column = classification_metrics(y, s[:, None], BINARY)
    softmax = classification_metrics(y, np.column_stack([1 - s, s]), BINARY)
    assert flat == column == softmax
    assert flat == binary_metrics(y, s)


def test_classification_metrics_multiclass_and_string_labels():
    y, p = make_multiclass(90)
    assert classification_metrics(y, p, THREE) == multiclass_metrics(y, p, THREE)
    names = np.array(THREE)[y]
    assert classification_metrics(names, p, THREE) == multiclass_metrics(y, p, THREE)


@pytest.mark.parametrize(
    "y, s, names, match",
    [
        ([0, 1, 1], [0.2, 0.8], BINARY, "y_true and y_score have different lengths"),
        ([0, 1, 2], [0.2, 0.8, 0.5], BINARY, r"y_true has labels outside 0\.\.1"),
        ([0, 1, -1], [0.2, 0.8, 0.5], BINARY, "y_true has labels outside"),
        ([0, 1], [0.2, 1.3], BINARY, r"y_score must hold probabilities in \[0, 1\]"),
        ([0, 1], [-0.5, 0.3], BINARY, "y_score must hold probabilities"),
        ([0, 1], [0.2, np.nan], BINARY, "y_score contains nan"),
        ([0, 1], np.ones((2, 3)) / 3, BINARY, r"y_score for two classes must have shape"),
        ([0, 1, 2], np.full((3, 3), 0.5), THREE, "y_score rows must be probabilities summing to 1"),
        ([0, 1], [0.2, 0.8], ["only"], "class_names needs at least two classes"),
        ([0.5, 1], [0.2, 0.8], BINARY, "y_true must hold integer class labels"),
        (["benign", "cyst"], [0.2, 0.8], BINARY, "y_true contains names not in class_names"),
    ],
)
def test_input_validation_names_the_argument(y, s, names, match):
    with pytest.raises(ValueError, match=match):
        classification_metrics(y, s, names)


def test_threshold_validation():
    with pytest.raises(ValueError, match="threshold must be in"):
        binary_metrics([0, 1], [0.2, 0.8], threshold=1.5)


def test_warns_when_malignant_is_not_the_positive_class():
    with pytest.warns(UserWarning, match="positive class is class_names"):
        classification_metrics([0, 1], [0.3, 0.6], ["malignant", "benign"])


# -- the vectorised bootstrap engine -----------------------------------------------------


def test_weighted_metrics_equal_sklearn_on_unit_and_integer_weights():
    y, s = make_binary(120, seed=5)
    point = binary_metrics(y, s)
    fast = _binary_from_weights(np.ones((1, len(y))), y, s, 0.5)
    assert {k: float(v[0]) for k, v in fast.items()} == pytest.approx({k: point[k] for k in fast})
    # integer weights == the data repeated
    w = np.random.default_rng(0).integers(0, 4, len(y))
    w[:2] = 1  # keep both classes
    rep = np.repeat(np.arange(len(y)), w)
    fast = _binary_from_weights(w[None].astype(float), y, s, 0.5)
    assert {k: float(v[0]) for k, v in fast.items()} == pytest.approx(
        {k: v for k, v in binary_metrics(y[rep], s[rep]).items() if k in fast}
    )


def test_weighted_multiclass_metrics_equal_sklearn():
    y, p = make_multiclass(150, seed=2)
    point = multiclass_metrics(y, p, THREE)
    fast = _multiclass_from_weights(np.ones((1, len(y))), y, p, THREE)
    assert {k: float(v[0]) for k, v in fast.items()} == pytest.approx({k: point[k] for k in fast})


def test_group_resampling_keeps_groups_whole():
    groups = np.array([0, 0, 0, 1, 1, 2, 3, 3, 3, 3])
    w = _resample_weights(np.random.default_rng(0), groups, 4, 200)
    for g in range(4):
        members = w[:, groups == g]
        assert np.all(members == members[:, :1])  # every image of a group drawn equally often
    assert np.all(w[:, [0, 3, 5, 6]].sum(axis=1) == 4)  # 4 groups drawn per resample


# -- bootstrap_ci ------------------------------------------------------------------------


def test_bootstrap_ci_contains_point_estimate_and_is_deterministic():
    y, s = make_binary(200, seed=7)
    point = binary_metrics(y, s)
    ci = bootstrap_ci(y, s, BINARY, n_boot=500, seed=1)
    assert set(ci) == {"accuracy", "auc", "sensitivity", "specificity", "precision", "f1"}
    for key, (lo, hi) in ci.items():
        assert lo <= point[key] <= hi, key
        assert 0.0 <= lo < hi <= 1.0
    assert bootstrap_ci(y, s, BINARY, n_boot=500, seed=1) == ci
    assert bootstrap_ci(y, s, BINARY, n_boot=500, seed=2) != ci


def test_bootstrap_ci_narrower_with_more_data():
    small = bootstrap_ci(*make_binary(100, seed=1), BINARY, n_boot=400)
    large = bootstrap_ci(*make_binary(2000, seed=1), BINARY, n_boot=400)
    for key in ("accuracy", "auc", "sensitivity"):
        assert large[key][1] - large[key][0] < 0.6 * (small[key][1] - small[key][0]), key


def test_group_bootstrap_is_wider_when_images_are_duplicated():
    # 40 distinct lesions, each present as 10 near-identical copies: there are really only 40
    # independent observations, and the group bootstrap must say so.
    y0, s0 = make_binary(40, seed=4)
    y, s = np.repeat(y0, 10), np.repeat(s0, 10)
    groups = np.repeat(np.arange(40), 10)
    naive = bootstrap_ci(y, s, BINARY, n_boot=400)
    grouped = bootstrap_ci(y, s, BINARY, n_boot=400, groups=groups)
    reference = bootstrap_ci(y0, s0, BINARY, n_boot=400)
    width = {name: ci["auc"][1] - ci["auc"][0] for name, ci in
             {"naive": naive, "grouped": grouped, "reference": reference}.items()}
    assert width["grouped"] > 2 * width["naive"]
    assert width["grouped"] == pytest.approx(width["reference"], rel=0.3)


def test_bootstrap_ci_groups_length_checked():
    with pytest.raises(ValueError, match="groups must be 1-D"):
        bootstrap_ci([0, 1], [0.1, 0.9], BINARY, groups=[1, 2, 3])


def test_bootstrap_skips_one_class_resamples_and_warns_when_hopeless():
    with pytest.warns(UndefinedMetricWarning, match="bootstrap resamples"), pytest.warns(UnreliableIntervalWarning):
        ci = bootstrap_ci([0, 0, 0], [0.1, 0.2, 0.3], BINARY, n_boot=50)
    assert all(math.isnan(lo) and math.isnan(hi) for lo, hi in ci.values())


def test_bootstrap_warns_that_one_positive_gives_no_real_interval():
    # One positive among 30, ranked above every negative: each usable resample holds that same
    # positive, so the AUC "interval" is the single point 1.0 -- certainty it does not have.
    y = np.r_[np.zeros(29, int), 1]
    s = np.linspace(0, 1, 30)
    with pytest.warns(UnreliableIntervalWarning, match="1 image of class 'malignant', where at least 10"):
        ci = bootstrap_ci(y, s, BINARY, n_boot=200)
    assert ci["auc"] == (1.0, 1.0)
    with pytest.warns(UnreliableIntervalWarning):
        result = metrics_with_ci(y, s, BINARY, n_boot=200)
    assert result["bootstrap"]["reliable"] is False
    assert result["bootstrap"]["reason"].startswith("1 image of class 'malignant', where at least 10 of each class")


def _no_unreliable_warning(y, s, **kwargs) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnreliableIntervalWarning)
        return metrics_with_ci(y, s, BINARY, n_boot=50, **kwargs)


def test_reliability_threshold_counts_units_of_each_class():
    assert MIN_UNITS_PER_CLASS == 10
    y = np.r_[np.zeros(30, int), np.ones(10, int)]
    s = np.linspace(0, 1, 40)
    result = _no_unreliable_warning(y, s)  # 10 positives: enough
    assert result["bootstrap"]["reliable"] is True and result["bootstrap"]["reason"] is None
    with pytest.warns(UnreliableIntervalWarning, match="^9 images of class 'malignant', where"):
        bootstrap_ci(y[1:-1], s[1:-1], BINARY, n_boot=50)  # 9 positives: not enough
    with pytest.warns(UnreliableIntervalWarning, match="^9 images of class 'benign' and 3 images of class 'malignant', where"):
        bootstrap_ci(y[21:-7], s[21:-7], BINARY, n_boot=50)


def test_reliability_counts_groups_not_images():
    # 16 lesions, 8 per class, each seen in 10 near-identical images: plenty of images, too few lesions
    y0, s0 = np.tile([0, 1], 8), np.linspace(0.2, 0.8, 16)
    y, s, groups = np.repeat(y0, 10), np.repeat(s0, 10), np.repeat(np.arange(16), 10)
    assert _no_unreliable_warning(y, s)["bootstrap"]["reliable"] is True
    with pytest.warns(UnreliableIntervalWarning, match="^8 groups of class 'benign' and 8 groups of class 'malignant', where"):
        result = metrics_with_ci(y, s, BINARY, n_boot=50, groups=groups)
    assert result["bootstrap"]["reliable"] is False and result["bootstrap"]["unit"] == "group"


def test_multiclass_bootstrap_keys():
    y, p = make_multiclass(120)
    ci = bootstrap_ci(y, p, THREE, n_boot=200)
    assert set(ci) == {"accuracy", "auc", "f1", "recall_normal", "recall_benign", "recall_malignant",
                       "sensitivity", "specificity"}
    point = multiclass_metrics(y, p, THREE)
    for key, (lo, hi) in ci.items():
        assert lo <= point[key] <= hi, key


# -- metrics_with_ci and metrics_table ----------------------------------------------


def test_metrics_with_ci_is_strict_json():
    y, s = make_binary(80)
    result = metrics_with_ci(y, s.astype(np.float32), BINARY, n_boot=100)
    text = json.dumps(result, allow_nan=False)
    assert json.loads(text) == result
    assert set(result) >= {"metrics", "ci95", "roc"}
    assert result["metrics"]["auc"] == pytest.approx(skm.roc_auc_score(y, s.astype(np.float32)))
    assert len(result["ci95"]["auc"]) == 2
    roc = result["roc"]
    assert len(roc["fpr"]) == len(roc["tpr"]) == len(roc["thresholds"])
    assert roc["thresholds"][0] is None  # sklearn's inf
    assert result["bootstrap"]["unit"] == "image"


def test_metrics_with_ci_degenerate_and_multiclass():
    with pytest.warns(UndefinedMetricWarning), pytest.warns(UnreliableIntervalWarning, match="0 images of class 'benign'"):
        result = metrics_with_ci([1, 1, 1], [0.6, 0.7, 0.2], BINARY, n_boot=20)
    json.dumps(result, allow_nan=False)
    assert result["metrics"]["auc"] is None and result["roc"] is None
    y, p = make_multiclass(60)
    result = metrics_with_ci(y, p, THREE, n_boot=50, groups=np.arange(60) // 2)
    json.dumps(result, allow_nan=False)
    assert result["roc"] is None and result["bootstrap"]["n_units"] == 30


def test_metrics_table_rows_and_formatting():
    result = {
        "metrics": {"accuracy": 0.8312, "auc": 0.9, "sensitivity": 0.75, "specificity": None},
        "ci95": {"accuracy": [0.761, 0.894], "auc": [0.85, 0.94], "sensitivity": [0.6, 0.88]},
    }
    table = metrics_table({"baseline (this run)": result})
    assert list(table.columns) == ["accuracy", "AUC", "sensitivity", "specificity"]
    assert list(table.index) == ["baseline (this run)"] + [f"{m} (paper)" for m in PAPER_TABLE1]
    row = table.loc["baseline (this run)"]
    assert row["accuracy"] == "0.83 [0.76, 0.89]"
    assert row["AUC"] == "0.90 [0.85, 0.94]"
    assert row["specificity"] == "n/a"
    paper = table.loc["vgg16-transfer (paper)"]
    assert (paper["accuracy"], paper["AUC"], paper["sensitivity"], paper["specificity"]) == ("0.9511", "0.97", "", "")
    assert table.loc["baseline (paper)", "accuracy"] == "0.79"


def test_metrics_table_from_metrics_with_ci_and_paper_subset():
    y, s = make_binary(100)
    result = json.loads(json.dumps(metrics_with_ci(y, s, BINARY, n_boot=100)))
    table = metrics_table({"run": result}, include_paper=["baseline"], digits=3)
    assert list(table.index) == ["run", "baseline (paper)"]
    assert table.loc["run", "sensitivity"].count(".") == 3  # "0.xxx [0.xxx, 0.xxx]"
    assert list(metrics_table({"run": result}, include_paper=False).index) == ["run"]
    with pytest.raises(ValueError, match="include_paper"):
        metrics_table({}, include_paper=["resnet"])


def test_format_metric_says_why_the_auc_is_missing():
    with pytest.warns(UndefinedMetricWarning), pytest.warns(UnreliableIntervalWarning):  # malignant images only
        result = json.loads(json.dumps(metrics_with_ci([1, 1, 1], [0.6, 0.7, 0.2], BINARY, n_boot=20)))
    metrics = result["metrics"]
    assert metrics["auc"] is None
    assert format_metric(metrics, "auc") == "n/a (the AUC needs every class among the test images)"
    assert format_metric(metrics, "accuracy") == "0.667"
    assert format_metric(metrics, "sensitivity", digits=2) == "0.67"
    assert format_metric(metrics, "n") == "3"
    assert format_metric({"specificity": None}, "specificity") == "n/a"
