"""Tests for busutils.models: shapes, freezing, weights sources, saving, seeds, backends."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from busutils import models
from busutils.models import (
    MODEL_NAMES,
    RandomInitWarning,
    VGG16Preprocess,
    WeightsUnavailableError,
    baseline_cnn,
    build_model,
    classifier_head,
    compile_for,
    feature_extractor,
    imagenet_cache_path,
    split_at,
    vgg16_base,
    vgg16_finetune,
    vgg16_transfer,
)

REPO = Path(__file__).resolve().parents[1]
HEAD_WEIGHTS = {"head_dense/kernel", "head_dense/bias", "head_output/kernel", "head_output/bias"}
BLOCK5_WEIGHTS = {f"block5_conv{i}/{v}" for i in (1, 2, 3) for v in ("kernel", "bias")}


def _images(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype("float32")


def _build(name: str, size: int, n_classes: int, **kwargs) -> models.Built:
    if name != "baseline":
        kwargs.setdefault("weights", None)
    return build_model(name, (size, size, 3), n_classes, **kwargs)


def _output_dense(model: keras.Model) -> keras.layers.Dense:
    """The last Dense layer of ``model``, looking inside nested models (the classifier head)."""
    for layer in reversed(model.layers):
        if isinstance(layer, keras.layers.Dense):
            return layer
        if isinstance(layer, keras.Model):
            return _output_dense(layer)
    raise AssertionError(f"{model.name} has no Dense layer")


def _trainable_paths(model: keras.Model) -> set[str]:
    return {w.path for w in model.trainable_weights}


# --------------------------------------------------------------------------- factories


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("size", [32, 48])
def test_factories_build_compile_and_predict(name, n_classes, size):
    model, weights_used = _build(name, size, n_classes, seed=0)
    assert isinstance(model, keras.Model)
    assert isinstance(weights_used, str) and weights_used.startswith("random")
    assert model.input_shape == (None, size, size, 3)
    out = keras.ops.convert_to_numpy(model(_images(2, size), training=False))
    units = 1 if n_classes == 2 else n_classes
    assert out.shape == (2, units)
    if n_classes > 2:
        np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
    # The output layer is a sigmoid (binary) or softmax of its Dense layer: with a zero kernel
    # every image gets the activation of the bias, computed here by hand.
    dense = _output_dense(model)
    bias = np.array([0.7]) if n_classes == 2 else np.array([0.2, -0.5, 1.0])
    dense.kernel.assign(np.zeros(dense.kernel.shape))
    dense.bias.assign(bias)
    expected = 1 / (1 + np.exp(-bias)) if n_classes == 2 else np.exp(bias) / np.exp(bias).sum()
    out = keras.ops.convert_to_numpy(model(_images(2, size, seed=1), training=False))
    np.testing.assert_allclose(out, np.tile(expected, (2, 1)), rtol=1e-6)
    assert model.optimizer is not None
    expected_loss = "binary_crossentropy" if n_classes == 2 else "sparse_categorical_crossentropy"
    assert model.loss == expected_loss


def test_optimizers_follow_the_paper():
    assert isinstance(_build("baseline", 32, 2).model.optimizer, keras.optimizers.Adam)
    assert isinstance(_build("vgg16-transfer", 32, 2).model.optimizer, keras.optimizers.Adam)
    sgd = vgg16_finetune((32, 32, 3), 2, weights=None, learning_rate=1e-4, momentum=0.9).model.optimizer
    assert isinstance(sgd, keras.optimizers.SGD)
    assert math.isclose(float(keras.ops.convert_to_numpy(sgd.learning_rate)), 1e-4, rel_tol=1e-6)
    assert math.isclose(float(sgd.momentum), 0.9)


def test_binary_metrics_include_auc():
    model = _build("baseline", 32, 2).model
    x, y = _images(4, 32), np.array([0, 1, 0, 1])
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    assert {"loss", "accuracy", "auc"} <= set(logs)


def test_baseline_is_small():
    model = baseline_cnn((224, 224, 3), 2).model
    assert model.count_params() < 500_000
    assert any(isinstance(l, keras.layers.Rescaling) for l in model.layers)
    assert any(isinstance(l, keras.layers.Dropout) for l in model.layers)


def test_transfer_base_entirely_frozen():
    model = vgg16_transfer((32, 32, 3), 2, weights=None).model
    assert _trainable_paths(model) == HEAD_WEIGHTS
    for layer in model.layers:
        if layer.name.startswith("block"):
            assert not layer.trainable, layer.name


def test_finetune_trains_block5_and_head_only():
    model = vgg16_finetune((32, 32, 3), 3, weights=None).model
    assert _trainable_paths(model) == BLOCK5_WEIGHTS | HEAD_WEIGHTS
    trainable_layers = {l.name for l in model.layers if l.trainable and l.weights}
    assert trainable_layers == {"block5_conv1", "block5_conv2", "block5_conv3", "head"}
    for block in (1, 2, 3, 4):
        for layer in model.layers:
            if layer.name.startswith(f"block{block}_"):
                assert not layer.trainable, layer.name


def test_frozen_layers_do_not_change_in_training():
    model = vgg16_finetune((32, 32, 3), 2, weights=None, learning_rate=0.1, seed=0).model
    before = {w.path: keras.ops.convert_to_numpy(w).copy() for w in model.weights}
    model.fit(_images(4, 32), np.array([0, 1, 0, 1]), epochs=1, batch_size=4, verbose=0)
    for w in model.weights:
        changed = not np.array_equal(before[w.path], keras.ops.convert_to_numpy(w))
        assert changed == (w.path in BLOCK5_WEIGHTS | HEAD_WEIGHTS), w.path


def test_build_model_rejects_unknown_names():
    with pytest.raises(ValueError, match="vgg16-transfer"):
        build_model("resnet", (32, 32, 3), 2)


def test_compile_for_rejects_mismatched_output():
    head = classifier_head((512,), 3)
    with pytest.raises(ValueError, match="n_classes"):
        compile_for(head, 2, "adam")
    with pytest.raises(ValueError):
        classifier_head((512,), 1)


def test_too_small_input_is_rejected():
    with pytest.raises(ValueError, match="32"):
        vgg16_base((16, 16, 3), weights=None)


# --------------------------------------------------------------------------- weights sources


def _vgg_notop(size: int = 32) -> keras.Model:
    return keras.applications.VGG16(include_top=False, weights=None, input_shape=(size, size, 3))


def _assert_same_weights(a: keras.Model, b: keras.Model) -> None:
    wa, wb = a.get_weights(), b.get_weights()
    assert len(wa) == len(wb) == 26
    for x, y in zip(wa, wb):
        np.testing.assert_array_equal(x, y)


def test_local_weights_file_keras3_format(tmp_path):
    reference = _vgg_notop()
    path = tmp_path / "vgg16_notop.weights.h5"
    reference.save_weights(path)
    base, used = vgg16_base((32, 32, 3), weights=str(path))
    _assert_same_weights(reference, base)
    assert used.startswith(f"file:{path.resolve()} (sha256 ")
    # the full models load it too, and report it
    model, used2 = vgg16_finetune((32, 32, 3), 2, weights=path)
    assert used2 == used
    np.testing.assert_array_equal(
        model.get_layer("block1_conv1").get_weights()[0], reference.get_layer("block1_conv1").get_weights()[0]
    )


def _save_legacy_h5(model: keras.Model, path: Path) -> None:
    """Write weights in the legacy HDF5 layout of the ImageNet file Keras distributes."""
    h5py = pytest.importorskip("h5py")
    try:
        from keras.src.legacy.saving import legacy_h5_format
    except ImportError:  # pragma: no cover
        pytest.skip("this Keras cannot write legacy HDF5 weights")
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)


def test_local_weights_file_legacy_h5_format(tmp_path):
    """The ImageNet file Keras distributes is a legacy HDF5 weights file: that works too."""
    reference = _vgg_notop()
    path = tmp_path / "vgg16_notop.h5"
    _save_legacy_h5(reference, path)
    base, used = vgg16_base((48, 48, 3), weights=path)  # weights do not depend on the size
    _assert_same_weights(reference, base)
    assert used.startswith("file:")


def test_missing_weights_file_names_the_path(tmp_path):
    missing = tmp_path / "nope.h5"
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        vgg16_base((32, 32, 3), weights=missing)


def test_offline_imagenet_strict_says_which_file_to_put_where():
    cache = imagenet_cache_path()
    assert str(cache).startswith(os.environ["KERAS_HOME"])  # the empty folder from conftest
    with pytest.raises(WeightsUnavailableError) as info:
        vgg16_base((32, 32, 3), weights="imagenet", strict=True)
    message = str(info.value)
    assert str(cache) in message
    assert models.VGG16_NOTOP_URL in message


def test_offline_imagenet_not_strict_warns_and_uses_random_weights():
    with pytest.warns(RandomInitWarning, match="RANDOM INITIALISATION"):
        model, used = vgg16_transfer((32, 32, 3), 2, weights="imagenet", strict=False, seed=0)
    assert used.startswith("random (imagenet unavailable")
    assert model.output_shape == (None, 1)


def test_imagenet_from_keras_cache_works_offline(tmp_path, monkeypatch):
    """A weights file already in the Keras cache is used without any download."""
    reference = _vgg_notop()
    cached = tmp_path / models.VGG16_NOTOP_FILE
    _save_legacy_h5(reference, cached)
    monkeypatch.setattr(models, "_fetch_imagenet_weights", lambda: cached)
    base, used = vgg16_base((32, 32, 3), weights="imagenet")
    assert used == "imagenet"
    _assert_same_weights(reference, base)


# --------------------------------------------------------------------------- layers and saving


def test_vgg16_preprocess_matches_keras():
    x = _images(3, 8)
    expected = keras.applications.vgg16.preprocess_input(x.copy())
    got = keras.ops.convert_to_numpy(VGG16Preprocess()(x))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


# an untrained model's optimizer has no state yet; Keras warns that it skips loading it
@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_saved_model_reloads_and_predicts_identically(name, tmp_path):
    model = _build(name, 32, 3, seed=0).model
    x = _images(3, 32)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(model(x, training=False)),
        keras.ops.convert_to_numpy(reloaded(x, training=False)),
    )
    assert _trainable_paths(reloaded) == _trainable_paths(model)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_same_seed_gives_identical_initial_weights(name):
    a = _build(name, 32, 2, seed=7).model.get_weights()
    b = _build(name, 32, 2, seed=7).model.get_weights()
    c = _build(name, 32, 2, seed=8).model.get_weights()
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, z) for x, z in zip(a, c))


# --------------------------------------------------------------------------- bottleneck features


def test_head_on_features_equals_full_model():
    """Train-on-bottleneck-features recipe: features -> head == the full fine-tune model."""
    base, _ = vgg16_base((48, 48, 3), weights=None, seed=0)
    extractor = feature_extractor(base, pooling="avg")
    assert not extractor.trainable_weights
    x = _images(3, 48)
    features = extractor.predict(x, verbose=0)
    assert features.shape == (3, 512)

    head = compile_for(classifier_head(features.shape[1:], 2, seed=1), 2, "adam")
    head.fit(features, np.array([0, 1, 0]), epochs=1, verbose=0)
    model = vgg16_finetune((48, 48, 3), 2, weights=None, seed=0, head_weights=head).model
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(x, training=False)),
        keras.ops.convert_to_numpy(head(features, training=False)),
        rtol=1e-5, atol=1e-6,
    )
    # the 4D feature map works as head input too
    fmap = feature_extractor(model).predict(x, verbose=0)
    assert fmap.shape == (3, 1, 1, 512)
    assert classifier_head(fmap.shape[1:], 3)(fmap).shape == (3, 3)


def test_split_at_reproduces_the_model():
    model = vgg16_finetune((32, 32, 3), 2, weights=None, seed=0).model
    front, back = split_at(model, "block4_pool")
    assert not front.trainable_weights
    assert _trainable_paths(back) == BLOCK5_WEIGHTS | HEAD_WEIGHTS
    x = _images(2, 32)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(back(front(x), training=False)),
        keras.ops.convert_to_numpy(model(x, training=False)),
        rtol=1e-5, atol=1e-6,
    )
    with pytest.raises(ValueError):
        split_at(model, "no_such_layer")


# --------------------------------------------------------------------------- other backends

_JAX_SCRIPT = textwrap.dedent(
    """
    import math, socket
    def _refuse(*args, **kwargs):
        raise RuntimeError("no network in tests")
    socket.socket.connect = _refuse
    socket.create_connection = _refuse

    import keras, numpy as np
    assert keras.backend.backend() == "jax", keras.backend.backend()
    from busutils import augment, models

    x = np.random.default_rng(0).uniform(0, 255, (4, 64, 64, 3)).astype("float32")
    for name, n_classes in [("baseline", 2), ("vgg16-transfer", 2), ("vgg16-finetune", 3)]:
        kwargs = {} if name == "baseline" else {"weights": None}
        model, used = models.build_model(name, (64, 64, 3), n_classes, seed=0, **kwargs)
        y = np.array([0, 1, 0, 1]) if n_classes == 2 else np.array([0, 1, 2, 1])
        loss = model.fit(x, y, batch_size=4, epochs=1, steps_per_epoch=1, verbose=0).history["loss"][-1]
        assert math.isfinite(loss), (name, loss)
        print("trained", name, loss)

    # the augmentation pipeline stays tf.data-compatible under JAX
    import tensorflow as tf
    aug = augment.paper_augmentation(0)
    ds = tf.data.Dataset.from_tensor_slices((x, np.arange(4))).batch(2)
    ds = ds.map(lambda images, labels: (aug(images, training=True), labels))
    labels = []
    for images, batch_labels in ds:
        assert tuple(images.shape) == (2, 64, 64, 3), images.shape
        labels += batch_labels.numpy().tolist()
    assert labels == [0, 1, 2, 3], labels
    print("JAX OK")
    """
)


@pytest.mark.slow
def test_models_train_on_jax_backend(tmp_path):
    pytest.importorskip("jax")
    env = dict(os.environ)
    env.update(
        KERAS_BACKEND="jax",
        KERAS_HOME=str(tmp_path / "keras-home"),
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
        TF_CPP_MIN_LOG_LEVEL="3",
    )
    result = subprocess.run(
        [sys.executable, "-c", _JAX_SCRIPT], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert "JAX OK" in result.stdout


def test_feature_extractor_leaves_the_fine_tune_model_trainable():
    model = vgg16_finetune((32, 32, 3), 2, weights=None, seed=0).model
    before = _trainable_paths(model)
    extractor = feature_extractor(model)
    assert not extractor.trainable_weights
    assert _trainable_paths(model) == before == BLOCK5_WEIGHTS | HEAD_WEIGHTS
    x = _images(2, 32)
    front, _ = split_at(model, "block5_pool")
    np.testing.assert_allclose(extractor.predict(x, verbose=0), front.predict(x, verbose=0), rtol=1e-5)
