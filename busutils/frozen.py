"""The frozen front of the VGG16 models: built once, run once per image, its activations cached.

Both VGG16 models keep VGG16's first blocks frozen: the feature extractor (approach 2) all of
them, fine-tuning (approach 3) all but the layers it trains.  The output of the last frozen layer
is then the same for a given image at every epoch, in every chapter and every fold, so it is
computed once and kept on disk (:class:`busutils.cache.ActivationStore`); only the layers after
it run while the model learns.  :class:`FrozenVGG16` owns that idea from end to end:

* it builds the whole model, and the three parts it is cut into (the frozen ``front``, the
  ``pooler`` from the front to the classifier's features, and the trainable ``back``), inside one
  precision scope, so that every part computes as the whole model does;
* it caches activations under a key made from the network itself -- its layers, their dtype
  policies, its input and a digest of its weights -- so that no caller can file one network's
  activations under another's name;
* it trains the classifier on pooled features (:meth:`FrozenVGG16.train_head`) and fine-tunes
  the back on cached activations of augmented copies (:meth:`FrozenVGG16.finetune`).
"""

from __future__ import annotations

import hashlib
import json

import keras
import numpy as np

from .cache import ActivationStore
from .data import Dataset
from .models import (IMAGENET_BGR_MEAN, VGG16_LAYERS, build_model, chain, classifier_head, compile_for,
                     feature_layers, fit_standardisation, frozen_until, make_optimizer, set_head_weights)
from .precision import precision_scope, to_float32
from .profiles import Profile
from .train import TrainResult, extract_features, fit, predict_scores

__all__ = ["CopiesSequence", "FrozenVGG16", "network_key"]

VGG16_NAMES = ("vgg16-transfer", "vgg16-finetune")


def network_key(model: keras.Model) -> dict:
    """What a network computes, as plain data: its layers with their configuration and dtype
    policy, its input shape and a digest of its weights.

    Two networks with equal keys give equal outputs for equal inputs, so the key can address
    cached activations: weights, precision, image size or preprocessing that differ give
    another key, whatever a caller believes the network to be.
    """
    digest = hashlib.sha256()
    for weight in model.weights:
        value = np.ascontiguousarray(keras.ops.convert_to_numpy(weight))
        digest.update(f"{weight.path}:{value.dtype}:{value.shape}".encode())
        digest.update(value.tobytes())
    layers = []
    for layer in model.layers:
        config = layer.get_config()
        for key in ("name", "trainable"):  # neither changes what the layer computes
            config.pop(key, None)
        config.pop("dtype", None)  # recorded below as the policy's name
        layers.append({"name": layer.name, "class": type(layer).__name__, "policy": layer.dtype_policy.name,
                       "config": json.loads(json.dumps(config, sort_keys=True, default=str))})
    return {"input_shape": list(model.inputs[0].shape[1:]), "layers": layers, "weights_sha256": digest.hexdigest(),
            "preprocessing_means": list(IMAGENET_BGR_MEAN)}


class CopiesSequence(keras.utils.PyDataset):
    """Training batches from ``copies`` of every item: each epoch shows one copy of each.

    ``x`` has shape ``(n, k, ...)`` -- e.g. cached VGG16 activations of ``k`` augmented copies
    of ``n`` training images.  Epoch ``e`` takes copy ``(offset_i + e) mod k`` of item ``i``
    (random offsets, fixed by ``seed``), so every copy is used in turn, in a fresh order.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, *, batch_size: int, seed: int = 0):
        super().__init__()
        if len(x) != len(y) or x.ndim < 2:
            raise ValueError(f"x must have shape (n, copies, ...) with n = len(y); got {x.shape} for {len(y)} labels")
        self.x, self.labels, self.batch_size = x, np.asarray(y), batch_size
        self.rng = np.random.default_rng(seed)
        self.offsets = self.rng.integers(x.shape[1], size=len(y))
        self.epoch = 0
        self._shuffle()

    def _shuffle(self) -> None:
        self.order = self.rng.permutation(len(self.labels))
        self.copy = (self.offsets + self.epoch) % self.x.shape[1]

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    def __getitem__(self, index: int):
        rows = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        return to_float32(self.x[rows, self.copy[rows]]), self.labels[rows]

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self._shuffle()


class FrozenVGG16:
    """A VGG16 model of ``name`` as ``settings`` describe it, cut where its frozen layers end.

    ``model`` is the whole network (images in, scores out; its classifier untrained until
    :meth:`train_head`); ``layer`` is its last frozen layer (``frozen_until(finetune_layers)``);
    ``front``, ``pooler`` and ``back`` are parts of ``model`` that share its weights.  All are
    built inside the precision scope of ``settings.precision``, whose policy is ``policy``.
    ``weights`` overrides ``settings.weights``; ``weights_used`` says where they came from.
    """

    def __init__(self, settings: Profile, *, name: str = "vgg16-transfer", n_classes: int = 2, seed: int = 0,
                 weights: str | None = None):
        if name not in VGG16_NAMES:
            raise ValueError(f"FrozenVGG16 builds {' or '.join(VGG16_NAMES)}, not {name!r}")
        self.layer = frozen_until(settings.finetune_layers)
        early = [f for f in feature_layers(settings.head_features)
                 if VGG16_LAYERS.index(f) < VGG16_LAYERS.index(self.layer)]
        if early:
            raise ValueError(f"head_features={settings.head_features!r} reads {', '.join(early)}, before "
                             f"{self.layer}, the frozen part's cached output (finetune_layers="
                             f"{settings.finetune_layers!r}): read later blocks or fine-tune from an earlier layer")
        options = ({"learning_rate": settings.head_learning_rate, "optimizer": settings.baseline_optimizer}
                   if name == "vgg16-transfer" else
                   {"learning_rate": settings.finetune_learning_rate, "momentum": settings.momentum,
                    "clipnorm": settings.finetune_clipnorm, "trainable_layers": settings.finetune_layers})
        shape = (settings.image_size, settings.image_size, 3)
        with precision_scope(settings.precision) as policy:
            self.model, self.weights_used = build_model(
                name, shape, n_classes, weights=weights or settings.weights, strict=settings.strict_weights,
                seed=seed, hidden=settings.head_hidden, dropout=settings.dropout, l2=settings.head_l2,
                features=settings.head_features, **options)
            self.front = chain(self.model, until=self.layer)
            self.pooler = chain(self.model, after=self.layer, until="features")
            self.back = chain(self.model, after=self.layer)
        self.name, self.policy, self.n_classes, self.batch_size = name, policy, n_classes, settings.batch_size

    def set_weights_from(self, model: keras.Model) -> None:
        """Give ``model``'s weights (e.g. a saved run of the same architecture) to this network."""
        self.model.set_weights(model.get_weights())
        self.model.get_layer("head").get_layer("head_norm").finalize_state()

    # ------------------------------------------------------------------ cached activations

    def activations(self, images: np.ndarray) -> np.ndarray:
        """The frozen part's output for ``images``, as the cache stores it: float16, to keep the
        maps of thousands of augmented copies in memory once; :func:`busutils.precision.to_float32`
        turns a batch of them back into what the layers after take."""
        store = ActivationStore({"network": network_key(self.front)}, dtype="float16")
        return store.get(images, lambda x: extract_features(
            self.front, x, batch_size=self.batch_size, dtype=np.float16,
            desc=f"VGG16 up to {self.layer} on {len(x)} new images (cached)"))

    def pooled(self, images: np.ndarray) -> np.ndarray:
        """The classifier's input for ``images`` (float32): pooled features of the blocks it reads, cached.

        Keyed by the front and the pooler as they are now: after fine-tuning, the pooler's
        weights have changed, and so has the key.
        """
        store = ActivationStore({"network": network_key(self.pooler), "after": network_key(self.front)})
        return store.get(images, lambda x: extract_features(self.pooler, self.activations(x),
                                                            batch_size=self.batch_size))

    def predict(self, images: np.ndarray, *, batch_size: int | None = None, what: str | None = None) -> np.ndarray:
        """The whole model's scores for ``images``, read through the cached front (rounded to float16).

        ``what`` names the model in the error raised for scores that are not finite.
        """
        return predict_scores(self.back, self.activations(np.asarray(images)),
                              batch_size=batch_size or self.batch_size, what=what or f"{self.name} ({self.policy})")

    # ------------------------------------------------------------------ training

    def train_head(self, copies: np.ndarray, labels: np.ndarray, val: Dataset, settings: Profile, *,
                   seed: int = 0, verbose: int | str = 2) -> TrainResult:
        """Train the classifier alone on the pooled features of ``copies`` ``(n, k, h, w)`` of the
        training images (the paper's approach 2), then give it to ``model``.

        The classifier is a float32 model of its own (:func:`busutils.models.classifier_head`):
        its features are standardised with the training copies' statistics first.
        """
        n, k = copies.shape[:2]
        x_train = self.pooled(copies.reshape(-1, *copies.shape[2:]))
        head = classifier_head(x_train.shape[1:], self.n_classes, hidden=settings.head_hidden,
                               dropout=settings.dropout, l2=settings.head_l2, seed=seed)
        fit_standardisation(head, x_train)
        compile_for(head, self.n_classes, make_optimizer(settings.baseline_optimizer, settings.head_learning_rate))
        result = fit(head, (x_train, np.repeat(labels, k)), (self.pooled(val.images), val.labels),
                     epochs=settings.head_epochs, batch_size=settings.batch_size, patience=settings.patience,
                     restore_best=settings.restore_best, balance_classes=settings.balance_classes, seed=seed,
                     verbose=verbose)
        set_head_weights(self.model, head)
        return result

    def copies_sequence(self, copies: np.ndarray, labels: np.ndarray, *, seed: int = 0) -> CopiesSequence:
        """Batches of cached activations of ``copies`` ``(n, k, h, w)``, one copy of each image per epoch."""
        n, k = copies.shape[:2]
        maps = self.activations(copies.reshape(-1, *copies.shape[2:]))
        return CopiesSequence(maps.reshape(n, k, *maps.shape[1:]), labels, batch_size=self.batch_size, seed=seed)

    def compiled_back(self, settings: Profile) -> keras.Model:
        """The trainable back compiled for fine-tuning: SGD with the profile's learning rate, momentum
        and gradient clipping (and loss scaling where it computes in float16)."""
        with precision_scope(self.policy):
            optimizer = make_optimizer("sgd", settings.finetune_learning_rate, momentum=settings.momentum,
                                       global_clipnorm=settings.finetune_clipnorm)
            return compile_for(self.back, self.n_classes, optimizer)

    def finetune(self, copies: np.ndarray, labels: np.ndarray, val: Dataset, settings: Profile, *,
                 seed: int = 0, verbose: int | str = 2) -> TrainResult:
        """Train the unfrozen layers and the classifier together on cached activations of ``copies``
        (the paper's approach 3), one copy of each training image per epoch.

        The model as it was before (the classifier alone) stays a candidate: it is kept when no
        epoch beats it on ``val``, or when fine-tuning diverges before any epoch does.
        """
        back = self.compiled_back(settings)
        val_data = (to_float32(self.activations(val.images)), val.labels)
        return fit(back, self.copies_sequence(copies, labels, seed=seed), val_data,
                   epochs=settings.finetune_epochs, batch_size=settings.batch_size, keep_initial=True,
                   patience=settings.patience, restore_best=settings.restore_best,
                   reduce_lr_patience=settings.reduce_lr_patience, balance_classes=settings.balance_classes,
                   seed=seed, verbose=verbose)
