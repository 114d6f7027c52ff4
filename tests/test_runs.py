"""Run folders: never overwritten by accident, evaluated only on unseen images, tabulated honestly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from busutils.cli import main
from busutils.models import baseline_cnn
from busutils.phantom import write_busi_layout
from busutils.runs import RunExistsError, collect_results, evaluate_run, run_label, train_run, unseen_part
from busutils.train import save_model_atomic


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_busi_layout(tmp_path_factory.mktemp("data") / "busi", {"benign": 40, "malignant": 20}, size=96, seed=11)


@pytest.fixture(scope="module")
def run(folder, tmp_path_factory):
    """A quick baseline trained for 2 epochs on ``folder``."""
    out = tmp_path_factory.mktemp("runs") / "baseline"
    train_run(data=folder, model="baseline", profile="quick", out=out, epochs=2, verbose=0)
    return out


def test_evaluating_on_the_training_folder_scores_only_the_unseen_test_part(run, folder):
    saved = json.loads((run / "results.json").read_text())
    result = evaluate_run(run, data=folder, n_boot=50)
    n_seen = len(saved["seen"]["train"]["ids"]) + len(saved["seen"]["val"]["ids"])
    assert result["dropped"]["seen"] == n_seen
    assert result["metrics"]["n"] == result["dropped"]["kept"] == 60 - n_seen - result["dropped"]["near_duplicate_of_seen"]
    assert set(result["ids"]) <= set(saved["seen"]["test"]["ids"])


def test_evaluate_refuses_when_nothing_unseen_is_left(run, folder, tmp_path):
    from PIL import Image

    saved = json.loads((run / "results.json").read_text())
    only_seen = tmp_path / "seen"
    for image_id in saved["seen"]["train"]["ids"] + saved["seen"]["val"]["ids"]:
        target = only_seen / image_id
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.open(folder / image_id).save(target)
    with pytest.raises(ValueError, match="nothing unseen is left"):
        evaluate_run(run, data=only_seen, n_boot=20)
    assert main(["evaluate", str(run), "--data", str(only_seen)]) == 2


def test_a_near_copy_of_a_training_image_is_dropped_too(run, folder):
    from busutils.data import load_folder

    saved = json.loads((run / "results.json").read_text())
    data = load_folder(folder, image_size=saved["data"]["image_size"])
    first = data.ids.index(saved["seen"]["train"]["ids"][0])
    brighter = data.take([first])
    brighter.images = np.clip(brighter.images.astype(int) + 3, 0, 255).astype(np.uint8)  # another file, same picture
    brighter.hash_values = None
    kept, dropped = unseen_part(brighter, saved["seen"])
    assert len(kept) == 0 and dropped == {"seen": 0, "near_duplicate_of_seen": 1, "kept": 0, "max_distance": 10}


def test_train_refuses_a_folder_that_holds_a_run_and_touches_nothing(run, folder):
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    with pytest.raises(RunExistsError, match="--overwrite"):
        train_run(data=folder, model="baseline", profile="quick", out=run, epochs=1, verbose=0)
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before
    assert main(["train", "--data", str(folder), "--model", "baseline", "--out", str(run), "--epochs", "1"]) == 2


def test_overwrite_replaces_a_run_whole(folder, tmp_path):
    out = tmp_path / "run"
    train_run(data=folder, model="baseline", profile="quick", out=out, epochs=1, verbose=0)
    evaluate_run(out, data=folder, n_boot=20)
    assert (out / "evaluation.json").is_file()
    train_run(data=folder, model="baseline", profile="quick", out=out, epochs=2, verbose=0, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["model.keras", "results.json"]  # no stale evaluation
    assert json.loads((out / "results.json").read_text())["training"]["stages"]["baseline"]["max_epochs"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # nothing left beside it


def test_a_results_file_without_a_record_of_seen_images_is_refused(tmp_path, folder):
    model, _ = baseline_cnn((48, 48, 3), 2, seed=0)
    save_model_atomic(model, tmp_path / "run" / "model.keras")
    (tmp_path / "run" / "results.json").write_text(json.dumps(
        {"model": "baseline", "seed": 0, "data": {"task": "benign-malignant", "image_size": 48,
                                                  "class_names": ["benign", "malignant"]}}))
    with pytest.raises(ValueError, match="does not record which images"):
        evaluate_run(tmp_path / "run", data=folder)
    (tmp_path / "run" / "results.json").write_text(json.dumps(
        {"model": "baseline", "seed": 0, "data": {"task": "benign-malignant", "image_size": 48,
                                                  "class_names": ["normal", "benign", "malignant"]}}))
    with pytest.raises(ValueError, match="differ from the model"):
        evaluate_run(tmp_path / "run", data=folder)


@pytest.mark.parametrize("weights, flag", [
    ("random (trained from scratch)", None),
    ("random (weights='none' asked for random initialisation)", "RANDOM weights"),
    ("random", "RANDOM weights"),
    ("random (imagenet unavailable: OSError)", "RANDOM weights"),
    ("not ImageNet's weights (file x.h5, sha256 0123)", "not ImageNet weights"),
    ("imagenet (file vgg16_notop.h5 from VGG16_WEIGHTS, sha256 5ffcc3e2b95a)", None),
])
def test_run_label_flags_every_vgg16_row_not_pre_trained_on_imagenet(weights, flag):
    model = "baseline" if "scratch" in weights else "vgg16-transfer"
    label = run_label({"model": model, "weights": weights})
    assert (flag in label) if flag else label == f"{model} (this run)"


def test_run_label_shows_a_leaking_test_part():
    assert run_label({"model": "baseline", "weights": "random (trained from scratch)",
                      "data": {"test_leaks": 3}}) == "baseline (this run, 3 test images leak)"
    assert run_label({"model": "baseline", "weights": "random (trained from scratch)",
                      "data": {"test_leaks": 1}}) == "baseline (this run, 1 test image leaks)"
    assert run_label({"model": "baseline", "weights": "random (trained from scratch)",
                      "data": {"test_leaks": 0}}) == "baseline (this run)"


def test_every_run_records_its_test_images_with_a_near_duplicate_in_training(run):
    saved = json.loads((run / "results.json").read_text())
    assert saved["data"]["test_leaks"] == 0  # checked pair by pair against training and validation images
    assert run_label(saved) == "baseline (this run)"


def test_collect_results_refuses_to_mix_tasks_seeds_profiles_and_data(tmp_path):
    reference = {"model": "baseline", "weights": "random (trained from scratch)", "seed": 0,
                 "profile": {"name": "quick"}, "data": {"source": "BUSI", "task": "benign-malignant"},
                 "test": {"metrics": {"auc": 0.8}}}
    saved = {
        "baseline": reference,
        "vgg16-transfer": {**reference, "model": "vgg16-transfer", "weights": "random (imagenet unavailable: x)"},
        "vgg16-finetune": {**reference, "model": "vgg16-finetune", "seed": 1},
    }
    for name, results in saved.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(results))
    with pytest.warns(UserWarning, match="vgg16-finetune.json is left out.*seed"):
        runs = collect_results(tmp_path, reference)
    assert list(runs) == ["baseline (this book)", "vgg16-transfer (this book, RANDOM weights)"]
    other_task = {**reference, "data": {**reference["data"], "task": "three-class"}}
    (tmp_path / "vgg16-finetune.json").write_text(json.dumps({**other_task, "model": "vgg16-finetune"}))
    with pytest.warns(UserWarning, match="task"):
        assert len(collect_results(tmp_path, reference)) == 2
    assert len(collect_results(tmp_path, reference, allow_mixed=True)) == 3


def test_load_or_train_reuses_a_chapter_run_only_when_it_matches(tmp_path, monkeypatch):
    from busutils import runs
    from busutils.data import phantom_dataset
    from busutils.profiles import get_profile

    data = phantom_dataset(60, image_size=48, seed=4)
    settings = get_profile("quick", image_size=48, epochs=1, n_boot=20)
    model, results = runs.load_or_train("baseline", data, settings, results_dir=tmp_path, seed=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["baseline.json", "baseline.keras"]
    assert len(results["val"]["scores"]) == len(results["val"]["ids"]) > 0

    def no_training(*args, **kwargs):
        raise AssertionError("a matching saved run must not be trained again")

    monkeypatch.setattr(runs, "run_experiment", no_training)
    again, saved = runs.load_or_train("baseline", data, settings, results_dir=tmp_path, seed=0)
    assert saved["test"]["scores"] == results["test"]["scores"] and saved["seed"] == 0
    x = data.images[:4]
    from busutils.train import predict_scores

    np.testing.assert_array_equal(predict_scores(again, x), predict_scores(model, x))
    with pytest.raises(AssertionError, match="must not be trained again"):
        runs.load_or_train("baseline", data, settings, results_dir=tmp_path, seed=1)


def test_a_saved_vgg16_run_is_reused_only_with_its_settings_weights_precision_and_images(tmp_path, monkeypatch):
    """What a chapter does with the runs of chapters 02-04: reuse a matching one, retrain on any mismatch."""
    from busutils import runs
    from busutils.data import phantom_dataset
    from busutils.experiment import split_dataset
    from busutils.profiles import get_profile

    monkeypatch.setenv("BUSUTILS_CACHE", str(tmp_path / "cache"))
    data = phantom_dataset(60, image_size=32, seed=4)
    settings = get_profile("smoke", precision="float32")
    runs.load_or_train("vgg16-transfer", data, settings, results_dir=tmp_path / "runs")
    saved = runs.read_json(tmp_path / "runs" / "vgg16-transfer.json")

    split = split_dataset(data, seed=0)
    assert runs.reuse_mismatches(saved, "vgg16-transfer", split, settings, 0) == []
    cases = {
        "settings differ (head_hidden)": dict(settings=get_profile("smoke", precision="float32", head_hidden=4)),
        "computed in float32, not mixed_bfloat16": dict(settings=get_profile("smoke", precision="mixed_bfloat16")),
        "train, val, test image(s) differ": dict(split=split_dataset(phantom_dataset(60, image_size=32, seed=5))),
        "val, test image(s) differ": dict(split=split_dataset(data, seed=0, test_part="new-images")),
        "seed is 0, not 1": dict(seed=1),
    }
    for reason, change in cases.items():
        why = runs.reuse_mismatches(saved, "vgg16-transfer", change.get("split", split),
                                    change.get("settings", settings), change.get("seed", 0))
        assert any(reason in line for line in why), (reason, why)
    monkeypatch.setattr(runs, "_weights_now", lambda settings: "sha256 0123456789ab")
    assert any("other weights" in line for line in runs.reuse_mismatches(saved, "vgg16-transfer", split, settings, 0))

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.undo()
    monkeypatch.setenv("BUSUTILS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(runs, "run_experiment", no_training)
    runs.load_or_train("vgg16-transfer", data, settings, results_dir=tmp_path / "runs")  # reused
    with pytest.raises(AssertionError, match="trained again"):
        runs.load_or_train("vgg16-transfer", data, get_profile("smoke", precision="mixed_bfloat16"),
                           results_dir=tmp_path / "runs")
