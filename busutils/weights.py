"""Where VGG16's pre-trained weights come from: one resolution order, recorded with every run.

A "VGG16" trained from random weights is not transfer learning, so every run records where its
weights came from and every table flags random ones.  :func:`resolve_vgg16_weights` decides, in
this order:

1. an explicit argument: a path to a weights file, or ``"none"`` for random weights;
2. the environment variable ``VGG16_WEIGHTS``: a path to a VGG16 no-top weights file (how the
   book is built on machines without internet);
3. Keras' own cache and download (``weights="imagenet"``), as every reader online gets them;
4. only when ``strict=False`` (the ``quick`` profile): random weights, with a loud warning.

A file given by argument or by ``VGG16_WEIGHTS`` that is missing, not HDF5, or holds weights of
the wrong shapes is an error naming the file, never a silent fall-back to random weights.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from .download import file_hash

__all__ = [
    "ENV_VAR",
    "RandomInitWarning",
    "VGG16_NOTOP_FILE",
    "VGG16_NOTOP_URL",
    "WeightsSource",
    "WeightsUnavailableError",
    "imagenet_cache_path",
    "is_imagenet",
    "load_into",
    "resolve_vgg16_weights",
]

ENV_VAR = "VGG16_WEIGHTS"

#: File name, origin and MD5 that ``keras.applications.VGG16(include_top=False)`` uses.
VGG16_NOTOP_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
VGG16_NOTOP_URL = "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/" + VGG16_NOTOP_FILE
VGG16_NOTOP_MD5 = "6d6bbae143d832006294945121d1f1fc"

#: ``block1_conv1`` kernel[0, 0, :, 0] of the ImageNet VGG16 weights Keras publishes: a trained
#: network would not keep these to six digits, so they identify pre-trained ImageNet weights.
IMAGENET_FINGERPRINT = (0.42947057, 0.55037946, 0.4800154)


class WeightsUnavailableError(RuntimeError):
    """ImageNet weights were asked for but are nowhere to be found."""


class RandomInitWarning(UserWarning):
    """A pre-trained network fell back to random initialisation."""


@dataclass(frozen=True)
class WeightsSource:
    """A weights file to load (``None``: random initialisation) and how to describe it."""

    path: Path | None
    origin: str  # "argument", "VGG16_WEIGHTS", "keras" or "random"
    reason: str = ""  # why random weights, when they are

    @property
    def is_random(self) -> bool:
        return self.path is None


def imagenet_cache_path() -> Path:
    """Where Keras keeps the VGG16 no-top ImageNet weights: ``$KERAS_HOME/models/...``."""
    try:
        from keras.src.backend.config import keras_home  # the value Keras itself uses

        home = keras_home()
    except ImportError:  # pragma: no cover - another Keras layout
        home = os.environ.get("KERAS_HOME", os.path.join("~", ".keras"))
    return Path(os.path.expanduser(home)) / "models" / VGG16_NOTOP_FILE


def _how_to_get_weights(reason: str) -> str:
    return (
        f"VGG16 ImageNet weights are unavailable ({reason}).\n"
        f"Download {VGG16_NOTOP_URL} on a machine with internet, then either\n"
        f"  - set the environment variable {ENV_VAR}=/path/to/{VGG16_NOTOP_FILE}, or\n"
        f"  - pass it explicitly (the chapters' `weights` parameter, or `--weights PATH` on the command line), or\n"
        f"  - put it into Keras' cache at {imagenet_cache_path()}."
    )


def _checked_file(path: str | os.PathLike, where: str) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"{where}: VGG16 weights file not found: {path} "
            f"(expected a VGG16 no-top weights file such as {VGG16_NOTOP_FILE})"
        )
    import h5py

    if not h5py.is_hdf5(path):
        raise ValueError(
            f"{where}: {path} is not an HDF5 weights file; give a VGG16 no-top weights file "
            f"such as {VGG16_NOTOP_FILE} (Keras' .h5 or .weights.h5 format)"
        )
    return path


def resolve_vgg16_weights(weights: str | os.PathLike | None = "imagenet", *, strict: bool = True) -> WeightsSource:
    """Decide which VGG16 weights to load, in the order of this module's docstring.

    ``weights`` is ``"imagenet"`` (pre-trained: ``$VGG16_WEIGHTS``, else Keras' cache or
    download), a path to a weights file, or ``None``/``"none"``/``"random"`` for random
    initialisation (as ``weights=None`` means in Keras).
    """
    if weights is None or (isinstance(weights, str) and weights.lower() in ("none", "random")):
        return WeightsSource(None, "random", f"weights={weights!r} asked for random initialisation")
    if not (isinstance(weights, str) and weights == "imagenet"):
        return WeightsSource(_checked_file(weights, "weights argument"), "argument")
    env = os.environ.get(ENV_VAR, "")
    if env:
        return WeightsSource(_checked_file(env, ENV_VAR), ENV_VAR)
    try:
        path = keras.utils.get_file(VGG16_NOTOP_FILE, VGG16_NOTOP_URL, cache_subdir="models",
                                    file_hash=VGG16_NOTOP_MD5)
        return WeightsSource(Path(path), "keras")
    except Exception as err:  # no network, a proxy, a bad download: all end here
        reason = f"{type(err).__name__}: {err}"
        reason = reason if len(reason) <= 200 else reason[:197] + "..."
    if strict:
        raise WeightsUnavailableError(_how_to_get_weights(reason))
    bar = "=" * 78
    warnings.warn(
        f"\n{bar}\nRANDOM INITIALISATION -- this VGG16 is NOT pre-trained.\n{_how_to_get_weights(reason)}\n"
        f"Results of this run are NOT transfer learning and are not comparable with the paper.\n{bar}",
        RandomInitWarning,
        stacklevel=2,
    )
    return WeightsSource(None, "random", f"imagenet unavailable: {reason}")


def is_imagenet(model: keras.Model) -> bool:
    """Whether ``model``'s ``block1_conv1`` holds Keras' published ImageNet values."""
    kernel = keras.ops.convert_to_numpy(model.get_layer("block1_conv1").kernel)
    return bool(np.allclose(kernel[0, 0, :, 0], IMAGENET_FINGERPRINT, rtol=0, atol=1e-6))


def load_into(model: keras.Model, source: WeightsSource) -> str:
    """Load ``source`` into a VGG16 ``model`` (layers named as Keras names them); return its description.

    The description is what results files record and chapters print, e.g.
    ``"imagenet (file vgg16_..._notop.h5 from VGG16_WEIGHTS, sha256 5ffcc3e2b95a)"`` or
    ``"random (imagenet unavailable: ...)"``.
    """
    if source.is_random:
        return f"random ({source.reason})"
    where = ENV_VAR if source.origin == ENV_VAR else "weights argument" if source.origin == "argument" else "Keras cache"
    try:
        model.load_weights(str(source.path))
    except Exception as err:  # wrong shapes or layer names, a damaged file
        raise ValueError(
            f"{where}: {source.path} does not hold VGG16 no-top weights of the right shapes "
            f"({type(err).__name__}: {str(err)[:300]})"
        ) from err
    sha = file_hash(source.path)[:12]
    if source.origin == "keras":
        return f"imagenet (Keras download, sha256 {sha})"
    via = f" from {ENV_VAR}" if source.origin == ENV_VAR else ""
    if is_imagenet(model):
        return f"imagenet (file {source.path.name}{via}, sha256 {sha})"
    return f"not ImageNet's weights (file {source.path.name}{via}, sha256 {sha})"
