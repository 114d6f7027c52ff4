"""Readers for the three layouts, tasks, and bad folders."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
from PIL import Image

from busutils.data import DataError, TASKS, describe, detect_layout, load_breastmnist, load_dataset, load_folder, scan
from busutils.images import ImageWarning
from busutils.phantom import write_busi_layout

COUNTS = {"benign": 8, "malignant": 5, "normal": 4}


@pytest.fixture(scope="module")
def busi_like(tmp_path_factory):
    """The phantom written in the original BUSI layout, masks included."""
    root = tmp_path_factory.mktemp("busi") / "Dataset_BUSI_with_GT"
    write_busi_layout(root, COUNTS, size=64, seed=1, mask_1_every=3)
    return root


def _tree_digest(root) -> dict[str, tuple[str, float]]:
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            out[path] = (hashlib.sha256(open(path, "rb").read()).hexdigest(), os.stat(path).st_mtime)
    return out


def _png(path, value=100, size=48):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(abs(hash(str(path))) % 2**32)
    Image.fromarray(np.clip(rng.normal(value, 30, (size, size)), 0, 255).astype(np.uint8)).save(path)


def test_busi_layout_skips_every_mask(busi_like):
    assert any(p.name.endswith("_mask_1.png") for p in busi_like.rglob("*.png"))
    found = scan(busi_like)
    assert found.layout == "busi"
    assert found.counts() == COUNTS
    assert all("_mask" not in p.name for p, _, _ in found.files)
    reasons = {s.reason for s in found.skipped}
    assert reasons == {"segmentation mask"}
    n_masks = sum(1 for p in busi_like.rglob("*_mask*.png"))
    assert len(found.skipped) == n_masks


@pytest.mark.parametrize("task, expected", [
    ("benign-malignant", {"benign": 8, "malignant": 5}),
    ("three-class", {"normal": 4, "benign": 8, "malignant": 5}),
    ("breastmnist", {"normal+benign": 12, "malignant": 5}),
])
def test_tasks_map_classes(busi_like, task, expected):
    data = load_folder(busi_like, task=task, image_size=32)
    assert data.counts() == expected
    assert data.images.shape == (sum(expected.values()), 32, 32) and data.images.dtype == np.uint8
    assert data.class_names == TASKS[task].class_names
    malignant = [i for i, name in enumerate(data.ids) if name.startswith("malignant/")]
    assert set(data.labels[malignant]) == {len(data.class_names) - 1}  # malignant is always the last label


def test_reading_never_modifies_the_source(busi_like):
    before = _tree_digest(busi_like)
    load_folder(busi_like, task="three-class", image_size=32)
    scan(busi_like)
    assert _tree_digest(busi_like) == before


def test_class_folders_with_train_and_test(tmp_path):
    for subset, n in (("train", 4), ("test", 2)):
        for cls in ("Benign", "Malignant"):
            for i in range(n):
                _png(tmp_path / subset / cls / f"img_{i}.png")
    assert detect_layout(tmp_path) == "class-folders-split"
    data = load_folder(tmp_path, image_size=32)
    assert data.counts() == {"benign": 6, "malignant": 6}
    assert sorted(set(data.subsets)) == ["test", "train"]
    assert (data.subsets == "test").sum() == 4


def test_plain_class_folders(tmp_path):
    for cls in ("benign", "malignant"):
        for i in range(3):
            _png(tmp_path / cls / f"scan{i}.png")
    assert detect_layout(tmp_path) == "class-folders"
    assert load_folder(tmp_path, image_size=32).counts() == {"benign": 3, "malignant": 3}
    audit = load_folder(tmp_path, task=None, image_size=32)
    assert audit.class_names == ("benign", "malignant")


def test_bad_files_are_skipped_with_reasons(tmp_path):
    for cls in ("benign", "malignant"):
        for i in range(3):
            _png(tmp_path / cls / f"{cls} ({i + 1}).png")
    (tmp_path / "benign" / "benign (9).png").write_bytes(b"not a png at all")
    (tmp_path / "benign" / "readme.txt").write_text("notes")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "malignant" / "malignant (9).png")
    with pytest.warns(ImageWarning) as caught:
        data = load_folder(tmp_path, image_size=32)
    messages = " ".join(str(w.message) for w in caught)
    assert "benign (9).png" in messages and "malignant (9).png" in messages
    assert data.counts() == {"benign": 3, "malignant": 3}
    reasons = {os.path.basename(s.path): s.reason for s in data.skipped}
    assert "not an image" in reasons["benign (9).png"]
    assert "too small" in reasons["malignant (9).png"]
    assert "not an image file" in reasons["readme.txt"]


def test_missing_class_folder_is_an_error(tmp_path):
    for i in range(3):
        _png(tmp_path / "benign" / f"benign ({i + 1}).png")
    with pytest.raises(DataError, match=r"malignant.*missing"):
        load_folder(tmp_path)


def test_empty_class_folder_is_reported_and_an_error(tmp_path):
    for i in range(3):
        _png(tmp_path / "benign" / f"benign ({i + 1}).png")
    (tmp_path / "malignant").mkdir()
    assert any("empty class folder" in s.reason for s in scan(tmp_path).skipped)
    with pytest.raises(DataError, match="malignant"):
        load_folder(tmp_path)


def test_folder_matching_no_layout(tmp_path):
    _png(tmp_path / "loose.png")
    with pytest.raises(DataError, match="matches no known layout"):
        scan(tmp_path)
    with pytest.raises(DataError, match="no such file"):
        scan(tmp_path / "absent")
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(DataError, match="no image files"):
        scan(tmp_path)


def _write_npz(path, n=6, size=28, channels=False):
    rng = np.random.default_rng(0)
    parts = {}
    for part in ("train", "val", "test"):
        shape = (n, size, size, 3) if channels else (n, size, size)
        parts[f"{part}_images"] = rng.integers(0, 255, shape, dtype=np.uint8)
        parts[f"{part}_labels"] = (np.arange(n) % 2).reshape(-1, 1).astype(np.uint8)
    np.savez(path, **parts)


def test_breastmnist_npz(tmp_path):
    path = tmp_path / "breastmnist.npz"
    _write_npz(path)
    data = load_dataset(path, task="breastmnist", image_size=None)
    assert len(data) == 18 and data.images.shape == (18, 28, 28)
    # MedMNIST: 0 = malignant, 1 = normal/benign; here malignant is the positive label 1.
    assert data.counts() == {"normal+benign": 9, "malignant": 9}
    assert data.labels[0] == 1 and data.labels[1] == 0
    assert set(data.subsets) == {"train", "val", "test"}
    assert load_breastmnist(path, image_size=64).images.shape == (18, 64, 64)


def test_breastmnist_refuses_pickles_and_wrong_tasks(tmp_path):
    path = tmp_path / "breastmnist.npz"
    _write_npz(path)
    with pytest.raises(DataError, match="task='breastmnist'"):
        load_dataset(path, task="benign-malignant")
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, train_images=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataError, match="pickled.npz"):
        load_breastmnist(pickled)
    incomplete = tmp_path / "other.npz"
    np.savez(incomplete, x=np.zeros(3))
    with pytest.raises(DataError, match="not a MedMNIST file"):
        load_breastmnist(incomplete)


def test_load_dataset_falls_back_to_phantom(monkeypatch):
    monkeypatch.delenv("BUSI_DIR", raising=False)
    data = load_dataset(image_size=64, phantom_n=30)
    assert data.is_phantom and len(data) == 30
    assert "SYNTHETIC PHANTOM" in describe(data)


def test_load_dataset_reads_busi_dir(monkeypatch, busi_like):
    monkeypatch.setenv("BUSI_DIR", str(busi_like))
    data = load_dataset(image_size=32)
    assert not data.is_phantom and data.layout == "busi"
    assert "SYNTHETIC" not in describe(data)


def test_take_keeps_ids_labels_and_groups_aligned(busi_like):
    data = load_folder(busi_like, task="three-class", image_size=32)
    groups = data.groups
    part = data.take([3, 0, 5])
    assert part.ids == [data.ids[3], data.ids[0], data.ids[5]]
    np.testing.assert_array_equal(part.labels, data.labels[[3, 0, 5]])
    np.testing.assert_array_equal(part.groups, groups[[3, 0, 5]])


def test_unknown_task(busi_like):
    with pytest.raises(ValueError, match="task='cancer'.*one of"):
        load_folder(busi_like, task="cancer")


# --- real data -----------------------------------------------------------------------------


def test_real_busi_counts(busi_dir):
    found = scan(busi_dir)
    assert found.layout == "busi"
    assert found.counts() == {"benign": 351, "malignant": 168, "normal": 110}
    data = load_folder(busi_dir, task="benign-malignant", image_size=64)
    assert data.counts() == {"benign": 351, "malignant": 168}
