"""Tests for the synthetic breast-ultrasound phantom (busutils.phantom)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from scipy.spatial import ConvexHull

from busutils.phantom import (
    CLASSES,
    LesionFeatures,
    make_phantom,
    phantom_image,
    sample_features,
    write_busi_layout,
)

BENIGN = LesionFeatures("oval", "circumscribed", "parallel", "hypoechoic", "none")


def _extent(mask: np.ndarray) -> tuple[int, int]:
    """(height, width) of the mask's bounding box."""
    rows, cols = np.nonzero(mask)
    return rows.max() - rows.min() + 1, cols.max() - cols.min() + 1


def _solidity(mask: np.ndarray) -> float:
    """Mask area over the area of its convex hull (1 for convex shapes)."""
    rows, cols = np.nonzero(mask)
    # Pixel corners, so that the hull of a convex pixel set covers all of it.
    pts = np.concatenate(
        [np.c_[rows + dr, cols + dc] for dr in (-0.5, 0.5) for dc in (-0.5, 0.5)]
    )
    return mask.sum() / ConvexHull(pts).volume


def _masks(label: str, n: int, seed: int, difficulty: float = 0.0, size: int = 128):
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(n)]
    return [phantom_image(label, size=size, difficulty=difficulty, rng=r)[1] for r in rngs]


# --------------------------------------------------------------------------- basic contract


@pytest.mark.parametrize("label", CLASSES)
@pytest.mark.parametrize("size", [32, 100, 224])
def test_image_shape_dtype_and_mask(label, size):
    image, mask = phantom_image(label, size=size, rng=np.random.default_rng(1))
    assert image.shape == mask.shape == (size, size)
    assert image.dtype == np.uint8 and mask.dtype == bool
    assert image.std() > 10  # not blank
    if label == "normal":
        assert not mask.any()
    else:
        assert 0.005 * size**2 < mask.sum() < 0.5 * size**2


def test_lesion_is_hypoechoic():
    for seed in range(5):
        for label in ("benign", "malignant"):
            rng = np.random.default_rng(seed)
            image, mask = phantom_image(label, size=160, difficulty=1.0, rng=rng)
            ring = ndimage.binary_dilation(mask, iterations=8) & ~mask
            ring[np.nonzero(mask)[0].max() :] = False  # not the posterior region
            assert image[mask].mean() < image[ring].mean() - 25


def test_make_phantom_shapes_and_determinism():
    images, labels, masks = make_phantom(12, size=64, seed=3)
    assert images.shape == masks.shape == (12, 64, 64)
    assert images.dtype == np.uint8 and masks.dtype == bool
    assert labels.shape == (12,) and set(labels) <= {"benign", "malignant"}
    again = make_phantom(12, size=64, seed=3)
    assert np.array_equal(images, again[0])
    assert np.array_equal(labels, again[1]) and np.array_equal(masks, again[2])
    other = make_phantom(12, size=64, seed=4)
    assert not np.array_equal(images, other[0])


def test_image_i_does_not_depend_on_n():
    small = make_phantom(6, size=48, seed=5)
    large = make_phantom(10, size=48, seed=5)
    same = small[1] == large[1][:6]
    assert same.any()
    for i in np.flatnonzero(same):
        assert np.array_equal(small[0][i], large[0][i])
        assert np.array_equal(small[2][i], large[2][i])


def test_phantom_image_uses_only_the_given_generator():
    a = phantom_image("malignant", size=64, rng=np.random.default_rng(9))
    np.random.seed(0)  # the legacy global state must not matter
    b = phantom_image("malignant", size=64, rng=np.random.default_rng(9))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_default_and_given_proportions():
    _, labels, masks = make_phantom(60, size=32, seed=0)  # BUSI: 437 benign, 210 malignant
    assert np.sum(labels == "benign") == 41 and np.sum(labels == "malignant") == 19
    _, labels, masks = make_phantom(100, size=32, classes=CLASSES, seed=0)
    counts = {c: int(np.sum(labels == c)) for c in CLASSES}
    assert counts == {"benign": 56, "malignant": 27, "normal": 17}
    assert all(m.any() for m in masks[labels != "normal"])
    assert not masks[labels == "normal"].any()
    _, labels, _ = make_phantom(10, size=32, proportions=[0.5, 0.5], seed=0)
    assert np.sum(labels == "benign") == 5


# --------------------------------------------------------------------------- BI-RADS behaviour


def test_orientation_benign_wider_malignant_taller():
    def mean_log_aspect(label):
        ext = [_extent(m) for m in _masks(label, 30, seed=11)]
        return np.mean([np.log(w / h) for h, w in ext])

    assert mean_log_aspect("benign") > 0.15
    assert mean_log_aspect("malignant") < -0.1


def test_malignant_masks_are_less_convex():
    benign = [_solidity(m) for m in _masks("benign", 25, seed=12)]
    malignant = [_solidity(m) for m in _masks("malignant", 25, seed=12)]
    assert np.mean(benign) > 0.93
    assert np.mean(malignant) < np.mean(benign) - 0.08


def test_sample_features_typical_at_zero_difficulty_and_mixed_at_one():
    rng = np.random.default_rng(0)
    benign = [sample_features("benign", 0.0, rng) for _ in range(200)]
    assert {f.shape for f in benign} == {"oval", "round"}
    assert {f.margin for f in benign} == {"circumscribed"}
    assert {f.posterior for f in benign} <= {"enhancement", "none"}
    malignant = [sample_features("malignant", 0.0, rng) for _ in range(200)]
    assert {f.orientation for f in malignant} == {"non-parallel"}
    assert {f.margin for f in malignant} == {"angular", "spiculated"}
    hard = [sample_features("benign", 1.0, rng) for _ in range(400)]
    share = np.mean([f.orientation == "non-parallel" for f in hard])
    assert 0.4 < share < 0.6  # at difficulty 1 the descriptors ignore the label
    medium = [sample_features("malignant", 0.5, rng) for _ in range(400)]
    share = np.mean([f.echo == "hypoechoic" for f in medium])
    assert 0.15 < share < 0.35


def test_posterior_shadowing_darkens_and_enhancement_brightens():
    for seed in range(4):
        means = {}
        for posterior in ("shadowing", "none", "enhancement"):
            feats = replace(BENIGN, posterior=posterior)
            image, mask = phantom_image(
                "benign", size=160, rng=np.random.default_rng(seed), features=feats
            )
            rows, cols = np.nonzero(mask)
            c0, c1 = np.percentile(cols, [30, 70]).astype(int)
            below = image[rows.max() + 4 : rows.max() + 30, c0:c1]
            means[posterior] = below.astype(float).mean()
        assert means["shadowing"] < means["none"] - 8
        assert means["enhancement"] > means["none"] + 8


def test_features_argument_is_honoured():
    rng_seed = 21
    parallel = LesionFeatures("oval", "circumscribed", "parallel", "hypoechoic", "none")
    upright = replace(parallel, orientation="non-parallel")
    spiculated = replace(parallel, margin="spiculated")
    masks = {}
    for name, feats in [("parallel", parallel), ("upright", upright), ("spic", spiculated)]:
        # a malignant label with benign descriptors: the descriptors win
        masks[name] = phantom_image(
            "malignant", size=128, rng=np.random.default_rng(rng_seed), features=feats
        )[1]
    h, w = _extent(masks["parallel"])
    assert w > 1.2 * h
    h, w = _extent(masks["upright"])
    assert h > 1.2 * w
    assert _solidity(masks["spic"]) < _solidity(masks["parallel"]) - 0.1


def test_heterogeneous_interior_is_more_variable():
    def interior_spread(echo):
        out = []
        for seed in range(4):
            image, mask = phantom_image(
                "benign", size=160, rng=np.random.default_rng(seed),
                features=replace(BENIGN, echo=echo),
            )
            out.append(np.log1p(image[mask].astype(float)).std())
        return np.mean(out)

    assert interior_spread("heterogeneous") > interior_spread("hypoechoic")


def test_difficulty_reduces_contrast():
    def contrast(difficulty):
        values = []
        for seed in range(6):
            image, mask = phantom_image(
                "benign", size=128, difficulty=difficulty,
                rng=np.random.default_rng(seed), features=BENIGN,
            )
            values.append(image[~mask].mean() - image[mask].mean())
        return np.mean(values)

    assert contrast(1.0) < contrast(0.0)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs, word",
    [
        (dict(label="cyst"), "label"),
        (dict(label="benign", difficulty=1.5), "difficulty"),
        (dict(label="benign", difficulty=-0.1), "difficulty"),
        (dict(label="benign", size=31), "size"),
        (dict(label="normal", features=BENIGN), "features"),
    ],
)
def test_phantom_image_validation(kwargs, word):
    with pytest.raises(ValueError, match=word):
        phantom_image(rng=np.random.default_rng(0), **kwargs)


def test_lesion_features_validation_and_sample_features_label():
    with pytest.raises(ValueError, match="shape"):
        LesionFeatures("square", "circumscribed", "parallel", "hypoechoic", "none")
    with pytest.raises(ValueError, match="label"):
        sample_features("normal", 0.5, np.random.default_rng(0))
    with pytest.raises(ValueError, match="difficulty"):
        sample_features("benign", 2.0, np.random.default_rng(0))


@pytest.mark.parametrize(
    "kwargs, word",
    [
        (dict(n=0), "n"),
        (dict(size=16), "size"),
        (dict(difficulty=2.0), "difficulty"),
        (dict(classes=("benign", "cancer")), "classes"),
        (dict(proportions=[0.5, 0.3, 0.2]), "proportions"),
        (dict(proportions=[0.6, 0.6]), "proportions"),
    ],
)
def test_make_phantom_validation(kwargs, word):
    with pytest.raises(ValueError, match=word):
        make_phantom(**{"n": 4, **kwargs})


# --------------------------------------------------------------------------- BUSI layout


def test_write_busi_layout_names_and_contents(tmp_path):
    root = write_busi_layout(
        tmp_path / "busi", {"benign": 8, "malignant": 7, "normal": 2}, size=48, mask_1_every=7
    )
    assert root == tmp_path / "busi"
    names = {p.parent.name: set() for p in root.glob("*/*.png")}
    for p in root.glob("*/*.png"):
        names[p.parent.name].add(p.name)
    expected_benign = {f"benign ({i}).png" for i in range(1, 9)}
    expected_benign |= {f"benign ({i})_mask.png" for i in range(1, 9)}
    expected_benign |= {"benign (7)_mask_1.png"}
    assert names["benign"] == expected_benign
    assert "malignant (7)_mask_1.png" in names["malignant"]
    assert len(names["malignant"]) == 15
    assert names["normal"] == {"normal (1).png", "normal (1)_mask.png",
                               "normal (2).png", "normal (2)_mask.png"}

    image = Image.open(root / "benign" / "benign (1).png")
    mask = Image.open(root / "benign" / "benign (1)_mask.png")
    assert image.mode == "L" and mask.mode == "L" and image.size == (48, 48)
    assert set(np.unique(np.asarray(mask))) == {0, 255}
    mask_1 = np.asarray(Image.open(root / "benign" / "benign (7)_mask_1.png"))
    assert set(np.unique(mask_1)) == {0, 255}
    assert not np.asarray(Image.open(root / "normal" / "normal (2)_mask.png")).any()


def test_write_busi_layout_refuses_non_empty_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("precious")
    with pytest.raises(ValueError, match=str(tmp_path.name)):
        write_busi_layout(tmp_path, {"benign": 1}, size=32)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_write_busi_layout_into_empty_existing_folder(tmp_path):
    write_busi_layout(tmp_path, {"malignant": 1}, size=32)
    assert sorted(p.name for p in (tmp_path / "malignant").iterdir()) == [
        "malignant (1).png",
        "malignant (1)_mask.png",
    ]


def test_features_change_only_the_lesion_region():
    rng_seed = 4
    a_img, a_mask = phantom_image("benign", size=128, rng=np.random.default_rng(rng_seed),
                                  features=BENIGN)
    spiculated = LesionFeatures("irregular", "spiculated", "non-parallel", "heterogeneous",
                                "shadowing")
    b_img, b_mask = phantom_image("benign", size=128, rng=np.random.default_rng(rng_seed),
                                  features=spiculated)
    assert not np.array_equal(a_img, b_img)
    top = min(np.nonzero(a_mask)[0].min(), np.nonzero(b_mask)[0].min()) - 12
    assert top > 10
    assert np.array_equal(a_img[:top], b_img[:top])  # same tissue and speckle above the lesion
