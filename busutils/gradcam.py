"""Where does the model look?  Grad-CAM heat maps, and masks for BUSI's burned-in marks.

Grad-CAM (Selvaraju et al. 2017, "Grad-CAM: visual explanations from deep networks via
gradient-based localization") weights each feature map ``A_k`` of a convolutional layer
by the spatial mean of the gradient of the class score with respect to it, and keeps the
positive part of the weighted sum: ``relu(sum_k mean(dy/dA_k) * A_k)``.  Bright regions
are those whose features raised the score.

BUSI images carry text ("LEFT BREAST"), rulers and calipers drawn in near-white.  A
model can learn them instead of the lesion (a "shortcut"); :func:`shortcut_mask` finds
them and :func:`mask_shortcuts` paints them over, to test whether predictions change.
"""

from __future__ import annotations

from contextlib import contextmanager

import numbers
from typing import Any

import keras
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from scipy import ndimage

from busutils.plots import _display_range
from busutils.precision import to_float32

__all__ = [
    "confident_examples",
    "grad_cam",
    "last_conv_layer",
    "mask_shortcuts",
    "mass_on_mask",
    "output_layer",
    "overlay",
    "overlay_grid",
    "shortcut_mask",
]


def last_conv_layer(model: keras.Model) -> str:
    """Name of the layer whose output is the last ``Conv2D``'s rectified feature maps: Grad-CAM's usual layer.

    That is the ``Conv2D`` itself when it applies its own activation (``"block5_conv3"`` for
    VGG16), else the batch normalisation and ReLU that follow it (``"relu5"`` for the book's
    baseline): Grad-CAM weighs maps the network reads after rectification, and raw convolution
    outputs, negative in places, can cancel the evidence into a blank map.  Nested models are
    searched too.
    """
    for i, layer in reversed(list(enumerate(model.layers))):
        if isinstance(layer, keras.Model):
            try:
                return last_conv_layer(layer)
            except ValueError:
                continue
        if isinstance(layer, keras.layers.Conv2D):
            name = layer.name
            for after in model.layers[i + 1:]:
                if not isinstance(after, (keras.layers.BatchNormalization, keras.layers.ReLU,
                                          keras.layers.Activation)):
                    break
                name = after.name
            return name
    raise ValueError(f"model {model.name!r} has no Conv2D layer")


def _contains(model: keras.Model, name: str) -> bool:
    return any(l.name == name or (isinstance(l, keras.Model) and _contains(l, name)) for l in model.layers)


def _layer(model: keras.Model, name: str) -> keras.layers.Layer:
    """The top-level layer ``name``, or an error saying where it is or what exists."""
    top = {layer.name: layer for layer in model.layers}
    if name in top:
        return top[name]
    for outer in model.layers:
        if isinstance(outer, keras.Model) and _contains(outer, name):
            raise ValueError(
                f"layer {name!r} is inside the nested model {outer.name!r}; Grad-CAM needs a layer of "
                f"model {model.name!r} itself: pass layer={outer.name!r} or build the model flat"
            )
    convs = [l.name for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    raise ValueError(f"model {model.name!r} has no layer {name!r}; its Conv2D layers are {convs}")


def _selector(pred: np.ndarray, class_index: np.ndarray | None) -> np.ndarray:
    """(n, units) weights that turn the model output into the score to explain.

    ``class_index`` is ``None`` (the predicted class; class 1 for a one-unit sigmoid) or
    one class per image.
    """
    n, units = pred.shape
    if units == 1:  # sigmoid: probability of class 1, or its negative for class 0
        sign = np.ones(n) if class_index is None else np.where(class_index == 0, -1.0, 1.0)
        return sign[:, None].astype("float32")
    index = pred.argmax(axis=1) if class_index is None else class_index
    return np.eye(units, dtype="float32")[index]


def _class_indices(class_index: Any, n: int, units: int) -> np.ndarray | None:
    """``class_index`` (None, one class, or one per image) as one class per image, checked."""
    if class_index is None:
        return None
    index = np.asarray(class_index)
    if index.dtype == bool:
        index = index.astype(int)
    if index.ndim == 0:
        index = np.full(n, index)
    if index.shape != (n,) or not np.issubdtype(index.dtype, np.integer):
        raise ValueError(f"class_index must be None, a class or one class per image ({n}), got {class_index!r}")
    allowed = 2 if units == 1 else units
    if index.min(initial=0) < 0 or index.max(initial=0) >= allowed:
        what = "0 or 1 for a one-unit sigmoid model" if units == 1 else f"in 0..{units - 1}"
        raise ValueError(f"class_index must be {what}, got {np.unique(index).tolist()}")
    return index


def output_layer(model: keras.Model) -> keras.layers.Layer:
    """The layer that makes ``model``'s output, looked for inside nested models too.

    In the book's VGG16 models the last layer is the classifier, itself a model, whose last
    layer is the sigmoid (or softmax) output.
    """
    last = model.layers[-1]
    return output_layer(last) if isinstance(last, keras.Model) else last


@contextmanager
def _before_activation(model: keras.Model):
    """While in the block, the model's output layer gives its scores before its sigmoid or softmax.

    The same trick as the keras-io Grad-CAM example (the last layer's activation removed),
    applied to the layer that really makes the output (:func:`output_layer`, nested models
    included); the layer gets its activation back on leaving, whatever happens.
    """
    last = output_layer(model)
    activation = getattr(last, "activation", None)
    if activation not in (keras.activations.sigmoid, keras.activations.softmax):
        yield
        return
    last.activation = keras.activations.linear
    try:
        yield
    finally:
        last.activation = activation


def _recording_start(model: keras.Model, target: keras.layers.Layer) -> list:
    """The variables a gradient tape must watch to record ``target``'s output and what follows it.

    A tape records every operation on a variable it watches, and by default it watches every
    variable created trainable: the variables of Keras' frozen layers too, so Grad-CAM recorded
    the whole network and differentiated back through every layer (four times the arithmetic of
    a forward pass, for VGG16).  The weights of the layer, or of the nearest layer before it
    that has some (the batch normalisation before a ReLU), start the recording at the map.
    """
    for layer in reversed(model.layers[:model.layers.index(target) + 1]):
        if layer.weights:
            return [weight.value for weight in layer.weights]
    return []


def _tensorflow_gradients(conv_and_pred: keras.Model, x: np.ndarray, class_index: np.ndarray | None,
                          watched: list):
    import tensorflow as tf

    # The tape watches ``watched`` only; if those do not lead to the map (a model whose layers are
    # not in a line), it watches every variable, as by default.
    for only in (watched, None):
        with tf.GradientTape(watch_accessed_variables=only is None) as tape:
            if only:
                tape.watch(only)
            conv, pred = conv_and_pred(x, training=False)
            pred = tf.cast(pred, tf.float32)
            score = tf.reduce_sum(pred * _selector(to_float32(pred), class_index))
        grads = tape.gradient(score, conv)
        if grads is not None:
            return to_float32(conv), to_float32(grads)
    raise ValueError(f"the model's output does not depend on layer {conv_and_pred.outputs[0].name!r}")


def _jax_gradients(conv_and_pred: keras.Model, back: keras.Model, x: np.ndarray, class_index: np.ndarray | None):
    import jax
    import jax.numpy as jnp

    conv, pred = conv_and_pred(x, training=False)
    selector = _selector(to_float32(pred), class_index)
    trainable = [v.value for v in back.trainable_variables]
    frozen = [v.value for v in back.non_trainable_variables]

    def score(a):
        out, _ = back.stateless_call(trainable, frozen, a, training=False)
        return jnp.sum(out.astype(jnp.float32) * selector)

    return to_float32(conv), to_float32(jax.grad(score)(conv))


def grad_cam(
    model: keras.Model, images: Any, *, layer: str | None = None, class_index: Any = None,
    batch_size: int = 32,
) -> np.ndarray:
    """Grad-CAM heat maps ``(n, H, W)`` in [0, 1], one per image, at the input's size.

    ``images`` is ``(n, H, W, C)`` as the model takes them.  ``layer`` defaults to
    :func:`last_conv_layer`.  The score explained is taken before the output's sigmoid or
    softmax, as Selvaraju et al. do: a probability saturated at 0 or 1 has no gradient and
    would leave a blank map (the output layer is found inside nested models too, such as the
    VGG16 models' classifier).  For a one-unit sigmoid model it is the logit of class 1
    (malignant), or its negative with ``class_index=0``; for a softmax model the logit of
    ``class_index`` (default: each image's predicted class).  ``class_index`` may also give one
    class per image, e.g. each image's predicted class for a sigmoid model, ``scores >= 0.5``.
    Maps are divided by their maximum (all zero when nothing raised the score).  Whatever
    precision the model computes in, maps and gradients are combined in float32.  Images go
    through the model ``batch_size`` at a time.  TensorFlow and JAX backends.
    """
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(f"model must have one input and one output; {model.name!r} has "
                         f"{len(model.inputs)} and {len(model.outputs)}")
    x = np.asarray(images, dtype="float32")
    expected = tuple(model.inputs[0].shape[1:])
    if x.ndim != 4 or any(e is not None and e != s for e, s in zip(expected, x.shape[1:])):
        raise ValueError(f"images must have shape (n, *{expected}) for this model, got {x.shape}")
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    target = _layer(model, layer or last_conv_layer(model))
    if len(target.output.shape) != 4:
        raise ValueError(
            f"layer {target.name!r} has output shape {target.output.shape}; Grad-CAM needs a 4-D feature map"
        )
    classes = _class_indices(class_index, len(x), int(model.outputs[0].shape[-1]))
    conv_and_pred = keras.Model(model.inputs[0], [target.output, model.outputs[0]])
    backend = keras.backend.backend()
    watched = _recording_start(model, target)
    if backend == "jax":
        back = keras.Model(target.output, model.outputs[0])  # the part of the model after the layer
    elif backend != "tensorflow":
        raise RuntimeError(f"grad_cam supports the tensorflow and jax Keras backends, not {backend!r}")
    maps = []
    with _before_activation(model):
        for start in range(0, len(x), batch_size):
            batch = x[start:start + batch_size]
            chosen = None if classes is None else classes[start:start + batch_size]
            if backend == "tensorflow":
                conv, grads = _tensorflow_gradients(conv_and_pred, batch, chosen, watched)
            else:
                conv, grads = _jax_gradients(conv_and_pred, back, batch, chosen)
            weights = grads.mean(axis=(1, 2))  # alpha_k: one weight per feature map
            maps.append(np.maximum(np.einsum("nhwk,nk->nhw", conv, weights), 0.0))
    cams = np.concatenate(maps)[..., None]
    cams = to_float32(keras.ops.image.resize(cams, x.shape[1:3], interpolation="bilinear"))[..., 0]
    peak = cams.max(axis=(1, 2), keepdims=True)
    return np.where(peak > 0, cams / np.where(peak > 0, peak, 1.0), 0.0).astype("float32")


def overlay(
    image: Any, heatmap: Any, ax: Axes | None = None, alpha: float = 0.4, title: str | None = None
) -> Axes:
    """Draw ``image`` with a Grad-CAM ``heatmap`` (values in [0, 1]) on top; returns the axes."""
    img, heat = np.asarray(image), np.asarray(heatmap, dtype=np.float64)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim not in (2, 3) or heat.shape != img.shape[:2]:
        raise ValueError(
            f"heatmap must be (H, W) of image (H, W[, C]); got heatmap {heat.shape}, image {img.shape}"
        )
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if ax is None:
        _, ax = plt.subplots(figsize=(3, 3))
    shown, vmin, vmax = _display_range(img)
    ax.imshow(shown, cmap="gray" if img.ndim == 2 else None, vmin=vmin, vmax=vmax)
    ax.imshow(heat, cmap="jet", alpha=alpha, vmin=0.0, vmax=1.0)
    ax.set_title(title or "Grad-CAM")
    ax.set_axis_off()
    return ax


def overlay_grid(
    images: Any, heatmaps: Any, titles: Any, *, title: str, ncols: int = 4, alpha: float = 0.4
) -> Figure:
    """A figure of :func:`overlay` panels, one per image, each with its own title."""
    if not len(images):
        raise ValueError("images is empty: nothing to draw")
    if not len(images) == len(heatmaps) == len(titles):
        raise ValueError(f"images, heatmaps and titles must have one entry each per image; got "
                         f"{len(images)}, {len(heatmaps)} and {len(titles)}")
    if int(ncols) != ncols or ncols < 1:
        raise ValueError(f"ncols must be a positive integer, got {ncols}")
    cols = min(int(ncols), len(images))
    rows = -(-len(images) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.7 * rows + 0.5), squeeze=False,
                             layout="constrained")
    for ax in axes.flat[len(images):]:
        ax.set_axis_off()
    for ax, image, heat, text in zip(axes.flat, images, heatmaps, titles):
        overlay(image, heat, ax=ax, alpha=alpha, title=text)
        ax.title.set_fontsize(9)
    fig.suptitle(title)
    return fig


def confident_examples(
    labels: Any, scores: Any, *, correct: bool, n: int = 4, threshold: float = 0.5
) -> np.ndarray:
    """Indices of the ``n`` most confident correct (or, ``correct=False``, wrong) predictions.

    A prediction is malignant (1) when its score is ``>= threshold``; confidence is the
    score's distance from the threshold.  The two true classes take turns, most confident
    first, so both appear when both can: the most confident predictions of a model are
    often all of one class.  Fewer than ``n`` when fewer such predictions exist.
    """
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 1 or s.shape != y.shape:
        raise ValueError(f"labels and scores must be one-dimensional and of one length; got {y.shape} and {s.shape}")
    if int(n) != n or n < 0:
        raise ValueError(f"n must be a whole number >= 0, got {n}")
    predicted = (s >= threshold).astype(y.dtype)
    chosen = np.flatnonzero((predicted == y) == correct)
    order = chosen[np.argsort(-np.abs(s[chosen] - threshold), kind="stable")]
    queues = [list(order[y[order] == label]) for label in np.unique(y[order])]
    picked: list[int] = []
    while len(picked) < n and any(queues):
        for queue in queues:
            if queue and len(picked) < n:
                picked.append(int(queue.pop(0)))
    return np.array(picked, dtype=int)


def mass_on_mask(heatmaps: Any, masks: Any) -> np.ndarray:
    """Share of each heat map's total mass that falls on its mask: ``(n,)`` in [0, 1].

    Compare it with the share of the image the mask covers (``masks.mean(axis=(1, 2))``):
    a map spread evenly over the image puts that much on the mask by chance.  ``nan`` for
    a map that is zero everywhere (nothing raised the score).
    """
    heat = np.asarray(heatmaps, dtype=np.float64)
    masks = np.asarray(masks)
    if heat.ndim != 3 or masks.shape != heat.shape or masks.dtype != bool:
        raise ValueError(f"masks must be a boolean array of the heat maps' shape (n, H, W) {heat.shape}; "
                         f"got {masks.dtype} {masks.shape}")
    if (heat < 0).any():
        raise ValueError("heatmaps must be non-negative, as grad_cam returns them")
    total = heat.sum(axis=(1, 2))
    on = (heat * masks).sum(axis=(1, 2))
    return np.where(total > 0, on / np.where(total > 0, total, 1.0), np.nan)


def shortcut_mask(image: Any, *, level: float = 240, max_area: float = 0.02, dilate: int = 1) -> np.ndarray:
    """Boolean ``(H, W)`` mask of small near-white marks: text, rulers, calipers.

    A mark is a connected group of pixels that are ``>= level`` in every channel (images
    in 0..255) and cover less than ``max_area`` of the image; larger bright regions are
    anatomy and stay unmasked.  The mask is grown by ``dilate`` pixels to cover the
    marks' anti-aliased edges.
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim == 3:
        bright = np.all(img >= level, axis=-1)
    elif img.ndim == 2:
        bright = img >= level
    else:
        raise ValueError(f"image must be (H, W) or (H, W, C), got shape {img.shape}")
    if not 0.0 < max_area <= 1.0:
        raise ValueError(f"max_area must be a fraction of the image in (0, 1], got {max_area}")
    if int(dilate) != dilate or dilate < 0:
        raise ValueError(f"dilate must be a whole number of pixels >= 0, got {dilate}")
    labels, _ = ndimage.label(bright, structure=np.ones((3, 3)))  # 8-connected
    sizes = np.bincount(labels.ravel())
    small = sizes < max_area * bright.size
    small[0] = False  # label 0 is the background
    mask = small[labels]
    return ndimage.binary_dilation(mask, iterations=int(dilate)) if dilate else mask


def mask_shortcuts(images: Any, masks: Any, fill: str | float = "median") -> np.ndarray:
    """A copy of ``images`` ``(n, H, W[, C])`` with the pixels of ``masks`` ``(n, H, W)``
    replaced by each image's median (of its unmasked pixels, per channel) or by ``fill``."""
    out = np.array(images, copy=True)
    masks = np.asarray(masks)
    if out.ndim not in (3, 4) or masks.shape != out.shape[:3] or masks.dtype != bool:
        raise ValueError(f"masks must be a boolean array of shape {out.shape[:3]} for images of shape {out.shape}, "
                         f"got {masks.dtype} {masks.shape}")
    if not (isinstance(fill, str) and fill == "median") and not isinstance(fill, numbers.Real):
        raise ValueError(f"fill must be 'median' or a number, got {fill!r}")
    for image, mask in zip(out, masks):
        if isinstance(fill, str):
            keep = image[~mask] if (~mask).any() else image.reshape(-1, *image.shape[2:])
            image[mask] = np.median(keep, axis=0)
        else:
            image[mask] = fill
    return out
