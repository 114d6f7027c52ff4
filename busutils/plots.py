"""Figures used throughout the book: training curves, confusion matrices, ROC curves,
image grids and class balance.

Every function draws a titled figure with labelled axes, accepts an existing ``ax`` (or
``axes``) to draw into, and returns the :class:`~matplotlib.axes.Axes` or
:class:`~matplotlib.figure.Figure` -- it never calls ``plt.show()``, so the same code works
in notebooks, scripts and tests.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = ["plot_history", "plot_confusion_matrix", "plot_roc", "plot_evaluation", "show_images", "plot_class_balance",
           "show_filters", "plot_embedding", "plot_stages", "plot_curves", "plot_intervals", "plot_distributions"]

_CHANCE_GID = "busutils-chance-line"


def _find_key(history: Mapping[str, Sequence[float]], metric: str) -> str | None:
    """The training key for ``metric``: exact match, else case-insensitive, else a Keras
    auto-numbered variant such as ``auc_1`` (never a ``val_`` key)."""
    if metric in history:
        return metric
    train_keys = [k for k in history if not k.startswith("val_")]
    for key in train_keys:
        if key.lower() == metric.lower():
            return key
    numbered = re.compile(rf"{re.escape(metric.lower())}_\d+")
    for key in train_keys:
        if numbered.fullmatch(key.lower()):
            return key
    return None


def plot_history(
    history: Mapping[str, Sequence[float]],
    metrics: Sequence[str] | None = None,
    title: str | None = None,
    *,
    best_epoch: int | None = None,
    axes: Sequence[Axes] | None = None,
) -> Figure:
    """Training and validation curves, one panel per metric.

    ``history`` is Keras' ``History.history`` dict (``{"loss": [...], "val_loss": [...],
    ...}``); a metric's validation curve is the ``"val_<metric>"`` key, drawn when present.
    ``metrics`` defaults to loss and AUC (loss and accuracy when there is no AUC, as for three
    classes).  Epochs are numbered from 1, as Keras prints them.  ``best_epoch`` (e.g.
    ``TrainResult.best_epoch``) is the epoch whose weights were kept, marked by a dashed line in
    every panel; 0 means that no epoch beat the model as it was before training.
    """
    if metrics is None:
        metrics = ("loss", "auc") if _find_key(history, "auc") else ("loss", "accuracy")
    if isinstance(metrics, str):
        metrics = (metrics,)
    if not metrics:
        raise ValueError("metrics must name at least one metric")
    keys = []
    for metric in metrics:
        key = _find_key(history, metric)
        if key is None:
            raise KeyError(f"metric {metric!r} is not in history; available keys: {sorted(history)}")
        keys.append(key)
    n_epochs = max(len(history[k]) for k in keys)
    if best_epoch is not None and not 0 <= int(best_epoch) <= n_epochs:
        raise ValueError(f"best_epoch must be an epoch number in [0, {n_epochs}], got {best_epoch}")

    created = axes is None
    if created:
        fig, axes_arr = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.5), squeeze=False)
        axes = list(axes_arr[0])
    else:
        axes = list(np.ravel(axes))
        if len(axes) != len(keys):
            raise ValueError(f"axes: need {len(keys)} axes (one per metric), got {len(axes)}")
        fig = axes[0].figure

    for ax, metric, key in zip(axes, metrics, keys):
        train = np.asarray(history[key], dtype=float)
        ax.plot(np.arange(1, len(train) + 1), train, marker=".", label="training")
        val_key = f"val_{key}"
        if val_key in history:
            val = np.asarray(history[val_key], dtype=float)
            ax.plot(np.arange(1, len(val) + 1), val, marker=".", label="validation")
        if best_epoch is not None:
            kept = f"best epoch ({int(best_epoch)})" if best_epoch else "kept: the model before training"
            ax.axvline(int(best_epoch), color="0.4", linestyle="--", linewidth=1, label=kept)
        ax.set_title(metric)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend()
    fig.suptitle(title or "Training history")
    if created:
        fig.tight_layout()
    return fig


def plot_confusion_matrix(
    cm: Any,
    class_names: Sequence[str],
    *,
    normalize: bool = False,
    title: str = "Confusion matrix",
    ax: Axes | None = None,
) -> Axes:
    """Confusion matrix as a seaborn heatmap (rows = true class, columns = predicted).

    Cells always show the counts.  With ``normalize=True`` colours are row fractions --
    each row then reads as per-class recall -- and cells show ``"count\\n(xx%)"``.
    """
    cm = np.asarray(cm)
    k = len(class_names)
    if cm.shape != (k, k):
        raise ValueError(f"cm must have shape ({k}, {k}) to match class_names; got {cm.shape}")
    if np.any(cm < 0):
        raise ValueError("cm must hold non-negative counts")
    if ax is None:
        _, ax = plt.subplots(figsize=(1.2 * k + 2.5, 1.2 * k + 1.5))
    counts = cm.astype(int) if np.allclose(cm, np.round(cm)) else cm
    if normalize:
        row_sums = cm.sum(axis=1, keepdims=True)
        fractions = np.divide(cm, row_sums, out=np.zeros(cm.shape, dtype=float), where=row_sums > 0)
        annot = np.array([[f"{c}\n({f:.0%})" for c, f in zip(rc, rf)] for rc, rf in zip(counts, fractions)])
        sns.heatmap(fractions, annot=annot, fmt="", cmap="Blues", vmin=0, vmax=1, square=True,
                    xticklabels=class_names, yticklabels=class_names, cbar_kws={"label": "fraction of true class"},
                    ax=ax)
    else:
        sns.heatmap(counts, annot=True, fmt="d" if counts.dtype.kind == "i" else ".2f", cmap="Blues", square=True,
                    xticklabels=class_names, yticklabels=class_names, cbar_kws={"label": "images"}, ax=ax)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    ax.tick_params(axis="y", labelrotation=0)
    return ax


def plot_roc(
    fpr: Sequence[float],
    tpr: Sequence[float],
    auc: float | None = None,
    *,
    label: str | None = None,
    ax: Axes | None = None,
    title: str = "ROC curve",
) -> Axes:
    """ROC curve with the diagonal chance line.

    Call it again with the same ``ax`` to overlay several runs; the chance line is drawn
    only once per Axes.  The legend entry is ``label`` followed by ``(AUC = 0.97)`` when
    ``auc`` is given.
    """
    fpr, tpr = np.asarray(fpr, dtype=float), np.asarray(tpr, dtype=float)
    if fpr.shape != tpr.shape or fpr.ndim != 1:
        raise ValueError(f"fpr and tpr must be 1-D of equal length; got shapes {fpr.shape} and {tpr.shape}")
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4.5))
    if not any(line.get_gid() == _CHANCE_GID for line in ax.get_lines()):
        (chance,) = ax.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=1, label="chance")
        chance.set_gid(_CHANCE_GID)
    parts = [label] if label else []
    if auc is not None and not (isinstance(auc, float) and math.isnan(auc)):
        parts.append(f"(AUC = {auc:.3f})" if label else f"AUC = {auc:.3f}")
    ax.plot(fpr, tpr, linewidth=2, label=" ".join(parts) or "ROC")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("false positive rate (1 − specificity)")
    ax.set_ylabel("true positive rate (sensitivity)")
    ax.set_title(title)
    ax.legend(loc="lower right")
    return ax


def plot_evaluation(test: Mapping[str, Any], class_names: Sequence[str], name: str) -> Figure:
    """A model's test results in one figure: confusion matrix and (two classes) ROC curve.

    ``test`` is the output of :func:`busutils.evaluate.metrics_with_ci` (a results file's
    ``"test"`` entry).
    """
    has_roc = test.get("roc") is not None
    fig, axes = plt.subplots(1, 2 if has_roc else 1, figsize=(10, 4.2) if has_roc else (5, 4.2), squeeze=False)
    plot_confusion_matrix(test["metrics"]["confusion_matrix"], class_names, ax=axes[0, 0],
                          title="Confusion matrix (threshold 0.5)" if has_roc else "Confusion matrix")
    if has_roc:
        plot_roc(test["roc"]["fpr"], test["roc"]["tpr"], auc=test["metrics"]["auc"], label=name, ax=axes[0, 1])
    fig.suptitle(f"{name} on {test['metrics']['n']} test images")
    fig.tight_layout()
    return fig


def _display_range(img: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Image ready for imshow with fixed limits: uint8 as 0..255, floats in [0, 1] as such,
    other floats (e.g. standardised) rescaled to their own min..max."""
    if img.dtype == np.uint8:
        return img, 0.0, 255.0
    img = img.astype(np.float64)
    lo, hi = float(np.nanmin(img)), float(np.nanmax(img))
    if lo >= 0.0 and hi <= 1.0:
        return img, 0.0, 1.0
    if hi > lo:
        return (img - lo) / (hi - lo), 0.0, 1.0
    return np.zeros_like(img), 0.0, 1.0


def show_images(
    images: Any,
    labels: Sequence[Any] | None = None,
    class_names: Sequence[str] | None = None,
    *,
    ncols: int = 6,
    title: str | None = None,
    cmap: str = "gray",
) -> Figure:
    """Grid of images, each captioned with its label (class name when ``class_names`` is given).

    ``images`` is ``(n, h, w)``, ``(n, h, w, 1)`` or ``(n, h, w, 3)`` (or a list of such
    images), uint8 or float.  Float images outside [0, 1] are min-max scaled for display only.
    """
    images = [np.asarray(im) for im in images]
    if not images:
        raise ValueError("images is empty")
    if labels is not None and len(labels) != len(images):
        raise ValueError(f"labels has {len(labels)} entries for {len(images)} images")
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    n = len(images)
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.0 * ncols, 2.0 * nrows + 0.4), squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= n:
            ax.set_axis_off()
            continue
        img = images[i]
        if img.ndim == 3 and img.shape[-1] == 1:
            img = img[..., 0]
        if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[-1] not in (3, 4)):
            raise ValueError(f"image {i} has shape {images[i].shape}; expected (h, w), (h, w, 1) or (h, w, 3)")
        img, vmin, vmax = _display_range(img)
        ax.imshow(img, cmap=cmap if img.ndim == 2 else None, vmin=vmin, vmax=vmax)
        if labels is not None:
            label = labels[i]
            if class_names is not None and isinstance(label, (int, np.integer)):
                label = class_names[int(label)]
            ax.set_title(str(label), fontsize=9)
    fig.suptitle(title or f"{n} images")
    fig.tight_layout()
    return fig


def show_image_groups(
    images: Any,
    groups: Sequence[Sequence[int]],
    captions: Sequence[str],
    *,
    title: str,
    size: float = 2.6,
) -> Figure:
    """One row per group of image indices (e.g. near-duplicates), each image captioned."""
    if not groups:
        raise ValueError("groups is empty")
    if len(captions) != len(images):
        raise ValueError(f"captions has {len(captions)} entries for {len(images)} images")
    ncols = max(len(g) for g in groups)
    fig, axes = plt.subplots(len(groups), ncols, figsize=(size * ncols, (size + 0.2) * len(groups)), squeeze=False)
    for row, group in zip(axes, groups):
        for c, ax in enumerate(row):
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(group):
                ax.set_axis_off()
                continue
            img, vmin, vmax = _display_range(np.asarray(images[group[c]]))
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=vmin, vmax=vmax)
            ax.set_title(captions[group[c]], fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_class_balance(
    counts: Mapping[str, int],
    *,
    title: str = "Images per class",
    ax: Axes | None = None,
) -> Axes:
    """Bar chart of images per class, with each count written on its bar."""
    if not counts:
        raise ValueError("counts is empty")
    names = [str(k) for k in counts]
    values = [int(v) for v in counts.values()]
    if any(v < 0 for v in values):
        raise ValueError(f"counts must be non-negative, got {dict(zip(names, values))}")
    if ax is None:
        _, ax = plt.subplots(figsize=(1.1 * len(names) + 2.5, 3.5))
    colors = sns.color_palette(n_colors=len(names))
    bars = ax.bar(names, values, color=colors)
    ax.bar_label(bars, labels=[f"{v}" for v in values], padding=2)
    ax.set_ylim(0, max(values) * 1.12 + 1)
    ax.set_xlabel("class")
    ax.set_ylabel("number of images")
    ax.set_title(title)
    return ax


def show_filters(layer: Any, *, ncols: int = 8, title: str | None = None) -> Figure:
    """The kernels of a first convolutional layer (3 input channels) as small RGB tiles.

    Each filter is scaled on its own to the full colour range, so its pattern shows whatever
    its magnitude: edge and colour detectors after ImageNet training, noise when random.
    """
    kernel = np.asarray(layer.get_weights()[0], dtype=float)
    if kernel.ndim != 4 or kernel.shape[2] != 3:
        raise ValueError(f"expected a conv kernel of shape (h, w, 3, n), got {kernel.shape}")
    n = kernel.shape[3]
    rows = math.ceil(n / ncols)
    fig, axes = plt.subplots(rows, ncols, figsize=(0.8 * ncols, 0.8 * rows + 0.6), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i < n:
            tile = kernel[:, :, :, i]
            low, high = tile.min(), tile.max()
            ax.imshow((tile - low) / (high - low) if high > low else np.zeros_like(tile), interpolation="nearest")
    fig.suptitle(title or f"{getattr(layer, 'name', 'layer')}: {n} filters")
    return fig


def plot_embedding(
    features: Any, labels: Any, class_names: Sequence[str], *, title: str = "Features in two dimensions",
    ax: Axes | None = None,
) -> Axes:
    """Features ``(n, d)`` projected on their first two principal components, coloured by class.

    The features are standardised first, so that no single large feature decides the picture.
    """
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(features, dtype=float)
    y = np.asarray(labels)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"features must be (n, d) with one label each; got {x.shape} and {y.shape}")
    pca = PCA(n_components=2, random_state=0)
    points = pca.fit_transform(StandardScaler().fit_transform(x))
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 4.5))
    for index, name in enumerate(class_names):
        chosen = y == index
        ax.scatter(points[chosen, 0], points[chosen, 1], s=14, alpha=0.7, label=f"{name} ({chosen.sum()})")
    share = pca.explained_variance_ratio_
    ax.set_xlabel(f"first principal component ({share[0]:.0%} of the variance)")
    ax.set_ylabel(f"second principal component ({share[1]:.0%})")
    ax.set_title(title)
    ax.legend()
    return ax


def plot_stages(
    stages: Mapping[str, Mapping[str, Sequence[float]]],
    *,
    best_epochs: Mapping[str, int] | None = None,
    metrics: Sequence[str] = ("loss", "auc"),
    title: str = "Training in stages",
) -> Figure:
    """The learning curves of training stages that follow one another (e.g. classifier, then fine-tuning), joined.

    ``stages`` maps a stage's name to its Keras history, in the order they ran; epochs are
    numbered on through the stages.  Each stage starts from the weights the previous one kept:
    ``best_epochs`` (a stage's kept epoch, 1-based; 0 = none beat its start) marks those epochs
    with dashed lines.  A dotted line and the stage's name mark where each stage begins.
    """
    if not stages:
        raise ValueError("stages is empty: give at least one history")
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 3.8), squeeze=False)
    offsets, start = {}, 0
    for name, history in stages.items():
        offsets[name] = start
        start += len(next(iter(history.values()), []))
    for ax, metric in zip(axes[0], metrics):
        for i, (name, history) in enumerate(stages.items()):
            key = _find_key(history, metric)
            if key is None:
                raise KeyError(f"stage {name!r} has no {metric!r} in its history; keys: {sorted(history)}")
            for part, style in ((key, "-"), (f"val_{key}", "--")):
                if part in history:
                    values = np.asarray(history[part], dtype=float)
                    epochs = offsets[name] + np.arange(1, len(values) + 1)
                    which = "validation" if part.startswith("val_") else "training"
                    ax.plot(epochs, values, style, marker=".", color=f"C{i}", label=f"{name}, {which}")
            if i:
                ax.axvline(offsets[name] + 0.5, color="0.3", linestyle=":", linewidth=1)
            ax.annotate(name, (offsets[name] + 1, 1.0), xycoords=("data", "axes fraction"),
                        va="top", fontsize=8, color=f"C{i}")
            if best_epochs and name in best_epochs:
                ax.axvline(offsets[name] + int(best_epochs[name]), color=f"C{i}", linestyle="--",
                           linewidth=0.8, alpha=0.6)
        ax.set_xlabel("epoch, counted through the stages")
        ax.set_ylabel(metric)
        ax.set_title(metric)
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[0, -1].legend(fontsize=8, loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_curves(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    bands: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None = None,
    marks: Mapping[str, float] | None = None,
    levels: Mapping[str, float] | None = None,
    logx: bool = False,
    logy: bool = False,
    ax: Axes | None = None,
) -> Axes:
    """Lines ``{label: (x, y)}``, each with an optional shaded band ``{label: (low, high)}`` over the same x.

    ``marks`` draws labelled vertical lines (e.g. a prevalence, a threshold), ``levels``
    labelled horizontal ones (e.g. a target).  Titled, axes labelled, legend outside the data.
    """
    if not curves:
        raise ValueError("curves is empty")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.2))
    for i, (label, (x, y)) in enumerate(curves.items()):
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        if x.shape != y.shape or x.ndim != 1:
            raise ValueError(f"curve {label!r}: x and y must be 1-D of one length; got {x.shape} and {y.shape}")
        ax.plot(x, y, color=f"C{i}", linewidth=2, label=label)
        if bands and label in bands:
            low, high = (np.asarray(b, dtype=float) for b in bands[label])
            ax.fill_between(x, low, high, color=f"C{i}", alpha=0.2, linewidth=0)
    styles = [":", "-.", (0, (5, 2)), (0, (1, 3))]
    for j, (label, x) in enumerate((marks or {}).items()):
        ax.axvline(x, color="0.25", linestyle=styles[j % len(styles)], linewidth=1.2, label=label)
    for j, (label, y) in enumerate((levels or {}).items()):
        ax.axhline(y, color="0.5", linestyle=styles[j % len(styles)], linewidth=1.2, label=label)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return ax


def plot_intervals(
    rows: Sequence[Mapping[str, Any]],
    *,
    xlabel: str,
    title: str,
    reference: Mapping[str, float] | None = None,
    ax: Axes | None = None,
) -> Axes:
    """A forest plot: one row per estimate (``label``, ``value``, ``low``, ``high``), an interval around each point.

    ``reference`` draws labelled vertical lines (e.g. the estimate of one run, or chance).
    """
    if not rows:
        raise ValueError("rows is empty")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.4))
    y = np.arange(len(rows))[::-1]
    for position, row in zip(y, rows):
        value, low, high = (float(row[k]) for k in ("value", "low", "high"))
        ax.errorbar(value, position, xerr=[[value - low], [high - value]], fmt="o", color="C0", capsize=3)
    ax.set_yticks(y, [str(row["label"]) for row in rows])
    for j, (label, x) in enumerate((reference or {}).items()):
        ax.axvline(x, color=f"C{j + 1}", linestyle="--", linewidth=1, label=label)
    if reference:
        ax.legend(fontsize=8, loc="lower left")
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    return ax


def plot_distributions(
    samples: Mapping[str, Sequence[float]],
    *,
    xlabel: str,
    title: str,
    intervals: Mapping[str, tuple[float, float]] | None = None,
    observed: float | None = None,
    bins: int = 40,
    ylabel: str = "resamples",
    ax: Axes | None = None,
) -> Axes:
    """Histograms of several samples on one axis (e.g. bootstrap AUCs), each with its interval's ends.

    ``intervals`` marks each sample's interval with two lines of its colour; ``observed`` marks
    the value measured on the data themselves; ``ylabel`` names what is counted.
    """
    if not samples:
        raise ValueError("samples is empty")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    values = [np.asarray(v, dtype=float) for v in samples.values()]
    edges = np.histogram_bin_edges(np.concatenate(values), bins=bins)
    for i, (label, v) in enumerate(zip(samples, values)):
        ax.hist(v, bins=edges, histtype="stepfilled", alpha=0.35, color=f"C{i}", label=f"{label} ({len(v)})")
        if intervals and label in intervals:
            for end in intervals[label]:
                ax.axvline(end, color=f"C{i}", linestyle="--", linewidth=1.2)
    if observed is not None:
        ax.axvline(observed, color="k", linewidth=1.5, label=f"measured on the data: {observed:.3f}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return ax
