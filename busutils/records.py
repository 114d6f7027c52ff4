"""Saving results: atomic JSON files, the software environment, and simple timings.

Every chapter ends by writing its numbers to a JSON file that later chapters (and the
book's comparison table) read back.  Three small rules keep those files trustworthy:

* a file is either the old version or the complete new one, never half-written
  (:func:`write_json_atomic`), so an interrupted run cannot corrupt earlier results;
* numbers are stored as plain JSON: numpy values become Python numbers and ``nan``/``inf``
  become ``null`` (strict JSON has no ``NaN``);
* each result records where it came from (:func:`environment_info`) and how long it took
  (:class:`Timer`).
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Mapping, MutableMapping
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["to_jsonable", "write_json_atomic", "read_json", "environment_info", "Timer"]

#: Distributions whose versions :func:`environment_info` records (``None`` if not installed).
PACKAGES: tuple[str, ...] = (
    "numpy",
    "scipy",
    "scikit-learn",
    "pandas",
    "matplotlib",
    "pillow",
    "keras",
    "tensorflow",
    "jax",
    "jaxlib",
)


def to_jsonable(obj: Any) -> Any:
    """Return a copy of ``obj`` made of plain JSON types.

    numpy scalars and arrays become Python numbers and (nested) lists, tuples become lists,
    :class:`~pathlib.Path` becomes ``str``, mapping keys become ``str``, and non-finite
    floats (``nan``, ``inf``) become ``None`` -- strict JSON has no ``NaN``.  Anything else
    is returned unchanged, so :func:`json.dumps` still raises ``TypeError`` on objects it
    cannot represent instead of silently writing their ``repr``.
    """
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):  # a numpy scalar, e.g. np.float32, np.int64 or np.bool_
        return to_jsonable(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json_atomic(path: str | os.PathLike, obj: Any, *, indent: int = 2) -> Path:
    """Write ``obj`` as JSON to ``path`` so that the file is never left half-written.

    The object is converted with :func:`to_jsonable` and serialised *before* anything touches
    the disk; the text goes to a temporary file in the same folder, which is flushed, fsynced
    and then renamed over ``path`` with :func:`os.replace` (atomic on POSIX and Windows).
    If anything fails, the previous file is untouched and the temporary file is removed.
    Missing parent folders are created.  Returns the path written.
    """
    path = Path(path)
    text = json.dumps(to_jsonable(obj), indent=indent, allow_nan=False, ensure_ascii=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX only; a no-op where folders cannot be opened)."""
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def read_json(path: str | os.PathLike) -> dict:
    """Read a JSON object from ``path``, with errors that name the file.

    Raises ``FileNotFoundError`` if the file does not exist and ``ValueError`` if it is not
    valid JSON or does not hold a JSON object (results files are always objects).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"results file not found: {path}") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{path} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})"
        ) from err
    if not isinstance(obj, dict):
        raise ValueError(f"{path} holds a JSON {type(obj).__name__}, expected an object")
    return obj


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _keras_backend() -> str | None:
    """The Keras backend, without importing Keras (slow) just to ask."""
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    keras = sys.modules.get("keras")
    if keras is not None:
        try:
            return str(keras.config.backend())
        except AttributeError:  # a partially imported or very old Keras
            return None
    return None


def _cpu_count() -> int | None:
    """CPUs this process may use (respects affinity masks, e.g. in containers)."""
    if hasattr(os, "process_cpu_count"):  # Python >= 3.13
        return os.process_cpu_count()
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count()


def environment_info() -> dict[str, Any]:
    """Describe the software and machine a result was produced on.

    Package versions come from :mod:`importlib.metadata`, so nothing heavy (TensorFlow,
    JAX) is imported just to learn its version; uninstalled packages map to ``None``.
    The Keras backend is read from ``KERAS_BACKEND`` or, only if Keras is already imported,
    from ``keras.config.backend()``.
    """
    from busutils import __version__ as busutils_version

    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpu_count_available": _cpu_count(),
        "packages": {name: _version(name) for name in PACKAGES},
        "keras_backend": _keras_backend(),
        "precision_override": os.environ.get("BUSUTILS_PRECISION") or None,
        "busutils": busutils_version,
        "timestamp_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


class Timer:
    """Context manager measuring wall-clock seconds, for the ``"timings"`` entry of results.

    >>> timings = {}
    >>> with Timer("fit", into=timings) as t:
    ...     pass
    >>> t.elapsed >= 0 and "fit" in timings
    True

    ``elapsed`` is the running time while inside the block and the final time after it.
    With ``into`` (a dict) and ``name``, the final time is also stored as ``into[name]``.
    """

    def __init__(self, name: str | None = None, into: MutableMapping[str, float] | None = None):
        if into is not None and name is None:
            raise ValueError("Timer: give a name to store the elapsed time into a mapping")
        self.name = name
        self.into = into
        self._start: float | None = None
        self._elapsed: float | None = None

    def __enter__(self) -> Timer:
        self._elapsed = None
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc_info) -> None:
        self._elapsed = time.perf_counter() - self._start
        if self.into is not None:
            self.into[self.name] = self._elapsed

    @property
    def elapsed(self) -> float:
        """Seconds since entering the block (final value once it has been left)."""
        if self._elapsed is not None:
            return self._elapsed
        if self._start is None:
            raise RuntimeError("Timer has not been started: use it in a `with` block")
        return time.perf_counter() - self._start

    def __repr__(self) -> str:
        label = f"{self.name!r}, " if self.name else ""
        state = f"{self.elapsed:.3f} s" if self._start is not None else "not started"
        return f"Timer({label}{state})"
