"""Near-duplicate images, found by perceptual hashing.

BUSI holds near-identical images, some filed under two labels.  If such a pair is split
between training and test data, the test score measures memory, not diagnosis.  The images of
a data set are hashed with a DCT perceptual hash (the ``imagehash`` package); images whose
hashes differ in at most ``max_distance`` bits are joined, and the connected pieces are the
duplicate groups that every split in :mod:`busutils.splits` keeps on one side.
"""

from __future__ import annotations

from dataclasses import dataclass

import imagehash
import numpy as np
from PIL import Image
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

HASH_SIZE = 8  # 64-bit hashes
# Bits.  On the BUSI development portion, distances between image pairs come in a sharp cluster
# at 0-10 (the same frame, or neighbouring frames of one lesion) well apart from the bulk (14+).
MAX_DISTANCE = 10


def perceptual_hashes(images: np.ndarray) -> np.ndarray:
    """64-bit DCT perceptual hash of each greyscale image, as ``uint64``."""
    images = np.asarray(images)
    if images.ndim == 4:
        images = images.mean(axis=-1).astype(np.uint8)
    if images.ndim != 3:
        raise ValueError(f"images must have shape (n, h, w) or (n, h, w, c), got {images.shape}")
    bits = np.stack([imagehash.phash(Image.fromarray(image), hash_size=HASH_SIZE).hash.reshape(-1)
                     for image in images])
    return np.packbits(bits, axis=1).view(">u8").ravel().astype(np.uint64)


def hamming_distances(hashes: np.ndarray) -> np.ndarray:
    """All pairwise Hamming distances between 64-bit hashes, an ``(n, n)`` integer matrix."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    xor = hashes[:, None] ^ hashes[None, :]
    return np.unpackbits(xor.view(np.uint8).reshape(len(hashes), len(hashes), 8), axis=-1).sum(axis=-1)


def near_duplicate_pairs(hashes: np.ndarray, max_distance: int = MAX_DISTANCE) -> list[tuple[int, int, int]]:
    """Pairs ``(i, j, distance)`` with ``i < j`` whose hashes differ in at most ``max_distance`` bits."""
    if max_distance < 0:
        raise ValueError(f"max_distance must be >= 0, got {max_distance}")
    distances = hamming_distances(hashes)
    i, j = np.nonzero(np.triu(distances <= max_distance, k=1))
    return [(int(a), int(b), int(distances[a, b])) for a, b in zip(i, j)]


def duplicate_groups(images: np.ndarray, max_distance: int = MAX_DISTANCE) -> np.ndarray:
    """A group number for every image: near-duplicates share a number, others have their own."""
    return groups_from_hashes(perceptual_hashes(images), max_distance)


def groups_from_hashes(hashes: np.ndarray, max_distance: int = MAX_DISTANCE) -> np.ndarray:
    """Duplicate groups from perceptual hashes already computed (see :func:`duplicate_groups`)."""
    n = len(hashes)
    pairs = near_duplicate_pairs(hashes, max_distance)
    rows = [a for a, _, _ in pairs]
    cols = [b for _, b, _ in pairs]
    graph = coo_matrix((np.ones(len(pairs)), (rows, cols)), shape=(n, n))
    _, groups = connected_components(graph, directed=False)
    return groups.astype(np.int64)


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
