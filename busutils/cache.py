"""Activations of a frozen network, computed once per image and kept on disk.

Blocks 1-4 of VGG16 are frozen in both transfer learning and fine-tuning, so their output for a
given image is the same at every epoch, in every chapter and every cross-validation fold.
:class:`ActivationStore` keeps those outputs under a *content key*: one folder per frozen network
(the key describes the network itself, see :func:`busutils.frozen.network_key`: its layers, their
precision, its input and a digest of its weights) holding, for every image it has seen, the
activations of that image, found again by a digest of the image's pixels.  An augmented copy is
just another image, so copies are cached the same way.  Chunks are read memory-mapped and
results filled in place, so that thousands of large feature maps are held once, not several times.

The store lives outside the repository (``$BUSUTILS_CACHE/activations``, by default
``~/.cache/busutils/activations``).  Each chunk is written atomically with a checksum; a chunk
that is damaged or written for another key is never used: it is deleted and its activations are
computed again, with a message.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from . import __version__

__all__ = ["ActivationStore", "cache_root", "image_digests"]

#: Bump when the meaning of stored activations changes (e.g. preprocessing code).
STORE_VERSION = 1


def cache_root() -> Path:
    """Where activation stores live: ``$BUSUTILS_CACHE/activations`` or ``~/.cache/busutils/activations``."""
    base = os.environ.get("BUSUTILS_CACHE") or os.path.join("~", ".cache", "busutils")
    return Path(base).expanduser() / "activations"


def image_digests(images: np.ndarray) -> list[str]:
    """A content digest of each image (its shape, dtype and pixels): equal images, equal digests."""
    images = np.ascontiguousarray(images)
    head = f"{images.shape[1:]}{images.dtype}".encode()
    return [hashlib.sha256(head + image.tobytes()).hexdigest()[:32] for image in images]


def _sha256(array: np.ndarray, rows: int = 256) -> str:
    """The sha256 of the array's bytes, read a block of rows at a time (a memory map stays on disk)."""
    digest = hashlib.sha256()
    for start in range(0, max(len(array), 1), rows):
        digest.update(np.ascontiguousarray(array[start:start + rows]).tobytes())
    return digest.hexdigest()


def _write_atomic(path: Path, write: Callable[[object], None], mode: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as stream:
            write(stream)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class ActivationStore:
    """Cached activations of one frozen network, addressed by image content.

    ``key`` describes the network completely (e.g. weights with their sha256, layer, input size,
    preprocessing, precision); any change gives another folder.  ``dtype`` is the storage type
    (``float16`` halves the size of large feature maps).
    """

    def __init__(self, key: dict, *, root: str | os.PathLike | None = None, dtype: str = "float32"):
        self.key = {**key, "store_version": STORE_VERSION, "busutils": __version__, "dtype": dtype}
        self.dtype = np.dtype(dtype)
        text = json.dumps(self.key, sort_keys=True, default=str)
        self.folder = Path(root) if root is not None else cache_root()
        self.folder = self.folder / hashlib.sha256(text.encode()).hexdigest()[:24]
        self.folder.mkdir(parents=True, exist_ok=True)
        key_file = self.folder / "key.json"
        if not key_file.exists():
            _write_atomic(key_file, lambda s: s.write(text), "w")

    def _say(self, message: str) -> None:
        print(f"activation cache: {message}", file=sys.stderr, flush=True)

    def _chunks(self) -> dict[str, tuple[Path, int]]:
        """Every cached image digest -> (chunk file, row), from the chunks' index files."""
        index: dict[str, tuple[Path, int]] = {}
        for meta_path in sorted(self.folder.glob("chunk-*.json")):
            try:
                meta = json.loads(meta_path.read_text())
                key, digests = meta["key"], list(meta["digests"])
            except (OSError, ValueError, TypeError, KeyError):
                self._discard(meta_path, "an unreadable index")
                continue
            if key != self.key:
                self._discard(meta_path, "written for another key (stale)")
                continue
            data = meta_path.with_suffix(".npy")
            for row, digest in enumerate(digests):
                index[digest] = (data, row)
        return index

    def _discard(self, meta_path: Path, why: str) -> None:
        self._say(f"{meta_path.stem} is {why}; it is deleted and will be computed again")
        for path in (meta_path, meta_path.with_suffix(".npy")):
            path.unlink(missing_ok=True)

    def _load(self, data: Path) -> np.ndarray | None:
        """A chunk's array if its checksum, shape and dtype match its index, else ``None``."""
        meta_path = data.with_suffix(".json")
        try:
            meta = json.loads(meta_path.read_text())
            array = np.load(data, allow_pickle=False, mmap_mode="r")
            ok = (list(array.shape) == meta["shape"] and str(array.dtype) == meta["dtype"]
                  and len(array) == len(meta["digests"]) and _sha256(array) == meta["sha256"])
        except (OSError, ValueError, TypeError, KeyError):
            ok = False
        if not ok:
            self._discard(meta_path, "damaged (checksum, shape or type does not match)")
            return None
        return array

    def _save(self, digests: list[str], array: np.ndarray) -> None:
        name = "chunk-" + hashlib.sha256("".join(digests).encode()).hexdigest()[:20]
        data, meta_path = self.folder / f"{name}.npy", self.folder / f"{name}.json"
        _write_atomic(data, lambda s: np.save(s, array, allow_pickle=False), "wb")
        meta = {"key": self.key, "digests": digests, "shape": list(array.shape), "dtype": str(array.dtype),
                "sha256": _sha256(array)}
        _write_atomic(meta_path, lambda s: s.write(json.dumps(meta)), "w")  # the index last: it makes the chunk visible

    def get(self, images: np.ndarray, compute: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """The activations of ``images``: cached rows where present, ``compute(missing images)`` for the rest.

        Returns an array in the store's dtype, one row per image, in the order of ``images``,
        filled in place (no second copy of thousands of feature maps).  Computed values that
        the storage type cannot hold (beyond float16's range) are refused, not stored as inf.
        """
        digests = image_digests(images)
        position: dict[str, list[int]] = {}
        for i, digest in enumerate(digests):
            position.setdefault(digest, []).append(i)
        out: np.ndarray | None = None

        def put(digest: str, row: np.ndarray) -> None:
            nonlocal out
            if out is None:
                out = np.empty((len(digests), *row.shape), dtype=self.dtype)
            out[position[digest]] = row

        index = self._chunks()
        wanted = [d for d in position if d in index]
        found: set[str] = set()
        for data in sorted({index[d][0] for d in wanted}):
            array = self._load(data)
            if array is None:
                continue
            for digest in wanted:
                chunk, row = index[digest]
                if chunk == data:
                    put(digest, array[row])
                    found.add(digest)
        missing = sorted(d for d in position if d not in found)
        if missing:
            computed = np.asarray(compute(images[[position[d][0] for d in missing]]))
            if len(computed) != len(missing):
                raise ValueError(f"compute returned {len(computed)} rows for {len(missing)} images")
            stored = computed.astype(self.dtype, copy=False)
            if np.issubdtype(self.dtype, np.floating) and not np.isfinite(stored).all():
                where = "not finite" if not np.isfinite(computed).all() else f"beyond {self.dtype}'s range"
                raise ValueError(f"activations of {self.folder.name} are {where}: the network diverged, or its "
                                 f"outputs need a wider storage type than {self.dtype}")
            self._save(missing, stored)
            for digest, row in zip(missing, stored):
                put(digest, row)
        if out is None:  # no images
            return np.zeros((0,), dtype=self.dtype)
        return out
