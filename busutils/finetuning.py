"""Fine-tuning step by step: which layers train, why Keras must compile again, how large the steps are.

:func:`busutils.models.freeze_except` is the freezing loop.  :func:`recompile_matters` shows on a tiny model
that Keras reads the layers' ``trainable`` flags when a model is compiled, not when it trains.
:class:`LayerwiseSGD` gives each layer its own learning rate (smaller for earlier layers,
"discriminative fine-tuning", Howard & Ruder 2018).  :func:`finetune_sweep` fine-tunes one
model from the same start with several learning rates and measures how far each run moves
the pre-trained weights: the "small steps" of fine-tuning, on the page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import keras
import numpy as np

from .augment import augmented_copies
from .crossval import _quiet_retracing
from .models import compile_for, finetune_layer_names, freeze_except, make_optimizer
from .precision import precision_scope, to_float32
from .train import fit

__all__ = ["LayerwiseSGD", "finetune_sweep", "freeze_except", "recompile_matters", "weight_change"]


def recompile_matters(seed: int = 0) -> dict[str, bool]:
    """Does a layer's weight change in training after its ``trainable`` flag changed, without and with a new ``compile``?

    A two-layer model is compiled and trained, its first layer frozen, trained again, then
    compiled again and trained once more.  Returns whether the frozen layer's weights moved
    ``"frozen, not recompiled"`` and ``"frozen, recompiled"``.  With Keras 3 the first is true:
    the training step was built at the first ``compile`` and still holds the old list of
    trainable weights.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(32, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("float32")
    inputs = keras.Input((4,))
    first = keras.layers.Dense(3, name="first", kernel_initializer=keras.initializers.GlorotUniform(seed))
    outputs = keras.layers.Dense(1, activation="sigmoid", dtype="float32",
                                 kernel_initializer=keras.initializers.GlorotUniform(seed + 1))(first(inputs))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="binary_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    moved = {}
    first.trainable = False
    for case in ("frozen, not recompiled", "frozen, recompiled"):
        if case == "frozen, recompiled":
            model.compile(optimizer=keras.optimizers.SGD(0.1), loss="binary_crossentropy")
        before = keras.ops.convert_to_numpy(first.kernel).copy()
        model.fit(x, y, epochs=1, verbose=0)
        moved[case] = not np.allclose(before, keras.ops.convert_to_numpy(first.kernel))
    return moved


@keras.saving.register_keras_serializable(package="busutils")
class LayerwiseSGD(keras.optimizers.SGD):
    """SGD whose learning rate is multiplied, for the weights of each layer named in ``multipliers``, by its factor.

    ``multipliers`` maps layer names to factors (e.g. ``{"block5_conv1": 0.1}``); a name also
    covers the layers whose names start with it (``"head"``: ``head_dense``, ``head_output``),
    the longest matching name winning.  Weights of other layers take the learning rate
    unchanged.  Keras calls ``update_step`` once per weight, so scaling its learning rate there
    is all it takes.
    """

    def __init__(self, learning_rate: float = 0.01, momentum: float = 0.0, *,
                 multipliers: Mapping[str, float] | None = None, **kwargs):
        super().__init__(learning_rate=learning_rate, momentum=momentum, **kwargs)
        self.multipliers = {str(k): float(v) for k, v in (multipliers or {}).items()}
        bad = {k: v for k, v in self.multipliers.items() if not v > 0}
        if bad:
            raise ValueError(f"multipliers must be positive, got {bad}")

    def build(self, variables):
        super().build(variables)
        # one factor per weight, in the optimizer's own order (a weight's path starts with its layer)
        self._factors = [self.factor(v.path.split("/")[0]) for v in variables]

    def factor(self, layer: str) -> float:
        """The multiplier of the learning rate for the weights of the layer named ``layer``."""
        names = [name for name in self.multipliers if layer.startswith(name)]
        return self.multipliers[max(names, key=len)] if names else 1.0

    def update_step(self, gradient, variable, learning_rate):
        factor = self._factors[self._get_variable_index(variable)]
        return super().update_step(gradient, variable, learning_rate * factor)

    def get_config(self):
        return {**super().get_config(), "multipliers": self.multipliers}


def _optimizer(rates: float | Mapping[str, float], momentum: float) -> keras.optimizers.Optimizer:
    """Plain SGD for one learning rate; :class:`LayerwiseSGD` for a learning rate per layer."""
    if isinstance(rates, Mapping):
        if not rates or min(rates.values()) <= 0:
            raise ValueError(f"learning rates must be positive, got {dict(rates)}")
        top = max(rates.values())
        return LayerwiseSGD(top, momentum, multipliers={k: v / top for k, v in rates.items()})
    if not rates > 0:
        raise ValueError(f"a learning rate must be positive, got {rates}")
    return make_optimizer("sgd", float(rates), momentum=momentum)


def weight_change(before: Sequence[np.ndarray], after: Sequence[np.ndarray]) -> float:
    """How far training moved a layer's weights: ``||after - before|| / ||before||`` over all its arrays."""
    if len(before) != len(after) or any(b.shape != a.shape for b, a in zip(before, after)):
        raise ValueError("before and after must hold the same arrays of the same shapes")
    moved = np.sqrt(sum(np.sum((np.asarray(a, np.float64) - b) ** 2) for b, a in zip(before, after)))
    size = np.sqrt(sum(np.sum(np.asarray(b, np.float64) ** 2) for b in before))
    return float(moved / size) if size > 0 else float("nan")


def finetune_sweep(frozen, split, settings, learning_rates: Mapping[str, float | Mapping[str, float]],
                   *, epochs: int, trainable: Sequence[str] | None = None, seed: int = 0) -> dict[str, dict]:
    """Fine-tune ``frozen.model`` once per entry of ``learning_rates``, each time from the same weights.

    ``frozen`` is a :class:`busutils.frozen.FrozenVGG16` whose classifier is trained (its
    cached activations feed the layers after ``frozen.layer``); ``trainable`` are the VGG16
    layers to unfreeze (default: the profile's ``finetune_layers``).  A learning rate is a
    number (SGD with the profile's momentum) or a mapping from layer name to rate
    (:class:`LayerwiseSGD`); no gradient clipping, so that the steps stay in proportion to the
    rates.  Every run trains ``epochs`` epochs on the cached activations of the training
    images' augmented copies, one copy per epoch, and is not stopped early.

    Returns, per entry, ``history`` (Keras'), ``initial_auc`` (validation AUC before training)
    and ``change`` (:func:`weight_change` of each unfrozen layer).  The model gets its starting
    weights back.
    """
    if int(epochs) != epochs or epochs < 1:
        raise ValueError(f"epochs must be a positive whole number, got {epochs}")
    model = frozen.model
    trainable = list(finetune_layer_names(settings.finetune_layers) if trainable is None else trainable)
    freeze_except(model, [*trainable, "head"])
    # every variable, the dropout's random state included (get_weights leaves it out), so that every
    # run draws the same dropout masks
    start = [keras.ops.convert_to_numpy(v).copy() for v in model.variables]
    copies = settings.augment_copies if settings.augmentation != "none" else 1
    images = augmented_copies(split.train.images, copies, settings.augmentation, seed=seed)
    val = (to_float32(frozen.activations(split.val.images)), split.val.labels)
    before = {name: [w.copy() for w in model.get_layer(name).get_weights()] for name in trainable}
    runs = {}
    with _quiet_retracing():  # new training steps, built in a loop on purpose
        try:
            for label, rates in learning_rates.items():
                _restore(model, start)
                with precision_scope(frozen.policy):
                    back = compile_for(frozen.back, frozen.n_classes, _optimizer(rates, settings.momentum))
                initial = back.evaluate(*val, batch_size=settings.batch_size, verbose=0, return_dict=True)
                train = frozen.copies_sequence(images, split.train.labels, seed=seed)  # the same batches each run
                result = fit(back, train, val, epochs=int(epochs), batch_size=settings.batch_size,
                             patience=None, restore_best=False, balance_classes=settings.balance_classes,
                             seed=seed, verbose=0)
                runs[label] = {"history": result.history, "initial_auc": float(initial["auc"]),
                               "rates": dict(rates) if isinstance(rates, Mapping) else float(rates),
                               "diverged_epoch": result.diverged_epoch,
                               "change": {name: weight_change(before[name], model.get_layer(name).get_weights())
                                          for name in trainable}}
        finally:
            _restore(model, start)
    return runs


def _restore(model: keras.Model, values: Sequence[np.ndarray]) -> None:
    for variable, value in zip(model.variables, values):
        variable.assign(value)
