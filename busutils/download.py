"""Download, verify and unpack the book's data sets.

The design follows the download helpers of MONAI's ``monai/apps/utils.py`` - check a hash,
download with a progress bar, extract - with a few stricter rules, because a reader's cache
must never hold a file that *looks* right but is not:

* every file is checked against a recorded checksum, both when it is downloaded and when a
  cached copy is reused; a cached file that fails is moved aside and fetched again;
* a download is written to a temporary file next to its destination and only moved into
  place (``os.replace``, atomic on one file system) once its checksum matches;
* archives are unpacked by :func:`safe_extract`, which refuses absolute paths, ``..``,
  links, device files and archives that would unpack to more than a size bound, and which
  also builds the result in a temporary folder and moves it into place in one step;
* without a network the helpers fail at once, with a message saying which URL to fetch by
  hand, where to save it and which checksum it must have.

The data sets are described in ``datasets.json`` (shipped with the package); see
:func:`load_manifest`.  :func:`fetch_dataset` is the one-call entry point used by the book::

    from busutils.download import fetch_dataset
    busi_root = fetch_dataset("busi")          # folder with benign/ malignant/ normal/
    npz_path = fetch_dataset("breastmnist")    # path of breastmnist.npz
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import stat
import tarfile
import tempfile
import urllib.request
import warnings
import zipfile
import zlib
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import IO

__all__ = [
    "DownloadError",
    "ChecksumError",
    "UnsafeArchiveError",
    "default_cache_dir",
    "load_manifest",
    "file_hash",
    "check_hash",
    "download_file",
    "safe_extract",
    "fetch_dataset",
]

#: Hash algorithms accepted for checksums (all in :data:`hashlib.algorithms_guaranteed`).
HASH_ALGORITHMS = ("md5", "sha1", "sha256", "sha512")

_CHUNK = 1024 * 1024  # bytes read and written at a time
_USER_AGENT = "busutils (https://pypi.org/project/busutils; Python urllib)"
_EXTRACTED_STAMP = ".busutils-extracted-from"  # written inside folders made by fetch_dataset


class DownloadError(RuntimeError):
    """A file could not be downloaded, or a downloaded file cannot be used."""


class ChecksumError(DownloadError):
    """A file's checksum differs from the recorded one."""


class UnsafeArchiveError(DownloadError):
    """An archive holds a member that could write outside its folder, or is too large."""


# --------------------------------------------------------------------------------------------
# Where things live
# --------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """Folder for downloads: ``$BUSUTILS_CACHE`` if set, else ``~/.cache/busutils``.

    Set ``BUSUTILS_CACHE`` to share one copy of the data between projects, or to point at a
    larger disk (on Colab, a mounted Google Drive folder survives restarts).
    """
    env = os.environ.get("BUSUTILS_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "busutils"


def load_manifest() -> dict[str, dict]:
    """Return the data-set manifest ``datasets.json`` as ``{name: entry}``.

    Read through :mod:`importlib.resources`, so it works from a wheel, a zip or a checkout.
    """
    text = resources.files("busutils").joinpath("datasets.json").read_text(encoding="utf-8")
    return {entry["name"]: entry for entry in json.loads(text)["datasets"]}


# --------------------------------------------------------------------------------------------
# Checksums
# --------------------------------------------------------------------------------------------


def _hasher(algorithm: str) -> "hashlib._Hash":
    """A fresh hash object; refuse algorithms outside :data:`HASH_ALGORITHMS`."""
    name = algorithm.lower()
    if name not in HASH_ALGORITHMS:
        raise ValueError(f"unsupported hash algorithm {algorithm!r}; use one of {HASH_ALGORITHMS}")
    # usedforsecurity=False lets md5 work on FIPS-restricted machines; it is an integrity check.
    return hashlib.new(name, usedforsecurity=False)


def file_hash(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB chunks so large archives need little memory."""
    digest = _hasher(algorithm)
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _same_hash(actual: str, expected: str) -> bool:
    return actual.lower() == expected.strip().lower()


def check_hash(path: str | os.PathLike, expected: str | None, algorithm: str) -> bool:
    """True when ``path`` exists and its ``algorithm`` digest equals ``expected``.

    Unlike MONAI's ``check_hash``, a missing ``expected`` (``None``) returns False: an unknown
    checksum never counts as verified.
    """
    if expected is None or not Path(path).is_file():
        return False
    return _same_hash(file_hash(path, algorithm), expected)


# --------------------------------------------------------------------------------------------
# Downloading
# --------------------------------------------------------------------------------------------


def _hash_command(algorithm: str) -> str:
    """How to compute a digest by hand on the three common systems."""
    name = algorithm.lower()
    unix = {"md5": "md5sum", "sha1": "sha1sum", "sha256": "sha256sum", "sha512": "sha512sum"}[name]
    mac = "md5 FILE" if name == "md5" else f"shasum -a {name[3:]} FILE"
    return f"`{unix} FILE` (Linux), `{mac}` (macOS), `certutil -hashfile FILE {name.upper()}` (Windows)"


def _by_hand(urls: Sequence[str], dest: Path, expected: str | None, algorithm: str) -> str:
    """Instructions for putting a file in place without this code's help."""
    lines = ["To put the file in place by hand:",
             "  1. On a computer with internet access, download it from (any one of):"]
    lines += [f"       {url}" for url in urls]
    lines += ["  2. Save it, without renaming or unpacking it, as:", f"       {dest}"]
    if expected:
        lines += [f"  3. Check that its {algorithm} checksum is:", f"       {expected}",
                  f"     e.g. with {_hash_command(algorithm)}."]
    else:
        lines += ["  3. No checksum is recorded for this file: the sha256 of the file you saved",
                  "     will be printed; keep it and pass it as sha256=... next time."]
    lines += ["  4. Run the same code again: the file will be checked and reused, not downloaded."]
    return "\n".join(lines)


def _progress_bar(total: int | None, name: str, enabled: bool):
    """A tqdm bar if tqdm is installed and wanted, else None."""
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=name)


def _fetch(url: str, target: IO[bytes], *, timeout: float, progress: bool, name: str) -> None:
    """Stream ``url`` into the open file ``target`` (no retries: fail fast, report, move on)."""
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        length = response.headers.get("Content-Length")
        bar = _progress_bar(int(length) if length and length.isdigit() else None, name, progress)
        try:
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                target.write(chunk)
                if bar is not None:
                    bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()
        if length and length.isdigit() and target.tell() != int(length):
            raise DownloadError(f"connection closed after {target.tell()} of {length} bytes")


def download_file(
    url_or_urls: str | Sequence[str],
    dest: str | os.PathLike,
    *,
    expected_hash: str | None,
    algorithm: str = "sha256",
    timeout: float = 30,
    progress: bool = True,
) -> Path:
    """Download a file to ``dest`` and check it, or reuse a cached copy that passes the check.

    Parameters
    ----------
    url_or_urls:
        One URL, or several tried in order (the first is the original, the rest mirrors).
        ``file://`` URLs work too, which is how the tests run without a network.
    dest:
        Full path of the file to create; its folder is created if needed.
    expected_hash:
        Hex digest the file must have.  ``None`` means "not known": the file is downloaded,
        its sha256 is computed and shown in a warning, to be recorded and passed next time.
    algorithm:
        Hash algorithm of ``expected_hash`` (``"sha256"``, ``"md5"``, ...).
    timeout:
        Seconds to wait for a connection and for each read.  There are no retries, so an
        unreachable host fails within ``timeout`` per URL, and at once when offline.
    progress:
        Show a tqdm progress bar (if tqdm is installed).

    Returns
    -------
    Path
        ``dest``, holding a verified file.

    Raises
    ------
    ChecksumError
        Every URL that answered gave a file with the wrong checksum.  The message names the
        file, the expected and the actual digest.  No bad file is left at ``dest``.
    DownloadError
        No URL could be read.  The message says how to put the file in place by hand.
    """
    urls = [url_or_urls] if isinstance(url_or_urls, str) else list(url_or_urls)
    if not urls:
        raise ValueError("download_file needs at least one URL")
    dest = Path(dest)
    _hasher(algorithm)  # reject an unknown algorithm before any work

    # 1. A cached copy is reused only if it passes the check.
    note = ""  # what happened to a bad cached copy, for the error message
    if dest.is_file():
        if expected_hash is None:
            actual = file_hash(dest, "sha256")
            warnings.warn(
                f"Reusing {dest} without a checksum to compare with; its sha256 is {actual}. "
                f"Pass sha256='{actual}' to check it from now on.", stacklevel=2)
            return dest
        actual = file_hash(dest, algorithm)
        if _same_hash(actual, expected_hash):
            return dest
        # Never keep using a bad file, but do not destroy it either: it may be a hand
        # download the reader wants to inspect.
        aside = dest.with_name(dest.name + ".corrupt")
        os.replace(dest, aside)
        note = (f"Cached file {dest} has {algorithm} {actual}, expected {expected_hash}; "
                f"moved it to {aside}.")
        warnings.warn(note + " Downloading it again.", stacklevel=2)

    # 2. Download into a temporary file in the same folder, check it, then move it into place.
    dest.parent.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    mismatches: list[str] = []
    for url in urls:
        handle = tempfile.NamedTemporaryFile(
            dir=dest.parent, prefix=f".{dest.name}.", suffix=".part", delete=False)
        tmp = Path(handle.name)
        try:
            with handle:
                _fetch(url, handle, timeout=timeout, progress=progress, name=dest.name)
            if expected_hash is None:
                actual = file_hash(tmp, "sha256")
                warnings.warn(
                    f"Downloaded {dest.name} from {url} but no checksum is recorded, so it was "
                    f"not verified. Its sha256 is {actual}; pass sha256='{actual}' next time "
                    "to make sure you keep using the same file.", stacklevel=2)
            else:
                actual = file_hash(tmp, algorithm)
                if not _same_hash(actual, expected_hash):
                    mismatches.append(f"  {url}\n    expected {algorithm} {expected_hash}\n"
                                      f"    actual   {algorithm} {actual}")
                    continue
            os.replace(tmp, dest)
            return dest
        except Exception as error:  # any failure of one URL: note it and try the next
            failures.append(f"  {url}\n    {type(error).__name__}: {error}")
        finally:
            tmp.unlink(missing_ok=True)

    if mismatches:
        raise ChecksumError(
            f"Downloaded {dest.name}, but its checksum is wrong, so it was deleted and "
            f"{dest} was not created:\n" + "\n".join(mismatches + failures) + "\n"
            "The file may have been damaged in transit (try again) or changed by its publisher. "
            "Only if you have checked that the new file is genuine, pass its actual checksum "
            "instead of the recorded one.")
    raise DownloadError(
        f"Could not download {dest.name}; every URL failed:\n" + "\n".join(failures) + "\n"
        + (note + "\n" if note else "") + _by_hand(urls, dest, expected_hash, algorithm))


# --------------------------------------------------------------------------------------------
# Unpacking
# --------------------------------------------------------------------------------------------

_DRIVE = re.compile(r"^[A-Za-z]:")


def _member_parts(archive: Path, name: str) -> tuple[str, ...]:
    """Split a member name into path parts, refusing any that could escape the folder."""
    unified = name.replace("\\", "/")
    if not name or "\x00" in name:
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an empty or invalid name")
    if unified.startswith("/") or _DRIVE.match(unified):
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path")
    parts = tuple(p for p in unified.split("/") if p not in ("", "."))
    if ".." in parts:
        raise UnsafeArchiveError(f"{archive}: member {name!r} contains a '..' component")
    return parts


class _Budget:
    """Counts members and bytes actually written, against the bounds of :func:`safe_extract`."""

    def __init__(self, archive: Path, max_total_bytes: int, max_members: int) -> None:
        self.archive, self.max_bytes, self.max_members = archive, max_total_bytes, max_members
        self.bytes = self.members = 0
        self.current = ""  # member being read, for error messages

    def add_member(self, name: str, declared_size: int) -> None:
        self.current = name
        self.members += 1
        if self.members > self.max_members:
            raise UnsafeArchiveError(
                f"{self.archive}: more than {self.max_members} members (at {name!r})")
        self.bytes += max(declared_size, 0)
        if self.bytes > self.max_bytes:
            raise UnsafeArchiveError(
                f"{self.archive}: declared uncompressed size exceeds {self.max_bytes} bytes "
                f"(at member {name!r})")

    def copy(self, source: IO[bytes], target: Path, name: str, declared_size: int) -> None:
        """Copy one member, stopping as soon as it outgrows its header or the total bound."""
        self.current, written = name, 0
        with open(target, "xb") as out:
            for chunk in iter(lambda: source.read(_CHUNK), b""):
                written += len(chunk)
                self.bytes += len(chunk)
                if written > declared_size:
                    raise UnsafeArchiveError(
                        f"{self.archive}: member {name!r} unpacks to more than the "
                        f"{declared_size} bytes its header declares")
                if self.bytes > self.max_bytes:
                    raise UnsafeArchiveError(
                        f"{self.archive}: unpacking exceeds {self.max_bytes} bytes "
                        f"(at member {name!r})")
                out.write(chunk)


def _inside(archive: Path, root: Path, parts: tuple[str, ...]) -> Path:
    """``root/parts``, double-checked to resolve inside ``root``."""
    target = root.joinpath(*parts)
    if not target.resolve().is_relative_to(root.resolve()):
        raise UnsafeArchiveError(
            f"{archive}: member {'/'.join(parts)!r} would be written outside {root}")
    return target


_ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)


def _write_members(archive: Path, root: Path, budget: _Budget, plan: list, open_member) -> None:
    """Write the checked members of ``plan`` (``(name, parts, is_dir, size, member)``) under ``root``."""
    budget.bytes = 0  # from here on, count bytes actually written
    for name, parts, is_dir, size, member in plan:
        if not parts:
            continue
        target = _inside(archive, root, parts)
        if is_dir:
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with open_member(member) as source:
            budget.copy(source, target, name, size)


def _extract_zip(archive: Path, root: Path, budget: _Budget) -> None:
    with zipfile.ZipFile(archive) as zf:
        plan = []
        for info in zf.infolist():  # check everything before writing anything
            parts = _member_parts(archive, info.filename)
            mode = info.external_attr >> 16  # Unix mode, 0 for archives made on Windows
            if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise UnsafeArchiveError(
                    f"{archive}: member {info.filename!r} is a link or special file")
            if info.compress_type not in _ZIP_METHODS:
                raise UnsafeArchiveError(
                    f"{archive}: member {info.filename!r} uses compression method {info.compress_type}, "
                    "which Python's zipfile cannot read; re-pack the archive with deflate")
            size = 0 if info.is_dir() else info.file_size
            budget.add_member(info.filename, size)
            plan.append((info.filename, parts, info.is_dir(), size, info))
        _write_members(archive, root, budget, plan, zf.open)


def _extract_tar(archive: Path, root: Path, budget: _Budget) -> None:
    data_filter = getattr(tarfile, "data_filter", None)  # Python >= 3.11.4 / 3.12
    with tarfile.open(archive, "r:*") as tf:
        plan = []
        for member in tf:  # lazy: stops early on a bomb, before reading the rest
            parts = _member_parts(archive, member.name)
            if not (member.isfile() or member.isdir()):
                kind = "link" if (member.issym() or member.islnk()) else "special file"
                raise UnsafeArchiveError(f"{archive}: member {member.name!r} is a {kind}")
            if data_filter is not None:  # the standard library's own "data" rules, as well
                try:
                    data_filter(member, str(root))
                except tarfile.FilterError as error:
                    raise UnsafeArchiveError(f"{archive}: member {member.name!r}: {error}") from error
            size = member.size if member.isfile() else 0
            budget.add_member(member.name, size)
            plan.append((member.name, parts, member.isdir(), size, member))
        _write_members(archive, root, budget, plan, tf.extractfile)


def safe_extract(
    archive: str | os.PathLike,
    dest: str | os.PathLike,
    *,
    max_total_bytes: int = 5 * 2**30,
    max_members: int = 100_000,
) -> Path:
    """Unpack a zip or tar (optionally gz/bz2/xz) archive into the new folder ``dest``.

    Every member is checked before anything is written.  Refused, with
    :class:`UnsafeArchiveError` naming the archive and the member: absolute paths, ``..``
    components, symbolic and hard links, device files and FIFOs, more than ``max_members``
    members, and a declared uncompressed size above ``max_total_bytes``.  Because headers can
    lie, the bound is enforced again on the bytes actually written.  For tar files the
    standard library's ``"data"`` extraction filter is applied too, when available.

    The archive is unpacked into a temporary sibling of ``dest`` that is renamed to ``dest``
    only when complete, so ``dest`` either holds the whole archive or does not exist; on
    failure the temporary folder is removed.  ``dest`` must not exist (an empty folder is
    allowed); use :func:`fetch_dataset` for "extract once, reuse afterwards".

    Returns ``dest``.
    """
    archive, dest = Path(archive), Path(dest)
    if dest.exists():
        if dest.is_dir() and not any(dest.iterdir()):
            dest.rmdir()
        else:
            raise FileExistsError(f"{dest} already exists; remove it to extract {archive} again")
    if zipfile.is_zipfile(archive):
        extract = _extract_zip
    elif tarfile.is_tarfile(archive):
        extract = _extract_tar
    else:
        raise DownloadError(
            f"{archive} is neither a zip nor a tar archive (a web page saved instead of the "
            "file? check its first bytes)")

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".partial"))
    try:
        budget = _Budget(archive, max_total_bytes, max_members)
        try:
            extract(archive, tmp, budget)
        except UnsafeArchiveError:
            raise
        except FileExistsError as error:  # the same path twice: which copy is meant?
            raise UnsafeArchiveError(
                f"{archive}: member {budget.current!r} clashes with an earlier member") from error
        except (zipfile.BadZipFile, tarfile.TarError, gzip.BadGzipFile, zlib.error, EOFError,
                RuntimeError) as error:  # a bad CRC, a truncated or an encrypted member
            detail = str(error)[:200]  # zipfile may quote whole headers
            raise UnsafeArchiveError(f"{archive} is damaged or unsupported "
                                     f"(at member {budget.current!r}): {detail}") from error
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return dest


# --------------------------------------------------------------------------------------------
# The one-call entry point
# --------------------------------------------------------------------------------------------


def _find_root(folder: Path, subdirs: Sequence[str], preferred: str | None) -> Path:
    """The folder below ``folder`` that holds all of ``subdirs`` (e.g. BUSI's class folders)."""
    def holds(candidate: Path) -> bool:
        return all((candidate / sub).is_dir() for sub in subdirs)

    candidates = [folder / preferred] if preferred else []
    candidates.append(folder)
    for depth in ("*", "*/*", "*/*/*"):
        candidates += sorted(p for p in folder.glob(depth)
                             if p.is_dir() and "__MACOSX" not in p.parts)
    for candidate in candidates:
        if candidate.is_dir() and holds(candidate):
            return candidate
    raise DownloadError(f"no folder with {', '.join(s + '/' for s in subdirs)} found in {folder}")


def fetch_dataset(
    name: str,
    *,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    sha256: str | None = None,
    timeout: float = 30,
) -> Path:
    """Download (or reuse) a data set from the manifest and return the path to give a loader.

    * ``"busi"`` - the folder containing ``benign/``, ``malignant/`` and ``normal/``;
    * ``"breastmnist"``, ``"breastmnist_224"`` - the path of the ``.npz`` file.

    Files go to ``<cache_dir>/<name>/`` (default :func:`default_cache_dir`).  The download is
    checked against the manifest's checksum every time; archives are extracted once, into
    ``<cache_dir>/<name>/extracted/``, and reused while the archive is unchanged.

    ``sha256`` overrides the manifest's checksum: use it for a data set whose checksum is not
    recorded (the first download prints the value to pass), or - after checking - when the
    publisher has changed the file.

    Raises ``ValueError`` for an unknown name, and the errors of :func:`download_file` and
    :func:`safe_extract`.
    """
    manifest = load_manifest()
    if name not in manifest:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(sorted(manifest))}")
    entry = manifest[name]
    if sha256 is not None:
        expected, algorithm = sha256, "sha256"
    elif entry.get("sha256"):
        expected, algorithm = entry["sha256"], "sha256"
    elif entry.get("md5"):
        expected, algorithm = entry["md5"], "md5"
    else:
        expected, algorithm = None, "sha256"

    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = folder.expanduser() / name
    path = download_file([entry["url"], *entry.get("mirrors", [])], folder / entry["filename"],
                         expected_hash=expected, algorithm=algorithm, timeout=timeout,
                         progress=progress)
    if not entry.get("archive"):
        return path

    # Extract once.  The stamp names the archive's checksum, so a changed archive is
    # re-extracted instead of silently mixing old and new files.
    stamp = f"{entry['filename']} {algorithm}:{(expected or file_hash(path, 'sha256')).lower()}"
    extracted = folder / "extracted"
    stamp_file = extracted / _EXTRACTED_STAMP
    if not (stamp_file.is_file() and stamp_file.read_text(encoding="utf-8").strip() == stamp):
        if extracted.exists():
            shutil.rmtree(extracted)  # stale or interrupted; it lives inside our cache folder
        safe_extract(path, extracted)
        stamp_file.write_text(stamp + "\n", encoding="utf-8")
    subdirs = entry.get("expected_subdirs")
    if not subdirs:
        return extracted
    return _find_root(extracted, subdirs, entry.get("data_root"))
