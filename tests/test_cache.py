"""The activation cache: keyed by what computed the activations and by each image's pixels;
a stale or damaged entry is never used, but deleted and computed again, with a message."""

from __future__ import annotations

import json

import numpy as np
import pytest

from busutils.cache import ActivationStore, image_digests

KEY = {"network": "vgg16", "weights": "imagenet (sha256 5ffcc3e2b95a)", "image_size": 32,
       "preprocessing": "RGB->BGR, minus the means", "precision": "float32", "layer": "block4_pool"}


class Counting:
    """A stand-in for a network: activations are the images' mean pixel plus ``offset``."""

    def __init__(self, offset: float = 0.0):
        self.offset, self.seen = offset, 0

    def __call__(self, images: np.ndarray) -> np.ndarray:
        self.seen += len(images)
        return images.reshape(len(images), -1).mean(axis=1, keepdims=True) + self.offset


def images(n: int, seed: int = 0, size: int = 8) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size), dtype=np.uint8)


def expected(x: np.ndarray, offset: float = 0.0) -> np.ndarray:
    return x.reshape(len(x), -1).mean(axis=1, keepdims=True) + offset


def test_each_image_is_computed_once_and_rows_come_back_in_order(tmp_path):
    store, net = ActivationStore(KEY, root=tmp_path), Counting()
    x = images(6)
    np.testing.assert_allclose(store.get(x, net), expected(x), rtol=1e-6)
    assert net.seen == 6
    again = x[[5, 0, 0, 3]]  # a repeated image is one image
    np.testing.assert_allclose(ActivationStore(KEY, root=tmp_path).get(again, net), expected(again), rtol=1e-6)
    assert net.seen == 6  # a new store of the same key finds them on disk


def test_changed_pixels_are_new_images(tmp_path):
    store, net = ActivationStore(KEY, root=tmp_path), Counting()
    x = images(4)
    store.get(x, net)
    changed = x.copy()
    changed[2, 0, 0] ^= 1  # one pixel, one bit
    np.testing.assert_allclose(store.get(changed, net), expected(changed), rtol=1e-6)
    assert net.seen == 5
    assert image_digests(x[:1]) != image_digests(x[:1].astype(np.int16))  # the type counts too


@pytest.mark.parametrize("field, value", [
    ("image_size", 48),
    ("weights", "imagenet (sha256 0123456789ab)"),
    ("preprocessing", "RGB, scaled to 0..1"),
    ("precision", "mixed_bfloat16"),
    ("layer", "block5_conv2"),
])
def test_another_network_never_sees_this_ones_activations(tmp_path, field, value):
    x = images(3)
    first, second = Counting(offset=0.0), Counting(offset=100.0)
    ActivationStore(KEY, root=tmp_path).get(x, first)
    other = ActivationStore({**KEY, field: value}, root=tmp_path)
    assert other.folder != ActivationStore(KEY, root=tmp_path).folder
    np.testing.assert_allclose(other.get(x, second), expected(x, 100.0), rtol=1e-6)
    assert second.seen == 3


def _chunk(store: ActivationStore):
    (meta,) = store.folder.glob("chunk-*.json")
    return meta, meta.with_suffix(".npy")


def _flip_last_byte(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path):
    path.write_bytes(path.read_bytes()[:-10])


def _stale(meta):
    index = json.loads(meta.read_text())
    meta.write_text(json.dumps({**index, "key": {**index["key"], "image_size": 999}}))


@pytest.mark.parametrize("damage, message", [
    (lambda meta, data: _flip_last_byte(data), "damaged"),
    (lambda meta, data: _truncate(data), "damaged"),
    (lambda meta, data: data.unlink(), "damaged"),
    (lambda meta, data: meta.write_text("{not json"), "unreadable index"),
    (lambda meta, data: meta.write_text(json.dumps({"key": KEY})), "unreadable index"),
    (lambda meta, data: meta.write_text("[1, 2]"), "unreadable index"),
    (lambda meta, data: _stale(meta), "another key (stale)"),
])
def test_a_stale_or_damaged_entry_is_rebuilt_with_a_message(tmp_path, capsys, damage, message):
    x = images(5)
    store = ActivationStore(KEY, root=tmp_path)
    store.get(x, Counting())
    damage(*_chunk(store))
    net = Counting()
    np.testing.assert_allclose(store.get(x, net), expected(x), rtol=1e-6)
    assert net.seen == 5  # nothing of the damaged chunk was used
    err = capsys.readouterr().err
    assert message in err and "computed again" in err
    later = Counting()
    store.get(x, later)
    assert later.seen == 0  # the rebuilt entry is sound


def test_float16_storage_and_a_compute_that_loses_rows(tmp_path):
    store = ActivationStore(KEY, root=tmp_path, dtype="float16")
    x = images(3)
    out = store.get(x, Counting())
    assert out.dtype == np.float16
    np.testing.assert_allclose(out, expected(x), rtol=1e-3)
    with pytest.raises(ValueError, match="2 rows for 3 images"):
        store.get(images(3, seed=1), lambda batch: expected(batch)[:2])


def test_values_beyond_float16_are_refused_not_stored_as_infinity(tmp_path):
    store = ActivationStore(KEY, root=tmp_path, dtype="float16")
    with pytest.raises(ValueError, match="not finite|range"):
        store.get(images(2), lambda batch: np.full((len(batch), 1), 1e6))
    assert not list(store.folder.glob("chunk-*"))  # nothing was written

