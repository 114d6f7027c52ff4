"""A synthetic breast-ultrasound phantom: the book's built-in data set when no real data are given.

Each image imitates a B-mode scan from a linear probe: tissue layers (skin line, subcutaneous
fat, fibroglandular tissue, pectoral muscle) with gently wavy boundaries, depth attenuation
with a partial time-gain compensation, and speckle, i.e. the Rayleigh-distributed envelope of
smoothed complex Gaussian noise, followed by log compression to 8-bit grey levels.

Lesion images contain exactly one hypoechoic (dark) lesion whose look follows the BI-RADS
ultrasound lexicon (see :class:`LesionFeatures`): benign lesions tend to be oval, circumscribed,
parallel (wider than tall), uniformly hypoechoic, often with posterior enhancement; malignant ones tend
to be irregular, angular or spiculated, non-parallel (taller than wide), heterogeneous, often
with posterior shadowing.  ``difficulty`` makes the two classes overlap, so a classifier cannot
be perfect, and lowers lesion contrast a little.

The phantom is a teaching device, not a physical simulation (no beam forming, no wave
propagation) and certainly not a substitute for real data.  Everything is vectorised numpy;
one 224 x 224 image with its mask takes about 3 ms on one core
(``python benchmarks/bench_phantom.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

__all__ = [
    "CLASSES",
    "LesionFeatures",
    "sample_features",
    "phantom_image",
    "make_phantom",
    "write_busi_layout",
]

CLASSES: tuple[str, ...] = ("benign", "malignant", "normal")

SHAPES = ("oval", "round", "irregular")
MARGINS = ("circumscribed", "angular", "spiculated")
ORIENTATIONS = ("parallel", "non-parallel")
ECHOES = ("hypoechoic", "heterogeneous")
POSTERIORS = ("enhancement", "none", "shadowing")

# Typical BI-RADS descriptors per class as (values, probabilities).  ``sample_features`` draws
# each descriptor from its own class's row, or - with a probability growing with difficulty -
# from the other class's row.
_TYPICAL: dict[str, dict[str, tuple[tuple[str, ...], tuple[float, ...]]]] = {
    "benign": {
        "shape": (("oval", "round"), (0.7, 0.3)),
        "margin": (("circumscribed",), (1.0,)),
        "orientation": (("parallel",), (1.0,)),
        "echo": (("hypoechoic",), (1.0,)),
        "posterior": (("enhancement", "none"), (0.6, 0.4)),
    },
    "malignant": {
        "shape": (("irregular",), (1.0,)),
        "margin": (("angular", "spiculated"), (0.5, 0.5)),
        "orientation": (("non-parallel",), (1.0,)),
        "echo": (("heterogeneous",), (1.0,)),
        "posterior": (("shadowing", "none"), (0.6, 0.4)),
    },
}

# Default class proportions, roughly those of BUSI (437 benign, 210 malignant, 133 normal).
_BUSI_PROPORTIONS = {"benign": 437, "malignant": 210, "normal": 133}

# Fixed numbers of random draws per lesion, so that the random stream - and hence the
# background, position and size - does not depend on the descriptors (see ``phantom_image``).
_N_HARMONICS = 4  # low-order boundary harmonics (irregular shape)
_N_VERTICES = 8  # polygon vertices (angular margin)
_N_SPICULES = 14  # maximum number of spicules
_N_CALCS = 5  # maximum number of bright specks in a heterogeneous lesion
_N_ANGLES = 1024  # angular resolution of the tabulated lesion boundary


@dataclass(frozen=True)
class LesionFeatures:
    """BI-RADS ultrasound descriptors of one lesion.

    Attributes
    ----------
    shape : {"oval", "round", "irregular"}
    margin : {"circumscribed", "angular", "spiculated"}
        BI-RADS margins are circumscribed or not circumscribed (indistinct, angular,
        microlobulated, spiculated); the phantom draws circumscribed, angular (with some
        microlobulation) and spiculated ones.
    orientation : {"parallel", "non-parallel"}
        Parallel means the long axis follows the skin (wider than tall).
    echo : {"hypoechoic", "heterogeneous"}
        Echo pattern (BI-RADS): a uniformly hypoechoic (dark) interior, or a heterogeneous one.
        The lexicon has more patterns (anechoic, hyperechoic, isoechoic, complex cystic and
        solid); the phantom draws these two.
    posterior : {"enhancement", "none", "shadowing"}
        Posterior acoustic feature: a brighter or darker band below the lesion.
    """

    shape: str
    margin: str
    orientation: str
    echo: str
    posterior: str

    def __post_init__(self) -> None:
        for name, allowed in (
            ("shape", SHAPES),
            ("margin", MARGINS),
            ("orientation", ORIENTATIONS),
            ("echo", ECHOES),
            ("posterior", POSTERIORS),
        ):
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"LesionFeatures.{name} must be one of {allowed}, got {value!r}")


# --------------------------------------------------------------------------- validation


def _check_label(label: str, allowed: Sequence[str] = CLASSES) -> None:
    if label not in allowed:
        raise ValueError(f"label must be one of {tuple(allowed)}, got {label!r}")


def _check_difficulty(difficulty: float) -> None:
    if not (0.0 <= float(difficulty) <= 1.0):
        raise ValueError(f"difficulty must be in [0, 1], got {difficulty!r}")


def _check_size(size: int) -> None:
    if int(size) != size or size < 32:
        raise ValueError(f"size must be an integer >= 32, got {size!r}")


# --------------------------------------------------------------------------- descriptors


def sample_features(label: str, difficulty: float, rng: np.random.Generator) -> LesionFeatures:
    """Draw BI-RADS descriptors typical of `label` ('benign' or 'malignant').

    Each of the five descriptors is drawn independently.  With probability ``difficulty / 2`` it
    is drawn from the *other* class's typical values, so the classes overlap: at difficulty 0
    every descriptor is typical, at 1 the descriptors carry no information about the label.

    Parameters
    ----------
    label : {"benign", "malignant"}
    difficulty : float in [0, 1]
    rng : numpy Generator, the only source of randomness.
    """
    _check_label(label, ("benign", "malignant"))
    _check_difficulty(difficulty)
    other = "malignant" if label == "benign" else "benign"
    swap = rng.random(5) < 0.5 * difficulty
    picks = rng.random(5)
    values = {}
    for i, name in enumerate(("shape", "margin", "orientation", "echo", "posterior")):
        choices, probs = _TYPICAL[other if swap[i] else label][name]
        k = int(np.searchsorted(np.cumsum(probs), picks[i] * np.sum(probs), side="right"))
        values[name] = choices[min(k, len(choices) - 1)]
    return LesionFeatures(**values)


# --------------------------------------------------------------------------- building blocks


@lru_cache(maxsize=32)
def _smoothing_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) Gaussian interpolation weights: ``M @ coeffs`` is a smooth curve through
    `n_in` random coefficients spread evenly over `n_out` pixels (rows sum to 1)."""
    out = (np.arange(n_out) + 0.5) / n_out
    centres = (np.arange(n_in) + 0.5) / n_in
    w = np.exp(-0.5 * ((out[:, None] - centres[None, :]) * n_in) ** 2)
    return (w / w.sum(axis=1, keepdims=True)).astype(np.float32)


def _smooth_field(shape: tuple[int, int], coarse: np.ndarray) -> np.ndarray:
    """A smooth random field of `shape` from a small grid of coefficients (two matrix products,
    much cheaper than filtering full-size noise)."""
    my = _smoothing_matrix(shape[0], coarse.shape[0])
    mx = _smoothing_matrix(shape[1], coarse.shape[1])
    return my @ coarse.astype(np.float32) @ mx.T


def _wavy(x: np.ndarray, base: float, amp: float, rng: np.random.Generator) -> np.ndarray:
    """A gently wavy boundary depth (in pixels) for each column `x` (two random sinusoids)."""
    f = rng.uniform(0.5, 1.5, 2) * np.array([1.0, 2.3])
    phase = rng.uniform(0.0, 2 * np.pi, 2)
    w = np.sin(2 * np.pi * f[0] * x + phase[0]) + 0.4 * np.sin(2 * np.pi * f[1] * x + phase[1])
    return (base + amp * w).astype(np.float32)


def _ramp(y: np.ndarray, edge: np.ndarray, width: float) -> np.ndarray:
    """0 above `edge`, 1 below it, with a linear transition `width` pixels wide."""
    return np.clip((y - edge) / width + 0.5, 0.0, 1.0)


def _tissue(size: int, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Echogenicity (mean backscatter amplitude) of the layered breast, and layer boundaries.

    Returns the (size, size) float32 map and a dict of per-column boundary depths in pixels.
    """
    s = float(size)
    x = np.arange(size) / s
    y = np.arange(size, dtype=np.float32)[:, None]
    skin = _wavy(x, s * rng.uniform(0.025, 0.045), s * 0.004, rng)
    fat = _wavy(x, s * rng.uniform(0.16, 0.30), s * rng.uniform(0.015, 0.035), rng)
    gland = _wavy(x, s * rng.uniform(0.66, 0.76), s * rng.uniform(0.015, 0.035), rng)
    muscle_top = gland + s * rng.uniform(0.03, 0.06)
    muscle_bot = _wavy(x, s * rng.uniform(0.86, 0.94), s * 0.01, rng)
    levels = rng.uniform([2.0, 0.22, 0.9, 0.45, 0.12], [2.8, 0.36, 1.15, 0.65, 0.2])
    levels = levels.astype(np.float32)
    in_skin = _ramp(y, skin - 0.010 * s, 2.0) * (1 - _ramp(y, skin + 0.010 * s, 2.0))
    below_fat = _ramp(y, fat, 0.03 * s)
    below_gland = _ramp(y, gland, 0.02 * s)
    in_muscle = _ramp(y, muscle_top, 3.0) * (1 - _ramp(y, muscle_bot, 3.0))
    below_muscle = _ramp(y, muscle_bot, 3.0)
    # Layered echogenicity: fat -> gland -> (retromammary fat) -> muscle -> chest wall.
    echo = levels[1] + (levels[2] - levels[1]) * below_fat
    echo = echo + (levels[1] * 0.8 - echo) * below_gland
    echo = echo + (levels[3] - echo) * in_muscle + (levels[4] - echo) * below_muscle
    # Texture: lobular glandular pattern, fat lobules, striated (fibrillar) muscle.
    lobules = _smooth_field((size, size), rng.standard_normal((14, 14)))
    echo = echo * np.exp(0.55 * lobules * (0.6 + 0.4 * below_fat))
    tilt = rng.uniform(-0.15, 0.15)
    phase = rng.uniform(0.0, 2 * np.pi)
    # sin(a(y) + b(x)) = sin a cos b + cos a sin b: two outer products instead of a full sin.
    a = (2 * np.pi * y / (0.035 * s) + phase).astype(np.float32)
    b = (2 * np.pi * tilt * np.arange(size) / (0.035 * s)).astype(np.float32)
    striae = np.sin(a) * np.cos(b) + np.cos(a) * np.sin(b)
    echo = echo * (1 + 0.35 * in_muscle * striae)
    echo = echo + (levels[0] - echo) * in_skin
    bounds = {"fat": fat, "gland": gland}
    return echo.astype(np.float32), bounds


def _speckle(size: int, rng: np.random.Generator) -> np.ndarray:
    """Fully developed speckle: the envelope (Rayleigh distributed) of complex Gaussian noise
    smoothed by an anisotropic point-spread function (wider laterally than axially), mean 1."""
    iq = rng.standard_normal((2, size, size), dtype=np.float32)
    iq = ndimage.gaussian_filter(iq, sigma=(0.0, 0.8, 1.6), mode="wrap", truncate=3.0)
    env = np.hypot(iq[0], iq[1])
    env = ndimage.gaussian_filter(env, 0.6, truncate=2.5)  # post-detection smoothing
    # Mean of a Rayleigh envelope is sigma * sqrt(pi / 2); sigma of the smoothed noise is
    # 1 / sqrt(4 pi sx sy) for a unit-variance Gaussian smoothing (continuous approximation).
    sigma = 1.0 / np.sqrt(4 * np.pi * 0.8 * 1.6)
    return env * np.float32(1.0 / (sigma * np.sqrt(np.pi / 2)))


def _lesion(
    size: int,
    features: LesionFeatures,
    difficulty: float,
    bounds: dict[str, np.ndarray],
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[slice, slice]]:
    """Geometry and appearance of one lesion inside a bounding box.

    Returns ``(mask, gain, below, box)``: `mask` (bool) and `gain` (multiplicative
    echogenicity, < 1 inside) are defined on the box ``box = (rows, cols)``; `below`, the
    multiplicative posterior enhancement or shadowing, covers the box's columns from its top
    row down to the bottom of the image.
    The number of random draws does not depend on `features`.
    """
    s = float(size)
    f = features
    # --- every random draw, in a fixed order -------------------------------------------------
    radius = s * rng.uniform(0.07, 0.15)  # geometric mean of the two semi-axes
    aspect_oval, aspect_round, aspect_irr = rng.uniform([1.45, 1.0, 1.15], [2.0, 1.12, 1.5])
    tilt = rng.uniform(-0.25, 0.25)  # radians off the lexicon orientation
    cx_frac, cy_frac = rng.uniform(0.0, 1.0, 2)
    harm_amp = rng.uniform(0.05, 0.17, _N_HARMONICS)
    harm_phase = rng.uniform(0.0, 2 * np.pi, _N_HARMONICS)
    vertices = rng.uniform(-0.22, 0.22, _N_VERTICES)
    vertex_turn = rng.uniform(0.0, 2 * np.pi)
    lobe_amp, lobe_freq, lobe_phase = rng.uniform([0.03, 9.0, 0.0], [0.07, 14.0, 2 * np.pi])
    n_spic = int(rng.integers(8, _N_SPICULES + 1))
    spic_angle = (np.arange(_N_SPICULES) + rng.uniform(-0.3, 0.3, _N_SPICULES)) * (
        2 * np.pi / n_spic
    )
    spic_len = rng.uniform(0.4, 1.0, _N_SPICULES)
    spic_width = rng.uniform(0.09, 0.16, _N_SPICULES)
    contrast = rng.uniform(0.07, 0.2) + 0.1 * difficulty  # lesion / surrounding echogenicity
    hetero = rng.standard_normal((5, 5))
    n_calc = int(rng.integers(0, _N_CALCS + 1))
    calcs = rng.uniform(-0.6, 0.6, (_N_CALCS, 2))
    post_gain = rng.uniform(0.5, 0.75)
    post_decay = rng.uniform(0.35, 0.7)

    # --- geometry ---------------------------------------------------------------------------
    aspect = {"oval": aspect_oval, "round": aspect_round, "irregular": aspect_irr}[f.shape]
    long_ax, short_ax = radius * np.sqrt(aspect), radius / np.sqrt(aspect)
    if f.orientation == "parallel":  # long axis along the skin
        ax_x, ax_y = long_ax, short_ax
    else:
        ax_x, ax_y = short_ax, long_ax
    reach = 1.0 + (0.95 if f.margin == "spiculated" else 0.35)  # outermost boundary, in radii
    half = int(np.ceil(max(ax_x, ax_y) * reach)) + 3
    cx = half + cx_frac * (s - 2 * half) if s > 2 * half else s / 2
    col = int(np.clip(round(cx), 0, size - 1))
    top = bounds["fat"][col] + 0.6 * ax_y  # centre mostly within the glandular layer
    bottom = bounds["gland"][col]
    cy = top + cy_frac * max(bottom - top, 1.0)
    cy = float(np.clip(cy, ax_y + 0.06 * s, s - half * 0.9 - 0.15 * s))
    r0, r1 = max(int(cy) - half, 0), min(int(cy) + half + 1, size)
    c0, c1 = max(int(cx) - half, 0), min(int(cx) + half + 1, size)
    dy = np.arange(r0, r1, dtype=np.float32)[:, None] - np.float32(cy)
    dx = np.arange(c0, c1, dtype=np.float32)[None, :] - np.float32(cx)
    cos_t, sin_t = float(np.cos(tilt)), float(np.sin(tilt))
    ax_x, ax_y = float(ax_x), float(ax_y)
    u = (cos_t * dx + sin_t * dy) / ax_x  # normalised, rotated lesion coordinates
    v = (-sin_t * dx + cos_t * dy) / ax_y
    rho = np.hypot(u, v)
    theta = np.arctan2(v, u)

    # Boundary radius as a function of angle (1 = the plain ellipse), tabulated on a fine
    # angular grid: all shape and margin details are 1-D, then one lookup per pixel.
    phi = np.linspace(-np.pi, np.pi, _N_ANGLES, endpoint=False)
    edge = np.ones_like(phi)
    if f.shape == "irregular":  # a few large lobes
        for k in range(_N_HARMONICS):
            edge += harm_amp[k] * np.cos((k + 2) * phi + harm_phase[k])
    if f.margin == "angular":  # straight-ish facets meeting at corners, plus microlobulation
        knots = np.linspace(0.0, 2 * np.pi, _N_VERTICES + 1)
        corners = np.append(vertices, vertices[0])
        edge += np.interp((phi + vertex_turn) % (2 * np.pi), knots, corners)
        edge += lobe_amp * np.cos(lobe_freq * phi + lobe_phase)
    if f.margin == "spiculated":  # thin radial spikes, tapering to a point
        d = np.abs((phi[:, None] - spic_angle[None, :n_spic] + np.pi) % (2 * np.pi) - np.pi)
        spikes = spic_len[:n_spic] * np.clip(1.0 - d / spic_width[:n_spic], 0.0, 1.0)
        edge += spikes.max(axis=1)
    index = ((theta + np.pi) * (_N_ANGLES / (2 * np.pi))).astype(np.intp) % _N_ANGLES
    mask = rho < edge.astype(np.float32)[index]

    # --- appearance -------------------------------------------------------------------------
    soft = ndimage.gaussian_filter(mask.astype(np.float32), 0.8, truncate=2.5)
    interior = np.full(mask.shape, contrast, dtype=np.float32)
    if f.echo == "heterogeneous":
        interior *= np.exp(1.3 * _smooth_field(mask.shape, hetero))
        spot = np.exp(-(np.arange(-2, 3)[:, None] ** 2 + np.arange(-2, 3) ** 2) / 1.5)
        for k in range(n_calc):  # bright punctate echoes (microcalcifications), 5x5 pixels
            py = int(np.clip(cy + calcs[k, 0] * ax_y - r0, 2, interior.shape[0] - 3))
            px = int(np.clip(cx + calcs[k, 1] * ax_x - c0, 2, interior.shape[1] - 3))
            interior[py - 2 : py + 3, px - 2 : px + 3] += 3.0 * spot
    gain = 1.0 + (interior - 1.0) * soft
    if f.margin != "circumscribed":  # echogenic halo: a thick, bright, blurred rim (not
        # circumscribed margins, which BI-RADS reports as a sharp lesion-tissue demarcation)
        halo = ndimage.gaussian_filter(mask.astype(np.float32), 0.12 * radius, truncate=2.0)
        gain *= 1.0 + 1.2 * np.clip(halo - soft, 0.0, None)

    # Posterior feature: a band under the lesion, as wide as the lesion, fading with depth.
    below = np.ones((size - r0, c1 - c0), dtype=np.float32)  # rows r0:, columns c0:c1
    if f.posterior != "none":
        cols = mask.any(axis=0)
        last = mask.shape[0] - 1 - np.argmax(mask[::-1], axis=0) + r0  # lowest lesion row
        last = np.where(cols, last, last[cols].max())  # beside the lesion: start deep
        # Strength grows with the path length through the lesion, so the band tapers at its sides.
        path = mask.sum(axis=0, dtype=np.float32)
        width = ndimage.gaussian_filter1d(path / path.max(), 0.08 * radius + 1.0)
        depth = np.arange(r0, size, dtype=np.float32)[:, None] - last[None, :].astype(np.float32)
        fade = np.exp(-np.maximum(depth, 0.0) / float(post_decay * s)) * (depth > 0) * width
        fade = ndimage.gaussian_filter1d(fade, 1.5, axis=0)
        if f.posterior == "enhancement":  # up to about +6 to +8 dB
            below = 1.0 + 2.0 * post_gain * fade
        else:  # down to about -6 to -12 dB
            below = 1.0 - post_gain * fade
    return mask, gain.astype(np.float32), below, (slice(r0, r1), slice(c0, c1))


# --------------------------------------------------------------------------- public API


def phantom_image(
    label: str,
    *,
    size: int = 224,
    difficulty: float = 0.5,
    rng: np.random.Generator,
    features: LesionFeatures | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One phantom image and its lesion mask.

    Parameters
    ----------
    label : {"benign", "malignant", "normal"}
        "normal" images have no lesion.
    size : int, >= 32
        Side of the square image in pixels.
    difficulty : float in [0, 1]
        Class overlap (see :func:`sample_features`); also lowers the lesion contrast slightly.
    rng : numpy Generator, the only source of randomness.
    features : LesionFeatures, optional
        Descriptors to draw instead of sampling them from `label`.  The random draws do not
        depend on the descriptors, so the same seed with different `features` gives the same
        background, lesion position and size: handy for side-by-side figures.  (The lesion
        contrast still depends on `difficulty`, not on `label`.)

    Returns
    -------
    image : (size, size) uint8 greyscale B-mode-like image.
    mask : (size, size) bool, True on the lesion; all False for "normal".
    """
    _check_label(label)
    _check_difficulty(difficulty)
    _check_size(size)
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    if features is not None and not isinstance(features, LesionFeatures):
        kind = type(features).__name__
        raise ValueError(f"features must be a LesionFeatures or None, got {kind}")
    if label == "normal" and features is not None:
        raise ValueError("features must be None for label 'normal' (normal images have no lesion)")
    size = int(size)
    # Background first, so that it does not depend on the lesion.
    echo, bounds = _tissue(size, rng)
    speckle = _speckle(size, rng)
    alpha = rng.uniform(2.2, 3.2)  # attenuation over the full depth (nepers, amplitude)
    tgc = rng.uniform(0.45, 0.7)  # fraction of it the time-gain compensation undoes
    db_range = rng.uniform(42.0, 52.0)  # displayed dynamic range
    gain_db = rng.uniform(-3.0, 3.0)

    mask = np.zeros((size, size), dtype=bool)
    if label != "normal":
        # Always sample (and so consume the same random numbers), then maybe override: the
        # image drawn with ``features=sample_features(...)`` equals the one drawn without.
        sampled = sample_features(label, difficulty, rng)
        feats = features if features is not None else sampled
        lesion_mask, lesion_gain, below, box = _lesion(size, feats, difficulty, bounds, rng)
        mask[box] = lesion_mask
        echo[box] *= lesion_gain
        echo[box[0].start :, box[1]] *= below

    depth = np.arange(size, dtype=np.float32)[:, None] / size
    atten = np.exp(-alpha * (1.0 - tgc) * depth)
    amplitude = echo * speckle * atten
    # Log compression: the mean glandular echo (0 dB) at about 55 % grey.
    db = 20.0 * np.log10(np.maximum(amplitude, 1e-6)) + gain_db
    grey = np.clip((db + 0.55 * db_range) * (255.0 / db_range), 0.0, 255.0)
    return grey.astype(np.uint8), mask


def _resolve_proportions(
    classes: Sequence[str], proportions: Sequence[float] | None
) -> np.ndarray:
    if proportions is None:
        p = np.array([_BUSI_PROPORTIONS[c] for c in classes], dtype=float)
        return p / p.sum()
    p = np.asarray(proportions, dtype=float)
    if p.shape != (len(classes),):
        raise ValueError(
            f"proportions must have one entry per class ({len(classes)}), got {len(p)}"
        )
    if np.any(p < 0) or not np.isclose(p.sum(), 1.0, atol=1e-6):
        raise ValueError(f"proportions must be non-negative and sum to 1, got {list(p)}")
    return p


def _class_counts(n: int, p: np.ndarray) -> np.ndarray:
    """Split `n` into integer counts close to ``n * p`` (largest remainders)."""
    raw = n * p
    counts = np.floor(raw).astype(int)
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[: n - counts.sum()]] += 1
    return counts


def make_phantom(
    n: int = 400,
    *,
    size: int = 224,
    classes: Sequence[str] = ("benign", "malignant"),
    proportions: Sequence[float] | None = None,
    difficulty: float = 0.5,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A labelled phantom data set.

    Class counts are ``n * proportions`` rounded (largest remainders), in a shuffled order.
    Default proportions mimic BUSI's imbalance: about 2:1 benign:malignant, or about
    56/27/17 % benign/malignant/normal with three classes.  Image ``i`` is drawn from its own
    generator spawned from ``seed``, so it depends on `seed`, ``i`` and its label only.

    Returns
    -------
    images : (n, size, size) uint8
    labels : (n,) array of class-name strings
    masks : (n, size, size) bool
    """
    if int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    classes = tuple(classes)
    if len(classes) == 0 or len(set(classes)) != len(classes):
        raise ValueError(f"classes must be distinct names from {CLASSES}, got {classes!r}")
    for c in classes:
        if c not in CLASSES:
            raise ValueError(f"classes must be names from {CLASSES}, got {c!r}")
    p = _resolve_proportions(classes, proportions)
    _check_difficulty(difficulty)
    _check_size(size)
    n, size = int(n), int(size)

    root = np.random.SeedSequence(seed)
    label_seq, image_seq = root.spawn(2)
    counts = _class_counts(n, p)
    labels = np.repeat(np.array(classes), counts)
    np.random.default_rng(label_seq).shuffle(labels)
    images = np.empty((n, size, size), dtype=np.uint8)
    masks = np.empty((n, size, size), dtype=bool)
    for i, child in enumerate(image_seq.spawn(n)):
        images[i], masks[i] = phantom_image(
            str(labels[i]), size=size, difficulty=difficulty, rng=np.random.default_rng(child)
        )
    return images, labels, masks


def write_busi_layout(
    root: str | Path,
    counts: Mapping[str, int] | None = None,
    *,
    size: int = 224,
    difficulty: float = 0.5,
    seed: int = 0,
    mask_1_every: int = 7,
) -> Path:
    """Write phantom images to disk in the layout of the original BUSI release.

    ``root/benign/benign (1).png`` with its mask ``benign (1)_mask.png`` and so on (numbers
    from 1, a space before the parenthesis), likewise for "malignant" and "normal".  Every
    `mask_1_every`-th lesion image also gets a second mask ``..._mask_1.png``, as some BUSI
    images do (here the same lesion, slightly dilated).  Normal images get an all-black mask.
    Images are 8-bit greyscale PNGs, masks 0/255 PNGs.

    Parameters
    ----------
    root : folder to create or fill; it must be empty or not exist yet.
    counts : images per class, default ``{"benign": 20, "malignant": 10, "normal": 6}``.
    mask_1_every : int >= 1, or 0 for no second masks.

    Returns
    -------
    The root folder as a Path.
    """
    root = Path(root)
    if counts is None:
        counts = {"benign": 20, "malignant": 10, "normal": 6}
    for name, k in counts.items():
        if name not in CLASSES:
            raise ValueError(f"counts keys must be names from {CLASSES}, got {name!r}")
        if int(k) != k or k < 0:
            raise ValueError(f"counts[{name!r}] must be a non-negative integer, got {k!r}")
    if int(mask_1_every) != mask_1_every or mask_1_every < 0:
        raise ValueError(f"mask_1_every must be a non-negative integer, got {mask_1_every!r}")
    _check_difficulty(difficulty)
    _check_size(size)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ValueError(f"root {str(root)!r} is not an empty folder; refusing to write into it")

    root.mkdir(parents=True, exist_ok=True)
    seqs = np.random.SeedSequence(seed).spawn(len(CLASSES))
    for name, seq in zip(CLASSES, seqs):
        k = int(counts.get(name, 0))
        if k == 0:
            continue
        folder = root / name
        folder.mkdir()
        for i, child in enumerate(seq.spawn(k), start=1):
            image, mask = phantom_image(
                name, size=size, difficulty=difficulty, rng=np.random.default_rng(child)
            )
            stem = f"{name} ({i})"
            Image.fromarray(image).save(folder / f"{stem}.png")
            Image.fromarray(mask.astype(np.uint8) * 255).save(folder / f"{stem}_mask.png")
            if name != "normal" and mask_1_every and i % mask_1_every == 0:
                second = ndimage.binary_dilation(mask, iterations=2)
                Image.fromarray(second.astype(np.uint8) * 255).save(
                    folder / f"{stem}_mask_1.png"
                )
    return root
