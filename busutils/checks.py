"""Self-checks for the exercises: what a student's work gets right, without the answers.

Each exercise of the book ends its starter code with a call such as
``checks.augmentation_exercise(runs, curves, split, paired)``.  The function looks at the
student's own variables and says, part by part, what passes, what does not yet and why, in
words that point at the step to revisit but never print the value a solution should reach.
A part whose variables are still empty is "not yet done", not wrong.

Where an answer can be computed from the student's own data, the check recomputes it and
compares (a threshold, a share, a paired test), so it holds on the phantom, on BUSI and on any
folder.  The :class:`Report` it returns shows as a list of ticks in a notebook; it also
carries the student's own results (``values``: only what the student's variables hold or
give, never a value the check computed to compare with) as JSON beside the text, for an
instructor's records and for the book's tests, which check the instructor's guide against them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

__all__ = [
    "Check",
    "Report",
    "audit_exercise",
    "augmentation_exercise",
    "operating_point_exercise",
    "shortcut_exercise",
    "three_class_exercise",
    "unfreeze_exercise",
    "validation_images_needed",
]

MARKS = {True: "✓", False: "✗", None: "…"}
REPORT_MIME = "application/vnd.busutils.checks+json"


@dataclass(frozen=True)
class Check:
    """One part of an exercise: passed (True), not passed (False) or not done yet (None)."""

    part: str
    passed: bool | None
    message: str


@dataclass
class Report:
    """The checks of one exercise, and the student's results they looked at."""

    exercise: str
    checks: list[Check] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)

    def add(self, part: str, passed: bool | None, message: str) -> None:
        self.checks.append(Check(part, passed, message))

    @property
    def passed(self) -> bool:
        """Every part passes."""
        return bool(self.checks) and all(c.passed for c in self.checks)

    def text(self) -> str:
        lines = [f"{MARKS[c.passed]} part {c.part}: {c.message}" for c in self.checks]
        done = sum(bool(c.passed) for c in self.checks)
        lines.append(f"{done} of {len(self.checks)} checks pass"
                     + ("." if done < len(self.checks) else ": well done."))
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {"exercise": self.exercise, "passed": self.passed,
                "checks": [{"part": c.part, "passed": c.passed, "message": c.message} for c in self.checks],
                "values": _jsonable(self.values)}

    def __repr__(self) -> str:
        return self.text()

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, Any]:
        return {"text/plain": self.text(), REPORT_MIME: self.as_dict()}


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


def _empty(value: Any) -> bool:
    return value is None or (hasattr(value, "__len__") and len(value) == 0)


def _close(a: float, b: float, tol: float = 1e-6) -> bool:
    return a is not None and b is not None and abs(float(a) - float(b)) <= tol


# --------------------------------------------------------------------------- exercise 01


def audit_exercise(root: str | Path, clean: Mapping, broken: Mapping | None = None,
                   repaired: Mapping | None = None) -> Report:
    """Exercise 01: the three faults show in the second audit (``broken``), and the repaired
    folder audits as the clean one did (``repaired``)."""
    report = Report("01_audit_your_folder")
    report.values["clean_counts"] = dict(clean.get("counts", {}))
    report.values["clean_groups"] = len(clean.get("duplicate_groups", []))
    if broken is None:
        for part in ("1", "2", "3"):
            report.add(part, None, "not yet: audit the broken folder into `broken`")
    else:
        skipped = [e for e in broken.get("skipped", []) if e not in clean.get("skipped", [])]
        corrupt = any(Path(e["file"]).name == "benign (3).png" and "corrupt" in e["reason"] for e in skipped)
        report.add("1", corrupt, "the audit skips a cut-short benign (3).png" if corrupt else
                   "the second audit skips no new benign/benign (3).png as corrupt: is the file cut to "
                   "half its bytes, and was the folder audited again after?")
        mask = any("malignant (2) mask.png" in note for note in broken.get("conversions", []))
        report.add("2", mask, "the stray mask is read, with a conversion note" if mask else
                   "no conversion note names malignant (2) mask.png: is it saved as a 1-bit PNG under "
                   "that name, in malignant/?")
        pair = any({Path(m["file"]).stem for m in group} >= {"benign (5)", "malignant (7)"}
                   for group in broken.get("cross_label_groups", []))
        report.add("3", pair, "the near-copy forms a group under two labels" if pair else
                   "no near-duplicate group holds benign (5) and malignant (7): is the copy brighter by a "
                   "few grey levels only, and saved in malignant/?")
        report.values["broken_counts"] = dict(broken.get("counts", {}))
        report.values["broken_groups"] = len(broken.get("duplicate_groups", []))
        report.values["cross_label_groups"] = len(broken.get("cross_label_groups", []))
    if repaired is None:
        report.add("d", None, "not yet: audit the repaired folder into `repaired`")
    else:
        same = repaired == clean
        report.add("d", same, "the repaired folder audits as the clean one did" if same else
                   "the repaired folder's report differs from the clean one: compare them entry by "
                   "entry (counts, skipped files, conversions, groups)")
        report.values["repaired_equals_clean"] = same
    return report


# --------------------------------------------------------------------------- exercise 02


KINDS = ("paper", "light", "none")


def _same_settings_but(results: Mapping[str, Mapping], setting: str) -> bool:
    profiles = [{k: v for k, v in r["profile"].items() if k != setting} for r in results.values()]
    return all(p == profiles[0] for p in profiles) and len({r.get("seed") for r in results.values()}) == 1


def augmentation_exercise(runs: Mapping[str, Mapping], curves: Mapping[str, Sequence[float]], split: Any,
                          paired: Mapping | None = None) -> Report:
    """Exercise 02: three runs of the baseline on one split that differ in the augmentation only,
    their validation curves, and a paired test of the best against the worst test AUC."""
    from busutils.paired_auc import delong_test

    report = Report("02_augmentation")
    if _empty(runs):
        report.add("1", None, "not yet: train the three runs into `runs`")
    else:
        missing = [k for k in KINDS if k not in runs]
        test_ids = list(split.test.ids)
        same_test = all(list(r["test"]["ids"]) == test_ids for r in runs.values())
        same_rest = _same_settings_but(runs, "augmentation")
        kinds = {k: r["profile"]["augmentation"] for k, r in runs.items()}
        ok = not missing and same_test and same_rest and all(kinds[k] == k for k in KINDS)
        report.add("1", ok, "three runs on the same test part, differing in the augmentation only" if ok else
                   (f"runs lacks {missing}" if missing else
                    "the runs differ in more than the augmentation (or are not tested on the split above): "
                    "change only `augmentation`, keep the seed and every other setting of `base`"))
        for kind in KINDS:
            if kind in runs:
                test_auc = runs[kind]["test"]["metrics"]["auc"]
                train_auc = runs[kind]["train_metrics"]["auc"]
                report.values[f"test_auc_{kind}"] = test_auc
                report.values[f"gap_{kind}"] = train_auc - test_auc
    if _empty(curves):
        report.add("2", None, "not yet: keep each run's validation AUC per epoch in `curves`")
    else:
        ok = all(k in curves and len(curves[k]) >= 1 and all(0 <= v <= 1 for v in curves[k]) for k in KINDS)
        report.add("2", ok, "a validation curve for each run" if ok else
                   "`curves` needs, for each augmentation, the list of validation AUCs (history['val_auc'])")
        if ok:
            report.values["best_val_auc"] = {k: max(curves[k]) for k in KINDS}
    if paired is None or _empty(runs) or any(k not in runs for k in KINDS):
        report.add("3", None, "not yet: compare the best and the worst test AUC with delong_test into `paired`")
    else:
        aucs = {k: runs[k]["test"]["metrics"]["auc"] for k in KINDS}
        best, worst = max(KINDS, key=aucs.get), min(KINDS, key=aucs.get)
        labels = runs[best]["test"]["labels"]
        expected = delong_test(labels, runs[best]["test"]["scores"], runs[worst]["test"]["scores"])
        ok = _close(abs(paired.get("difference", math.nan)), abs(expected["difference"])) and \
            _close(paired.get("p_value"), expected["p_value"])
        report.add("3", ok, "a paired test of the best against the worst run" if ok else
                   "`paired` is not DeLong's test of the runs with the highest and the lowest test AUC, on "
                   "the same test images")
        if ok:
            report.values["delong_p"] = paired["p_value"]
            report.values["best_minus_worst"] = abs(paired["difference"])
    return report


# --------------------------------------------------------------------------- exercise 03

CHOICES = ("block5", "block4+block5")


def unfreeze_exercise(trained: Mapping[str, Any], split: Any, scores: Mapping[str, Sequence[float]] | None = None,
                      paired: Mapping | None = None) -> Report:
    """Exercise 03: two fine-tunings from one classifier, block 5 or blocks 4 and 5; their test
    scores; and a paired test of the two."""
    from busutils.paired_auc import delong_test
    from busutils.models import count_params

    report = Report("03_unfreeze_more")
    if _empty(trained) or any(c not in trained for c in CHOICES):
        report.add("1", None, f"not yet: train both choices {list(CHOICES)} into `trained`")
    else:
        cut = {c: trained[c].settings.get("frozen_until") for c in CHOICES}
        weights = {c: count_params(trained[c].model)["trainable"] for c in CHOICES}
        # both fine-tunings start from the classifier alone: its validation score is their epoch 0
        start = [trained[c].result.initial_score for c in CHOICES]
        same_head = None not in start and abs(start[0] - start[1]) <= 0.01
        ok = cut == {"block5": "block4_pool", "block4+block5": "block3_pool"} and \
            weights["block4+block5"] > weights["block5"] and same_head
        report.add("1", ok, "two fine-tunings of the same classifier, one block apart" if ok else
                   "the two models should start from the same classifier (same split, seed and settings) "
                   "and differ only in finetune_layers")
        for c in CHOICES:
            report.values[f"trainable_{c}"] = weights[c]
            report.values[f"kept_epoch_{c}"] = trained[c].result.best_epoch
    if _empty(scores) or any(c not in (scores or {}) for c in CHOICES):
        report.add("2", None, "not yet: keep each model's test scores in `scores`")
    else:
        ok = all(len(scores[c]) == len(split.test) for c in CHOICES)
        report.add("2", ok, "test scores of both models" if ok else
                   "each entry of `scores` needs one score per test image")
        if ok:
            for c in CHOICES:
                report.values[f"test_auc_{c}"] = roc_auc_score(split.test.labels, scores[c])
    if paired is None or _empty(scores) or any(c not in scores for c in CHOICES):
        report.add("4", None, "not yet: compare the two models' test scores with delong_test into `paired`")
    else:
        expected = delong_test(split.test.labels, scores["block4+block5"], scores["block5"])
        ok = _close(abs(paired.get("difference", math.nan)), abs(expected["difference"])) and \
            _close(paired.get("p_value"), expected["p_value"])
        report.add("4", ok, "a paired test of the two fine-tunings" if ok else
                   "`paired` is not DeLong's test of the two models' scores on the same test images")
        if ok:
            report.values["delong_p"] = paired["p_value"]
            report.values["abs_difference"] = abs(paired["difference"])
    return report


# --------------------------------------------------------------------------- exercise 04


def three_class_exercise(split: Any, evaluation: Mapping | None = None, trivial: Mapping | None = None,
                         floor: float | None = None) -> Report:
    """Exercise 04: the three-class model evaluated on the test part, the "always benign" model
    evaluated the same way, and the accuracy floor."""
    report = Report("04_three_classes")
    names = list(split.test.class_names)
    n = len(split.test)
    if evaluation is None:
        report.add("1", None, "not yet: evaluate the model's test probabilities into `evaluation`")
    else:
        confusion = np.asarray(evaluation["metrics"]["confusion_matrix"])
        ok = confusion.shape == (len(names), len(names)) and int(confusion.sum()) == n
        report.add("1", ok, "the model is evaluated on every test image, three classes" if ok else
                   "`evaluation` should come from metrics_with_ci on the test part's labels and the "
                   "model's three probabilities per image")
        metrics = evaluation["metrics"]
        report.values.update(accuracy=metrics.get("accuracy"), auc=metrics.get("auc"),
                             recall=dict(metrics.get("per_class_recall", {})))
    benign = names.index("benign")
    share = float(np.mean(split.test.labels == benign))
    if floor is None:
        report.add("3", None, "not yet: compute the accuracy of always answering benign into `floor`")
    else:
        ok = _close(floor, share, 5e-4)
        report.values["floor"] = float(floor)
        report.add("3", ok, "the floor under accuracy" if ok else
                   "`floor` is not the accuracy of always answering benign on the test part: count the "
                   "benign test images")
    if trivial is None:
        report.add("3b", None, "not yet: evaluate the 'always benign' model into `trivial`")
    else:
        auc = trivial["metrics"].get("auc")
        malignant = trivial["metrics"].get("per_class_recall", {}).get("malignant")
        ok = _close(auc, 0.5, 1e-9) and _close(malignant, 0.0, 1e-9)
        report.values.update(trivial_auc=auc, trivial_malignant_recall=malignant)
        report.add("3b", ok, "the 'always benign' model evaluated like the real one" if ok else
                   "`trivial` should evaluate probabilities (0, 1, 0) for every test image with the same "
                   "function as the model")
    return report


# --------------------------------------------------------------------------- exercise 05


def shortcut_exercise(labels: Sequence[int], area: Sequence[float], scores: Sequence[float], masks: np.ndarray,
                      marks_auc: float | None = None, masked_scores: Sequence[float] | None = None,
                      control_scores: Sequence[float] | None = None) -> Report:
    """Exercise 05: the AUC of the marked area, the scores with the marks painted over, and the
    scores of the control."""
    from busutils.paired_auc import delong_test

    report = Report("05_shortcuts")
    y, area, scores = np.asarray(labels), np.asarray(area, dtype=float), np.asarray(scores, dtype=float)
    marked = np.asarray(masks).reshape(len(y), -1).any(axis=1)
    report.values["share_marked"] = float(marked.mean())
    report.values["auc"] = float(roc_auc_score(y, scores))
    expected = float(roc_auc_score(y, area))
    if marks_auc is None:
        report.add("2", None, "not yet: the AUC of the marked area as a score, into `marks_auc`")
    else:
        ok = _close(marks_auc, expected)
        report.values["marks_auc"] = float(marks_auc)
        report.add("2", ok, "the AUC of the marked area" if ok else
                   "`marks_auc` is not the AUC of the test labels against each image's marked fraction `area`")
    for part, name, value in (("3", "masked_scores", masked_scores), ("4", "control_scores", control_scores)):
        if value is None:
            report.add(part, None, f"not yet: score the painted test images into `{name}`")
            continue
        value = np.asarray(value, dtype=float)
        ok = value.shape == scores.shape
        if ok and part == "3":
            ok = bool(np.allclose(value[~marked], scores[~marked]))  # unmarked images cannot change
        report.add(part, ok, f"`{name}` scores every test image" + (", and only marked ones moved" if part == "3"
                                                                    else "") if ok else
                   f"`{name}` needs one score per test image; an image without marks keeps its score")
        if ok:
            report.values[f"auc_{name}"] = float(roc_auc_score(y, value))
            report.values[f"delong_p_{name}"] = delong_test(y, scores, value)["p_value"]
    return report


# --------------------------------------------------------------------------- exercise 06


def validation_images_needed(target: float, confidence: float = 0.95) -> int:
    """The fewest malignant validation images, all of them found, for which the one-sided
    Clopper-Pearson lower bound of the sensitivity reaches ``target``: the smallest n with
    ``(1 - confidence) ** (1 / n) >= target``."""
    if not 0 < target < 1 or not 0 < confidence < 1:
        raise ValueError(f"target and confidence must lie between 0 and 1, got {target} and {confidence}")
    return math.ceil(math.log(1 - confidence) / math.log(target))


def operating_point_exercise(val: Mapping, test: Mapping, target: float, chosen: float | None = None,
                             thresholds: Sequence[float] | None = None, below: float | None = None,
                             needed: int | None = None, lower_bound: float | None = None,
                             cautious: float | None = None) -> Report:
    """Exercise 06: the threshold chosen on validation, its bootstrap spread and what it means on
    the test part, the validation size a guarantee needs, and a more cautious threshold."""
    from scipy.stats import beta

    from busutils.operating_point import threshold_for_sensitivity

    report = Report("06_operating_point")
    y_val, s_val = np.asarray(val["labels"]), np.asarray(val["scores"], dtype=float)
    y_test, s_test = np.asarray(test["labels"]), np.asarray(test["scores"], dtype=float)
    expected = threshold_for_sensitivity(y_val, s_val, target=target)

    def on_test(t: float) -> tuple[float, float]:
        return float(np.mean(s_test[y_test == 1] >= t)), float(np.mean(s_test[y_test == 0] < t))

    n_malignant = int(y_val.sum())
    found = int(np.sum(s_val[y_val == 1] >= expected))
    report.values["n_malignant_val"] = n_malignant
    if chosen is None:
        report.add("1", None, "not yet: the threshold for the target, chosen on validation, into `chosen`")
    else:
        ok = _close(chosen, expected, 1e-9)
        report.values.update(threshold=float(chosen),
                             val_sensitivity=float(np.mean(s_val[y_val == 1] >= chosen)))
        report.values["test_sensitivity"], report.values["test_specificity"] = on_test(chosen)
        report.add("1", ok, "the threshold chosen on the validation part" if ok else
                   "`chosen` is not the highest threshold reaching the target on the validation part "
                   "(threshold_for_sensitivity on the validation labels and scores)")
    if _empty(thresholds):
        report.add("2", None, "not yet: the thresholds chosen on bootstrap resamples, into `thresholds`")
    else:
        t = np.asarray(thresholds, dtype=float)
        if len(t) < 100 or not np.all(np.isfinite(t)):
            report.add("2", False, "`thresholds` needs at least 100 finite thresholds, one per resample of "
                                   "the validation part")
        else:
            share = float(np.mean([on_test(x)[0] < target for x in t]))
            report.values["threshold_spread"] = [float(np.quantile(t, 0.05)), float(np.quantile(t, 0.95))]
            if below is None:
                report.add("2", None, "not yet: the share of those thresholds whose test sensitivity falls "
                                      "short of the target, into `below`")
            else:
                ok = _close(below, share, 1e-9)
                report.values["share_below_target"] = float(below)
                report.add("2", ok, "the bootstrap thresholds, and how many of them miss the target on the "
                                    "test part" if ok else
                           "`below` is not the share of the bootstrap thresholds whose test sensitivity "
                           "falls below the target")
    expected_needed = validation_images_needed(target)
    if needed is None or lower_bound is None:
        report.add("3", None, "not yet: `needed` and this run's `lower_bound`")
    else:
        expected_bound = float(beta.ppf(0.05, found, n_malignant - found + 1)) if found else 0.0
        ok = int(needed) == expected_needed and _close(lower_bound, expected_bound, 1e-6)
        report.values.update(needed=int(needed), lower_bound=float(lower_bound))
        report.add("3", ok, "how many malignant images a guarantee needs, and what this run's can promise" if ok else
                   "check `needed` (all found: the bound is 0.05 ** (1 / n)) and `lower_bound` (the "
                   "one-sided 95% Clopper-Pearson bound of the validation sensitivity at `chosen`)")
    if cautious is None:
        report.add("4", None, "not yet: the more cautious threshold, into `cautious`")
    else:
        ok = cautious <= expected + 1e-12
        if ok and not _empty(thresholds):
            ok = _close(cautious, float(np.quantile(np.asarray(thresholds, dtype=float), 0.05)), 1e-9)
        report.add("4", ok, "a cautious threshold, lower than the one chosen" if ok else
                   "`cautious` should be the 5th percentile of the bootstrap thresholds, at or below `chosen`")
        if ok:
            sens, spec = on_test(cautious)
            report.values.update(cautious_threshold=float(cautious), cautious_test_sensitivity=sens,
                                 cautious_test_specificity=spec)
    return report


def reports_in(notebook: Mapping) -> list[dict[str, Any]]:
    """The self-check reports in the outputs of an executed notebook (as JSON dictionaries)."""
    found = []
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []) or []:
            data = output.get("data", {})
            if REPORT_MIME in data:
                value = data[REPORT_MIME]
                found.append(json.loads(value) if isinstance(value, str) else dict(value))
    return found
