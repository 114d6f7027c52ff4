"""The comparison of several models under one protocol, and ``python -m busutils compare``."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from busutils.cli import main
from busutils.crossval import compare_models, paired_table, summary_table
from busutils.data import phantom_dataset
from busutils.phantom import write_busi_layout
from busutils.profiles import get_profile
from busutils.records import read_json, to_jsonable, write_json_atomic
from busutils.splits import assign_folds

MODELS = ("baseline", "vgg16-transfer", "vgg16-finetune")
FOLDS = 2  # the comparison below: two folds under two seeds, four tests of every image


def tiny_profile():
    return get_profile("quick", image_size=48, epochs=1, batch_size=16, augment_copies=2, n_boot=50,
                       weights="none")


@pytest.fixture(scope="module")
def tiny_data():
    return phantom_dataset(72, image_size=48, seed=3)


@pytest.fixture(scope="module")
def comparison(tiny_data):
    return compare_models(tiny_data, tiny_profile(), models=MODELS, folds=FOLDS, seeds=(0, 1), weights="none",
                          log=None)


@pytest.mark.slow
def test_every_image_is_tested_once_per_seed_and_model(comparison, tiny_data):
    rows = comparison["predictions"]
    seeds = np.array(rows["seed"])
    for seed in (0, 1):
        assert sorted(np.array(rows["id"])[seeds == seed]) == sorted(tiny_data.ids)
    for name in MODELS:
        scores = np.array(rows["scores"][name])
        assert scores.shape == (2 * len(tiny_data),) and np.all((scores >= 0) & (scores <= 1))
        assert comparison["models"][name]["pooled"]["metrics"]["n"] == 2 * len(tiny_data)
    index = {image_id: i for i, image_id in enumerate(tiny_data.ids)}
    np.testing.assert_array_equal(rows["label"], tiny_data.labels[[index[i] for i in rows["id"]]])


@pytest.mark.slow
def test_the_folds_are_the_group_aware_folds_and_shared_by_every_model(comparison, tiny_data):
    rows = comparison["predictions"]
    index = np.array([tiny_data.ids.index(image_id) for image_id in rows["id"]])
    for seed in (0, 1):
        mine = np.array(rows["seed"]) == seed
        expected = assign_folds(tiny_data.labels, tiny_data.groups, n_splits=FOLDS, seed=seed)
        np.testing.assert_array_equal(np.array(rows["fold"])[mine], expected[index[mine]])
    for group in np.unique(tiny_data.groups):  # a duplicate group never straddles two folds
        mine = tiny_data.groups[index] == group
        assert len(set(zip(np.array(rows["seed"])[mine], np.array(rows["fold"])[mine]))) <= 2
    layouts = {name: [(f["seed"], f["fold"], f["n_test"]) for f in model["per_fold"]]
               for name, model in comparison["models"].items()}
    assert len({tuple(layout) for layout in layouts.values()}) == 1
    assert [n for _, _, n in layouts["baseline"]] == [int(np.sum((np.array(rows["seed"]) == s)
                                                                 & (np.array(rows["fold"]) == k)))
                                                      for s in (0, 1) for k in range(FOLDS)]


@pytest.mark.slow
def test_summaries_weights_and_paired_tests(comparison, tiny_data):
    for name, model in comparison["models"].items():
        aucs = [f["auc"] for f in model["per_fold"]]
        assert model["summary"]["auc"]["mean"] == pytest.approx(np.mean(aucs))
        assert model["summary"]["auc"]["std"] == pytest.approx(np.std(aucs, ddof=1))
        assert model["summary"]["auc"]["n"] == 2 * FOLDS
        assert model["train_seconds"] > 0
        assert model["weights"].startswith("random")
    assert "RANDOM weights" in comparison["models"]["vgg16-transfer"]["label"]
    assert "RANDOM" not in comparison["models"]["baseline"]["label"]
    pairs = [(p["a"], p["b"]) for p in comparison["paired"]]
    assert pairs == [("vgg16-transfer", "baseline"), ("vgg16-finetune", "baseline"),
                     ("vgg16-finetune", "vgg16-transfer")]
    for pair in comparison["paired"]:
        assert [d["seed"] for d in pair["delong"]] == [0, 1]
        assert all(d["n"] == len(tiny_data) for d in pair["delong"])
        pooled = [comparison["models"][m]["pooled"]["metrics"]["auc"] for m in (pair["a"], pair["b"])]
        assert pair["bootstrap"]["difference"] == pytest.approx(pooled[0] - pooled[1])
        assert pair["bootstrap"]["unit"] == "group"
    assert list(summary_table(comparison).index) == [m["label"] for m in comparison["models"].values()]
    assert list(paired_table(comparison).index) == [f"{a} − {b}" for a, b in pairs]


@pytest.mark.slow
def test_folds_score_vgg16_through_its_cached_front_never_the_whole_network(tiny_data, monkeypatch):
    """Every image a fold tests trained in the other folds: its VGG16 activations are cached, and
    scoring it runs only the layers after them (VGG16 whole on a fold's test images was the
    largest cost of a cross-validation on a CPU)."""
    from busutils import train

    scored_whole = []
    real = train.extract_features

    def spy(extractor, x, **kwargs):
        if np.asarray(x).ndim == 3:  # greyscale images, not activations: the whole network runs
            scored_whole.append(extractor.name)
        return real(extractor, x, **kwargs)

    monkeypatch.setattr(train, "extract_features", spy)
    result = compare_models(tiny_data, tiny_profile(), models=["baseline", "vgg16-transfer"], folds=2,
                            weights="none", log=None)
    assert scored_whole == ["baseline_cnn", "baseline_cnn"]  # the baseline has no front: images, fold by fold
    assert len(result["predictions"]["scores"]["vgg16-transfer"]) == len(tiny_data)


@pytest.mark.slow
def test_the_comparison_round_trips_through_json(comparison, tmp_path):
    path = write_json_atomic(tmp_path / "compare.json", comparison)
    assert read_json(path) == to_jsonable(comparison)


@pytest.mark.parametrize("kwargs, message", [
    ({"models": ("baseline", "resnet")}, "must name one or more of"),
    ({"models": ()}, "must name one or more of"),
    ({"models": ("baseline", "baseline")}, "names a model twice"),
    ({"folds": 1}, "at least 2"),
    ({"seeds": (0, 0)}, "different integers"),
    ({"seeds": ()}, "different integers"),
])
def test_bad_arguments_are_refused_before_any_training(tiny_data, kwargs, message):
    with pytest.raises(ValueError, match=message):
        compare_models(tiny_data, tiny_profile(), log=None, **kwargs)


def test_a_task_of_three_classes_is_refused():
    three = phantom_dataset(30, task="three-class", image_size=48, seed=0)
    with pytest.raises(ValueError, match="two classes"):
        compare_models(three, tiny_profile(), log=None)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "busutils", "compare", *args], capture_output=True, text=True)


@pytest.mark.parametrize("args, message", [
    (["--folds", "5"], "--out"),
    (["--out", "c.json", "--folds", "two"], "is not an integer"),
    (["--out", "c.json", "--models", "resnet"], "invalid choice"),
    (["--out", "c.json", "--seeds", "zero"], "invalid int value"),
    (["--out", "c.json", "--task", "three-class"], "invalid choice"),
    (["--out", "c.json", "--data", "/no/such/folder"], "no such file or folder"),
])
def test_cli_rejects_malformed_arguments(args, message, capsys):
    with pytest.raises(SystemExit) as exit_status:
        main(["compare", *args])
    assert exit_status.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--folds", "1"], "error: --folds must be at least 2"),
    (["--models", "baseline", "baseline"], "error: --models names the same value twice"),
    (["--seeds", "0", "0"], "error: --seeds names the same value twice"),
])
def test_cli_rejects_arguments_that_make_no_comparison(args, message, tmp_path, capsys):
    assert main(["compare", "--out", str(tmp_path / "c.json"), *args]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "c.json").exists()


def test_cli_refuses_a_folder_or_an_existing_file_as_out(tmp_path, capsys):
    assert main(["compare", "--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    existing = tmp_path / "old.json"
    existing.write_text("{}")
    assert main(["compare", "--out", str(existing)]) == 2
    assert "--overwrite" in capsys.readouterr().err and existing.read_text() == "{}"


def test_cli_says_when_the_data_hold_too_few_groups_for_the_folds(tmp_path, capsys):
    folder = write_busi_layout(tmp_path / "data", {"benign": 3, "malignant": 2}, size=48, seed=1)
    assert main(["compare", "--data", str(folder), "--out", str(tmp_path / "c.json"), "--folds", "8"]) == 2
    assert "cannot make 8 folds" in capsys.readouterr().err and not (tmp_path / "c.json").exists()


def test_cli_errors_are_one_line_not_a_traceback():
    proc = _cli("--out", "c.json", "--folds", "1")
    assert proc.returncode == 2 and proc.stderr == "error: --folds must be at least 2, got 1\n"


@pytest.mark.slow
def test_cli_writes_one_json_and_prints_the_tables(tmp_path):
    folder = write_busi_layout(tmp_path / "data", {"benign": 20, "malignant": 12}, size=48, seed=2)
    out = tmp_path / "runs" / "compare.json"
    proc = _cli("--data", str(folder), "--out", str(out), "--folds", "2", "--epochs", "1", "--weights", "none",
                "--models", "baseline", "vgg16-transfer")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert list(result["models"]) == ["baseline", "vgg16-transfer"] and result["protocol"]["folds"] == 2
    assert len(set(result["predictions"]["id"])) == len(result["predictions"]["id"]) == 32
    assert "vgg16-transfer − baseline" in proc.stdout and "RANDOM weights" in proc.stdout
    assert f"comparison written to {out}" in proc.stdout


class _Untrained:
    """Stands in for a trained model where a test checks what happens around training, not training."""

    weights_used = "random (trained from scratch)"
    seconds = 0.0
    model = None
    diverged: dict = {}

    def describe(self) -> str:
        return "baseline (untrained stand-in)"

    def predict(self, images, *, batch_size=32, what=None):
        """Scores that follow the images' brightness."""
        return images.reshape(len(images), -1).mean(axis=1) / 255


def _no_training(*args, **kwargs):
    raise AssertionError("nothing may be trained before the folds are checked")


@pytest.fixture
def few_malignant_groups(tmp_path):
    """A folder whose 3 malignant images are 3 duplicate groups: at most 3 folds can each test malignant."""
    return write_busi_layout(tmp_path / "data", {"benign": 12, "malignant": 3}, size=48, seed=1)


def test_train_folds_refuses_an_impossible_k_before_training(few_malignant_groups, tmp_path, capsys, monkeypatch):
    from busutils import crossval, experiment, runs

    for module in (runs, crossval, experiment):
        for name in ("run_experiment", "train_model"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, _no_training)
    out = tmp_path / "run"
    assert main(["train", "--data", str(few_malignant_groups), "--model", "baseline", "--folds", "4",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "class 'malignant' has images in only 3 duplicate group(s): cannot make 4 folds" in err
    assert not out.exists()
    assert main(["train", "--data", str(few_malignant_groups), "--model", "baseline", "--folds", "16",
                 "--out", str(out)]) == 2
    assert "only 15 groups of images: cannot make 16 folds" in capsys.readouterr().err and not out.exists()
    assert main(["compare", "--data", str(few_malignant_groups), "--models", "baseline", "--folds", "4",
                 "--out", str(tmp_path / "c.json")]) == 2
    assert "cannot make 4 folds" in capsys.readouterr().err


def test_undefined_fold_metrics_are_counted_never_averaged(tiny_data, monkeypatch):
    from busutils import crossval

    real_metrics = crossval.classification_metrics
    calls = []

    def one_fold_undefined(labels, scores, names):
        metrics = dict(real_metrics(labels, scores, names))
        calls.append(len(calls))
        if len(calls) == 2:  # the second fold tested one class only, say: its AUC is undefined (NaN)
            metrics["auc"] = float("nan")
        return metrics

    monkeypatch.setattr(crossval, "train_model", lambda *args, **kwargs: _Untrained())
    monkeypatch.setattr(crossval, "classification_metrics", one_fold_undefined)
    result = compare_models(tiny_data, tiny_profile(), models=["baseline"], folds=3, log=None)
    model = result["models"]["baseline"]
    aucs = [f["auc"] for f in model["per_fold"]]
    assert aucs[1] is None and None not in (aucs[0], aucs[2])
    summary = model["summary"]["auc"]
    assert summary["n"] == 2 and summary["n_undefined"] == 1
    assert summary["mean"] == pytest.approx((aucs[0] + aucs[2]) / 2)  # the defined folds; the NaN is not averaged
    assert model["summary"]["accuracy"]["n_undefined"] == 0
    assert "(1 of 3 folds undefined)" in summary_table(result).iloc[0][("AUC", "folds: mean ± SD")]
    assert all(f["test_leaks"] == 0 for f in model["per_fold"]) and model["test_leaks"] == 0
    assert "leak" not in model["label"]


@pytest.mark.slow
def test_train_folds_and_compare_give_the_same_numbers(tmp_path, capsys):
    folder = write_busi_layout(tmp_path / "data", {"benign": 24, "malignant": 12}, size=48, seed=4)
    common = ["--data", str(folder), "--folds", "2", "--epochs", "1", "--profile", "quick"]
    assert main(["train", "--model", "baseline", "--seed", "2", "--out", str(tmp_path / "run"), *common]) == 0
    assert "2-fold cross-validation: test AUC per fold" in capsys.readouterr().out
    assert main(["compare", "--models", "baseline", "--seeds", "2", "--out", str(tmp_path / "c.json"), *common]) == 0
    trained = read_json(tmp_path / "run" / "results.json")["cross_validation"]
    compared = read_json(tmp_path / "c.json")
    assert trained["protocol"] == compared["protocol"]
    mine, theirs = trained["models"]["baseline"], compared["models"]["baseline"]
    metrics = ("n_test", "test_leaks", "auc", "accuracy", "sensitivity", "specificity")
    assert [[f[k] for k in metrics] for f in mine["per_fold"]] == [[f[k] for k in metrics] for f in theirs["per_fold"]]
    assert mine["summary"] == theirs["summary"] and mine["pooled"]["metrics"] == theirs["pooled"]["metrics"]
    assert trained["predictions"] == compared["predictions"]


def test_a_model_with_scores_that_are_not_finite_is_named_with_its_fold(tiny_data, monkeypatch):
    import keras

    from busutils import crossval
    from busutils.train import predict_scores

    class Broken(_Untrained):
        model = keras.Sequential([keras.Input((48, 48, 3)), keras.layers.Flatten(),
                                  keras.layers.Dense(1, kernel_initializer="zeros", bias_initializer="zeros")],
                                 name="broken")

        def describe(self):
            return "baseline (after its baseline stage, float32)"

        def predict(self, images, *, batch_size=32, what=None):
            return predict_scores(self.model, images, batch_size=batch_size, what=what)

    Broken.model.layers[-1].bias.assign([np.nan])
    monkeypatch.setattr(crossval, "train_model", lambda *args, **kwargs: Broken())
    with pytest.raises(ValueError, match=r"baseline \(after its baseline stage, float32\), seed 4, fold 1/3 gave "
                                         r"scores that are not finite"):
        compare_models(tiny_data, tiny_profile(), models=["baseline"], folds=3, seeds=[4], log=None)
