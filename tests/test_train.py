"""Training: reproducibility, class weights, early stopping, pipelines that never augment test data."""

from __future__ import annotations

import numpy as np
import pytest

from busutils.data import phantom_dataset
from busutils.experiment import split_dataset, train_model
from busutils.models import WeightsUnavailableError, baseline_cnn, classifier_head, compile_for
from busutils.profiles import PROFILES, get_profile
from busutils.splits import check_disjoint
from busutils.train import class_weights, fit, make_dataset, predict_scores, save_model_atomic, set_seed, to_model_input


def tiny_profile(**overrides):
    return get_profile("quick", **{"image_size": 48, "epochs": 3, "batch_size": 16, "patience": 2, "n_boot": 50,
                                   "finetune_epochs": 1, **overrides})


@pytest.fixture(scope="module")
def tiny_data():
    return phantom_dataset(90, image_size=48, seed=5)


def test_profiles_hold_the_papers_settings():
    paper = PROFILES["paper"]
    assert (paper.image_size, paper.batch_size, paper.epochs, paper.learning_rate) == (224, 20, 50, 1e-3)
    assert paper.augmentation == "paper" and paper.strict_weights and paper.weights == "imagenet"
    assert not PROFILES["quick"].strict_weights
    with pytest.raises(ValueError, match="profile='fast'"):
        get_profile("fast")
    with pytest.raises(ValueError, match="unknown profile setting"):
        get_profile("quick", epoch=3)
    assert get_profile("quick", epochs=None).epochs == PROFILES["quick"].epochs


def test_to_model_input_and_class_weights():
    x = to_model_input(np.zeros((2, 8, 8), np.uint8))
    assert x.shape == (2, 8, 8, 3) and x.dtype == np.float32
    weights = class_weights(np.array([0, 0, 0, 1]), 2)
    assert weights[1] == pytest.approx(3 * weights[0])
    with pytest.raises(ValueError, match="only classes"):
        class_weights(np.zeros(5, int), 2)


def test_pipeline_augments_training_batches_only():
    calls = []

    def spy(images, training):
        calls.append(training)
        return images + 1.0

    x = np.zeros((4, 8, 8, 3), np.float32)
    y = np.array([0, 1, 0, 1])
    train = next(iter(make_dataset(x, y, batch_size=4, augmentation=spy)))
    test = next(iter(make_dataset(x, y, batch_size=4)))
    assert float(train[0].numpy().min()) == 1.0 and float(test[0].numpy().max()) == 0.0
    np.testing.assert_array_equal(train[1].numpy(), y)
    assert calls and all(calls)


def test_split_is_group_aware_and_complete(tiny_data):
    split = split_dataset(tiny_data, seed=0)
    parts = [split.index[k] for k in ("train", "val", "test")]
    assert sum(map(len, parts)) == len(tiny_data)
    assert len(np.unique(np.concatenate(parts))) == len(tiny_data)
    for a in range(3):
        for b in range(a + 1, 3):
            check_disjoint(tiny_data.groups, parts[a], parts[b])
    assert 0.25 < len(split.test) / len(tiny_data) < 0.4


def test_same_seed_same_metrics(tiny_data):
    settings = tiny_profile()
    split = split_dataset(tiny_data, seed=0)
    runs = []
    for _ in range(2):
        trained = train_model("baseline", split, settings, seed=3, verbose=0)
        runs.append((trained.result.history, predict_scores(trained.model, to_model_input(split.test.images))))
    assert runs[0][0] == runs[1][0]
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


def test_early_stopping_keeps_the_best_epoch(tmp_path):
    set_seed(0)
    rng = np.random.default_rng(0)
    features = rng.normal(size=(120, 8)).astype(np.float32)
    labels = (features[:, 0] > 0).astype(int)
    head = classifier_head((8,), 2, hidden=8, seed=0)
    compile_for(head, 2, __import__("keras").optimizers.Adam(1e-2))
    result = fit(head, (features[:80], labels[:80]), (features[80:], labels[80:]), epochs=15, batch_size=16,
                 patience=3, checkpoint=tmp_path / "best.keras", verbose=0)
    assert result.monitor == "val_auc"
    assert result.best_epoch == int(np.argmax(result.history["val_auc"])) + 1
    assert (tmp_path / "best.keras").is_file()
    from busutils.evaluate import binary_metrics

    restored = binary_metrics(labels[80:], predict_scores(head, features[80:]))["auc"]
    assert restored == pytest.approx(max(result.history["val_auc"]), abs=0.02)


def test_save_model_atomic_leaves_no_temporary_files(tmp_path):
    model, _ = baseline_cnn((32, 32, 3), 2, seed=0)
    path = save_model_atomic(model, tmp_path / "run" / "model.keras")
    assert path.is_file() and [p.name for p in path.parent.iterdir()] == ["model.keras"]


def test_paper_profile_fails_at_once_without_imagenet_weights(tiny_data):
    split = split_dataset(tiny_data, seed=0)
    with pytest.raises(WeightsUnavailableError, match="vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"):
        train_model("vgg16-transfer", split, get_profile("paper", image_size=48, epochs=1), verbose=0)


def test_quick_profile_goes_on_with_random_weights_and_records_it(tiny_data):
    from busutils.experiment import make_results
    from busutils.models import RandomInitWarning

    split = split_dataset(tiny_data, seed=0)
    with pytest.warns(RandomInitWarning, match="RANDOM INITIALISATION"):
        trained = train_model("vgg16-transfer", split, tiny_profile(), verbose=0)
    assert trained.weights_used.startswith("random (imagenet unavailable")
    results = make_results(trained, tiny_data, split, tiny_profile())
    assert results["weights"].startswith("random (imagenet unavailable")
    assert results["test"]["metrics"]["n"] == len(split.test)


@pytest.mark.slow
def test_finetune_trains_block5_and_head_only(tiny_data):
    split = split_dataset(tiny_data, seed=0)
    with pytest.warns(Warning):
        trained = train_model("vgg16-finetune", split, tiny_profile(), verbose=0)
    trainable = {w.path.split("/")[0] for w in trained.model.trainable_weights}
    assert {"block5_conv1", "block5_conv2", "block5_conv3"} <= trainable
    assert not any(name.startswith(("block1", "block2", "block3", "block4")) for name in trainable)
    assert trained.head_result is not None and trained.result.epochs_run == 1


def test_cross_validation_tests_every_image_once(tiny_data):
    from busutils.experiment import cross_validate

    cv = cross_validate("baseline", tiny_data, tiny_profile(epochs=2, n_boot=20), folds=3, seed=0)
    assert [f["fold"] for f in cv["per_fold"]] == [0, 1, 2]
    assert sum(f["n_test"] for f in cv["per_fold"]) == len(tiny_data)
    assert cv["pooled"]["metrics"]["n"] == len(tiny_data)
    assert set(cv["summary"]) == {"accuracy", "auc", "sensitivity", "specificity"}
    aucs = [f["auc"] for f in cv["per_fold"]]
    assert cv["summary"]["auc"] == pytest.approx({"mean": np.mean(aucs), "std": np.std(aucs, ddof=1)})
    assert cv["summary"]["auc"]["std"] > 0  # three models on three different test parts do not tie


def test_three_class_experiment_runs_end_to_end():
    from busutils.experiment import run_experiment

    data = phantom_dataset(90, task="three-class", image_size=48, seed=2)
    assert data.class_names == ("normal", "benign", "malignant")
    trained, results = run_experiment("baseline", data, tiny_profile(epochs=2), seed=0, verbose=0)
    assert trained.model.outputs[0].shape[-1] == 3 and trained.result.monitor == "val_loss"
    metrics = results["test"]["metrics"]
    assert np.array(metrics["confusion_matrix"]).shape == (3, 3)
    assert 0 <= metrics["sensitivity"] <= 1  # malignant vs rest
    assert results["test"]["roc"] is None


def test_evaluate_run_refuses_data_of_another_task(tmp_path, tiny_data):
    import json

    from busutils.experiment import evaluate_run
    from busutils.phantom import write_busi_layout

    model, _ = baseline_cnn((48, 48, 3), 2, seed=0)
    save_model_atomic(model, tmp_path / "run" / "model.keras")
    (tmp_path / "run" / "results.json").write_text(json.dumps(
        {"model": "baseline", "seed": 0, "data": {"task": "benign-malignant", "image_size": 48,
                                                  "class_names": ["normal", "benign", "malignant"]}}))
    folder = write_busi_layout(tmp_path / "data", {"benign": 6, "malignant": 4}, size=64, seed=0)
    with pytest.raises(ValueError, match="differ from the model"):
        evaluate_run(tmp_path / "run", data=folder)
    (tmp_path / "run" / "results.json").write_text(json.dumps(
        {"model": "baseline", "seed": 0, "data": {"task": "benign-malignant", "image_size": 48,
                                                  "class_names": ["benign", "malignant"]}}))
    result = evaluate_run(tmp_path / "run", data=folder, n_boot=20)
    assert result["metrics"]["n"] == 10 and (tmp_path / "run" / "evaluation.json").is_file()


def test_a_test_part_that_comes_with_the_data_is_kept(tmp_path):
    from busutils.data import load_folder
    from busutils.phantom import make_phantom
    from PIL import Image

    images, names, _ = make_phantom(40, size=64, seed=9)
    for i, (image, name) in enumerate(zip(images, names)):
        part = "test" if i < 12 else "train"
        folder = tmp_path / part / str(name)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i}.png")
    Image.fromarray(images[0]).save(tmp_path / "train" / str(names[0]) / "copy_of_0.png")  # a leak
    data = load_folder(tmp_path, image_size=48)
    with pytest.warns(UserWarning, match="own test part has 1 image"):
        split = split_dataset(data, seed=0)
    assert sorted(split.test.ids) == sorted(i for i in data.ids if i.startswith("test/"))
    check_disjoint(data.groups, split.index["train"], split.index["val"])


def test_layer_table_lists_weighted_layers_and_their_state():
    from busutils.models import layer_table, vgg16_finetune

    table = layer_table(vgg16_finetune((32, 32, 3), 2, weights=None, seed=0).model)
    trainable = set(table.loc[table.trainable, "layer"])
    assert trainable == {"block5_conv1", "block5_conv2", "block5_conv3", "head"}
    assert table.loc[table.layer == "block1_conv1", "weights"].item() == 3 * 3 * 3 * 64 + 64


def test_collect_results_keeps_matching_runs_and_flags_random_weights(tmp_path):
    import json

    from busutils.experiment import collect_results, run_label

    reference = {"model": "baseline", "weights": "random (trained from scratch)", "profile": {"name": "quick"},
                 "data": {"source": "BUSI"}, "test": {"metrics": {"auc": 0.8}}}
    saved = {
        "baseline": reference,
        "vgg16-transfer": {**reference, "model": "vgg16-transfer", "weights": "random (imagenet unavailable: x)"},
        "vgg16-finetune": {**reference, "model": "vgg16-finetune", "profile": {"name": "paper"}},
    }
    for name, results in saved.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(results))
    runs = collect_results(tmp_path, reference)
    assert list(runs) == ["baseline (this book)", "vgg16-transfer (this book, RANDOM weights)"]
    assert run_label(reference) == "baseline (this run)"
