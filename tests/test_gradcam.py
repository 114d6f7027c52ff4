"""Tests for busutils.gradcam: Grad-CAM on hand-built models, VGG16 naming, shortcut masks."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import matplotlib
import numpy as np
import pytest
from keras import layers

matplotlib.use("Agg")

from busutils.gradcam import (  # noqa: E402
    confident_examples,
    grad_cam,
    last_conv_layer,
    mask_shortcuts,
    mass_on_mask,
    overlay,
    overlay_grid,
    shortcut_mask,
)
from busutils.models import baseline_cnn, vgg16_transfer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SIZE = 16
TOP_LEFT = (slice(2, 6), slice(2, 6))  # a bright blob in the top-left quadrant
BOTTOM_RIGHT = (slice(10, 14), slice(10, 14))  # a dark blob in the bottom-right quadrant


def blob_images() -> np.ndarray:
    """Grey images: 0 = both blobs, 1 = bright top-left only, 2 = dark bottom-right only."""
    x = np.full((3, SIZE, SIZE, 3), 0.5, dtype="float32")
    x[0][TOP_LEFT] = x[1][TOP_LEFT] = 1.0
    x[0][BOTTOM_RIGHT] = x[2][BOTTOM_RIGHT] = 0.0
    return x


def blob_model(softmax: bool = False) -> keras.Model:
    """Weights set by hand.  Feature map 0 of ``detect`` is ``relu(grey - 0.5)`` (bright
    blobs), map 1 is ``relu(0.5 - grey)`` (dark blobs).  Bright evidence raises the
    malignant score, dark evidence lowers it."""
    inputs = keras.Input((SIZE, SIZE, 3))
    detect = layers.Conv2D(2, 1, activation="relu", name="detect")
    x = layers.MaxPooling2D(2, name="pool")(detect(inputs))
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    out = layers.Dense(2 if softmax else 1, activation="softmax" if softmax else "sigmoid", name="out")
    model = keras.Model(inputs, out(x))
    detect.set_weights([np.array([[1, -1]] * 3, "float32")[None, None] / 3, np.array([-0.5, 0.5], "float32")])
    kernel = np.array([[-4, 4], [4, -4]], "float32") if softmax else np.array([[4], [-4]], "float32")
    out.set_weights([kernel, np.zeros(kernel.shape[1], "float32")])
    return model


def region(where) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), dtype="float32")
    mask[where] = 1.0
    return mask


def test_sigmoid_model_maps_equal_the_evidence_for_each_class():
    model, x = blob_model(), blob_images()[:1]
    # detect's output has the input's size: the maps are exact, no resizing involved
    np.testing.assert_allclose(grad_cam(model, x, layer="detect")[0], region(TOP_LEFT), atol=1e-6)
    np.testing.assert_allclose(grad_cam(model, x, layer="detect", class_index=1)[0], region(TOP_LEFT), atol=1e-6)
    np.testing.assert_allclose(grad_cam(model, x, layer="detect", class_index=0)[0], region(BOTTOM_RIGHT), atol=1e-6)


def test_a_saturated_probability_still_gets_its_map_and_the_model_keeps_its_sigmoid():
    model, x = blob_model(), blob_images()[1:2]  # only the bright blob: malignant evidence alone
    out = model.get_layer("out")
    kernel, bias = out.get_weights()
    out.set_weights([kernel * 1e4, bias])  # a logit of thousands: the probability is exactly 1.0
    assert float(model.predict(x, verbose=0)[0, 0]) == 1.0
    np.testing.assert_allclose(grad_cam(model, x, layer="detect")[0], region(TOP_LEFT), atol=1e-6)
    assert out.activation is keras.activations.sigmoid
    assert float(model.predict(x, verbose=0)[0, 0]) == 1.0


def test_softmax_model_explains_the_predicted_or_the_requested_class():
    model, x = blob_model(softmax=True), blob_images()[1:]
    assert list(model.predict(x, verbose=0).argmax(axis=1)) == [1, 0]
    cams = grad_cam(model, x, layer="detect")  # default: each image's predicted class
    np.testing.assert_allclose(cams[0], region(TOP_LEFT), atol=1e-6)
    np.testing.assert_allclose(cams[1], region(BOTTOM_RIGHT), atol=1e-6)
    cams = grad_cam(model, blob_images()[:1], layer="detect", class_index=0)
    np.testing.assert_allclose(cams[0], region(BOTTOM_RIGHT), atol=1e-6)


def test_one_class_per_image_explains_each_image_as_asked():
    model, x = blob_model(), blob_images()
    one_by_one = np.concatenate([grad_cam(model, x[i:i + 1], layer="detect", class_index=c)
                                 for i, c in enumerate([1, 0, 0])])
    cams = grad_cam(model, x, layer="detect", class_index=[1, 0, 0], batch_size=2)  # across batches
    np.testing.assert_allclose(cams, one_by_one, atol=1e-6)
    np.testing.assert_allclose(cams[0], region(TOP_LEFT), atol=1e-6)
    np.testing.assert_allclose(cams[1], 0.0, atol=1e-6)  # image 1 has no dark blob: no evidence for 0
    np.testing.assert_allclose(cams[2], region(BOTTOM_RIGHT), atol=1e-6)
    as_bool = grad_cam(model, x, layer="detect", class_index=np.array([True, False, False]))
    np.testing.assert_allclose(as_bool, cams, atol=1e-6)
    softmax = blob_model(softmax=True)
    np.testing.assert_allclose(grad_cam(softmax, x, layer="detect", class_index=[1, 0, 0]), cams, atol=1e-6)
    with pytest.raises(ValueError, match=r"one class per image \(3\)"):
        grad_cam(model, x, layer="detect", class_index=[1, 0])
    with pytest.raises(ValueError, match=r"class_index must be in 0..1, got \[0, 1, 2\]"):
        grad_cam(softmax, x, layer="detect", class_index=[0, 1, 2])


def test_coarse_layer_is_upsampled_and_still_points_at_the_region():
    cams = grad_cam(blob_model(), blob_images()[:2], layer="pool", batch_size=1)  # 8 x 8 -> 16 x 16
    assert cams.shape == (2, SIZE, SIZE) and cams.dtype == np.float32
    assert cams.min() >= 0.0 and cams.max() == pytest.approx(1.0)
    for cam in cams:
        assert np.unravel_index(cam.argmax(), cam.shape) < (8, 8)
        assert cam[:8, :8].sum() > 0.95 * cam.sum()


def test_output_that_sees_only_one_quadrant():
    # the model zeroes every pixel outside the top-left quadrant before its convolution
    keep = np.zeros((1, 32, 32, 1), "float32")
    keep[:, :16, :16] = 1.0
    inputs = keras.Input((32, 32, 3))
    x = layers.Lambda(lambda t: t * keep, name="keep_top_left")(inputs)
    x = layers.Conv2D(4, 3, padding="same", activation="relu", use_bias=False, name="conv",
                      kernel_initializer=keras.initializers.RandomUniform(0.0, 1.0, seed=0))(x)
    x = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, layers.Dense(1, activation="sigmoid", kernel_initializer="ones")(x))
    x = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3)).astype("float32")
    cams = grad_cam(model, x)
    assert last_conv_layer(model) == "conv"
    for cam in cams:
        assert cam[:17, :17].sum() == pytest.approx(cam.sum())  # 1 pixel of the 3x3 kernel's reach
        assert cam[:16, :16].mean() > 0.3


def test_zero_evidence_gives_an_all_zero_map():
    grey = np.full((1, SIZE, SIZE, 3), 0.5, "float32")  # no blobs: every feature map is 0
    cam = grad_cam(blob_model(), grey, layer="detect")
    assert np.all(cam == 0.0)


def test_last_conv_layer_of_the_book_models_and_of_nested_models():
    assert last_conv_layer(baseline_cnn((32, 32, 3)).model) == "relu5"  # conv5, bn5, relu5: the rectified maps
    inner = keras.Sequential([keras.Input((8, 8, 1)), layers.Conv2D(2, 3, name="inner_conv")], name="inner")
    inputs = keras.Input((8, 8, 1))
    x = layers.Conv2D(1, 1, name="outer_conv")(inputs)
    nested = keras.Model(inputs, layers.Flatten()(inner(x)))
    assert last_conv_layer(nested) == "inner_conv"
    with pytest.raises(ValueError, match="'inner_conv' is inside the nested model 'inner'"):
        grad_cam(nested, np.zeros((1, 8, 8, 1)), layer="inner_conv")
    dense_only = keras.Sequential([keras.Input((4,)), layers.Dense(1)], name="mlp")
    with pytest.raises(ValueError, match="model 'mlp' has no Conv2D layer"):
        last_conv_layer(dense_only)


def test_vgg16_model_uses_block5_conv3():
    model = vgg16_transfer((32, 32, 3), weights=None, seed=0).model
    assert last_conv_layer(model) == "block5_conv3"
    x = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    cams = grad_cam(model, x)  # block5_conv3 is 2 x 2 here
    assert cams.shape == (2, 32, 32)
    assert np.all(np.isfinite(cams)) and cams.min() >= 0.0 and cams.max() <= 1.0


def _maps_through_every_layer(model: keras.Model, layer: str, x: np.ndarray) -> np.ndarray:
    """Grad-CAM of the malignant logit with a tape that watches every variable, TensorFlow's default."""
    import tensorflow as tf

    from busutils.gradcam import _before_activation

    conv_and_pred = keras.Model(model.inputs[0], [model.get_layer(layer).output, model.outputs[0]])
    with _before_activation(model), tf.GradientTape() as tape:
        conv, logit = conv_and_pred(x, training=False)
        score = tf.reduce_sum(logit)
    grads = tape.gradient(score, conv).numpy()
    maps = np.maximum(np.einsum("nhwk,nk->nhw", conv.numpy(), grads.mean(axis=(1, 2))), 0.0)[..., None]
    maps = keras.ops.convert_to_numpy(keras.ops.image.resize(maps, x.shape[1:3]))[..., 0]
    peak = maps.max(axis=(1, 2), keepdims=True)
    return np.where(peak > 0, maps / np.where(peak > 0, peak, 1.0), 0.0)


def _branched_model() -> keras.Model:
    """Two branches from the image; the layer explained follows the other branch's convolution in
    the model's layer list, so the tape cannot start its recording there."""
    inputs = keras.Input((SIZE, SIZE, 3))
    a = layers.Conv2D(4, 3, padding="same", name="conv_a")(inputs)
    b = layers.Conv2D(4, 3, padding="same", name="conv_b")(inputs)
    relu_a = layers.ReLU(name="relu_a")(a)
    pooled = layers.Concatenate()([layers.GlobalAveragePooling2D()(b), layers.GlobalAveragePooling2D()(relu_a)])
    return keras.Model(inputs, layers.Dense(1, activation="sigmoid", name="out")(pooled))


@pytest.mark.parametrize("which", ["baseline", "vgg16 two paths", "vgg16 frozen", "branched"])
def test_grad_cam_records_from_the_layer_on_and_gives_the_maps_of_a_tape_that_watches_everything(which):
    """The tape starts recording at the explained layer (frozen VGG16 layers were recorded and
    differentiated for nothing): the maps are those of TensorFlow's default tape."""
    from busutils.gradcam import _recording_start

    x = np.random.default_rng(2).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    if which == "baseline":
        model, layer = baseline_cnn((32, 32, 3), seed=0)[0], "relu5"
    elif which == "branched":
        model, layer, x = _branched_model(), "relu_a", blob_images()
        names = [l.name for l in model.layers]
        assert names.index("conv_b") < names.index("relu_a")  # the nearest weights are not the map's
    else:
        features = "block4+block5" if which == "vgg16 two paths" else "block5"
        model, layer = vgg16_transfer((32, 32, 3), weights=None, seed=0, features=features).model, "block5_conv3"
    start = {which: _recording_start(model, model.get_layer(layer))}
    expected = {"baseline": "bn5", "branched": "conv_b"}.get(which, "block5_conv3")
    assert [id(v) for v in start[which]] == [id(w.value) for w in model.get_layer(expected).weights]
    np.testing.assert_allclose(grad_cam(model, x, layer=layer, class_index=1), _maps_through_every_layer(model, layer, x),
                               atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, images, match",
    [
        ({"layer": "block9"}, blob_images(), "has no layer 'block9'; its Conv2D layers are \\['detect'\\]"),
        ({"layer": "gap"}, blob_images(), "layer 'gap' has output shape .* 4-D feature map"),
        ({"class_index": 2}, blob_images(), "class_index must be 0 or 1"),
        ({}, blob_images()[0], r"images must have shape \(n, \*\(16, 16, 3\)\)"),
        ({"batch_size": 0}, blob_images(), "batch_size must be a positive integer"),
    ],
)
def test_grad_cam_errors_name_the_argument(kwargs, images, match):
    with pytest.raises(ValueError, match=match):
        grad_cam(blob_model(), images, **kwargs)


def test_unsupported_backend_is_refused(monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "torch")
    with pytest.raises(RuntimeError, match="tensorflow and jax .* not 'torch'"):
        grad_cam(blob_model(), blob_images())


def test_overlay_draws_a_titled_picture_without_axes():
    import matplotlib.pyplot as plt

    ax = overlay(blob_images()[0] * 255, region(TOP_LEFT), title="malignant 0.93")
    assert ax.get_title() == "malignant 0.93" and not ax.axison
    assert len(ax.images) == 2 and ax.images[1].get_alpha() == 0.4
    with pytest.raises(ValueError, match="heatmap must be"):
        overlay(np.zeros((8, 8)), np.zeros((4, 4)), ax=ax)
    plt.close("all")


_JAX_SCRIPT = textwrap.dedent(
    """
    import keras, numpy as np
    assert keras.backend.backend() == "jax", keras.backend.backend()
    import test_gradcam as t
    from busutils.gradcam import grad_cam
    x = t.blob_images()[:1]
    np.testing.assert_allclose(grad_cam(t.blob_model(), x, layer="detect")[0], t.region(t.TOP_LEFT), atol=1e-6)
    np.testing.assert_allclose(grad_cam(t.blob_model(), x, layer="detect", class_index=0)[0],
                               t.region(t.BOTTOM_RIGHT), atol=1e-6)
    cams = grad_cam(t.blob_model(softmax=True), t.blob_images()[1:], layer="pool")
    assert cams[0][:8, :8].sum() > 0.95 * cams[0].sum() and cams[1][8:, 8:].sum() > 0.95 * cams[1].sum()
    each = grad_cam(t.blob_model(), t.blob_images(), layer="detect", class_index=[1, 0, 0])
    np.testing.assert_allclose(each[2], t.region(t.BOTTOM_RIGHT), atol=1e-6)
    np.testing.assert_allclose(each[0], t.region(t.TOP_LEFT), atol=1e-6)
    print("JAX OK")
    """
)


@pytest.mark.slow
def test_grad_cam_on_jax_backend(tmp_path):
    pytest.importorskip("jax")
    env = dict(os.environ, KERAS_BACKEND="jax", KERAS_HOME=str(tmp_path), TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), str(REPO / "tests"), env.get("PYTHONPATH")]))
    result = subprocess.run([sys.executable, "-c", _JAX_SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert "JAX OK" in result.stdout


# -- shortcut masks ----------------------------------------------------------------------


def speckle_with_marks() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 128 x 128 RGB speckle image (values < 200) with white text-like strokes and a
    ruler (255), and a large bright disk (250, 7.7 % of the image) that is anatomy."""
    rng = np.random.default_rng(0)
    grey = np.clip(rng.rayleigh(40.0, (128, 128)), 0, 200)
    strokes = np.zeros((128, 128), dtype=bool)
    strokes[5:15, 5:7] = strokes[13:15, 5:12] = True  # "L"
    strokes[5:15, 15:17] = strokes[5:7, 15:21] = strokes[9:11, 15:20] = strokes[13:15, 15:21] = True  # "E"
    for row in range(20, 120, 10):  # ruler ticks down the right edge
        strokes[row:row + 1, 122:126] = True
    yy, xx = np.mgrid[:128, :128]
    disk = (yy - 70) ** 2 + (xx - 60) ** 2 <= 20**2
    grey[strokes] = 255.0
    grey[disk] = 250.0
    return np.repeat(grey[..., None], 3, axis=-1).astype("float32"), strokes, disk


def test_shortcut_mask_covers_the_marks_and_not_the_bright_lesion():
    image, strokes, disk = speckle_with_marks()
    mask = shortcut_mask(image)
    assert mask.shape == (128, 128) and mask.dtype == bool
    assert np.all(mask[strokes])
    assert not mask[disk].any()
    # nothing beyond the marks grown by one pixel
    from scipy import ndimage

    assert not np.any(mask & ~ndimage.binary_dilation(strokes))
    assert np.array_equal(shortcut_mask(image[..., 0], dilate=0), strokes)  # greyscale works too
    # raise max_area above the disk's 7.7 % and the disk counts as a mark
    assert shortcut_mask(image, max_area=0.1)[disk].all()


def test_mask_shortcuts_fills_with_the_median_and_leaves_the_input_alone():
    image, strokes, _ = speckle_with_marks()
    images = np.stack([image, image[::-1]])
    before = images.copy()
    masks = np.stack([shortcut_mask(im) for im in images])
    cleaned = mask_shortcuts(images, masks)
    assert np.array_equal(images, before)
    for im, m, out in zip(images, masks, cleaned):
        np.testing.assert_array_equal(out[~m], im[~m])
        np.testing.assert_allclose(out[m], np.broadcast_to(np.median(im[~m], axis=0), out[m].shape))
    assert not shortcut_mask(cleaned[0]).any()
    assert np.all(mask_shortcuts(images, masks, fill=0)[masks] == 0)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: shortcut_mask(np.zeros((2, 2, 2, 2))), "image must be"),
        (lambda: shortcut_mask(np.zeros((8, 8)), max_area=2), "max_area must be"),
        (lambda: shortcut_mask(np.zeros((8, 8)), dilate=-1), "dilate must be"),
        (lambda: mask_shortcuts(np.zeros((2, 8, 8)), np.zeros((2, 8, 9), bool)), "masks must be a boolean array"),
        (lambda: mask_shortcuts(np.zeros((2, 8, 8)), np.zeros((2, 8, 8), bool), fill="mean"), "fill must be"),
    ],
)
def test_mask_errors_name_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_mass_on_mask_by_hand():
    heat = np.zeros((3, 4, 4))
    heat[0, 0, 0], heat[0, 3, 3] = 3.0, 1.0  # 3 of 4 units of mass on the mask
    heat[1] = 1.0  # even: the mask's share of the area
    masks = np.zeros((3, 4, 4), bool)
    masks[:, 0, :] = True  # the top row: a quarter of each image
    share = mass_on_mask(heat, masks)
    np.testing.assert_allclose(share[:2], [0.75, 0.25])
    assert np.isnan(share[2])  # an all-zero map has no mass to share
    with pytest.raises(ValueError, match="masks must be a boolean array of the heat maps' shape"):
        mass_on_mask(heat, masks[:, :2])
    with pytest.raises(ValueError, match="heatmaps must be non-negative"):
        mass_on_mask(-heat, masks)


def test_confident_examples_takes_turns_between_the_classes():
    labels = np.array([0, 0, 0, 1, 1, 1, 0, 1])
    scores = np.array([0.01, 0.2, 0.4, 0.9, 0.6, 0.3, 0.95, 0.1])
    # correct: 0 (0.49 from the threshold), 1 (0.3), 2 (0.1), 3 (0.4), 4 (0.1); wrong: 5, 6, 7
    np.testing.assert_array_equal(confident_examples(labels, scores, correct=True, n=3), [0, 3, 1])
    np.testing.assert_array_equal(confident_examples(labels, scores, correct=True, n=10), [0, 3, 1, 4, 2])
    np.testing.assert_array_equal(confident_examples(labels, scores, correct=False, n=2), [6, 7])
    np.testing.assert_array_equal(confident_examples(labels, scores, correct=False, n=4), [6, 7, 5])
    np.testing.assert_array_equal(confident_examples(labels, scores, correct=False, n=2, threshold=0.05), [6, 2])
    assert confident_examples(labels, labels.astype(float), correct=False).size == 0  # a perfect model
    with pytest.raises(ValueError, match="labels and scores must be one-dimensional"):
        confident_examples(labels, scores[:-1], correct=True)


def test_overlay_grid_draws_one_titled_panel_per_image():
    images = blob_images() * 255
    heat = np.stack([region(TOP_LEFT)] * 3)
    fig = overlay_grid(images, heat, ["a", "b", "c"], title="three", ncols=2)
    drawn = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in drawn] == ["a", "b", "c"]
    assert len(fig.axes) == 4 and not fig.axes[3].images  # the empty fourth panel stays blank
    assert fig.get_suptitle() == "three"
    with pytest.raises(ValueError, match="one entry each per image"):
        overlay_grid(images, heat, ["a"], title="x")
    with pytest.raises(ValueError, match="images is empty"):
        overlay_grid([], [], [], title="x")


def test_a_vgg16_model_whose_probability_saturates_is_explained_by_its_logit():
    """In the VGG16 models the sigmoid sits in the nested classifier: its logit is still explained."""
    from busutils.gradcam import output_layer

    model = vgg16_transfer((32, 32, 3), weights=None, seed=0).model
    out = output_layer(model)
    assert out.name == "head_output" and out.activation is keras.activations.sigmoid
    x = np.random.default_rng(2).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    plain = grad_cam(model, x)
    kernel, bias = out.get_weights()
    out.set_weights([kernel, bias + 1e3])  # the same logit gradients, a probability of exactly 1.0
    assert np.all(model.predict(x, verbose=0) == 1.0)
    saturated = grad_cam(model, x)
    assert saturated.max() == 1.0  # not a blank map
    np.testing.assert_allclose(saturated, plain, atol=1e-5)
    assert out.activation is keras.activations.sigmoid


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16", "mixed_float16"])
def test_grad_cam_gives_float32_maps_in_every_precision(precision):
    from busutils.precision import precision_scope

    with precision_scope(precision):
        model = blob_model()
    cams = grad_cam(model, blob_images()[:1], layer="detect")
    assert cams.dtype == np.float32
    np.testing.assert_allclose(cams[0], region(TOP_LEFT), atol=0.02)
