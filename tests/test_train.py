"""Training: reproducibility, class weights, early stopping, pipelines that never augment test data."""

from __future__ import annotations

import numpy as np
import pytest

import keras

from busutils import profiles
from busutils.data import phantom_dataset
from busutils.experiment import metrics_of_model, split_dataset, train_model
from busutils.models import baseline_cnn, classifier_head, compile_for
from busutils.profiles import PROFILES, get_profile
from busutils.splits import check_disjoint
from busutils.train import (class_weights, fit, make_dataset, predict_scores, save_model_atomic, set_seed,
                            to_model_input)
from busutils.weights import RandomInitWarning, WeightsUnavailableError


def tiny_profile(**overrides):
    return get_profile("quick", **{"image_size": 48, "epochs": 3, "batch_size": 16, "patience": 2, "n_boot": 50,
                                   "augment_copies": 2, **overrides})


@pytest.fixture(scope="module")
def tiny_data():
    return phantom_dataset(90, image_size=48, seed=5)


def test_the_paper_profile_follows_the_paper_where_it_is_explicit():
    paper = PROFILES["paper"]
    # Section III and III.A: 50 epochs, batch 20, learning rate 0.001, 24 times the data; 30% held
    # out is the book's (the paper's images were split 1,000/300, its 70/30 is of augmented copies)
    assert (paper.baseline_epochs, paper.batch_size, paper.baseline_learning_rate) == (50, 20, 1e-3)
    assert (paper.test_size, paper.augment_copies, paper.augmentation) == (0.3, 24, "paper")
    assert paper.patience is None  # no early stopping: all 50 epochs run
    assert paper.strict_weights and paper.weights == "imagenet"
    assert not PROFILES["quick"].strict_weights
    with pytest.raises(ValueError, match="profile='fast'"):
        get_profile("fast")
    with pytest.raises(ValueError, match="unknown profile setting"):
        get_profile("quick", epoch=3)


def test_epochs_caps_every_training_stage(monkeypatch):
    monkeypatch.delenv("BUSUTILS_PRECISION", raising=False)  # an override would differ from the profile
    capped = get_profile("quick", epochs=2)
    assert (capped.baseline_epochs, capped.head_epochs, capped.finetune_epochs) == (2, 2, 2)
    assert get_profile("quick", epochs=None) == PROFILES["quick"]
    with pytest.raises(ValueError, match="at least 1"):
        get_profile("quick", epochs=0)


def test_no_profile_means_paper_on_a_gpu_and_quick_on_a_cpu(monkeypatch):
    from busutils import precision

    monkeypatch.setattr(precision, "gpu_compute_capabilities", lambda: [(7, 5)])
    assert get_profile(None).name == "paper"
    monkeypatch.setattr(precision, "gpu_compute_capabilities", lambda: [])
    assert get_profile(None).name == "quick"


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


def test_pipeline_turns_compact_greyscale_into_model_input():
    x = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4)
    images, _ = next(iter(make_dataset(x, np.array([0, 1]), batch_size=2)))
    np.testing.assert_array_equal(images.numpy(), to_model_input(x))


@pytest.mark.parametrize("kind", ["paper", "light"])
def test_greyscale_augmented_in_one_channel_equals_augmenting_its_rgb(kind):
    import tensorflow as tf

    from busutils.augment import make_augmentation

    x = np.random.default_rng(0).integers(0, 256, size=(12, 24, 24), dtype=np.uint8)
    y = np.arange(12) % 2
    grey = np.concatenate([b.numpy() for b, _ in make_dataset(x, y, batch_size=4,
                                                              augmentation=make_augmentation(kind, seed=3))])
    rgb_pipeline = make_augmentation(kind, seed=3)
    rgb = tf.data.Dataset.from_tensor_slices(to_model_input(x)).batch(4).map(
        lambda b: rgb_pipeline(b, training=True))
    rgb = np.concatenate([b.numpy() for b in rgb])
    assert not np.array_equal(grey, to_model_input(x))  # augmented
    np.testing.assert_allclose(grey, rgb, atol=1e-3)


def test_split_is_group_aware_and_complete(tiny_data):
    split = split_dataset(tiny_data, seed=0)
    parts = [split.index[k] for k in ("train", "val", "test")]
    assert sum(map(len, parts)) == len(tiny_data)
    assert len(np.unique(np.concatenate(parts))) == len(tiny_data)
    for a in range(3):
        for b in range(a + 1, 3):
            check_disjoint(tiny_data.groups, parts[a], parts[b])
    assert abs(len(split.test) / len(tiny_data) - 0.3) < 0.05


def test_same_seed_same_metrics(tiny_data):
    settings = tiny_profile()
    split = split_dataset(tiny_data, seed=0)
    runs = []
    for _ in range(2):
        trained = train_model("baseline", split, settings, seed=3, verbose=0)
        runs.append((trained.result.history, predict_scores(trained.model, to_model_input(split.test.images))))
    assert runs[0][0] == runs[1][0]
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


def _separable(seed: int = 0):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(120, 8)).astype(np.float32)
    return features, (features[:, 0] > 0).astype(int)


def test_early_stopping_keeps_the_best_epoch():
    set_seed(0)
    features, labels = _separable()
    head = classifier_head((8,), 2, hidden=8, seed=0)
    compile_for(head, 2, keras.optimizers.Adam(1e-2))
    result = fit(head, (features[:80], labels[:80]), (features[80:], labels[80:]), epochs=15, batch_size=16,
                 patience=3, verbose=0)
    assert result.monitor == "val_auc" and result.max_epochs == 15
    assert result.best_epoch == int(np.argmax(result.history["val_auc"])) + 1
    from busutils.evaluate import binary_metrics

    restored = binary_metrics(labels[80:], predict_scores(head, features[80:]))["auc"]
    assert restored == pytest.approx(max(result.history["val_auc"]), abs=0.02)


def test_without_patience_every_epoch_runs_and_the_last_is_kept_when_asked():
    features, labels = _separable(1)
    head = compile_for(classifier_head((8,), 2, hidden=4, seed=0), 2, keras.optimizers.SGD(0.5))
    result = fit(head, (features[:80], labels[:80]), (features[80:], labels[80:]), epochs=6, batch_size=16,
                 patience=None, restore_best=False, verbose=0)
    assert result.epochs_run == 6 and result.best_epoch == 6


def test_a_model_that_training_makes_worse_is_not_reported_as_trained():
    """Fine-tuning keeps the head-only model as its epoch-0 candidate."""
    set_seed(0)
    features, labels = _separable(2)
    head = compile_for(classifier_head((8,), 2, hidden=0, seed=0), 2, keras.optimizers.Adam(0.05))
    fit(head, (features[:80], labels[:80]), (features[80:], labels[80:]), epochs=20, batch_size=16, verbose=0)
    before = [w.copy() for w in head.get_weights()]
    # Training on shuffled labels with a huge learning rate can only make validation worse.
    compile_for(head, 2, keras.optimizers.SGD(50.0))
    wrong = np.random.default_rng(3).permutation(labels[:80])
    result = fit(head, (features[:80], wrong), (features[80:], labels[80:]), epochs=3, batch_size=16,
                 keep_initial=True, verbose=0)
    assert result.best_epoch == 0 and result.initial_score > max(result.history["val_auc"])
    for kept, original in zip(head.get_weights(), before):
        np.testing.assert_array_equal(kept, original)


def test_a_run_that_diverges_stops_there_keeps_a_finite_model_and_says_so():
    set_seed(0)
    features, labels = _separable(4)
    head = compile_for(classifier_head((8,), 2, hidden=8, seed=0), 2, keras.optimizers.Adam(1e-2))
    first = fit(head, (features[:80], labels[:80]), (features[80:], labels[80:]), epochs=3, batch_size=16,
                patience=None, verbose=0)
    assert not first.diverged and first.diverged_epoch is None
    compile_for(head, 2, keras.optimizers.SGD(1e30))  # steps no float can hold
    result = fit(head, (features[:80], labels[:80]), (features[80:], labels[80:]), epochs=10, batch_size=16,
                 patience=None, verbose=0)
    assert result.diverged and result.epochs_run == result.diverged_epoch < 10  # stopped where it diverged
    assert np.isnan(result.history["val_auc"][result.diverged_epoch - 1])  # that epoch is never the best one
    assert result.best_epoch < result.diverged_epoch
    assert all(np.isfinite(w).all() for w in head.get_weights())
    assert np.isfinite(predict_scores(head, features)).all()
    summary = result.summary()
    assert summary["diverged"] is True and summary["diverged_epoch"] == result.diverged_epoch
    assert "DIVERGED at epoch" in result.describe()


def test_a_model_whose_scores_are_not_finite_is_named_in_the_error():
    head = compile_for(classifier_head((8,), 2, hidden=0, seed=0), 2, "adam")
    kernel, bias = head.get_layer("head_output").get_weights()
    head.get_layer("head_output").set_weights([np.full_like(kernel, np.nan), bias])
    with pytest.raises(ValueError, match=r"head \(float32\) gave scores that are not finite for 3 of 3"):
        predict_scores(head, np.ones((3, 8), np.float32))
    with pytest.raises(ValueError, match="vgg16-finetune, after fine-tuning"):
        predict_scores(head, np.ones((3, 8), np.float32), what="vgg16-finetune, after fine-tuning")


def test_fine_tuning_that_diverges_keeps_the_classifier_alone_and_every_table_says_so(tiny_data):
    from busutils.experiment import make_results
    from busutils.runs import run_label

    settings = tiny_profile(epochs=3, patience=None, finetune_learning_rate=1e30, finetune_clipnorm=None,
                            weights="none", precision="float32")
    split = split_dataset(tiny_data, seed=0)
    trained = train_model("vgg16-finetune", split, settings, verbose=0)
    finetune = trained.stages["finetune"]
    assert finetune.diverged and finetune.best_epoch == 0  # the head-only model, from before fine-tuning
    assert trained.diverged == {"finetune": finetune.diverged_epoch}
    results = make_results(trained, tiny_data, split, settings)
    assert np.isfinite(results["test"]["scores"]).all()
    assert results["training"]["diverged"] == {"finetune": finetune.diverged_epoch}
    assert f"DIVERGED in finetune at epoch {finetune.diverged_epoch}" in run_label(results)


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

    split = split_dataset(tiny_data, seed=0)
    with pytest.warns(RandomInitWarning, match="RANDOM INITIALISATION"):
        trained = train_model("vgg16-transfer", split, tiny_profile(), verbose=0)
    assert trained.weights_used.startswith("random (imagenet unavailable")
    results = make_results(trained, tiny_data, split, tiny_profile())
    assert results["weights"].startswith("random (imagenet unavailable")
    assert results["test"]["metrics"]["n"] == len(split.test)


@pytest.mark.parametrize("name, stages", [("baseline", ["baseline"]), ("vgg16-transfer", ["head"]),
                                          ("vgg16-finetune", ["head", "finetune"])])
def test_results_record_the_epochs_each_stage_really_ran(tiny_data, name, stages):
    from busutils.experiment import make_results

    settings = tiny_profile(epochs=2, patience=None)
    split = split_dataset(tiny_data, seed=0)
    trained = train_model(name, split, settings, weights="none", verbose=0)
    recorded = make_results(trained, tiny_data, split, settings)["training"]["stages"]
    assert list(recorded) == stages
    for stage in stages:
        assert recorded[stage]["max_epochs"] == recorded[stage]["epochs_run"] == 2
        assert len(recorded[stage]["history"]["loss"]) == 2


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["cached", "online"])
def test_finetune_trains_block5_and_head_only(tiny_data, mode):
    split = split_dataset(tiny_data, seed=0)
    trained = train_model("vgg16-finetune", split, tiny_profile(finetune_mode=mode), weights="none", verbose=0)
    trainable = {w.path.split("/")[0] for w in trained.model.trainable_weights}
    assert {"block5_conv1", "block5_conv2", "block5_conv3"} <= trainable
    assert not any(name.startswith(("block1", "block2", "block3", "block4")) for name in trainable)
    assert list(trained.stages) == ["head", "finetune"] and trained.result.max_epochs == 3
    expected = "cached block4_pool activations" if mode == "cached" else "through the whole network"
    assert expected in trained.settings["finetune_trained_on"]


def test_three_class_experiment_runs_end_to_end():
    from busutils.experiment import run_experiment

    data = phantom_dataset(90, task="three-class", image_size=48, seed=2)
    assert data.class_names == ("normal", "benign", "malignant")
    trained, results = run_experiment("baseline", data, tiny_profile(epochs=2), seed=0, verbose=0)
    assert trained.model.outputs[0].shape[-1] == 3 and trained.result.monitor == "val_loss"
    metrics = results["test"]["metrics"]
    assert np.array(metrics["confusion_matrix"]).shape == (3, 3)
    cm = np.array(metrics["confusion_matrix"])  # malignant (class 2) vs the rest, from the confusion matrix
    assert metrics["sensitivity"] == pytest.approx(cm[2, 2] / cm[2].sum())
    assert results["test"]["roc"] is None


def _folders_with_a_test_part(tmp_path, leak: bool):
    from PIL import Image

    from busutils.phantom import make_phantom

    images, names, _ = make_phantom(40, size=64, seed=9)
    for i, (image, name) in enumerate(zip(images, names)):
        folder = tmp_path / ("test" if i < 12 else "train") / str(name)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i}.png")
    if leak:
        Image.fromarray(images[0]).save(tmp_path / "train" / str(names[0]) / "copy_of_0.png")
    return tmp_path


def test_a_test_part_that_comes_with_the_data_is_kept_when_it_does_not_leak(tmp_path):
    from busutils.data import load_folder

    data = load_folder(_folders_with_a_test_part(tmp_path, leak=False), image_size=48)
    split = split_dataset(data, seed=0)
    assert sorted(split.test.ids) == sorted(i for i in data.ids if i.startswith("test/"))
    assert split.test_part == "the data set's own test part" and split.test_leaks == 0


def test_a_leaking_test_part_is_re_split_by_group_unless_kept_on_purpose(tmp_path):
    from busutils.data import load_folder
    from busutils.splits import count_leaks

    data = load_folder(_folders_with_a_test_part(tmp_path, leak=True), image_size=48)
    with pytest.warns(UserWarning, match="re-split by duplicate group"):
        split = split_dataset(data, seed=0)
    assert count_leaks(data.groups, np.r_[split.index["train"], split.index["val"]], split.index["test"]) == 0
    assert split.test_leaks == 0 and "re-split" in split.test_part
    with pytest.warns(UserWarning, match="kept as asked"):
        kept = split_dataset(data, seed=0, keep_given_test=True)
    assert sorted(kept.test.ids) == sorted(i for i in data.ids if i.startswith("test/"))
    assert kept.test_leaks == 1 and "1 leaking" in kept.test_part


def test_layer_table_lists_weighted_layers_and_their_state():
    from busutils.models import layer_table, vgg16_finetune

    table = layer_table(vgg16_finetune((32, 32, 3), 2, weights="none", seed=0).model)
    trainable = set(table.loc[table.trainable, "layer"])
    assert trainable == {"block5_conv1", "block5_conv2", "block5_conv3", "head"}
    assert table.loc[table.layer == "block1_conv1", "weights"].item() == 3 * 3 * 3 * 64 + 64


@pytest.mark.parametrize("name", ["baseline", "vgg16-transfer", "vgg16-finetune"])
def test_trained_predict_gives_the_whole_models_scores(tiny_data, name):
    split = split_dataset(tiny_data, seed=0)
    trained = train_model(name, split, tiny_profile(epochs=1), weights="none", verbose=0)
    whole = predict_scores(trained.model, split.test.images)
    scores = trained.predict(split.test.images)
    assert scores.shape == whole.shape == (len(split.test),)
    if name == "baseline":
        assert trained.frozen is None
        np.testing.assert_array_equal(scores, whole)
    else:  # the front's activations come from the cache, stored as float16
        assert trained.frozen.layer == "block4_pool"
        np.testing.assert_allclose(scores, whole, atol=2e-3)
        assert not np.allclose(scores, scores[0])  # a real score per image, not a constant
    # metrics_of_model scores as it is given: a Trained through its cached front, a Keras model whole
    np.testing.assert_array_equal(metrics_of_model(trained, split.test, n_boot=20)["scores"], scores)
    np.testing.assert_array_equal(metrics_of_model(trained.model, split.test, n_boot=20)["scores"], whole)


def test_every_studied_quick_setting_says_what_chose_it():
    from busutils.profiles import QUICK_CHOSEN_BY, choice_table

    table = choice_table()
    assert list(table.index) == list(QUICK_CHOSEN_BY)
    assert all(hasattr(PROFILES["quick"], name) for name in QUICK_CHOSEN_BY)
    assert not any("test" in why for why in QUICK_CHOSEN_BY.values())  # never a test part
    changed = choice_table(get_profile("quick", image_size=224))
    assert changed.loc["image_size", "what chose it"] == "changed for this run"
    assert changed.loc["head_hidden", "value"] == PROFILES["quick"].head_hidden
