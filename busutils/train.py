"""Training: seeds, input pipelines, class weights, early stopping and best-epoch checkpoints.

Training works on any compiled Keras model and on either images or precomputed features
(e.g. VGG16 "bottleneck" features), so the same :func:`fit` trains the baseline CNN, a
classifier head on cached features, and the fine-tuned VGG16.  Class imbalance is handled
with class weights ("balanced", inversely proportional to class frequency), not by
resampling, so every epoch sees every training image once.
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
    """A ``tf.data`` pipeline of batches; ``augmentation`` (training data only) is applied per batch."""
    import tensorflow as tf

    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} items but y has {len(y)}")
    data = tf.data.Dataset.from_tensor_slices((x, np.asarray(y)))
    if shuffle:
        data = data.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    data = data.batch(batch_size)
    if augmentation is not None:
        # Sequential map: the random layers keep their seeded state, so runs repeat exactly.
        data = data.map(lambda images, labels: (augmentation(images, training=True), labels))
    return data.prefetch(2)


@dataclass
class TrainResult:
    """What a training run produced: per-epoch history, the best epoch and how long it took."""

    history: dict[str, list[float]]
    best_epoch: int  # 1-based epoch whose weights the model now holds
    monitor: str
    seconds: float
    class_weight: dict[int, float] | None = None
    epochs_run: int = field(init=False)

    def __post_init__(self) -> None:
        self.epochs_run = len(next(iter(self.history.values()), []))


def _monitor_for(model: keras.Model) -> tuple[str, str]:
    """Binary models are selected by validation AUC (compiled as metric "auc"), others by loss."""
    if model.outputs[0].shape[-1] == 1:
        return "val_auc", "max"
    return "val_loss", "min"


def fit(
    model: keras.Model,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    *,
    epochs: int,
    batch_size: int,
    augmentation: keras.Layer | None = None,
    patience: int = 8,
    reduce_lr_patience: int | None = None,
    monitor: str | None = None,
    balance_classes: bool = True,
    checkpoint: str | Path | None = None,
    seed: int = 0,
    verbose: int | str = 2,
) -> TrainResult:
    """Train ``model`` with early stopping on the validation data and keep its best epoch.

    The model ends holding the weights of the best validation epoch (validation AUC for binary
    tasks, validation loss otherwise); they are also saved to ``checkpoint`` (a ``.keras``
    file) when given.  ``augmentation`` is applied to the training batches only.  With
    ``reduce_lr_patience``, the learning rate halves after that many epochs without progress.
    ``monitor`` overrides the validation quantity that selects the best epoch (e.g. "val_loss").
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    x_train, y_train = train
    n_classes = max(2, int(model.outputs[0].shape[-1]))
    weights = class_weights(y_train, n_classes) if balance_classes else None
    if monitor is None:
        monitor, mode = _monitor_for(model)
    else:
        mode = "min" if monitor.endswith("loss") else "max"
    tmp_dir = None
    if checkpoint is None:
        tmp_dir = tempfile.TemporaryDirectory(prefix="busutils-ckpt-")
        checkpoint = Path(tmp_dir.name) / "best.keras"
    callbacks = [
        keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=patience, restore_best_weights=True),
        keras.callbacks.ModelCheckpoint(str(checkpoint), monitor=monitor, mode=mode, save_best_only=True),
    ]
    if reduce_lr_patience:
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor=monitor, mode=mode, factor=0.5,
                                                           patience=reduce_lr_patience, min_lr=1e-5))
    start = time.perf_counter()
    try:
        history = model.fit(
            make_dataset(x_train, y_train, batch_size=batch_size, augmentation=augmentation, shuffle=True, seed=seed),
            validation_data=make_dataset(val[0], val[1], batch_size=batch_size),
            epochs=epochs,
            class_weight=weights,
            callbacks=callbacks,
            shuffle=False,  # the tf.data pipeline shuffles, seeded
            verbose=verbose,
        ).history
    finally:
        if tmp_dir is not None:
            tmp_dir.cleanup()
    scores = history[monitor]
    best = int(np.nanargmax(scores) if mode == "max" else np.nanargmin(scores))
    return TrainResult(
        history={k: [float(v) for v in vals] for k, vals in history.items()},
        best_epoch=best + 1,
        monitor=monitor,
        seconds=time.perf_counter() - start,
        class_weight=weights,
    )


def predict_scores(model: keras.Model, x: np.ndarray, *, batch_size: int = 32) -> np.ndarray:
    """Predicted probabilities: shape ``(n,)`` (malignant) for binary models, ``(n, k)`` otherwise."""
    scores = np.asarray(model.predict(x, batch_size=batch_size, verbose=0), dtype=np.float64)
    return scores[:, 0] if scores.shape[-1] == 1 else scores


def extract_features(extractor: keras.Model, x: np.ndarray, *, batch_size: int = 32) -> np.ndarray:
    """Run a frozen feature extractor once over ``x`` (e.g. VGG16's bottleneck features)."""
    return np.asarray(extractor.predict(x, batch_size=batch_size, verbose=0), dtype=np.float32)


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
