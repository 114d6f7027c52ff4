"""Model factories for the three approaches of Hijab et al. (2019).

1. :func:`baseline_cnn` -- a small CNN trained from scratch;
2. :func:`vgg16_transfer` -- VGG16 pre-trained on ImageNet as a *frozen* feature extractor
   ("bottleneck features") with a small dense classifier on top;
3. :func:`vgg16_finetune` -- the same network with its last convolutional layer(s) unfrozen,
   trained by SGD (the paper's optimiser) with a small learning rate and momentum.

Every factory returns a :class:`Built` named tuple ``(model, weights_used)``: the compiled
model and a human-readable note of where its initial weights came from (e.g.
``"imagenet (file vgg16_..._notop.h5 from VGG16_WEIGHTS, sha256 5ffcc3e2b95a)"`` or
``"random (imagenet unavailable: ...)"``; see :mod:`busutils.weights`).
Record ``weights_used`` with the results: a "VGG16" trained from random weights is not
transfer learning, and a reader must be able to tell.

Models take images as float32 values in 0..255, shape ``(H, W, 3)``, and do their own
preprocessing in their first layer, so a saved ``.keras`` file is self-contained.  Only
Keras 3 APIs are used (no ``tf.*``), so the models run on the TensorFlow, JAX and PyTorch
backends.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple, Sequence

import keras
import numpy as np
from keras import layers, ops

from .weights import WeightsSource, load_into, resolve_vgg16_weights

__all__ = [
    "BLOCK5",
    "Built",
    "IMAGENET_BGR_MEAN",
    "MODEL_NAMES",
    "VGG16Preprocess",
    "VGG16_LAYERS",
    "baseline_cnn",
    "build_model",
    "chain",
    "classifier_head",
    "compile_for",
    "computes_in_float16",
    "count_params",
    "fit_standardisation",
    "finetune_layer_names",
    "feature_layers",
    "freeze_except",
    "frozen_until",
    "layer_table",
    "make_optimizer",
    "set_head_weights",
    "vgg16_base",
    "vgg16_finetune",
    "vgg16_transfer",
]

#: ImageNet channel means in BGR order, as subtracted by ``vgg16.preprocess_input``.
IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)

#: Names accepted by :func:`build_model`.
MODEL_NAMES = ("baseline", "vgg16-transfer", "vgg16-finetune")

#: VGG16's layers after its preprocessing, in order (Keras' names).
VGG16_LAYERS = tuple(
    f"block{b}_{kind}"
    for b, n_conv in enumerate((2, 2, 3, 3, 3), start=1)
    for kind in [f"conv{i}" for i in range(1, n_conv + 1)] + ["pool"]
)

#: The convolutional layers of VGG16's last block.
BLOCK5 = ("block5_conv1", "block5_conv2", "block5_conv3")


class Built(NamedTuple):
    """What every factory returns: the compiled model and where its weights came from."""

    model: keras.Model
    weights_used: str


# --------------------------------------------------------------------------- layers


@keras.saving.register_keras_serializable(package="busutils")
class VGG16Preprocess(layers.Layer):
    """VGG16's own input preprocessing ('caffe' mode) as a layer.

    RGB -> BGR and subtraction of the ImageNet channel means, without scaling: the same
    numbers as ``keras.applications.vgg16.preprocess_input``, but inside the model so a
    saved model needs no separate preprocessing step.  Expects channels-last 0..255 input.
    """

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        x = ops.flip(x, axis=-1)  # RGB -> BGR
        mean = ops.convert_to_tensor(IMAGENET_BGR_MEAN, dtype=self.compute_dtype)
        return x - mean

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return super().get_config()


# --------------------------------------------------------------------------- helpers


def _seed(seed: int | None, offset: int) -> int | None:
    """A distinct, reproducible seed per layer (``None`` stays ``None``)."""
    return None if seed is None else int(seed) + offset


def _regulariser(l2: float) -> keras.regularizers.Regularizer | None:
    return keras.regularizers.L2(l2) if l2 else None


def _check_image_shape(input_shape: Sequence[int], min_size: int) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3 or shape[2] != 3:
        raise ValueError(f"input_shape must be (height, width, 3), got {input_shape}")
    if shape[0] < min_size or shape[1] < min_size:
        raise ValueError(f"input_shape {shape} is too small: height and width must be >= {min_size}")
    return shape


def _output_layer(n_classes: int, seed: int | None, name: str = "output", l2: float = 0.0) -> layers.Dense:
    """Binary -> ``Dense(1, sigmoid)``; multiclass -> ``Dense(n, softmax)``.

    Always float32, whatever the precision policy, so probabilities and the loss stay exact.
    """
    if n_classes < 2:
        raise ValueError(f"n_classes must be >= 2, got {n_classes}")
    units, activation = (1, "sigmoid") if n_classes == 2 else (n_classes, "softmax")
    return layers.Dense(
        units,
        activation=activation,
        kernel_initializer=keras.initializers.GlorotUniform(seed=seed),
        kernel_regularizer=_regulariser(l2),
        dtype="float32",
        name=name,
    )


def _reinitialise(model: keras.Model, seed: int) -> None:
    """Reproducible He-normal kernels and zero biases for every Conv2D layer.

    He-normal, not Keras' default Glorot-uniform: VGG16 has no normalisation layers, and under
    Glorot's variance each ReLU layer halves the signal's, so that after 13 layers the features of
    a random VGG16 are tiny, many of them dead, and fine-tuning them explodes.  He et al. (2015)
    derived their variance for exactly such plain ReLU networks: the signal keeps its scale.
    """
    convs = [layer for layer in model.layers if isinstance(layer, layers.Conv2D)]
    for i, layer in enumerate(convs):
        init = keras.initializers.HeNormal(seed=seed + i)
        layer.kernel.assign(init(tuple(layer.kernel.shape)))
        layer.bias.assign(ops.zeros(tuple(layer.bias.shape)))


def set_head_weights(model: keras.Model, head_weights) -> None:
    """Give ``model``'s classifier (layer ``"head"``) the weights of a trained head, a file or arrays.

    ``head_weights`` is a head trained alone on features (same architecture), a ``.weights.h5``
    file of one, or its list of arrays.  The head's standardisation statistics come along.
    """
    head = model.get_layer("head")
    if isinstance(head_weights, keras.Model):
        head.set_weights(head_weights.get_weights())
    elif isinstance(head_weights, (str, os.PathLike)):
        if not Path(head_weights).exists():
            raise FileNotFoundError(f"head weights file not found: {head_weights}")
        head.load_weights(str(head_weights))
    else:
        head.set_weights(list(head_weights))
    head.get_layer("head_norm").finalize_state()  # Normalization computes its mean and variance here


# --------------------------------------------------------------------------- compile


def make_optimizer(name: str, learning_rate: float, **options) -> keras.optimizers.Optimizer:
    """A Keras optimizer by name (``"adam"``, ``"sgd"``, ...) with the given learning rate.

    ``options`` go to the optimizer (e.g. ``momentum``, ``global_clipnorm``); ``None`` values
    are left out.
    """
    options = {key: value for key, value in options.items() if value is not None}
    try:
        kind = type(keras.optimizers.get(name))
    except ValueError:
        raise ValueError(f"optimizer {name!r} is not a Keras optimizer name (e.g. 'adam', 'sgd')") from None
    return kind(learning_rate=learning_rate, **options)


def compile_for(model: keras.Model, n_classes: int, optimizer) -> keras.Model:
    """Compile ``model`` with the loss and metrics that fit its output; returns it.

    Binary (``n_classes == 2``): one sigmoid unit, binary cross-entropy, accuracy and ROC
    AUC (``"auc"``), labels 0/1.  Multiclass: softmax, sparse categorical cross-entropy and
    accuracy, integer labels.  ``optimizer`` is a Keras optimizer or its name; it is wrapped in
    a ``LossScaleOptimizer`` when the model computes in float16 (:func:`computes_in_float16`).
    """
    units = 1 if n_classes == 2 else n_classes
    out_units = model.outputs[0].shape[-1]
    if n_classes < 2 or out_units != units:
        raise ValueError(
            f"model output has {out_units} unit(s) but n_classes={n_classes} needs {units} "
            "(binary -> Dense(1, sigmoid), multiclass -> Dense(n, softmax))"
        )
    if n_classes == 2:
        loss = "binary_crossentropy"
        metrics = [keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")]
    else:
        loss = "sparse_categorical_crossentropy"
        metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    optimizer = keras.optimizers.get(optimizer)
    if computes_in_float16(model) and not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics)
    return model


def computes_in_float16(model: keras.Model) -> bool:
    """True when a trainable layer of ``model`` (nested models included) computes in float16.

    Such a model needs its loss scaled while it trains (``LossScaleOptimizer``), or its small
    gradients underflow to zero; Keras adds the scaling by itself only when the *model's* own
    policy is ``mixed_float16``, which a model cut from a bigger one need not have.
    """
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            if computes_in_float16(layer):
                return True
        elif layer.trainable_weights and layer.compute_dtype == "float16":
            return True
    return False


# --------------------------------------------------------------------------- baseline


def baseline_cnn(
    input_shape: Sequence[int] = (224, 224, 3),
    n_classes: int = 2,
    *,
    learning_rate: float = 1e-3,
    dropout: float = 0.5,
    l2: float = 1e-4,
    filters: Sequence[int] = (16, 32, 64, 128, 256),
    hidden: int = 64,
    optimizer: str = "adam",
    seed: int | None = None,
) -> Built:
    """A small CNN trained from scratch (approach 1), compiled with ``optimizer`` (Adam by default).

    Five blocks Conv(3x3)-BatchNorm-ReLU-MaxPool (five, so that the last features see a
    whole lesion, not a patch of texture), global average pooling, Dense(64), dropout,
    output: about 0.4 M parameters, with L2 weight decay and dropout, because a few hundred
    images overfit anything larger.  ``weights_used`` is
    ``"random (trained from scratch)"``.
    """
    shape = _check_image_shape(input_shape, min_size=2 ** len(filters))
    inputs = keras.Input(shape=shape, name="image")
    x = layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    for i, n in enumerate(filters, start=1):
        x = layers.Conv2D(
            n,
            3,
            padding="same",
            use_bias=False,  # BatchNorm supplies the bias
            kernel_initializer=keras.initializers.HeNormal(seed=_seed(seed, i)),
            kernel_regularizer=_regulariser(l2),
            name=f"conv{i}",
        )(x)
        # momentum 0.9, not 0.99: with ~10 steps an epoch, the default would leave the
        # moving statistics near their initial values for many epochs, skewing inference.
        x = layers.BatchNormalization(momentum=0.9, name=f"bn{i}")(x)
        x = layers.ReLU(name=f"relu{i}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dense(
        hidden,
        activation="relu",
        kernel_initializer=keras.initializers.HeNormal(seed=_seed(seed, 100)),
        kernel_regularizer=_regulariser(l2),
        name="dense",
    )(x)
    x = layers.Dropout(dropout, seed=_seed(seed, 101), name="dropout")(x)
    outputs = _output_layer(n_classes, _seed(seed, 102))(x)
    model = keras.Model(inputs, outputs, name="baseline_cnn")
    compile_for(model, n_classes, make_optimizer(optimizer, learning_rate))
    return Built(model, "random (trained from scratch)")


# --------------------------------------------------------------------------- VGG16


def vgg16_base(
    input_shape: Sequence[int] = (224, 224, 3),
    weights: str | os.PathLike | WeightsSource | None = "imagenet",
    *,
    strict: bool = True,
    seed: int | None = None,
) -> tuple[keras.Model, str]:
    """VGG16's convolutional base (``include_top=False``) preceded by :class:`VGG16Preprocess`.

    ``weights`` is resolved by :func:`busutils.weights.resolve_vgg16_weights`: ``"imagenet"``
    for the pre-trained ImageNet weights from ``$VGG16_WEIGHTS`` or Keras' cache and download
    (random, with a loud warning, only when ``strict=False`` and neither is available), a
    weights file, or ``None``/``"none"`` for random weights, reproducible when ``seed`` is given.

    Returns ``(base, description)``: the base is trainable (callers freeze it), its layers keep
    VGG16's names (``block1_conv1`` ... ``block5_pool``), and the description says where the
    weights came from, for results files and chapters.
    """
    shape = _check_image_shape(input_shape, min_size=32)
    source = weights if isinstance(weights, WeightsSource) else resolve_vgg16_weights(weights, strict=strict)
    inputs = keras.Input(shape=shape, name="image")
    x = VGG16Preprocess(name="vgg16_preprocess")(inputs)
    vgg = keras.applications.VGG16(include_top=False, weights=None, input_tensor=x)
    description = load_into(vgg, source)
    base = keras.Model(inputs, vgg.outputs[0], name="vgg16_base")
    if source.is_random and seed is not None:
        _reinitialise(base, seed)
    return base, description


def classifier_head(
    inputs_shape: Sequence[int],
    n_classes: int,
    *,
    hidden: int = 256,
    dropout: float = 0.5,
    l2: float = 1e-4,
    seed: int | None = None,
    name: str = "head",
) -> keras.Model:
    """The small classifier on VGG16 features (uncompiled).

    ``inputs_shape`` is one sample's feature shape: a feature map ``(h, w, c)`` gets global
    average pooling first; pooled features ``(c,)`` go straight on.  Then a standardisation
    (``Normalization``: call ``adapt`` on the training features before training), a dense layer
    of ``hidden`` units (none when ``hidden=0``: a linear classifier), dropout and the output.
    Train it alone on precomputed features, or inside :func:`vgg16_transfer` /
    :func:`vgg16_finetune`: both forms have the same weights.
    """
    shape = tuple(int(s) for s in inputs_shape)
    if len(shape) not in (1, 3):
        raise ValueError(f"inputs_shape must be (h, w, c) or (c,), got {inputs_shape}")
    if hidden < 0:
        raise ValueError(f"hidden must be >= 0, got {hidden}")
    inputs = keras.Input(shape=shape, name=f"{name}_features")
    x = layers.GlobalAveragePooling2D(dtype="float32", name=f"{name}_gap")(inputs) if len(shape) == 3 else inputs
    x = layers.Normalization(dtype="float32", name=f"{name}_norm")(x)
    if hidden:
        x = layers.Dense(
            hidden,
            activation="relu",
            kernel_initializer=keras.initializers.HeNormal(seed=_seed(seed, 0)),
            kernel_regularizer=_regulariser(l2),
            dtype="float32",
            name=f"{name}_dense",
        )(x)
    x = layers.Dropout(dropout, seed=_seed(seed, 1), dtype="float32", name=f"{name}_dropout")(x)
    # A linear classifier carries the weight decay on its output layer.
    outputs = _output_layer(n_classes, _seed(seed, 2), name=f"{name}_output", l2=0.0 if hidden else l2)(x)
    return keras.Model(inputs, outputs, name=name)


#: Features are divided by at least this fraction of their median standard deviation.
STANDARDISATION_FLOOR = 0.1


def fit_standardisation(head: keras.Model, features: np.ndarray, *, floor: float = STANDARDISATION_FLOOR) -> None:
    """Set the head's standardisation to the mean and variance of the training ``features``.

    Each feature is divided by its standard deviation, but never by less than ``floor`` times
    the median one: a feature that barely varies on the training images (a ReLU channel of VGG16
    that ultrasound rarely wakes) carries nothing to learn from, and dividing by its tiny spread
    would blow its first non-zero value on a new image up a thousandfold, and with it the
    gradients that fine-tuning sends back into VGG16.
    """
    norm = head.get_layer(f"{head.name}_norm")
    norm.adapt(np.asarray(features, dtype=np.float32))
    variance = keras.ops.convert_to_numpy(norm.adapt_variance)
    least = (floor * np.median(np.sqrt(variance))) ** 2
    norm.adapt_variance.assign(np.maximum(variance, least).astype(variance.dtype))
    norm.finalize_state()


def freeze_except(model: keras.Model, trainable: Sequence[str]) -> list[str]:
    """Freeze every layer of ``model`` but those named in ``trainable``; return these.

    A frozen layer keeps its weights: its gradient is not computed and the optimiser
    leaves it alone.  Compile the model again afterwards, or Keras goes on training the
    old selection.
    """
    unknown = sorted(set(trainable) - {layer.name for layer in model.layers})
    if unknown:
        raise ValueError(f"model {model.name!r} has no layer(s) {unknown}")
    for layer in model.layers:
        layer.trainable = layer.name in trainable
    return [layer.name for layer in model.layers if layer.trainable]


def finetune_layer_names(layers_to_train: str | Sequence[str]) -> tuple[str, ...]:
    """The VGG16 layers fine-tuning trains, from ``"block5"`` (its conv layers), ``"block4+block5"``,
    a layer name such as ``"block5_conv3"``, or a sequence of layer names."""
    if isinstance(layers_to_train, str):
        names: list[str] = []
        for part in layers_to_train.split("+"):
            convs = [name for name in VGG16_LAYERS if name.startswith(f"{part}_conv")]
            names += convs if convs else [part]
        return tuple(names)
    return tuple(layers_to_train)


def frozen_until(layers_to_train: str | Sequence[str]) -> str:
    """The last frozen VGG16 layer before the first one fine-tuning trains (whose output can be cached)."""
    names = finetune_layer_names(layers_to_train)
    order = [name for name in VGG16_LAYERS if name in names]
    if len(order) != len(names):
        unknown = sorted(set(names) - set(VGG16_LAYERS))
        raise ValueError(f"unknown VGG16 layer(s) {unknown}; layers are {', '.join(VGG16_LAYERS)}")
    return VGG16_LAYERS[VGG16_LAYERS.index(order[0]) - 1]


def feature_layers(features: str) -> tuple[str, ...]:
    """The VGG16 layers whose globally averaged outputs feed the classifier.

    ``"block5"``: the output of the last block, the "bottleneck features" of the paper;
    ``"block4+block5"``: the last two blocks' outputs side by side (1,024 features), which
    transfer better to ultrasound, whose textures are far from ImageNet's objects.
    """
    layers_ = tuple(f"{part}_pool" for part in features.split("+"))
    unknown = [name for name in layers_ if name not in VGG16_LAYERS]
    if unknown or not features:
        raise ValueError(f"features={features!r}: use 'block5' or e.g. 'block4+block5'")
    return layers_


def _vgg16_with_head(
    name: str,
    input_shape,
    n_classes: int,
    *,
    weights,
    strict: bool,
    hidden: int,
    dropout: float,
    l2: float,
    seed: int | None,
    trainable: Sequence[str],
    features: str,
) -> Built:
    """VGG16 base + pooled features + head in one functional model; only ``trainable`` base layers train."""
    base, used = vgg16_base(input_shape, weights, strict=strict, seed=seed)
    freeze_except(base, trainable)
    pooled = [layers.GlobalAveragePooling2D(name=f"gap_{name_}")(base.get_layer(name_).output)
              for name_ in feature_layers(features)]
    vector = pooled[0] if len(pooled) == 1 else layers.Concatenate(name="concat_features")(pooled)
    vector = layers.Identity(name="features")(vector)
    head = classifier_head(
        vector.shape[1:], n_classes, hidden=hidden, dropout=dropout, l2=l2, seed=_seed(seed, 1000),
    )
    model = keras.Model(base.input, head(vector), name=name)
    return Built(model, used)


def vgg16_transfer(
    input_shape: Sequence[int] = (224, 224, 3),
    n_classes: int = 2,
    *,
    weights: str | os.PathLike | WeightsSource | None = "imagenet",
    strict: bool = True,
    learning_rate: float = 1e-3,
    hidden: int = 256,
    dropout: float = 0.5,
    l2: float = 1e-4,
    optimizer: str = "adam",
    features: str = "block5",
    seed: int | None = None,
) -> Built:
    """Frozen VGG16 base + :func:`classifier_head`, compiled with ``optimizer`` (approach 2).

    Only the head trains: on features computed once per image (see :mod:`busutils.experiment`),
    which is the same model and far cheaper than running VGG16 at every epoch.  ``features``
    chooses the blocks whose pooled outputs the head reads (:func:`feature_layers`).
    """
    built = _vgg16_with_head(
        "vgg16_transfer", input_shape, n_classes, weights=weights, strict=strict,
        hidden=hidden, dropout=dropout, l2=l2, seed=seed, trainable=(), features=features,
    )
    compile_for(built.model, n_classes, make_optimizer(optimizer, learning_rate))
    return built


def vgg16_finetune(
    input_shape: Sequence[int] = (224, 224, 3),
    n_classes: int = 2,
    *,
    weights: str | os.PathLike | WeightsSource | None = "imagenet",
    strict: bool = True,
    learning_rate: float = 1e-4,
    momentum: float = 0.9,
    clipnorm: float | None = None,
    hidden: int = 256,
    dropout: float = 0.5,
    l2: float = 1e-4,
    seed: int | None = None,
    trainable_layers: str | Sequence[str] = "block5",
    features: str = "block5",
    head_weights=None,
) -> Built:
    """VGG16 with ``trainable_layers`` trainable, all else frozen, + head, compiled with SGD (approach 3).

    ``trainable_layers`` is ``"block5"`` (its three conv layers: the Keras fine-tuning recipe),
    ``"block5_conv3"`` (the last conv layer only: the paper's words read literally), or more,
    e.g. ``"block4+block5"`` (see :func:`finetune_layer_names`).
    ``head_weights`` (a trained head model, a ``.weights.h5`` file of one, or its list of
    arrays) initialises the head: train the head on bottleneck features first, so that
    fine-tuning does not start from a random head whose large gradients would wreck the
    pre-trained layers.  ``clipnorm`` caps the norm of every step's gradients (``None``: no cap).
    """
    built = _vgg16_with_head(
        "vgg16_finetune", input_shape, n_classes, weights=weights, strict=strict, hidden=hidden,
        dropout=dropout, l2=l2, seed=seed, trainable=finetune_layer_names(trainable_layers), features=features,
    )
    if head_weights is not None:
        set_head_weights(built.model, head_weights)
    compile_for(built.model, n_classes, make_optimizer("sgd", learning_rate, momentum=momentum,
                                                       global_clipnorm=clipnorm))
    return built


_FACTORIES = {"baseline": baseline_cnn, "vgg16-transfer": vgg16_transfer, "vgg16-finetune": vgg16_finetune}


def build_model(
    name: str, input_shape: Sequence[int] = (224, 224, 3), n_classes: int = 2, **kwargs
) -> Built:
    """Build one of :data:`MODEL_NAMES` by name; ``kwargs`` go to its factory."""
    if name not in _FACTORIES:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(MODEL_NAMES)}")
    return _FACTORIES[name](input_shape, n_classes, **kwargs)


# --------------------------------------------------------------------------- parts of a model


def chain(model: keras.Model, *, after: str | None = None, until: str | None = None) -> keras.Model:
    """The part of ``model`` from the output of layer ``after`` to the output of layer ``until``.

    The part shares its weights with ``model``, so training it trains ``model``.  With
    ``front = chain(m, until="block4_pool")`` and ``back = chain(m, after="block4_pool")``,
    ``back(front(x)) == m(x)``: the frozen front's outputs can be computed once and cached
    while the back trains.  ``None`` means the model's input (``after``) or output (``until``).
    """
    names = [layer.name for layer in model.layers]
    for name in (after, until):
        if name is not None and name not in names:
            raise ValueError(f"model {model.name!r} has no layer {name!r}")
    start = model.input if after is None else model.get_layer(after).output
    end = model.output if until is None else model.get_layer(until).output
    try:
        return keras.Model(start, end, name=f"{model.name}_{after or 'input'}_to_{until or 'output'}")
    except ValueError as error:
        raise ValueError(f"layer {until!r} does not follow layer {after!r} in {model.name!r}: {error}") from None


def layer_table(model: keras.Model):
    """A table of the layers that hold weights: name, trainable or frozen, number of weights."""
    import pandas as pd

    return pd.DataFrame(
        [(layer.name, layer.trainable, int(sum(np.prod(w.shape) for w in layer.weights)))
         for layer in model.layers if layer.weights],
        columns=["layer", "trainable", "weights"],
    )


def count_params(model: keras.Model) -> dict[str, int]:
    """Trainable and frozen parameter counts (for tables in the book)."""
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    frozen = int(sum(np.prod(w.shape) for w in model.non_trainable_weights))
    return {"trainable": trainable, "non_trainable": frozen, "total": trainable + frozen}
