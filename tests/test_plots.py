"""Tests for busutils.plots: each figure is titled, labelled and shows what it should."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from busutils.plots import (  # noqa: E402
    plot_class_balance, plot_confusion_matrix, plot_embedding, plot_history, plot_roc, show_filters, show_images,
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


HISTORY = {
    "loss": [0.7, 0.5, 0.4, 0.35],
    "val_loss": [0.72, 0.6, 0.55, 0.58],
    "auc_1": [0.6, 0.75, 0.82, 0.86],  # Keras names a second AUC metric "auc_1"
    "val_auc_1": [0.58, 0.7, 0.78, 0.77],
}


def _legend_texts(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_plot_history_panels_curves_and_best_epoch():
    fig = plot_history(HISTORY, best_epoch=3, title="Baseline CNN")
    assert isinstance(fig, Figure)
    assert fig._suptitle.get_text() == "Baseline CNN"
    loss_ax, auc_ax = fig.axes
    assert (loss_ax.get_title(), auc_ax.get_title()) == ("loss", "auc")
    assert loss_ax.get_xlabel() == "epoch" and auc_ax.get_ylabel() == "auc"
    train, val, best = auc_ax.get_lines()
    assert list(train.get_xdata()) == [1, 2, 3, 4]
    assert list(val.get_ydata()) == HISTORY["val_auc_1"]
    assert list(best.get_xdata()) == [3, 3]
    assert _legend_texts(loss_ax) == ["training", "validation", "best epoch (3)"]


def test_plot_history_without_validation_and_errors():
    fig = plot_history({"loss": [1.0, 0.5]}, metrics=("loss",))
    assert fig._suptitle.get_text() == "Training history"
    assert len(fig.axes[0].get_lines()) == 1
    with pytest.raises(KeyError, match="'accuracy' is not in history"):
        plot_history(HISTORY, metrics=("accuracy",))
    with pytest.raises(ValueError, match="best_epoch"):
        plot_history(HISTORY, best_epoch=5)


def test_plot_history_into_given_axes():
    fig, axes = plt.subplots(1, 2)
    out = plot_history(HISTORY, axes=axes)
    assert out is fig and len(axes[0].get_lines()) == 2


def test_plot_confusion_matrix_counts_and_labels():
    cm = [[50, 10], [5, 35]]
    ax = plot_confusion_matrix(cm, ["benign", "malignant"], title="Test set")
    assert isinstance(ax, Axes)
    assert ax.get_title() == "Test set"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted class", "true class")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["benign", "malignant"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["benign", "malignant"]
    assert [t.get_text() for t in ax.texts] == ["50", "10", "5", "35"]


def test_plot_confusion_matrix_normalized():
    ax = plot_confusion_matrix(np.array([[50, 10], [5, 35]]), ["benign", "malignant"], normalize=True)
    assert [t.get_text() for t in ax.texts] == ["50\n(83%)", "10\n(17%)", "5\n(12%)", "35\n(88%)"]
    assert ax.get_title() == "Confusion matrix"
    with pytest.raises(ValueError, match="cm must have shape"):
        plot_confusion_matrix(np.ones((3, 3)), ["a", "b"])


def test_plot_roc_overlays_runs_with_one_chance_line():
    ax = plot_roc([0, 0.1, 1], [0, 0.8, 1], auc=0.9123, label="baseline")
    plot_roc([0, 0.05, 1], [0, 0.95, 1], auc=0.97, label="VGG16", ax=ax, title="Test ROC")
    assert ax.get_title() == "Test ROC"
    assert "false positive rate" in ax.get_xlabel() and "sensitivity" in ax.get_ylabel()
    assert len(ax.get_lines()) == 3  # chance + two runs
    assert _legend_texts(ax) == ["chance", "baseline (AUC = 0.912)", "VGG16 (AUC = 0.970)"]
    with pytest.raises(ValueError, match="fpr and tpr"):
        plot_roc([0, 1], [0, 0.5, 1])


def test_show_images_grid_and_captions():
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (8, 16, 16), dtype=np.uint8)
    fig = show_images(gray, labels=[0, 1] * 4, class_names=["benign", "malignant"], ncols=3, title="Samples")
    assert isinstance(fig, Figure) and fig._suptitle.get_text() == "Samples"
    assert len(fig.axes) == 9  # 3 x 3 grid, last one blank
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 8
    assert [ax.get_title() for ax in shown[:2]] == ["benign", "malignant"]
    assert not fig.axes[-1].axison


def test_show_images_rgb_and_standardised_floats():
    rgb = np.random.default_rng(1).random((2, 8, 8, 3))
    fig = show_images(rgb)
    assert fig._suptitle.get_text() == "2 images"
    standardised = np.random.default_rng(2).normal(size=(1, 8, 8, 1))
    fig = show_images(standardised, labels=["lesion"])
    data = fig.axes[0].images[0].get_array()
    assert data.min() == pytest.approx(0) and data.max() == pytest.approx(1)
    assert fig.axes[0].get_title() == "lesion"
    with pytest.raises(ValueError, match="labels has 2 entries"):
        show_images(rgb[:1], labels=[0, 1])


def test_plot_class_balance_bars_and_counts():
    ax = plot_class_balance({"normal": 133, "benign": 437, "malignant": 210})
    assert ax.get_title() == "Images per class"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("class", "number of images")
    assert [p.get_height() for p in ax.patches] == [133, 437, 210]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["normal", "benign", "malignant"]
    assert sorted(t.get_text() for t in ax.texts) == ["133", "210", "437"]


def test_show_image_groups_one_row_per_group():
    from busutils.plots import show_image_groups

    images = np.zeros((5, 8, 8), np.uint8)
    fig = show_image_groups(images, [[0, 1, 2], [3, 4]], [f"img {i}" for i in range(5)], title="Pairs")
    assert fig._suptitle.get_text() == "Pairs"
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["img 0", "img 1", "img 2", "img 3", "img 4", ""]
    assert not fig.axes[-1].axison
    with pytest.raises(ValueError, match="captions"):
        show_image_groups(images, [[0, 1]], ["a"], title="x")


def test_show_filters_draws_one_tile_per_filter_scaled_to_the_full_range():
    import keras

    layer = keras.layers.Conv2D(10, 3, name="block1_conv1")
    layer.build((None, 8, 8, 3))
    fig = show_filters(layer, ncols=4, title="filters")
    images = [ax.get_images()[0].get_array() for ax in fig.axes if ax.get_images()]
    assert len(images) == 10 and len(fig.axes) == 12
    assert all(np.isclose(im.min(), 0) and np.isclose(im.max(), 1) for im in images)
    with pytest.raises(ValueError, match="3, n"):
        grey = keras.layers.Conv2D(4, 3)
        grey.build((None, 8, 8, 1))
        show_filters(grey)


def test_plot_embedding_separates_separable_classes_along_the_first_component():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 50)
    features = rng.normal(size=(100, 20))
    features[:, :10] += 3 * labels[:, None]  # the classes differ along ten correlated features
    ax = plot_embedding(features, labels, ["benign", "malignant"])
    first, second = (coll.get_offsets()[:, 0] for coll in ax.collections)
    assert abs(first.mean() - second.mean()) > 2 * max(first.std(), second.std())
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["benign (50)", "malignant (50)"]
