"""Checks of Grad-CAM maps: do they depend on what the model learnt, and what can one layer's map miss?

* The model-parameter randomisation test of Adebayo et al. (2018), "Sanity checks for saliency
  maps": the same architecture with random weights (:func:`randomized_copy`) should give other
  maps than the trained model; a map that survives the randomisation shows the image or the
  architecture, not what the model learnt.  :func:`rank_correlation` measures how alike two
  maps are.
* :func:`heat_in_lesions`: the share of each model's heat inside lesion outlines, with trained
  and with random weights, beside the share of the image the lesions cover.
* :func:`path_ablation`: a classifier that reads pooled features of several VGG16 blocks (the
  quick profile's head reads blocks 4 and 5) has paths that skip the layer Grad-CAM looks at;
  replacing one block's features by their mean shows how much the score leans on each path.

The maps themselves come from :func:`busutils.gradcam.grad_cam`; the share of a map's heat
inside a lesion mask from :func:`busutils.gradcam.mass_on_mask`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras
import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from .gradcam import grad_cam, mass_on_mask
from .models import chain
from .train import extract_features

__all__ = ["cascade_stages", "path_ablation", "randomized_copy", "rank_correlation", "weighted_layers"]


def weighted_layers(model: keras.Model) -> list[str]:
    """Names of the top-level layers of ``model`` with a kernel to randomise, from the output back.

    A nested model (the VGG16 models' ``"head"``) counts as one layer.
    """
    def has_kernel(layer) -> bool:
        if isinstance(layer, keras.Model):
            return any(has_kernel(inner) for inner in layer.layers)
        return hasattr(layer, "kernel")

    return [layer.name for layer in reversed(model.layers) if has_kernel(layer)]


def cascade_stages(model: keras.Model) -> list[tuple[str, list[str]]]:
    """The steps of Adebayo et al.'s cascading randomisation: ``(name, layers to randomise)``, from none to all.

    Each step randomises one more block, from the output back: VGG16's convolutions go by block
    (``block5_conv1`` to ``_conv3`` together), every other layer alone.  The first step,
    ``"trained"``, randomises nothing.
    """
    stages: list[tuple[str, list[str]]] = [("trained", [])]
    done: list[str] = []
    for name in weighted_layers(model):
        block = name.split("_conv")[0]
        done.append(name)
        label = f"random to {block}"
        if stages[-1][0] == label:
            stages[-1] = (label, list(done))
        else:
            stages.append((label, list(done)))
    return stages


def _reinitialise(layer, seed: int) -> int:
    """Fresh Glorot-uniform kernels and zero biases for ``layer`` (and its sublayers); the next seed."""
    if isinstance(layer, keras.Model):
        for inner in layer.layers:
            seed = _reinitialise(inner, seed)
        return seed
    if hasattr(layer, "kernel"):
        layer.kernel.assign(keras.initializers.GlorotUniform(seed=seed)(tuple(layer.kernel.shape),
                                                                        dtype=layer.kernel.dtype))
        if getattr(layer, "bias", None) is not None:
            layer.bias.assign(keras.ops.zeros(tuple(layer.bias.shape), dtype=layer.bias.dtype))
        seed += 1
    return seed


def _finalize_normalization(model: keras.Model) -> None:
    """Let every ``Normalization`` layer compute its mean and variance from the statistics just set."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            _finalize_normalization(layer)
        elif isinstance(layer, keras.layers.Normalization):
            layer.finalize_state()


def randomized_copy(model: keras.Model, layers: Sequence[str] | None = None, *, seed: int = 0) -> keras.Model:
    """A copy of ``model`` whose named layers (default: all with a kernel) have random weights.

    Kernels get Glorot-uniform values drawn with ``seed``, biases zeros; every other weight
    (batch-normalisation statistics, the head's standardisation) is the trained model's.  The
    trained model is not changed.  Randomising from the output back, one layer more each time,
    is Adebayo et al.'s cascading test (:func:`weighted_layers` lists the layers in that order).
    """
    names = weighted_layers(model) if layers is None else list(layers)
    known = {layer.name for layer in model.layers}
    unknown = sorted(set(names) - known)
    if unknown:
        raise ValueError(f"model {model.name!r} has no layer(s) {unknown}")
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    _finalize_normalization(copy)
    next_seed = int(seed)
    for name in names:
        next_seed = _reinitialise(copy.get_layer(name), next_seed)
    return copy


def rank_correlation(maps_a: Any, maps_b: Any) -> np.ndarray:
    """Spearman's rank correlation of each pair of maps ``(n, H, W)``: 1 for maps that order the pixels alike.

    Adebayo et al. compare saliency maps this way: it ignores the maps' scales, which Grad-CAM
    sets to each map's own maximum.  A constant map (e.g. all zero: nothing raised the score)
    orders no pixel: against a map that does, the correlation is 0; two constant maps give
    ``nan``, nothing to compare.
    """
    a, b = np.asarray(maps_a, dtype=np.float64), np.asarray(maps_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"maps must be two arrays of the same shape (n, H, W); got {a.shape} and {b.shape}")
    out = np.full(len(a), np.nan)
    for i, (x, y) in enumerate(zip(a.reshape(len(a), -1), b.reshape(len(b), -1))):
        if np.ptp(x) > 0 and np.ptp(y) > 0:
            out[i] = spearmanr(x, y).statistic
        elif np.ptp(x) > 0 or np.ptp(y) > 0:
            out[i] = 0.0
    return out


def _feature_blocks(model: keras.Model) -> dict[str, slice]:
    """The columns of the ``"features"`` layer that come from each pooled VGG16 block."""
    pooled = [layer for layer in model.layers if layer.name.startswith("gap_")]
    if not pooled or "features" not in {layer.name for layer in model.layers}:
        raise ValueError(f"model {model.name!r} has no pooled VGG16 features (layers gap_* and 'features')")
    blocks, start = {}, 0
    for layer in pooled:  # in the order they were concatenated
        width = int(layer.output.shape[-1])
        blocks[layer.name.removeprefix("gap_").removesuffix("_pool")] = slice(start, start + width)
        start += width
    return blocks


def path_ablation(model: keras.Model, reference_images: np.ndarray, images: np.ndarray, *,
                  batch_size: int = 32,
                  features: Callable[[np.ndarray], np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Scores of ``images`` with all features, and with each block's features replaced by their mean.

    ``model`` is a VGG16 model of this book (pooled block features, then ``"head"``).  The mean
    of a block's features over ``reference_images`` (the training images) replaces that block's
    features for every image, so the head gets no information through that path.  Returns
    ``{"all": scores, "without block4": ..., "without block5": ...}`` (probability of malignant).
    ``features`` gives the head's input for images: by default ``model``'s own layers, whole;
    :meth:`busutils.frozen.FrozenVGG16.pooled` of a network holding ``model``'s weights reads
    the cached activations of its frozen layers instead, and runs only the layers after them.
    """
    blocks = _feature_blocks(model)
    if features is None:
        to_features = chain(model, until="features")

        def features(x: np.ndarray) -> np.ndarray:
            return extract_features(to_features, x, batch_size=batch_size)

    head = model.get_layer("head")
    reference, pooled = features(reference_images), features(images)

    def score(x: np.ndarray) -> np.ndarray:
        out = extract_features(head, x, batch_size=batch_size).astype(np.float64)
        return out[:, 0] if out.shape[-1] == 1 else out

    scores = {"all": score(pooled)}
    for block, columns in blocks.items():
        ablated = pooled.copy()
        ablated[:, columns] = reference[:, columns].mean(axis=0)
        scores[f"without {block}"] = score(ablated)
    return scores


def heat_in_lesions(models: Mapping[str, keras.Model], images: np.ndarray, scores: Mapping[str, Any],
                    lesions: np.ndarray, *, seed: int = 0) -> pd.DataFrame:
    """How much of each model's Grad-CAM heat falls inside the lesions, trained against random weights.

    ``images`` are model inputs, ``scores[name]`` each model's malignancy scores for them (the
    class explained is the one predicted at 0.5), ``lesions`` boolean outlines of their shape.
    A map spread evenly puts the lesion's share of the image inside by chance, so the table
    gives that share and the ratio; a randomised copy (:func:`randomized_copy`) that scores as
    high shows the architecture, not the training.  Rows: (model, weights).
    """
    lesions = np.asarray(lesions)
    rows = []
    for name, model in models.items():
        explained = np.asarray(scores[name]) >= 0.5
        for weights, net in (("trained", model), ("random", randomized_copy(model, seed=seed))):
            maps = grad_cam(net, images, class_index=explained)
            rows.append({"model": name, "weights": weights,
                         "heat inside the lesion": np.nanmean(mass_on_mask(maps, lesions)),
                         "lesion's share of the image": lesions.mean()})
    heat = pd.DataFrame(rows).set_index(["model", "weights"])
    heat["ratio"] = heat["heat inside the lesion"] / heat["lesion's share of the image"]
    return heat
