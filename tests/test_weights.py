"""Where VGG16's weights come from: the resolution order, the errors, and what a run records."""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np
import pytest

from busutils import weights as bweights
from busutils.download import file_hash
from busutils.models import vgg16_base, vgg16_finetune, vgg16_transfer
from busutils.weights import (
    ENV_VAR,
    RandomInitWarning,
    WeightsUnavailableError,
    imagenet_cache_path,
    resolve_vgg16_weights,
)


def _vgg_notop(size: int = 32, seed: int = 0) -> keras.Model:
    model = keras.applications.VGG16(include_top=False, weights=None, input_shape=(size, size, 3))
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.05, w.shape).astype("float32") for w in model.get_weights()])
    return model


def _save_legacy_h5(model: keras.Model, path: Path) -> Path:
    """Weights in the legacy HDF5 layout of the ImageNet file Keras distributes."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    return path


def _assert_same_weights(a: keras.Model, b: keras.Model) -> None:
    wa, wb = a.get_weights(), b.get_weights()
    assert len(wa) == len(wb) == 26
    for x, y in zip(wa, wb):
        np.testing.assert_array_equal(x, y)


@pytest.fixture
def weights_file(tmp_path) -> tuple[keras.Model, Path]:
    reference = _vgg_notop()
    return reference, _save_legacy_h5(reference, tmp_path / "made_here_notop.h5")


def test_a_file_made_here_loads_bit_for_bit_and_is_named_with_its_sha256(weights_file):
    reference, path = weights_file
    base, used = vgg16_base((48, 48, 3), weights=path)  # the weights do not depend on the input size
    _assert_same_weights(reference, base)
    assert used == f"not ImageNet's weights (file made_here_notop.h5, sha256 {file_hash(path)[:12]})"
    model, used_again = vgg16_finetune((32, 32, 3), 2, weights=str(path))
    assert used_again == used
    np.testing.assert_array_equal(model.get_layer("block1_conv1").kernel.numpy(),
                                  reference.get_layer("block1_conv1").kernel.numpy())


def test_keras3_weights_format_loads_too(tmp_path):
    reference = _vgg_notop(seed=1)
    path = tmp_path / "vgg16_notop.weights.h5"
    reference.save_weights(path)
    base, _ = vgg16_base((32, 32, 3), weights=path)
    _assert_same_weights(reference, base)


def test_imagenet_weights_are_recognised_by_their_first_filters(tmp_path):
    reference = _vgg_notop()
    kernel = reference.get_layer("block1_conv1").kernel.numpy()
    kernel[0, 0, :, 0] = bweights.IMAGENET_FINGERPRINT
    reference.get_layer("block1_conv1").kernel.assign(kernel)
    path = _save_legacy_h5(reference, tmp_path / bweights.VGG16_NOTOP_FILE)
    _, used = vgg16_base((32, 32, 3), weights=path)
    assert used == f"imagenet (file {bweights.VGG16_NOTOP_FILE}, sha256 {file_hash(path)[:12]})"


def test_argument_over_variable_over_keras_cache(weights_file, tmp_path, monkeypatch):
    _, explicit = weights_file
    from_env = _save_legacy_h5(_vgg_notop(seed=2), tmp_path / "from_env.h5")
    in_cache = _save_legacy_h5(_vgg_notop(seed=3), tmp_path / "in_cache.h5")
    monkeypatch.setattr(keras.utils, "get_file", lambda *args, **kwargs: str(in_cache))
    monkeypatch.setenv(ENV_VAR, str(from_env))
    assert resolve_vgg16_weights(explicit) == bweights.WeightsSource(explicit, "argument")
    assert resolve_vgg16_weights("imagenet") == bweights.WeightsSource(from_env, ENV_VAR)
    monkeypatch.delenv(ENV_VAR)
    assert resolve_vgg16_weights("imagenet") == bweights.WeightsSource(in_cache, "keras")
    _, used = vgg16_base((32, 32, 3), weights="imagenet")
    assert used == f"imagenet (Keras download, sha256 {file_hash(in_cache)[:12]})"
    # "none" wins over everything: random weights on purpose
    monkeypatch.setenv(ENV_VAR, str(from_env))
    assert resolve_vgg16_weights("none").is_random


def test_the_variable_is_used_by_every_model(weights_file, monkeypatch):
    reference, path = weights_file
    monkeypatch.setenv(ENV_VAR, str(path))
    model, used = vgg16_transfer((32, 32, 3), 2, weights="imagenet", strict=True)
    assert f"from {ENV_VAR}" in used and file_hash(path)[:12] in used
    np.testing.assert_array_equal(model.get_layer("block5_conv3").kernel.numpy(),
                                  reference.get_layer("block5_conv3").kernel.numpy())


@pytest.mark.parametrize("case", ["missing", "not hdf5", "wrong shapes"])
@pytest.mark.parametrize("via", ["argument", "variable"])
def test_bad_weights_are_an_error_naming_the_file_never_random(case, via, tmp_path, monkeypatch):
    path = tmp_path / f"bad_{case.replace(' ', '_')}.h5"
    if case == "not hdf5":
        path.write_text("this is not a weights file")
    elif case == "wrong shapes":
        resnet_like = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, name="block1_conv1")])
        _save_legacy_h5(resnet_like, path)
    weights = "imagenet"
    if via == "argument":
        weights = str(path)
    else:
        monkeypatch.setenv(ENV_VAR, str(path))
    error = FileNotFoundError if case == "missing" else ValueError
    with pytest.raises(error, match=path.name) as info:
        vgg16_base((32, 32, 3), weights=weights, strict=False)  # even when random weights would be allowed
    if via == "variable":
        assert ENV_VAR in str(info.value)


def test_offline_without_weights_strict_says_how_to_get_them(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    cache = imagenet_cache_path()
    assert str(cache).startswith(os.environ["KERAS_HOME"])  # the empty folder from conftest
    with pytest.raises(WeightsUnavailableError) as info:
        vgg16_base((32, 32, 3), weights="imagenet", strict=True)
    message = str(info.value)
    assert str(cache) in message and bweights.VGG16_NOTOP_URL in message
    assert ENV_VAR in message and "--weights PATH" in message and "strict=False" not in message


def test_offline_without_weights_not_strict_warns_and_records_random(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.warns(RandomInitWarning, match="RANDOM INITIALISATION"):
        model, used = vgg16_transfer((32, 32, 3), 2, weights="imagenet", strict=False, seed=0)
    assert used.startswith("random (imagenet unavailable")
    assert model.output_shape == (None, 1)


def test_real_weights_are_imagenet(vgg16_weights, monkeypatch):
    monkeypatch.setenv(ENV_VAR, vgg16_weights)
    base, used = vgg16_base((32, 32, 3), weights="imagenet")
    assert used.startswith(f"imagenet (file {Path(vgg16_weights).name} from {ENV_VAR}, sha256 ")
    assert bweights.is_imagenet(base)
