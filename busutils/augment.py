"""Data augmentation for the *training* input pipeline only.

:func:`paper_augmentation` reproduces the transformations of Hijab et al. (2019): rotation
by 90/180/270 degrees, width/height shift, shear, zoom, horizontal flip, with
nearest-neighbour fill.  The paper names these operations but not their strengths, which
are the book's choice.  (It also lists "rescale", without saying how; scaling the pixel values
is not an augmentation here: each model brings its own input scaling, 1/255 in the baseline
CNN and VGG16's subtraction of the ImageNet channel means in the others.)  :func:`light_augmentation` is an ultrasound-aware alternative
without rotations: turning a B-mode image by 90 degrees swaps depth and width, so the
"taller-than-wide" shape cue and posterior acoustic shadowing lose their meaning.

The pipelines are :class:`keras.layers.Pipeline` objects, meant to be mapped over a
``tf.data`` dataset of training batches -- never part of a saved model::

    aug = make_augmentation("paper", seed=0)
    train_ds = train_ds.map(lambda x, y: (aug(x, training=True), y))

(``Pipeline`` rather than ``keras.Sequential`` because it stays ``tf.data``-compatible
under every Keras backend.)  Every layer is the identity when called with
``training=False``.  Images are float32 values 0..255, shape ``(H, W, 3)`` or batches.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from matplotlib.figure import Figure

__all__ = [
    "AUGMENTATION_KINDS",
    "RandomRightAngleRotation",
    "augmentation_grid",
    "augmented_copies",
    "light_augmentation",
    "make_augmentation",
    "paper_augmentation",
]

AUGMENTATION_KINDS = ("paper", "light", "none")

# Keras' built-in preprocessing layers derive from a (private) DataLayer that switches to
# TensorFlow ops when called inside tf.data, whatever the Keras backend.  Derive from it
# too when it exists, so this layer works in a tf.data pipeline under JAX as well; else
# fall back to a plain layer with keras.ops (enough under the TensorFlow backend).
try:  # Keras >= 3.12
    from keras.src.layers.preprocessing.data_layer import DataLayer as _DataLayer
except ImportError:  # pragma: no cover
    try:  # Keras 3.0 - 3.11
        from keras.src.layers.preprocessing.tf_data_layer import TFDataLayer as _DataLayer
    except ImportError:
        _DataLayer = None

_Base = _DataLayer if _DataLayer is not None else keras.layers.Layer


@keras.saving.register_keras_serializable(package="busutils")
class RandomRightAngleRotation(_Base):
    """Rotate each image by a random multiple of 90 degrees (0, 90, 180 or 270).

    Exact rotations (no interpolation), so only square images; the identity when
    ``training=False``.  Accepts one image ``(H, W, C)`` or a batch ``(N, H, W, C)``;
    each image of a batch draws its own angle.
    """

    def __init__(self, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)

    def _ops(self):
        """(numpy-like ops, random ops, seed generator) for the current context."""
        if _DataLayer is None:  # pragma: no cover
            return keras.ops, keras.random, self.generator
        backend = self.backend
        return backend.numpy, backend.random, self._get_seed_generator(backend.name)

    def call(self, inputs, training=True):
        shape = tuple(inputs.shape)
        if len(shape) not in (3, 4):
            raise ValueError(f"expected an image (H, W, C) or a batch (N, H, W, C), got {shape}")
        height, width = shape[-3], shape[-2]
        if height is not None and width is not None and height != width:
            raise ValueError(
                f"RandomRightAngleRotation needs square images, got {height}x{width}: "
                "a 90-degree turn would change the image shape"
            )
        if not training:
            return inputs
        np_ops, random, seed = self._ops()
        unbatched = len(shape) == 3
        x = np_ops.expand_dims(inputs, 0) if unbatched else inputs
        n = self.backend.core.shape(x)[0] if _DataLayer is not None else keras.ops.shape(x)[0]
        k = random.randint((n, 1, 1, 1), minval=0, maxval=4, dtype="int32", seed=seed)
        out = x
        for quarter_turns in (1, 2, 3):
            turned = np_ops.rot90(x, k=quarter_turns, axes=(1, 2))
            out = np_ops.where(np_ops.equal(k, quarter_turns), turned, out)
        return np_ops.squeeze(out, axis=0) if unbatched else out

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"seed": self.seed})
        return config


def _seeds(seed: int | None, n: int) -> list[int | None]:
    """One distinct seed per layer, so layers do not draw identical random numbers."""
    return [None if seed is None else int(seed) + i for i in range(n)]


def paper_augmentation(
    seed: int | None = None,
    *,
    rotate90: bool = True,
    shift: float = 0.1,
    shear: float = 0.2,
    zoom: float = 0.2,
    fill_mode: str = "nearest",
) -> keras.layers.Pipeline:
    """The augmentation of Hijab et al. (2019) as a Keras preprocessing pipeline.

    Right-angle rotation (if ``rotate90``; square images only), horizontal flip,
    width/height shift by up to ``shift`` of the size, shear by up to ``shear``, zoom in or
    out by up to ``zoom``; pixels entering the frame copy the nearest edge (``fill_mode``).
    """
    s = _seeds(seed, 5)
    steps = [RandomRightAngleRotation(seed=s[0], name="rotate90")] if rotate90 else []
    steps += [
        keras.layers.RandomFlip("horizontal", seed=s[1], name="flip"),
        keras.layers.RandomTranslation(shift, shift, fill_mode=fill_mode, seed=s[2], name="shift"),
        keras.layers.RandomShear(x_factor=shear, y_factor=shear, fill_mode=fill_mode, seed=s[3], name="shear"),
        keras.layers.RandomZoom(zoom, zoom, fill_mode=fill_mode, seed=s[4], name="zoom"),
    ]
    return keras.layers.Pipeline(steps, name="paper_augmentation")


def light_augmentation(
    seed: int | None = None,
    *,
    shift: float = 0.05,
    zoom: float = 0.1,
    brightness: float = 0.1,
    contrast: float = 0.1,
) -> keras.layers.Pipeline:
    """Ultrasound-aware augmentation: flip, small shift/zoom, slight brightness/contrast.

    No rotation: depth runs top to bottom in a B-mode image, and the shape ("taller than
    wide") and shadowing cues radiologists read depend on that orientation.  A horizontal
    flip keeps it.
    """
    s = _seeds(seed, 5)
    return keras.layers.Pipeline(
        [
            keras.layers.RandomFlip("horizontal", seed=s[0], name="flip"),
            keras.layers.RandomTranslation(shift, shift, fill_mode="nearest", seed=s[1], name="shift"),
            keras.layers.RandomZoom(zoom, zoom, fill_mode="nearest", seed=s[2], name="zoom"),
            keras.layers.RandomBrightness(brightness, value_range=(0, 255), seed=s[3], name="brightness"),
            keras.layers.RandomContrast(contrast, value_range=(0, 255), seed=s[4], name="contrast"),
        ],
        name="light_augmentation",
    )


def make_augmentation(kind: str | None, seed: int | None = None) -> keras.layers.Pipeline | None:
    """``"paper"`` -> :func:`paper_augmentation`, ``"light"`` -> :func:`light_augmentation`,
    ``None`` or ``"none"`` -> ``None`` (no augmentation)."""
    if kind is None or kind == "none":
        return None
    if kind == "paper":
        return paper_augmentation(seed)
    if kind == "light":
        return light_augmentation(seed)
    raise ValueError(f"unknown augmentation {kind!r}; valid: {', '.join(AUGMENTATION_KINDS)}")


def _seed_generators(augmentation) -> list[keras.random.SeedGenerator]:
    """The random-number generators of a pipeline's layers, in layer order."""
    return [
        value
        for layer in getattr(augmentation, "layers", [])
        for value in vars(layer).values()
        if isinstance(value, keras.random.SeedGenerator)
    ]


def augmented_copies(images: np.ndarray, n_copies: int, kind: str, *, seed: int = 0) -> np.ndarray:
    """``n_copies`` versions of each greyscale image, copy 0 the original: ``(n, n_copies, h, w)`` uint8.

    The paper enlarged its data with a fixed set of augmented copies; this makes such a set, for
    the *training* images only (augment after the split, never before).  Each copy depends only
    on its image's pixels, its copy number and ``seed``, not on the other images augmented with
    it, so a copy is the same in every chapter and cross-validation fold, and the activations of
    the frozen VGG16 layers for it are computed once (:mod:`busutils.cache`).
    """
    from .cache import image_digests
    from .progress import progress

    images = np.asarray(images)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be greyscale uint8 of shape (n, h, w), got {images.dtype} {images.shape}")
    if n_copies < 1:
        raise ValueError(f"n_copies must be at least 1 (copy 0 is the original), got {n_copies}")
    out = np.repeat(images[:, None], n_copies, axis=1)
    augmentation = make_augmentation(kind, seed) if n_copies > 1 else None
    if augmentation is None:
        return out
    generators = _seed_generators(augmentation)
    state_dtype = keras.ops.convert_to_numpy(generators[0].state.value).dtype
    call = lambda batch: augmentation(batch, training=True)  # noqa: E731
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        call = tf.function(call, autograph=False)  # one traced graph instead of an eager call per image
    digests = image_digests(images)
    for i, digest in progress(enumerate(digests), total=len(digests), unit="image",
                              desc=f"{n_copies - 1} {kind} augmented copies of {len(digests)} images"):
        grey = images[i, None, :, :, None].astype(np.float32)  # one channel: three would triple the work
        for k in range(1, n_copies):
            image_seed = (int(digest[:12], 16) ^ (1_000_003 * seed + k)) % 2**48
            for j, generator in enumerate(generators):
                generator.state.assign(np.array([image_seed, j], dtype=state_dtype))
            copy = keras.ops.convert_to_numpy(call(grey))[0, :, :, 0]
            out[i, k] = np.clip(np.rint(copy), 0, 255).astype(np.uint8)
    return out


def augmentation_grid(
    image,
    augmentation,
    n: int = 8,
    *,
    seed: int | None = 0,
    title: str | None = None,
    ncols: int = 3,
) -> Figure:
    """A figure of ``n`` augmented versions of one image, the original first.

    ``augmentation`` is a pipeline, a kind for :func:`make_augmentation`, or any callable
    taking ``(batch, training=True)``.  With an integer ``seed`` the pipeline's random
    generators restart from it for this figure (and are restored afterwards), so the
    figure is reproducible and the pipeline's own random stream is left alone.
    """
    img = np.asarray(image, dtype="float32")
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    if img.ndim != 3:
        raise ValueError(f"expected one image (H, W) or (H, W, C), got shape {img.shape}")
    if isinstance(augmentation, str) or augmentation is None:
        name = augmentation or "none"
        augmentation = make_augmentation(augmentation, seed)
        if augmentation is None:
            raise ValueError("augmentation_grid needs an augmentation, got 'none'")
    else:
        name = getattr(augmentation, "name", type(augmentation).__name__)
    # Restart the layers' generators from ``seed`` for this figure, then put their states
    # back: the figure is reproducible and the pipeline's own random stream is untouched.
    generators = _seed_generators(augmentation) if seed is not None else []
    saved = [keras.ops.convert_to_numpy(g.state.value) for g in generators]
    for i, g in enumerate(generators):
        g.state.assign(np.array([seed + i, 0], dtype=saved[i].dtype))
    try:
        batch = np.repeat(img[None], n, axis=0)
        augmented = keras.ops.convert_to_numpy(augmentation(batch, training=True))
    finally:
        for g, state in zip(generators, saved):
            g.state.assign(state)

    panels = [("original", img)] + [(f"augmented {i}", a) for i, a in enumerate(augmented, start=1)]
    cols = min(ncols, len(panels))
    rows = math.ceil(len(panels) / cols)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, cols, squeeze=False, layout="constrained",
                             figsize=(2.6 * cols, 2.6 * rows + (0.4 if title else 0)))
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, (label, panel) in zip(axes.flat, panels):
        ax.imshow(np.clip(panel, 0, 255).astype("uint8"))
        ax.set_title(label, fontsize=9)
    fig.suptitle(title if title is not None else f"{n} draws of {name}")
    return fig
