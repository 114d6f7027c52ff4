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
    VGG16Preprocess,
    VGG16_LAYERS,
    baseline_cnn,
    build_model,
    chain,
    classifier_head,
    compile_for,
    frozen_until,
    set_head_weights,
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


# --------------------------------------------------------------------------- parts of a model


def test_head_on_pooled_features_equals_full_model():
    """Train-on-bottleneck-features recipe: pooled features -> head == the full fine-tune model."""
    model = vgg16_finetune((48, 48, 3), 2, weights="none", seed=0).model
    pooled = chain(model, until="block5_pool")
    x = _images(3, 48)
    features = keras.ops.convert_to_numpy(pooled(x)).mean(axis=(1, 2))
    assert features.shape == (3, 512)
    head = classifier_head(features.shape[1:], 2, seed=1)
    head.get_layer("head_norm").adapt(features)
    compile_for(head, 2, "adam").fit(features, np.array([0, 1, 0]), epochs=1, verbose=0)
    set_head_weights(model, head)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(x, training=False)),
        keras.ops.convert_to_numpy(head(features, training=False)),
        rtol=1e-5, atol=1e-6,
    )


def test_linear_head_has_no_hidden_layer_and_decays_its_output():
    head = classifier_head((16,), 2, hidden=0, l2=1e-3, seed=0)
    assert [layer.name for layer in head.layers if layer.weights] == ["head_norm", "head_output"]
    assert head.get_layer("head_output").kernel_regularizer is not None
    assert classifier_head((16,), 2, hidden=8).get_layer("head_output").kernel_regularizer is None


@pytest.mark.parametrize("trained", ["block5", "block5_conv3"])
def test_chain_reproduces_the_model_and_shares_its_weights(trained):
    model = vgg16_finetune((32, 32, 3), 2, weights="none", seed=0, trainable_layers=trained).model
    cut = frozen_until(trained)
    front, back = chain(model, until=cut), chain(model, after=cut)
    assert not front.trainable_weights
    assert _trainable_paths(back) == _trainable_paths(model)
    x = _images(2, 32)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(back(front(x), training=False)),
        keras.ops.convert_to_numpy(model(x, training=False)),
        rtol=1e-5, atol=1e-6,
    )
    back.get_layer("block5_conv3").kernel.assign(np.zeros(back.get_layer("block5_conv3").kernel.shape))
    assert not np.any(keras.ops.convert_to_numpy(model.get_layer("block5_conv3").kernel))
    with pytest.raises(ValueError, match="no_such_layer"):
        chain(model, until="no_such_layer")


def test_fine_tuning_the_last_layer_only_caches_up_to_block5_conv2():
    assert VGG16_LAYERS[0] == "block1_conv1" and VGG16_LAYERS[-1] == "block5_pool" and len(VGG16_LAYERS) == 18
    assert frozen_until("block5") == "block4_pool"
    assert frozen_until("block5_conv3") == "block5_conv2"
    assert frozen_until("block4+block5") == "block3_pool"
    model = vgg16_finetune((32, 32, 3), 2, weights="none", seed=0, trainable_layers="block5_conv3").model
    assert {p.split("/")[0] for p in _trainable_paths(model)} == {"block5_conv3", "head_dense", "head_output"}
    with pytest.raises(ValueError, match="block9"):
        frozen_until(("block9_conv1",))


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


def test_the_head_reads_the_pooled_outputs_of_the_blocks_asked_for():
    from busutils.models import feature_layers

    assert feature_layers("block5") == ("block5_pool",)
    assert feature_layers("block4+block5") == ("block4_pool", "block5_pool")
    with pytest.raises(ValueError, match="block9"):
        feature_layers("block9")
    one = vgg16_transfer((32, 32, 3), 2, weights="none", seed=0).model
    two = vgg16_transfer((32, 32, 3), 2, weights="none", seed=0, features="block4+block5").model
    assert one.get_layer("features").output.shape[-1] == 512
    assert two.get_layer("features").output.shape[-1] == 1024
    x = _images(2, 32)
    block4 = keras.ops.convert_to_numpy(chain(two, until="block4_pool")(x)).mean(axis=(1, 2))
    features = keras.ops.convert_to_numpy(chain(two, until="features")(x))
    np.testing.assert_allclose(features[:, :512], block4, rtol=1e-5, atol=1e-5)
