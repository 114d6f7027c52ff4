"""Near-duplicate images, found by perceptual hashing, and how alike two images look.

BUSI holds near-identical images, some filed under two labels.  If such a pair is split
between training and test data, the test score measures memory, not diagnosis.  The images of
a data set are hashed with a DCT perceptual hash (the ``imagehash`` package); images whose
hashes differ in at most ``max_distance`` bits are near-duplicates.

Two units are built from these pairs, for two purposes:

* :func:`groups_from_hashes` gives the *duplicate groups* that every split in
  :mod:`busutils.splits` keeps on one side: near-duplicates joined however they connect (if A is
  like B and B like C, all three form one group, the connected component), so that no image is
  within the threshold of an image outside its group and no near-duplicate pair can ever
  straddle a split.  Where a data set names patients, :func:`join_groups` joins these groups
  with the patients (``Dataset.groups``), so that a patient's images stay on one side too.
* :func:`bootstrap_groups` gives the small units a bootstrap resamples.  Unrelated images can be
  alike too, and where many are (the synthetic phantom at 224 px) a component chains dozens of
  them.  Copies of one image lie within ``max_distance`` of it, hence within ``2 *
  max_distance`` of each other; a component spanning more than that is a chain of look-alikes,
  not copies, and is cut into pieces whose members are all within ``max_distance`` of each other
  (complete linkage).  A piece never spans two components.

On the BUSI development portion the two coincide (no component is wider than twice the
threshold).  Whether the data separate copies from unrelated images at all,
:func:`distance_gap` tells.  :func:`pixel_correlations` measures a wider likeness than the hash
(the whole picture at 64 px), for the "new images" split of :mod:`busutils.splits`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import imagehash
import numpy as np
from PIL import Image
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial.distance import squareform

from .images import resize

HASH_SIZE = 8  # 64-bit hashes
# Bits.  On the BUSI development portion, distances between image pairs come in a sharp cluster
# at 0-5 (the same frame, or neighbouring frames of one lesion), a trough at 6-13 and the bulk
# from 14 up (see distance_gap): 10 sits in the trough.
MAX_DISTANCE = 10
# A trough needs a near-copy peak of at least this many pairs (fewer are chance look-alikes) ...
MIN_PEAK_PAIRS = 5
# ... and holds at most 1/GAP_RATIO as many pairs per distance as that peak.
GAP_RATIO = 4

_POPCOUNT = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(axis=1)


def _greyscale(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim == 4:
        images = images.mean(axis=-1).astype(np.uint8)
    if images.ndim != 3:
        raise ValueError(f"images must have shape (n, h, w) or (n, h, w, c), got {images.shape}")
    return images


def perceptual_hashes(images: np.ndarray) -> np.ndarray:
    """64-bit DCT perceptual hash of each greyscale image, as ``uint64``."""
    images = _greyscale(images)
    bits = np.stack([imagehash.phash(Image.fromarray(image), hash_size=HASH_SIZE).hash.reshape(-1)
                     for image in images])
    return np.packbits(bits, axis=1).view(">u8").ravel().astype(np.uint64)


def hamming_distances(hashes: np.ndarray) -> np.ndarray:
    """All pairwise Hamming distances between 64-bit hashes, an ``(n, n)`` integer matrix."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    xor = hashes[:, None] ^ hashes[None, :]
    return _POPCOUNT[xor.view(np.uint8)].reshape(len(hashes), len(hashes), 8).sum(axis=-1, dtype=np.int64)


def near_duplicate_pairs(hashes: np.ndarray, max_distance: int = MAX_DISTANCE) -> list[tuple[int, int, int]]:
    """Pairs ``(i, j, distance)`` with ``i < j`` whose hashes differ in at most ``max_distance`` bits."""
    _check_max_distance(max_distance)
    distances = hamming_distances(hashes)
    i, j = np.nonzero(np.triu(distances <= max_distance, k=1))
    return [(int(a), int(b), int(distances[a, b])) for a, b in zip(i, j)]


def distance_gap(hashes: np.ndarray, max_distance: int = MAX_DISTANCE) -> dict[str, Any]:
    """Whether the pairwise hash distances show a trough between near-copies and the bulk, and where.

    A perceptual hash sets the 32 of its 64 bits that lie above the median, so distances are
    nearly always even: counts are taken per two bits (0-1, 2-3, ...).  Starting from 0 bits,
    the trough begins at the first distance holding at most ``1 / GAP_RATIO`` as many pairs as
    the highest count below it (the near-copy peak, of at least ``MIN_PEAK_PAIRS`` pairs), and
    lasts as long as counts stay that low, short of the commonest distance (the bulk).  A threshold inside the trough separates copies from
    unrelated images, and moving it within the trough hardly changes the groups.

    Returns ``{"histogram": pairs per distance 0..64, "has_gap": bool, "gap": [low, high] bits
    or None, "trough": the distance with fewest pairs in the gap or None, "threshold":
    max_distance, "threshold_in_gap": bool, "below_bulk": bool}``; ``below_bulk`` is true when
    there is a gap and the threshold does not reach past it into the bulk of unrelated pairs.
    """
    _check_max_distance(max_distance)
    distances = hamming_distances(hashes)
    histogram = np.bincount(distances[np.triu_indices(len(distances), k=1)], minlength=65)
    per_two_bits = np.add.reduceat(histogram, np.arange(0, 64, 2))  # the last bin is 62-64
    bulk = int(np.argmax(per_two_bits))  # the commonest distance: unrelated images
    gap = trough = None
    for start in range(1, bulk):
        peak = per_two_bits[:start].max()
        if peak >= MIN_PEAK_PAIRS and GAP_RATIO * per_two_bits[start] <= peak:
            end = start
            while end + 1 < bulk and GAP_RATIO * per_two_bits[end + 1] <= peak:
                end += 1
            gap = [2 * start, 2 * end + 1]
            trough = 2 * (start + int(np.argmin(per_two_bits[start:end + 1])))
            break
    return {
        "histogram": histogram.tolist(),
        "has_gap": gap is not None,
        "gap": gap,
        "trough": trough,
        "threshold": int(max_distance),
        "threshold_in_gap": gap is not None and gap[0] <= max_distance <= gap[1],
        "below_bulk": gap is not None and max_distance <= gap[1],
    }


def duplicate_groups(images: np.ndarray, max_distance: int = MAX_DISTANCE) -> np.ndarray:
    """A group number for every image: near-duplicates share a number, others have their own."""
    return groups_from_hashes(perceptual_hashes(images), max_distance)


def groups_from_hashes(hashes: np.ndarray, max_distance: int = MAX_DISTANCE) -> np.ndarray:
    """Duplicate groups from perceptual hashes already computed (see :func:`duplicate_groups`).

    The groups are the connected pieces of the near-duplicate pairs: every pair within
    ``max_distance`` bits shares a group, so a split that keeps groups whole keeps every such
    pair on one side.  Groups are numbered 0, 1, ... in the order of their first image.
    """
    _check_max_distance(max_distance)
    _, groups = connected_components(hamming_distances(hashes) <= max_distance, directed=False)
    return _renumber(groups)


def join_groups(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Groups that keep both groupings whole: images sharing a group in either share one here.

    E.g. near-duplicate groups joined with patients: a patient's images, and every near-copy
    of any of them, form one group.  Labels of ``second`` may be of any type (patient names).
    Groups are numbered 0, 1, ... in the order of their first image.
    """
    first, second = np.asarray(first), np.asarray(second)
    if first.shape != second.shape or first.ndim != 1:
        raise ValueError(f"groupings must be one-dimensional and alike: shapes {first.shape} and {second.shape}")
    n = len(first)
    _, a = np.unique(first, return_inverse=True)
    _, b = np.unique(second, return_inverse=True)
    # a graph of images and group labels: each image linked to its label in each grouping
    rows = np.concatenate([np.arange(n), np.arange(n)])
    cols = np.concatenate([n + a, n + a.max(initial=-1) + 1 + b])
    size = n + a.max(initial=-1) + 1 + b.max(initial=-1) + 1
    graph = coo_matrix((np.ones(2 * n), (rows, cols)), shape=(size, size))
    _, components = connected_components(graph, directed=False)
    return _renumber(components[:n])


def bootstrap_groups(hashes: np.ndarray, max_distance: int = MAX_DISTANCE) -> np.ndarray:
    """Duplicate groups cut into the small units a bootstrap resamples (see the module docstring).

    A duplicate group spanning more than ``2 * max_distance`` bits is a chain of look-alikes,
    not copies of one image: it is cut into pieces whose members are all within ``max_distance``
    of each other (complete linkage).  Narrower groups are kept whole.  Every piece lies inside
    one duplicate group, so a part of the data that keeps duplicate groups whole (a test part)
    gets the same pieces whether they are computed on it or on the whole data set.
    """
    _check_max_distance(max_distance)
    distances = hamming_distances(hashes)
    _, groups = connected_components(distances <= max_distance, directed=False)
    for piece in np.flatnonzero(np.bincount(groups) > 2):
        members = np.flatnonzero(groups == piece)
        within = distances[np.ix_(members, members)]
        if within.max() > 2 * max_distance:
            tree = linkage(squareform(within, checks=False).astype(np.float64), method="complete")
            groups[members] = groups.max() + fcluster(tree, max_distance, criterion="distance")
    return _renumber(groups)


def _renumber(groups: np.ndarray) -> np.ndarray:
    """Number groups 0, 1, ... in the order of their first image."""
    _, first, index = np.unique(groups, return_index=True, return_inverse=True)
    return np.argsort(np.argsort(first))[index].astype(np.int64)


def pixel_correlations(images: np.ndarray, size: int = 64) -> np.ndarray:
    """Pearson correlation between the pixels of every pair of images at ``size`` x ``size``, ``(n, n)``.

    A likeness of the whole picture (layout, depth, brightness, where the lesion lies), wider
    than a near-duplicate's: 1 for the same picture, near 0 for unrelated textures.  Images are
    made greyscale and resized first, so data sets of any image size compare alike.
    """
    images = _greyscale(images)
    if size < 2:
        raise ValueError(f"size must be at least 2 pixels, got {size}")
    x = np.stack([resize(image, size) for image in images]).reshape(len(images), -1).astype(np.float64)
    x -= x.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x /= np.where(norms > 0, norms, 1.0)  # a flat image correlates with nothing (0)
    return np.clip(x @ x.T, -1.0, 1.0)


def nearest_correlation(images: np.ndarray, others: np.ndarray, size: int = 64) -> np.ndarray:
    """For each image, its highest pixel correlation (as :func:`pixel_correlations`) with any of ``others``.

    How alike a test image is to the most alike training image: near 1 for a copy, lower for an
    image unlike every image the model learnt from.
    """
    if not len(images) or not len(others):
        raise ValueError(f"images and others must both hold images; got {len(images)} and {len(others)}")
    correlations = pixel_correlations(np.concatenate([_greyscale(images), _greyscale(others)]), size=size)
    return correlations[:len(images), len(images):].max(axis=1)


def _check_max_distance(max_distance: int) -> None:
    if max_distance < 0:
        raise ValueError(f"max_distance must be >= 0, got {max_distance}")


@dataclass
class DuplicateReport:
    """Duplicate groups of a data set: every group of two or more, and those that disagree on label."""

    groups: list[list[int]]
    cross_label: list[list[int]]
    group_ids: np.ndarray

    @property
    def n_duplicated_images(self) -> int:
        """Images that have at least one near-copy in the data set."""
        return sum(len(g) for g in self.groups)


def duplicate_report(labels: np.ndarray, group_ids: np.ndarray) -> DuplicateReport:
    """Summarise duplicate groups (indices into the data set), flagging groups with mixed labels."""
    labels = np.asarray(labels)
    group_ids = np.asarray(group_ids)
    if labels.shape != group_ids.shape:
        raise ValueError(f"labels {labels.shape} and group_ids {group_ids.shape} must have the same shape")
    groups, cross = [], []
    for g in np.unique(group_ids):
        members = np.flatnonzero(group_ids == g).tolist()
        if len(members) > 1:
            groups.append(members)
            if len(set(labels[members].tolist())) > 1:
                cross.append(members)
    return DuplicateReport(groups=groups, cross_label=cross, group_ids=group_ids)
