"""Every code path that depends on the precision policy, run under each of the three a reader's machine
may choose: float32 (most CPUs), mixed_bfloat16 (CPUs with AMX or AVX512-BF16, recent GPUs) and
mixed_float16 (older GPUs such as Colab's T4).  bfloat16 and float16 are emulated where the CPU lacks
them: slower, but they run, so this matrix runs on any machine.

Each run asks for its precision explicitly, which wins over ``$BUSUTILS_PRECISION``.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from busutils.crossval import compare_models
from busutils.data import phantom_dataset
from busutils.experiment import make_results, split_dataset, train_model
from busutils.gradcam import grad_cam
from busutils.operating_point import threshold_for_sensitivity
from busutils.profiles import get_profile
from busutils.runs import load_or_train
from busutils.train import predict_scores, to_model_input

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
MODELS = ("baseline", "vgg16-transfer", "vgg16-finetune")


def smoke(precision: str, **overrides):
    return get_profile("smoke", precision=precision, **overrides)


@pytest.fixture(scope="module")
def data():
    return phantom_dataset(72, image_size=32, seed=11)


@pytest.fixture(scope="module", params=PRECISIONS)
def trained(request, data, tmp_path_factory):
    """The three models trained in one precision, with their results, and their activation cache."""
    import os

    os.environ["BUSUTILS_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    settings = smoke(request.param)
    split = split_dataset(data, seed=0)
    runs = {name: train_model(name, split, settings, verbose=0) for name in MODELS}
    results = {name: make_results(run, data, split, settings) for name, run in runs.items()}
    return request.param, split, runs, results


def test_each_model_trains_and_scores_finitely_in_its_precision(trained):
    precision, split, runs, results = trained
    for name, run in runs.items():
        assert run.settings["precision"] == precision
        assert not run.diverged, f"{name} diverged in {precision}"
        scores = np.asarray(results[name]["test"]["scores"])
        assert scores.shape == (len(split.test),) and np.isfinite(scores).all()
        assert 0.0 <= scores.min() and scores.max() <= 1.0
        auc = results[name]["test"]["metrics"]["auc"]
        assert auc is not None and np.isfinite(auc)


def test_the_cached_front_gives_the_whole_models_scores(trained):
    precision, split, runs, _ = trained
    for name in ("vgg16-transfer", "vgg16-finetune"):
        whole = predict_scores(runs[name].model, split.val.images)
        np.testing.assert_allclose(runs[name].predict(split.val.images), whole, atol=0.03)


def test_fine_tuning_in_float16_scales_its_loss(trained):
    precision, _, runs, _ = trained
    back = runs["vgg16-finetune"].frozen.back
    assert isinstance(back.optimizer, keras.optimizers.LossScaleOptimizer) == (precision == "mixed_float16")


def test_grad_cam_explains_every_model_in_float32_maps(trained):
    precision, split, runs, _ = trained
    x = to_model_input(split.test.images[:3])
    for name, run in runs.items():
        cams = grad_cam(run.model, x)
        assert cams.dtype == np.float32 and cams.shape == x.shape[:3]
        assert np.isfinite(cams).all() and cams.min() >= 0 and cams.max() <= 1


def test_an_operating_point_is_chosen_on_the_validation_scores(trained):
    precision, split, runs, results = trained
    val = results["vgg16-finetune"]["val"]
    threshold = threshold_for_sensitivity(np.asarray(val["labels"]), np.asarray(val["scores"]), 0.9)
    assert 0.0 <= threshold <= 1.0


def test_a_saved_run_loads_back_with_the_same_scores(trained, tmp_path, data):
    precision, split, runs, results = trained
    settings = smoke(precision)
    from busutils.runs import save_run

    save_run(runs["vgg16-finetune"], results["vgg16-finetune"], tmp_path)
    model, saved = load_or_train("vgg16-finetune", data, settings, results_dir=tmp_path)
    assert saved == results["vgg16-finetune"] or saved["test"] == results["vgg16-finetune"]["test"]
    np.testing.assert_allclose(predict_scores(model, split.test.images), results["vgg16-finetune"]["test"]["scores"],
                               atol=1e-6)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_cross_validation_gives_finite_fold_metrics(precision, data, tmp_path, monkeypatch):
    """The fold loop and the paired comparison in each precision.  Two models, not three: the
    fixture above trains every model in every precision, the baseline included (the fold loop
    trains each model as the fixture does, by ``train_model``); here the two VGG16 models,
    which share each fold's cached activations (the slowest model, the baseline under emulated
    float16, adds nothing the fixture has not run)."""
    monkeypatch.setenv("BUSUTILS_CACHE", str(tmp_path))
    compared = ("vgg16-transfer", "vgg16-finetune")
    result = compare_models(data, smoke(precision, n_boot=20), models=compared, folds=2, seeds=(0,), log=None)
    assert len(result["paired"]) == 1
    for name in compared:
        for fold in result["models"][name]["per_fold"]:
            assert np.isfinite(fold["auc"]), f"{name} in {precision}: fold {fold['fold']}"


@pytest.mark.parametrize("precision", PRECISIONS)
def test_three_classes_train_in_each_precision(precision, tmp_path, monkeypatch):
    """Exercise 04's path: a softmax over three classes, fine-tuned on cached activations."""
    monkeypatch.setenv("BUSUTILS_CACHE", str(tmp_path))
    data = phantom_dataset(72, task="three-class", image_size=32, seed=12)
    split = split_dataset(data, seed=0)
    run = train_model("vgg16-finetune", split, smoke(precision), verbose=0)
    assert run.settings["precision"] == precision and not run.diverged
    scores = run.predict(split.test.images)
    assert scores.shape == (len(split.test), 3) and np.isfinite(scores).all()
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-3)
    assert set(np.argmax(scores, axis=1)) <= {0, 1, 2}
