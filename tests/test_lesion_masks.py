"""Lesion masks: the phantom keeps its own, a folder in BUSI's original layout gives its mask files."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest
from scipy import ndimage

from busutils.data import lesion_masks, load_dataset, load_folder, mask_files, phantom_dataset
from busutils.images import read_image
from busutils.phantom import phantom_image, write_busi_layout

COUNTS = {"benign": 6, "malignant": 4, "normal": 2}


@pytest.fixture(scope="module")
def busi_like(tmp_path_factory):
    root = tmp_path_factory.mktemp("masks") / "busi"
    write_busi_layout(root, COUNTS, size=64, seed=2, mask_1_every=3)
    return root


def test_the_phantom_keeps_its_lesions_through_a_split():
    data = phantom_dataset(30, image_size=48, seed=4)
    masks, found = lesion_masks(data)
    assert masks.shape == data.images.shape and masks.dtype == bool and found.all()
    part = data.take([3, 7, 11])
    np.testing.assert_array_equal(lesion_masks(part)[0], masks[[3, 7, 11]])
    # the lesion is darker than the tissue around it
    image, mask = data.images[0].astype(float), masks[0]
    assert image[mask].mean() < image[ndimage.binary_dilation(mask, iterations=4) & ~mask].mean()


def test_mask_files_beside_an_image(busi_like):
    assert [p.name for p in mask_files(busi_like / "benign" / "benign (3).png")] == [
        "benign (3)_mask.png", "benign (3)_mask_1.png"]
    assert [p.name for p in mask_files(busi_like / "benign" / "benign (1).png")] == ["benign (1)_mask.png"]
    assert mask_files(busi_like / "benign" / "no such image.png") == []


def test_masks_read_from_a_busi_folder_are_the_lesions_drawn(busi_like):
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in busi_like.rglob("*.png")}
    data = load_folder(busi_like, image_size=64)
    masks, found = lesion_masks(data)
    assert found.all() and masks.shape == (len(data), 64, 64)
    # image "benign (1)" is the first benign phantom image written with seed 2: the same lesion
    index = data.ids.index("benign/benign (1).png")
    child = np.random.SeedSequence(2).spawn(3)[0].spawn(COUNTS["benign"])[0]
    _, drawn = phantom_image("benign", size=64, rng=np.random.default_rng(child))
    np.testing.assert_array_equal(masks[index], drawn)
    # a second mask (here the lesion dilated) is joined to the first
    first = read_image(busi_like / "benign" / "benign (3)_mask.png") >= 128
    joined = masks[data.ids.index("benign/benign (3).png")]
    np.testing.assert_array_equal(joined, ndimage.binary_dilation(first, iterations=2))
    assert before == {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in busi_like.rglob("*.png")}


def test_masks_follow_the_images_resizing(busi_like):
    small = lesion_masks(load_folder(busi_like, image_size=32))[0]
    large = lesion_masks(load_folder(busi_like, image_size=64))[0]
    assert small.shape[1:] == (32, 32)
    assert small.mean() == pytest.approx(large.mean(), abs=0.01)  # the same share of the image


def test_a_folder_without_mask_files_has_none(busi_like, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(busi_like, bare, ignore=shutil.ignore_patterns("*_mask*"))
    masks, found = lesion_masks(load_dataset(bare, image_size=32))
    assert not found.any() and not masks.any()
