"""Model factories for the three approaches of Hijab et al. (2019).

1. :func:`baseline_cnn` -- a small CNN trained from scratch;
2. :func:`vgg16_transfer` -- VGG16 pre-trained on ImageNet as a *frozen* feature extractor
   ("bottleneck features") with a small dense classifier on top;
3. :func:`vgg16_finetune` -- the same network with block 5 unfrozen, trained by SGD with a
   small learning rate and momentum.

Every factory returns a :class:`Built` named tuple ``(model, weights_used)``: the compiled
model and a human-readable note of where its initial weights came from (``"imagenet"``,
``"file:/path/x.h5 (sha256 0123456789ab)"``, ``"random (imagenet unavailable: ...)"``...).
Record ``weights_used`` with the results: a "VGG16" trained from random weights is not
transfer learning, and a reader must be able to tell.

Models take images as float32 values in 0..255, shape ``(H, W, 3)``, and do their own
preprocessing in their first layer, so a saved ``.keras`` file is self-contained.  Only
Keras 3 APIs are used (no ``tf.*``), so the models run on the TensorFlow, JAX and PyTorch
backends.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import NamedTuple, Sequence

import keras
import numpy as np
from keras import layers, ops

from .download import file_hash

__all__ = [
    "Built",
    "IMAGENET_BGR_MEAN",
    "MODEL_NAMES",
    "RandomInitWarning",
    "VGG16Preprocess",
    "VGG16_NOTOP_FILE",
    "VGG16_NOTOP_URL",
    "WeightsUnavailableError",
    "baseline_cnn",
    "build_model",
    "classifier_head",
    "compile_for",
    "count_params",
    "feature_extractor",
    "imagenet_cache_path",
    "layer_table",
    "split_at",
    "vgg16_base",
    "vgg16_finetune",
    "vgg16_transfer",
]

#: File name, origin and MD5 that ``keras.applications.VGG16(include_top=False)`` uses.
VGG16_NOTOP_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
VGG16_NOTOP_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/" + VGG16_NOTOP_FILE
)
VGG16_NOTOP_MD5 = "6d6bbae143d832006294945121d1f1fc"

#: ImageNet channel means in BGR order, as subtracted by ``vgg16.preprocess_input``.
IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)

#: Names accepted by :func:`build_model`.
MODEL_NAMES = ("baseline", "vgg16-transfer", "vgg16-finetune")

#: The convolutional layers that fine-tuning unfreezes (the paper's "block 5").
FINETUNE_LAYERS = ("block5_conv1", "block5_conv2", "block5_conv3")


class WeightsUnavailableError(RuntimeError):
    """The ImageNet weights could neither be found in the Keras cache nor downloaded."""


class RandomInitWarning(UserWarning):
    """A pre-trained network fell back to random initialisation."""


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


def _output_layer(n_classes: int, seed: int | None, name: str = "output") -> layers.Dense:
    """Binary -> ``Dense(1, sigmoid)``; multiclass -> ``Dense(n, softmax)``."""
    if n_classes < 2:
        raise ValueError(f"n_classes must be >= 2, got {n_classes}")
    units, activation = (1, "sigmoid") if n_classes == 2 else (n_classes, "softmax")
    return layers.Dense(
        units,
        activation=activation,
        kernel_initializer=keras.initializers.GlorotUniform(seed=seed),
        name=name,
    )


def imagenet_cache_path() -> Path:
    """Where Keras looks for the VGG16 notop ImageNet weights: ``$KERAS_HOME/models/...``.

    Keras reads ``KERAS_HOME`` (default ``~/.keras``) once, when it is imported.
    """
    try:
        from keras.src.backend.config import keras_home  # the value Keras itself uses

        home = keras_home()
    except ImportError:  # pragma: no cover - older/newer Keras layout
        home = os.environ.get("KERAS_HOME", os.path.join("~", ".keras"))
    return Path(os.path.expanduser(home)) / "models" / VGG16_NOTOP_FILE


def _fetch_imagenet_weights() -> Path:
    """The notop weights file through Keras' own cache (downloads it when missing)."""
    path = keras.utils.get_file(
        VGG16_NOTOP_FILE, VGG16_NOTOP_URL, cache_subdir="models", file_hash=VGG16_NOTOP_MD5
    )
    return Path(path)


def _how_to_get_weights(reason: str) -> str:
    return (
        f"VGG16 ImageNet weights are unavailable ({reason}).\n"
        f"To fix this, put the file\n"
        f"    {VGG16_NOTOP_FILE}\n"
        f"into the Keras cache, i.e. at\n"
        f"    {imagenet_cache_path()}\n"
        f"(download it on a machine with internet from\n"
        f"    {VGG16_NOTOP_URL} )\n"
        f"or pass weights='/path/to/{VGG16_NOTOP_FILE}'."
    )


def _reinitialise(model: keras.Model, seed: int) -> None:
    """Reproducible Glorot-uniform kernels and zero biases for every Conv2D layer."""
    convs = [layer for layer in model.layers if isinstance(layer, layers.Conv2D)]
    for i, layer in enumerate(convs):
        init = keras.initializers.GlorotUniform(seed=seed + i)
        layer.kernel.assign(init(tuple(layer.kernel.shape)))
        layer.bias.assign(ops.zeros(tuple(layer.bias.shape)))


def _set_head_weights(head: keras.Model, head_weights) -> None:
    """Initialise ``head`` from a trained head model, a ``.weights.h5`` file or arrays."""
    if isinstance(head_weights, keras.Model):
        head.set_weights(head_weights.get_weights())
    elif isinstance(head_weights, (str, os.PathLike)):
        if not Path(head_weights).exists():
            raise FileNotFoundError(f"head weights file not found: {head_weights}")
        head.load_weights(str(head_weights))
    else:
        head.set_weights(list(head_weights))


# --------------------------------------------------------------------------- compile


def compile_for(model: keras.Model, n_classes: int, optimizer) -> keras.Model:
    """Compile ``model`` with the loss and metrics that fit its output; returns it.

    Binary (``n_classes == 2``): one sigmoid unit, binary cross-entropy, accuracy and ROC
    AUC (``"auc"``), labels 0/1.  Multiclass: softmax, sparse categorical cross-entropy and
    accuracy, integer labels.  ``optimizer`` is a Keras optimizer or its name.
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
    model.compile(optimizer=keras.optimizers.get(optimizer), loss=loss, metrics=metrics)
    return model


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
    seed: int | None = None,
) -> Built:
    """A small CNN trained from scratch (approach 1), compiled with Adam.

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
    compile_for(model, n_classes, keras.optimizers.Adam(learning_rate))
    return Built(model, "random (trained from scratch)")


# --------------------------------------------------------------------------- VGG16


def vgg16_base(
    input_shape: Sequence[int] = (224, 224, 3),
    weights: str | os.PathLike | None = "imagenet",
    *,
    strict: bool = True,
    seed: int | None = None,
) -> tuple[keras.Model, str]:
    """VGG16's convolutional base (``include_top=False``) preceded by :class:`VGG16Preprocess`.

    ``weights``:

    * ``"imagenet"`` -- through Keras' own download and cache, so the file already in
      ``$KERAS_HOME/models/`` (see :func:`imagenet_cache_path`) works offline.  If it
      can be neither found nor downloaded: ``strict=True`` raises
      :class:`WeightsUnavailableError` saying which file to put where; ``strict=False``
      warns loudly (:class:`RandomInitWarning`) and uses random weights.
    * a path to a VGG16 notop weights file (``.h5`` as Keras distributes it, or a
      Keras 3 ``.weights.h5``);
    * ``None`` -- random initialisation (reproducible when ``seed`` is given).

    Returns ``(base, weights_used)``; the base is trainable (callers freeze it) and its
    layers keep VGG16's names (``block1_conv1`` ... ``block5_pool``).
    """
    shape = _check_image_shape(input_shape, min_size=32)
    used: str
    source: str | None
    if weights is None:
        source, used = None, "random"
    elif isinstance(weights, str) and weights == "imagenet":
        try:
            source, used = str(_fetch_imagenet_weights()), "imagenet"
        except Exception as err:  # no network, proxy, bad download... all end here
            reason = f"{type(err).__name__}: {err}"
            if len(reason) > 200:
                reason = reason[:197] + "..."
            if strict:
                raise WeightsUnavailableError(
                    _how_to_get_weights(reason)
                    + "\nOr call with strict=False to continue with random weights "
                    "(not transfer learning)."
                ) from err
            bar = "=" * 78
            warnings.warn(
                f"\n{bar}\nRANDOM INITIALISATION -- this VGG16 is NOT pre-trained.\n"
                f"{_how_to_get_weights(reason)}\n"
                "Results of this run are NOT transfer learning and are not comparable "
                f"with the paper.\n{bar}",
                RandomInitWarning,
                stacklevel=2,
            )
            source, used = None, f"random (imagenet unavailable: {reason})"
    else:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"VGG16 weights file not found: {path} "
                f"(expected a VGG16 notop weights file such as {VGG16_NOTOP_FILE})"
            )
        source, used = str(path), f"file:{path.resolve()} (sha256 {file_hash(path)[:12]})"

    inputs = keras.Input(shape=shape, name="image")
    x = VGG16Preprocess(name="vgg16_preprocess")(inputs)
    vgg = keras.applications.VGG16(include_top=False, weights=source, input_tensor=x)
    base = keras.Model(inputs, vgg.outputs[0], name="vgg16_base")
    if source is None and seed is not None:
        _reinitialise(base, seed)
    return base, used


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
    """The small dense classifier on VGG16 features (uncompiled).

    ``inputs_shape`` is one sample's feature shape: a feature map ``(h, w, c)`` gets
    global average pooling first; pooled features ``(c,)`` go straight to
    ``Dense(hidden, relu) -> Dropout -> output``.  Train it alone on precomputed
    bottleneck features (compile it with :func:`compile_for`), or use it inside
    :func:`vgg16_transfer` / :func:`vgg16_finetune`; both forms have the same weights.
    """
    shape = tuple(int(s) for s in inputs_shape)
    if len(shape) not in (1, 3):
        raise ValueError(f"inputs_shape must be (h, w, c) or (c,), got {inputs_shape}")
    inputs = keras.Input(shape=shape, name=f"{name}_features")
    x = layers.GlobalAveragePooling2D(name=f"{name}_gap")(inputs) if len(shape) == 3 else inputs
    x = layers.Dense(
        hidden,
        activation="relu",
        kernel_initializer=keras.initializers.HeNormal(seed=_seed(seed, 0)),
        kernel_regularizer=_regulariser(l2),
        name=f"{name}_dense",
    )(x)
    x = layers.Dropout(dropout, seed=_seed(seed, 1), name=f"{name}_dropout")(x)
    outputs = _output_layer(n_classes, _seed(seed, 2), name=f"{name}_output")(x)
    return keras.Model(inputs, outputs, name=name)


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
) -> Built:
    """VGG16 base + head in one flat functional model; only ``trainable`` base layers train."""
    base, used = vgg16_base(input_shape, weights, strict=strict, seed=seed)
    for layer in base.layers:
        layer.trainable = layer.name in trainable
    head = classifier_head(
        base.outputs[0].shape[1:], n_classes, hidden=hidden, dropout=dropout, l2=l2,
        seed=_seed(seed, 1000),
    )
    model = keras.Model(base.input, head(base.outputs[0]), name=name)
    return Built(model, used)


def vgg16_transfer(
    input_shape: Sequence[int] = (224, 224, 3),
    n_classes: int = 2,
    *,
    weights: str | os.PathLike | None = "imagenet",
    strict: bool = True,
    learning_rate: float = 1e-3,
    hidden: int = 256,
    dropout: float = 0.5,
    l2: float = 1e-4,
    seed: int | None = None,
) -> Built:
    """Frozen VGG16 base + :func:`classifier_head`, compiled with Adam (approach 2).

    Only the head trains.  Training the head on precomputed features
    (:func:`feature_extractor`) is the same model and far cheaper on a CPU.
    """
    built = _vgg16_with_head(
        "vgg16_transfer", input_shape, n_classes, weights=weights, strict=strict,
        hidden=hidden, dropout=dropout, l2=l2, seed=seed, trainable=(),
    )
    compile_for(built.model, n_classes, keras.optimizers.Adam(learning_rate))
    return built


def vgg16_finetune(
    input_shape: Sequence[int] = (224, 224, 3),
    n_classes: int = 2,
    *,
    weights: str | os.PathLike | None = "imagenet",
    strict: bool = True,
    learning_rate: float = 1e-4,
    momentum: float = 0.9,
    hidden: int = 256,
    dropout: float = 0.5,
    l2: float = 1e-4,
    seed: int | None = None,
    head_weights=None,
) -> Built:
    """VGG16 with blocks 1-4 frozen and block 5 trainable, + head, compiled with SGD (approach 3).

    ``head_weights`` (a trained head model, a ``.weights.h5`` file of one, or its list of
    arrays) initialises the head -- the recipe of the paper and of Chollet: train the head
    on bottleneck features first, so that fine-tuning does not start from a random head
    whose large gradients would wreck the pre-trained block 5.
    """
    built = _vgg16_with_head(
        "vgg16_finetune", input_shape, n_classes, weights=weights, strict=strict,
        hidden=hidden, dropout=dropout, l2=l2, seed=seed, trainable=FINETUNE_LAYERS,
    )
    if head_weights is not None:
        _set_head_weights(built.model.get_layer("head"), head_weights)
    compile_for(
        built.model, n_classes, keras.optimizers.SGD(learning_rate=learning_rate, momentum=momentum)
    )
    return built


_FACTORIES = {"baseline": baseline_cnn, "vgg16-transfer": vgg16_transfer, "vgg16-finetune": vgg16_finetune}


def build_model(
    name: str, input_shape: Sequence[int] = (224, 224, 3), n_classes: int = 2, **kwargs
) -> Built:
    """Build one of :data:`MODEL_NAMES` by name; ``kwargs`` go to its factory."""
    if name not in _FACTORIES:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(MODEL_NAMES)}")
    return _FACTORIES[name](input_shape, n_classes, **kwargs)


# --------------------------------------------------------------------------- feature caching


def feature_extractor(
    model: keras.Model, *, layer: str = "block5_pool", pooling: str | None = None
) -> keras.Model:
    """The frozen part of a VGG16 model (preprocessing included) up to ``layer``.

    Works on :func:`vgg16_base` and on the full transfer / fine-tune models.  Use it to
    precompute bottleneck features once (``extractor.predict(images)``) and train
    :func:`classifier_head` on them.  ``pooling="avg"`` returns pooled ``(n, c)`` features
    (smaller to store; the head's weights are the same either way).  The extractor holds
    a frozen copy of the weights, so ``model`` itself is left as it was.
    """
    x = model.get_layer(layer).output
    if pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="features_gap")(x)
    elif pooling is not None:
        raise ValueError(f"pooling must be None or 'avg', got {pooling!r}")
    shared = keras.Model(model.input, x, name=f"features_{layer}")
    # A copy, frozen: freezing ``shared`` itself would also freeze those layers in ``model``
    # (e.g. block 5 of a fine-tune model).
    extractor = keras.models.clone_model(shared)
    extractor.set_weights(shared.get_weights())
    extractor.trainable = False
    return extractor


def split_at(model: keras.Model, layer: str) -> tuple[keras.Model, keras.Model]:
    """Split a chain-shaped model after ``layer`` into ``(front, back)`` sharing its weights.

    ``back(front(x)) == model(x)``.  For a fine-tune model, ``split_at(model, "block4_pool")``
    separates the frozen part (whose outputs can be cached) from the trainable block 5 +
    head.  Only for models that are a single chain of layers, as all models here are.
    """
    names = [l.name for l in model.layers]
    if layer not in names:
        raise ValueError(f"model {model.name!r} has no layer {layer!r}")
    cut = model.get_layer(layer)
    front = keras.Model(model.input, cut.output, name=f"{model.name}_to_{layer}")
    inputs = keras.Input(shape=tuple(cut.output.shape[1:]), name=f"{layer}_features")
    x = inputs
    for later in model.layers[names.index(layer) + 1:]:
        x = later(x)
    back = keras.Model(inputs, x, name=f"{model.name}_after_{layer}")
    return front, back


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
