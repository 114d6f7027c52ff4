"""Download, verify and unpack the book's data sets.

`pooch <https://www.fatiando.org/pooch/>`_ does the fetching: HTTP with a progress bar, a
download written to a temporary file and moved into place only once its hash matches, a cached
copy reused when its hash still matches.  This module keeps what pooch does not do:

* a list of **sources** per data set (the original host, then mirrors), tried in order, each
  verified before use, and one error that names every source tried and why it failed;
* a mirror whose archive differs byte for byte from the original (re-packed by its host) is
  verified image by image, against a manifest of per-image content hashes recorded from the
  original (:func:`image_manifest`), because no hash of its archive can be known beforehand;
* :func:`safe_extract`, unpacking with a size bound and without links or paths that escape;
* the manifest itself, ``datasets.json``, shipped with the package (``$BUSUTILS_DATASETS``
  names another one, e.g. an institution's own mirror).

:func:`fetch_dataset` is the one-call entry point used by the book::

    from busutils.download import fetch_dataset
    busi_root = fetch_dataset("busi")          # folder with benign/ malignant/ normal/
    npz_path = fetch_dataset("breastmnist")    # path of breastmnist.npz
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import tarfile
import tempfile
import warnings
import zipfile
import zlib
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import IO

import pooch

__all__ = [
    "DownloadError",
    "ChecksumError",
    "UnsafeArchiveError",
    "default_cache_dir",
    "load_manifest",
    "file_hash",
    "check_hash",
    "download_file",
    "image_hash",
    "image_manifest",
    "check_images",
    "safe_extract",
    "fetch_dataset",
]

#: Hash algorithms accepted for checksums (all in :data:`hashlib.algorithms_guaranteed`).
HASH_ALGORITHMS = ("md5", "sha1", "sha256", "sha512")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

_CHUNK = 1024 * 1024  # bytes read and written at a time
_LOG = logging.getLogger(__name__)
_STAMP = ".busutils-verified"  # written inside folders made by fetch_dataset


class DownloadError(RuntimeError):
    """A file could not be downloaded, or a downloaded file cannot be used."""


class ChecksumError(DownloadError):
    """A file's (or an image's) checksum differs from the recorded one."""


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
    """The data-set manifest as ``{name: entry}``: ``$BUSUTILS_DATASETS`` if set, else the package's.

    The package's ``datasets.json`` is read through :mod:`importlib.resources`, so it works
    from a wheel, a zip or a checkout.
    """
    other = os.environ.get("BUSUTILS_DATASETS")
    if other:
        text = Path(other).expanduser().read_text(encoding="utf-8")
    else:
        text = resources.files("busutils").joinpath("datasets.json").read_text(encoding="utf-8")
    return {entry["name"]: entry for entry in json.loads(text)["datasets"]}


def _image_manifest_file(name: str) -> dict[str, str] | None:
    """The per-image hashes in the file ``name``, or None while none is recorded.

    The file sits beside the manifest that names it: ``$BUSUTILS_DATASETS``'s folder, else the
    package's (``busutils/<name>``).
    """
    other = os.environ.get("BUSUTILS_DATASETS")
    if other:
        resource = Path(other).expanduser().parent / name
    else:
        resource = resources.files("busutils").joinpath(name)
    if not resource.is_file():
        return None
    return json.loads(resource.read_text(encoding="utf-8"))["images"]


# --------------------------------------------------------------------------------------------
# Checksums
# --------------------------------------------------------------------------------------------


def _algorithm(name: str) -> str:
    name = name.lower()
    if name not in HASH_ALGORITHMS:
        raise ValueError(f"unsupported hash algorithm {name!r}; use one of {HASH_ALGORITHMS}")
    return name


def file_hash(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file (read in chunks, so large archives need little memory)."""
    return pooch.file_hash(str(path), alg=_algorithm(algorithm))


def check_hash(path: str | os.PathLike, expected: str | None, algorithm: str) -> bool:
    """True when ``path`` exists and its digest equals ``expected``; an unknown one never does."""
    if expected is None or not Path(path).is_file():
        return False
    return file_hash(path, algorithm) == expected.strip().lower()


def image_hash(path: str | os.PathLike) -> str:
    """sha256 of an image's decoded content (mode, size, pixels), not of its file.

    Two files that hold the same pixels hash alike however they were compressed or tagged,
    which is what a re-packed mirror must be checked for: the same images, not the same bytes.
    """
    from PIL import Image

    with Image.open(path) as image:
        digest = hashlib.sha256(f"{image.mode} {image.width}x{image.height}\n".encode())
        digest.update(image.tobytes())
    return digest.hexdigest()


def _image_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and "__MACOSX" not in p.parts)


def image_manifest(root: str | os.PathLike) -> dict[str, str]:
    """``{relative path: image_hash}`` of every image below ``root`` (masks included)."""
    root = Path(root)
    return {p.relative_to(root).as_posix(): image_hash(p) for p in _image_files(root)}


def check_images(root: str | os.PathLike, expected: dict[str, str]) -> None:
    """Raise :class:`ChecksumError` unless ``root`` holds exactly the images of ``expected``."""
    root = Path(root)
    found = {p.relative_to(root).as_posix(): p for p in _image_files(root)}
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    differ = sorted(k for k in set(expected) & set(found) if image_hash(found[k]) != expected[k])
    if missing or extra or differ:
        def some(names: list[str]) -> str:
            return ", ".join(names[:3]) + (" ..." if len(names) > 3 else "")

        parts = [f"{len(differ)} with other pixels ({some(differ)})" if differ else "",
                 f"{len(missing)} missing ({some(missing)})" if missing else "",
                 f"{len(extra)} not in the original ({some(extra)})" if extra else ""]
        raise ChecksumError(f"the images differ from the original release's: "
                            f"{'; '.join(p for p in parts if p)} (of {len(expected)} recorded)")


# --------------------------------------------------------------------------------------------
# Downloading
# --------------------------------------------------------------------------------------------


def _hash_command(algorithm: str) -> str:
    """How to compute a digest by hand on the three common systems."""
    unix = f"{algorithm}sum"
    mac = "md5 FILE" if algorithm == "md5" else f"shasum -a {algorithm[3:]} FILE"
    return f"`{unix} FILE` (Linux), `{mac}` (macOS), `certutil -hashfile FILE {algorithm.upper()}` (Windows)"


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


def _retrieve(url: str, dest: Path, known_hash: str | None, *, timeout: float, progress: bool,
              tls_verify: bool = True) -> None:
    """One pooch download of ``url`` to ``dest``, its hash checked; raises what pooch raises."""
    downloader = pooch.HTTPDownloader(progressbar=progress, timeout=timeout, verify=tls_verify)
    with warnings.catch_warnings():
        if not tls_verify:  # the recorded checksum, not the certificate, vouches for the file
            warnings.filterwarnings("ignore", message="Unverified HTTPS request")
        pooch.retrieve(url, known_hash=known_hash, fname=dest.name, path=dest.parent,
                       downloader=downloader)


def download_file(
    url_or_urls: str | Sequence[str],
    dest: str | os.PathLike,
    *,
    expected_hash: str | None,
    algorithm: str = "sha256",
    timeout: float = 30,
    progress: bool = True,
    tls_verify: bool = True,
) -> Path:
    """Download a file to ``dest`` and check it, or reuse a cached copy that passes the check.

    ``url_or_urls`` are tried in order (the first the original, the rest mirrors of the same
    file).  ``expected_hash`` (of ``algorithm``) must match; ``None`` means "not known": the
    file is downloaded and its sha256 shown in a warning, to be recorded.  A cached copy that
    fails the check is moved aside to ``<dest>.corrupt`` (never deleted, never used).  There
    are no retries: an unreachable host fails within ``timeout`` seconds.

    Raises :class:`ChecksumError` when every source that answered gave a file with another
    checksum (no bad file is left at ``dest``), else :class:`DownloadError` with the reason
    for each source and how to put the file in place by hand.
    """
    urls = [url_or_urls] if isinstance(url_or_urls, str) else list(url_or_urls)
    if not urls:
        raise ValueError("download_file needs at least one URL")
    dest, algorithm = Path(dest), _algorithm(algorithm)
    expected = expected_hash.strip().lower() if expected_hash else None

    note = ""  # what happened to a bad cached copy, for the error message
    if dest.is_file():
        if expected is None:
            actual = file_hash(dest, "sha256")
            warnings.warn(f"Reusing {dest} without a checksum to compare with; its sha256 is "
                          f"{actual}. Pass sha256='{actual}' to check it from now on.", stacklevel=2)
            return dest
        actual = file_hash(dest, algorithm)
        if actual == expected:
            return dest
        aside = dest.with_name(dest.name + ".corrupt")
        os.replace(dest, aside)
        note = f"Cached file {dest} has {algorithm} {actual}, expected {expected}; moved it to {aside}."
        warnings.warn(note + " Downloading it again.", stacklevel=2)

    failures: list[str] = []
    mismatches: list[str] = []
    for url in urls:
        try:
            _retrieve(url, dest, f"{algorithm}:{expected}" if expected else None, timeout=timeout,
                      progress=progress, tls_verify=tls_verify)
        except ValueError as error:
            if "does not match the known hash" not in str(error):
                failures.append(f"  {url}\n    {type(error).__name__}: {error}")
                continue
            actual = re.search(r"but got ([0-9a-f]+)", str(error))
            mismatches.append(f"  {url}\n    expected {algorithm} {expected}\n"
                              f"    actual   {algorithm} {actual.group(1) if actual else '?'}")
            continue
        except Exception as error:  # any failure of one source: note it and try the next
            failures.append(f"  {url}\n    {type(error).__name__}: {error}")
            continue
        if expected is None:
            actual = file_hash(dest, "sha256")
            warnings.warn(f"Downloaded {dest.name} from {url} but no checksum is recorded, so it was "
                          f"not verified. Its sha256 is {actual}; pass sha256='{actual}' next time "
                          "to make sure you keep using the same file.", stacklevel=2)
        return dest

    if mismatches:
        raise ChecksumError(
            f"Downloaded {dest.name}, but its checksum is wrong, so it was deleted and {dest} was "
            "not created:\n" + "\n".join(mismatches + failures) + "\nThe file may have been "
            "damaged in transit (try again) or changed by its publisher. Only if you have checked "
            "that the new file is genuine, pass its actual checksum instead of the recorded one.")
    raise DownloadError(
        f"Could not download {dest.name}; every URL failed:\n" + "\n".join(failures) + "\n"
        + (note + "\n" if note else "") + _by_hand(urls, dest, expected, algorithm))


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
    allowed).  Returns ``dest``.
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


def sources(entry: dict, sha256: str | None = None) -> list[dict]:
    """The entry's sources in the order tried, each with its own check.

    Each is ``{"url", "filename", "sha256"/"md5", "verify", "tls_verify"}``; ``verify`` is
    ``"file"`` (the download's checksum) or ``"images"`` (per-image hashes after unpacking).
    An entry of the older shape (``url``, ``mirrors`` and one checksum) gives one source per
    URL, all with that checksum.  ``sha256`` overrides the checksum of every ``"file"`` source.
    """
    listed = entry.get("sources") or [
        {"url": url, "sha256": entry.get("sha256"), "md5": entry.get("md5")}
        for url in [entry["url"], *entry.get("mirrors", [])]]
    out = []
    for source in listed:
        source = {"filename": entry["filename"], "verify": "file", "tls_verify": True, **source}
        if sha256 is not None and source["verify"] == "file":
            source.update(sha256=sha256, md5=None)
        out.append(source)
    return out


@contextlib.contextmanager
def _quiet(logger: logging.Logger):
    """Hide ``logger``'s notes (pooch's advice to record a hash) where the images are checked instead."""
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _stamp(source: dict, how: str) -> str:
    return f"{source['url']}\n{how}\n"


def _how(source: dict, entry: dict) -> str | None:
    """How ``source`` is verified, as its stamp says; None while its checksum is unknown."""
    if source["verify"] == "images":
        return f"images checked against {entry['image_manifest']}"
    expected, algorithm = _checksum_of(source)
    return f"{algorithm} {expected.lower()}" if expected else None


def _unpack_verified(archive: Path, extracted: Path, entry: dict, source: dict, how: str,
                     images: dict[str, str] | None) -> Path:
    """Extract ``archive`` to ``extracted`` (replacing it), check the images if asked, stamp it."""
    if extracted.exists():
        shutil.rmtree(extracted)  # stale or interrupted; it lives inside our cache folder
    safe_extract(archive, extracted)
    try:
        root = _root(extracted, entry)
        if images is not None:
            check_images(root, images)
    except DownloadError:
        shutil.rmtree(extracted)
        raise
    (extracted / _STAMP).write_text(_stamp(source, how), encoding="utf-8")
    return root


def _root(extracted: Path, entry: dict) -> Path:
    subdirs = entry.get("expected_subdirs")
    return _find_root(extracted, subdirs, entry.get("data_root")) if subdirs else extracted


def _checksum_of(source: dict) -> tuple[str | None, str]:
    if source.get("sha256"):
        return source["sha256"], "sha256"
    if source.get("md5"):
        return source["md5"], "md5"
    return None, "sha256"


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

    The sources are tried in order, each verified before use: by its recorded checksum, or
    (a mirror that re-packed the archive) by the content hash of every image against the
    manifest recorded from the original release.  A source that cannot be verified here is
    skipped without downloading it.  Files go to ``<cache_dir>/<name>/`` (default
    :func:`default_cache_dir`); archives are extracted once, into ``<cache_dir>/<name>/extracted/``,
    and reused while the stamp there names a verified source.

    ``sha256`` overrides the manifest's checksum: use it for a data set whose checksum is not
    recorded (the first download prints the value to pass), or - after checking - when the
    publisher has changed the file.  Raises ``ValueError`` for an unknown name, and a
    :class:`DownloadError` naming every source tried when none gave verified data.
    """
    manifest = load_manifest()
    if name not in manifest:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(sorted(manifest))}")
    entry = manifest[name]
    folder = (Path(cache_dir) if cache_dir is not None else default_cache_dir()).expanduser() / name
    extracted = folder / "extracted"
    stamp = extracted / _STAMP
    tried = sources(entry, sha256)
    if entry.get("archive") and stamp.is_file():
        recorded = stamp.read_text(encoding="utf-8")
        for source in tried:
            how = _how(source, entry)
            if recorded == _stamp(source, how) if how else recorded.startswith(source["url"] + "\n"):
                return _root(extracted, entry)

    images = _image_manifest_file(entry["image_manifest"]) if entry.get("image_manifest") else None
    failures: list[str] = []
    errors: list[DownloadError] = []
    for source in tried:
        dest = folder / source["filename"]
        expected, algorithm = _checksum_of(source)
        if source["verify"] == "images":
            if images is None:
                failures.append(f"  {source['url']}\n    not tried: it re-packs the archive, so it "
                                f"is checked image by image, and no per-image manifest "
                                f"({entry['image_manifest']}) is recorded in this version")
                continue
            expected = None
        try:
            if source["verify"] == "images":
                with warnings.catch_warnings(), _quiet(pooch.get_logger()):
                    warnings.simplefilter("ignore", UserWarning)  # the images are checked below
                    path = download_file(source["url"], dest, expected_hash=None, timeout=timeout,
                                         progress=progress, tls_verify=source["tls_verify"])
                how = _how(source, entry)
            else:
                path = download_file(source["url"], dest, expected_hash=expected, algorithm=algorithm,
                                     timeout=timeout, progress=progress, tls_verify=source["tls_verify"])
                how = _how(source, entry) or f"sha256 {file_hash(path)}"
            if not entry.get("archive"):
                return path
            return _unpack_verified(path, extracted, entry, source, how,
                                    images if source["verify"] == "images" else None)
        except DownloadError as error:
            if source["verify"] == "images":
                dest.unlink(missing_ok=True)  # never keep an archive whose images failed
            errors.append(error)
            failures.append(f"  {source['url']}\n    " + str(error).replace("\n", "\n    "))
            if source is not tried[-1]:
                lines = str(error).splitlines()  # one line, or the URL's own line of a list
                _LOG.warning("%s could not be used (%s); trying the next source", source["url"],
                             lines[2].strip() if len(lines) > 2 else lines[0])
    if len(errors) == 1 and len(failures) == 1:
        raise errors[0]
    kind = ChecksumError if errors and all(isinstance(e, ChecksumError) for e in errors) else DownloadError
    raise kind(f"No source of {name!r} gave verified data; tried, in order:\n" + "\n".join(failures))


def write_image_manifest(name: str, out: str | os.PathLike, **fetch_options) -> Path:
    """Record the per-image hashes of data set ``name`` from a source verified by its checksum.

    This is how ``image_manifest`` files are made: once, on a machine with the network, from
    the original release (never from a mirror: a manifest must not vouch for itself).
    """
    root = fetch_dataset(name, **fetch_options)
    cache = Path(fetch_options.get("cache_dir") or default_cache_dir()).expanduser() / name
    url, how = (cache / "extracted" / _STAMP).read_text(encoding="utf-8").splitlines()[:2]
    if how.startswith("images"):
        raise DownloadError(f"{name} came from a mirror checked by its images ({how}); a manifest "
                            "is recorded only from a source verified by its own checksum")
    record = {"about": f"Content hash (busutils.download.image_hash) of every image of {name!r}, "
                       f"recorded from {url} ({how}).", "images": image_manifest(root)}
    out = Path(out)
    tmp = out.with_name(out.name + ".partial")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, out)
    return out
