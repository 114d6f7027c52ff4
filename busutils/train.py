"""Training: seeds, input pipelines, class weights, early stopping and best-epoch selection.

:func:`fit` trains any compiled Keras model -- the baseline CNN on images, a classifier head on
precomputed VGG16 features, block 5 of VGG16 on cached activations -- with the same rules:
class weights ("balanced", inversely proportional to class frequency) rather than resampling,
model selection on the validation part only, and a record of what really ran.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
from sklearn.utils.class_weight import compute_class_weight

from .precision import to_float32
from .progress import progress


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and the Keras backend, and ask TensorFlow for deterministic ops.

    With this, the same seed gives the same trained model and metrics on a CPU.
    """
    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def to_model_input(images: np.ndarray) -> np.ndarray:
    """Greyscale ``uint8`` images ``(n, h, w)`` as the float32 ``(n, h, w, 3)`` the models take."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"images must have shape (n, h, w), (n, h, w, 1) or (n, h, w, 3); got {images.shape}")
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    return images.astype(np.float32)


def class_weights(labels: np.ndarray, n_classes: int) -> dict[int, float]:
    """Balanced class weights: each class contributes equally to the loss, whatever its size."""
    labels = np.asarray(labels)
    present = np.unique(labels)
    if len(present) < n_classes:
        raise ValueError(f"training labels hold only classes {present.tolist()} of {n_classes}; cannot train")
    weights = compute_class_weight("balanced", classes=np.arange(n_classes), y=labels)
    return {int(i): float(w) for i, w in enumerate(weights)}


def make_dataset(
    x: np.ndarray,
    y: np.ndarray,
    *,
    batch_size: int,
    augmentation: keras.Layer | None = None,
    shuffle: bool = False,
    seed: int = 0,
):
    """A ``tf.data`` pipeline of batches; ``augmentation`` (training data only) is applied per batch.

    ``x`` may be greyscale ``uint8`` images ``(n, h, w)``: they stay compact in memory and are
    turned into the float32 RGB the models take batch by batch, in parallel, while the model
    trains on the previous batch (prefetch).  They are augmented in their one channel and only
    then repeated into three: the same images as augmenting three identical channels, for a
    third of the work.
    """
    import tensorflow as tf

    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} items but y has {len(y)}")
    grey = np.asarray(x).ndim == 3
    data = tf.data.Dataset.from_tensor_slices((x, np.asarray(y)))
    if shuffle:
        data = data.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    data = data.batch(batch_size)
    if grey:
        data = data.map(lambda images, labels: (tf.cast(images, tf.float32)[..., None], labels),
                        num_parallel_calls=tf.data.AUTOTUNE)
    if augmentation is not None:
        # Sequential map: the random layers keep their seeded state, so runs repeat exactly.
        data = data.map(lambda images, labels: (augmentation(images, training=True), labels))
    if grey:
        data = data.map(lambda images, labels: (tf.repeat(images, 3, axis=-1), labels),
                        num_parallel_calls=tf.data.AUTOTUNE)
    return data.prefetch(tf.data.AUTOTUNE)


@dataclass
class TrainResult:
    """What a training run produced: per-epoch history, the epoch kept, how long it took.

    ``best_epoch`` is 1-based; 0 means that the model as it was before training was kept: no
    epoch beat it (see ``keep_initial`` in :func:`fit`), or training diverged before any epoch
    ended with finite losses.  ``diverged_epoch`` is the epoch whose loss stopped being finite
    (training stopped there), ``None`` when training never diverged.
    """

    history: dict[str, list[float]]
    best_epoch: int
    monitor: str
    seconds: float
    max_epochs: int
    class_weight: dict[int, float] | None = None
    initial_score: float | None = None  # validation score before training, when it was a candidate
    diverged_epoch: int | None = None
    epochs_run: int = field(init=False)

    def __post_init__(self) -> None:
        self.epochs_run = len(next(iter(self.history.values()), []))

    @property
    def diverged(self) -> bool:
        return self.diverged_epoch is not None

    def describe(self) -> str:
        """One sentence for a chapter: the epoch kept out of those run, and a divergence if any."""
        kept = (f"best epoch {self.best_epoch} of {self.epochs_run}" if self.best_epoch
                else f"the model as it was before these {self.epochs_run} epoch(s) kept")
        if self.diverged:
            kept += (f"; DIVERGED at epoch {self.diverged_epoch} (a loss that is not finite): training stopped "
                     "there and the last finite candidate was kept")
        return kept

    def summary(self) -> dict:
        """The facts a results file records about this stage."""
        return {"max_epochs": self.max_epochs, "epochs_run": self.epochs_run, "best_epoch": self.best_epoch,
                "monitor": self.monitor, "initial_score": self.initial_score, "class_weight": self.class_weight,
                "diverged": self.diverged, "diverged_epoch": self.diverged_epoch,
                "seconds": round(self.seconds, 2), "history": self.history}


def _finite(value) -> bool:
    return value is None or bool(np.isfinite(value))


class StopOnDivergence(keras.callbacks.Callback):
    """Stops training at the first loss that is not finite (training or validation) and remembers the epoch.

    Keras' ``TerminateOnNaN`` watches the training loss only; a run can also diverge into
    validation losses of NaN.  Listed before the other callbacks, this one marks the diverged
    epoch's ``monitor`` as NaN, so that early stopping and the learning-rate schedule never take
    that epoch for progress; it also keeps the weights of the last epoch that ended finite.
    """

    def __init__(self, monitor: str):
        super().__init__()
        self.monitor = monitor

    def on_train_begin(self, logs=None) -> None:
        self.epoch, self.last_finite, self._in_batch = None, None, False

    def on_train_batch_end(self, batch, logs=None) -> None:
        if not _finite((logs or {}).get("loss")):
            self._in_batch = True
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None) -> None:
        logs = logs if logs is not None else {}
        if self.epoch is not None:
            return
        if self._in_batch or not all(_finite(logs.get(key)) for key in ("loss", "val_loss", self.monitor)):
            self.epoch = epoch + 1
            logs[self.monitor] = float("nan")
            self.model.stop_training = True
        else:
            self.last_finite = self.model.get_weights()


def _monitor_for(model: keras.Model) -> tuple[str, str]:
    """Binary models are selected by validation AUC (compiled as metric "auc"), others by loss."""
    if model.outputs[0].shape[-1] == 1:
        return "val_auc", "max"
    return "val_loss", "min"


def _batches(data, batch_size: int):
    """``(x, y)`` arrays as a dataset of batches; anything else (a PyDataset, a tf.data pipeline) as it is."""
    if isinstance(data, tuple):
        return make_dataset(data[0], data[1], batch_size=batch_size)
    return data


def fit(
    model: keras.Model,
    train,
    val: tuple[np.ndarray, np.ndarray],
    *,
    epochs: int,
    batch_size: int,
    augmentation: keras.Layer | None = None,
    patience: int | None = 8,
    restore_best: bool = True,
    keep_initial: bool = False,
    reduce_lr_patience: int | None = None,
    monitor: str | None = None,
    balance_classes: bool = True,
    seed: int = 0,
    verbose: int | str = 2,
) -> TrainResult:
    """Train ``model`` and keep its best validation epoch; stop, and keep a finite model, if it diverges.

    ``train`` is ``(x, y)`` arrays (shuffled each epoch, ``augmentation`` applied to its batches)
    or a batch source such as :class:`busutils.frozen.CopiesSequence`.  The model is selected on
    ``val`` only: validation AUC for binary tasks, validation loss otherwise (or ``monitor``).
    ``patience``: stop after that many epochs without progress (``None``: run every epoch).
    ``restore_best``: end with the weights of the best epoch, else of the last.
    ``keep_initial``: the model as it was before training is a candidate too (fine-tuning must
    not report a model worse than its starting point).  A loss that stops being finite ends
    training (:class:`StopOnDivergence`): the model then keeps the best (or last) epoch before
    it, or its weights from before training when none ended finite, and the result says so.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if isinstance(train, tuple):
        x_train, y_train = train
        train_data = make_dataset(x_train, y_train, batch_size=batch_size, augmentation=augmentation,
                                  shuffle=True, seed=seed)
    else:
        y_train, train_data = train.labels, train
    n_classes = max(2, int(model.outputs[0].shape[-1]))
    weights = class_weights(y_train, n_classes) if balance_classes else None
    if monitor is None:
        monitor, mode = _monitor_for(model)
    else:
        mode = "min" if monitor.endswith("loss") else "max"
    val_data = _batches(val, batch_size)
    initial_score, initial_weights = None, model.get_weights()
    if keep_initial:
        scores = model.evaluate(val_data, verbose=0, return_dict=True)
        initial_score = float(scores[monitor.removeprefix("val_")])
    guard = StopOnDivergence(monitor)
    callbacks = [guard, keras.callbacks.EarlyStopping(
        monitor=monitor, mode=mode, patience=epochs if patience is None else patience,
        restore_best_weights=restore_best)]
    if reduce_lr_patience:
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor=monitor, mode=mode, factor=0.5,
                                                           patience=reduce_lr_patience, min_lr=1e-5))
    start = time.perf_counter()
    history = model.fit(train_data, validation_data=val_data, epochs=epochs, class_weight=weights,
                        callbacks=callbacks, shuffle=False, verbose=verbose).history
    scores = np.asarray(history[monitor], dtype=float)
    finite = np.flatnonzero(np.isfinite(scores))
    if guard.epoch is not None:
        finite = finite[finite < guard.epoch - 1]
    if not len(finite):  # nothing to keep but the model from before training
        best = 0
    elif restore_best:
        best = int(finite[np.argmax(scores[finite]) if mode == "max" else np.argmin(scores[finite])]) + 1
    else:
        best = int(finite[-1]) + 1
        if guard.epoch is not None:
            model.set_weights(guard.last_finite)
    if best and initial_score is not None:
        chosen = scores[best - 1]
        if (mode == "max" and not chosen > initial_score) or (mode == "min" and not chosen < initial_score):
            best = 0
    if best == 0:
        model.set_weights(initial_weights)
    return TrainResult(
        history={k: [float(v) for v in vals] for k, vals in history.items()},
        best_epoch=best,
        monitor=monitor,
        seconds=time.perf_counter() - start,
        max_epochs=epochs,
        class_weight=weights,
        initial_score=initial_score,
        diverged_epoch=guard.epoch,
    )


def predict_scores(model: keras.Model, x: np.ndarray, *, batch_size: int = 32, what: str | None = None) -> np.ndarray:
    """Predicted probabilities: shape ``(n,)`` (malignant) for binary models, ``(n, k)`` otherwise.

    Never NaN: scores that are not finite (a diverged model, an overflow in low precision) raise
    an error naming ``what`` (default: the model's name and the precision it computes in).
    """
    scores = extract_features(model, x, batch_size=batch_size, desc=f"scoring {len(x)} images").astype(np.float64)
    bad = ~np.isfinite(scores).all(axis=tuple(range(1, scores.ndim)))
    if bad.any():
        what = what or f"{model.name} ({model.dtype_policy.name})"
        raise ValueError(f"{what} gave scores that are not finite for {int(bad.sum())} of {len(bad)} images: "
                         "its training diverged or its arithmetic overflowed; retrain it (e.g. in float32 with "
                         "BUSUTILS_PRECISION=float32, or a smaller learning rate)")
    return scores[:, 0] if scores.shape[-1] == 1 else scores


def extract_features(extractor: keras.Model, x: np.ndarray, *, batch_size: int = 32, dtype=np.float32,
                     desc: str | None = None) -> np.ndarray:
    """Run a frozen part of a network once over ``x``; results in ``dtype`` (float32 by default),
    whatever the precision the network computes in.

    ``x`` may be greyscale ``uint8`` images ``(n, h, w)``, converted batch by batch (so that
    thousands of images never sit in memory as float32), or arrays of any float type.  Results
    are written batch by batch into one array.  Runs eagerly: the convolutions dominate, and no
    graph is traced for a model that runs once.  A long run shows a progress bar saying ``desc``
    (default: the model's name).
    """
    x = np.asarray(x)
    prepare = to_model_input if x.ndim == 3 else to_float32
    out = None
    starts = range(0, len(x), batch_size)
    for start in progress(starts, desc=desc or f"{extractor.name} on {len(x)} images", unit="batch"):
        batch = to_float32(extractor(prepare(x[start:start + batch_size]), training=False))
        if out is None:
            out = np.empty((len(x), *batch.shape[1:]), dtype=dtype)
        out[start:start + len(batch)] = batch
    return out if out is not None else np.zeros((0,), dtype=dtype)


def save_model_atomic(model: keras.Model, path: str | Path) -> Path:
    """Save a ``.keras`` model so that an interrupted save never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".keras", dir=path.parent)
    os.close(fd)
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
