"""Tests for busutils.download: offline, local files only (file:// URLs are not the network)."""

from __future__ import annotations

import hashlib
import io
import struct
import tarfile
import urllib.request
import zipfile
from pathlib import Path

import pytest

from busutils import download
from busutils.download import (
    ChecksumError,
    DownloadError,
    UnsafeArchiveError,
    check_hash,
    download_file,
    fetch_dataset,
    file_hash,
    safe_extract,
)

PAYLOAD = b"breast ultrasound test payload\n" * 100


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A local file to "download"."""
    path = tmp_path / "server" / "data.bin"
    path.parent.mkdir()
    path.write_bytes(PAYLOAD)
    return path


@pytest.fixture
def no_fetch(monkeypatch):
    """Make any attempt to open a URL fail the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("urlopen must not be called")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def leftovers(folder: Path) -> list[str]:
    """Temporary files or folders left behind in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# --- checksums ---------------------------------------------------------------------------


def test_file_hash_and_check_hash(source):
    assert file_hash(source) == sha256(PAYLOAD)
    assert file_hash(source, "md5") == hashlib.md5(PAYLOAD).hexdigest()
    assert check_hash(source, sha256(PAYLOAD).upper(), "sha256")
    assert not check_hash(source, "0" * 64, "sha256")
    assert not check_hash(source, None, "sha256")  # unknown never counts as verified
    with pytest.raises(ValueError):
        file_hash(source, "crc32")


def test_default_cache_dir_honours_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("BUSUTILS_CACHE", str(tmp_path / "c"))
    assert download.default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("BUSUTILS_CACHE")
    assert download.default_cache_dir() == Path.home() / ".cache" / "busutils"


# --- download_file -----------------------------------------------------------------------


def test_download_from_file_url_is_verified(source, tmp_path):
    dest = tmp_path / "cache" / "data.bin"
    out = download_file(source.as_uri(), dest, expected_hash=sha256(PAYLOAD), progress=True)
    assert out == dest and dest.read_bytes() == PAYLOAD
    assert leftovers(dest.parent) == []


def test_md5_checksum_is_accepted(source, tmp_path):
    dest = tmp_path / "data.bin"
    download_file(source.as_uri(), dest, expected_hash=hashlib.md5(PAYLOAD).hexdigest(),
                  algorithm="md5", progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_checksum_mismatch_is_refused_and_nothing_left(source, tmp_path):
    dest = tmp_path / "cache" / "data.bin"
    with pytest.raises(ChecksumError) as info:
        download_file(source.as_uri(), dest, expected_hash="ab" * 32, progress=False)
    message = str(info.value)
    assert "data.bin" in message and "ab" * 32 in message and sha256(PAYLOAD) in message
    assert not dest.exists()
    assert leftovers(dest.parent) == []


def test_cached_good_file_reused_without_network(source, tmp_path, no_fetch):
    dest = tmp_path / "data.bin"
    dest.write_bytes(PAYLOAD)
    out = download_file("https://example.invalid/data.bin", dest,
                        expected_hash=sha256(PAYLOAD), progress=False)
    assert out == dest and dest.read_bytes() == PAYLOAD


def test_cached_corrupt_file_is_detected_and_replaced(source, tmp_path):
    dest = tmp_path / "data.bin"
    dest.write_bytes(PAYLOAD[:-1] + b"X")
    with pytest.warns(UserWarning, match="expected"):
        download_file(source.as_uri(), dest, expected_hash=sha256(PAYLOAD), progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert (tmp_path / "data.bin.corrupt").read_bytes() == PAYLOAD[:-1] + b"X"


def test_cached_corrupt_file_not_used_when_offline(tmp_path):
    dest = tmp_path / "data.bin"
    dest.write_bytes(b"truncated")
    with pytest.warns(UserWarning), pytest.raises(DownloadError) as info:
        download_file("http://127.0.0.1:9/data.bin", dest, expected_hash=sha256(PAYLOAD),
                      progress=False)
    assert not dest.exists()  # the bad copy is no longer where loaders look
    assert "data.bin.corrupt" in str(info.value)


def test_mirror_fallback(source, tmp_path):
    dest = tmp_path / "data.bin"
    missing = (tmp_path / "nowhere" / "data.bin").as_uri()
    download_file([missing, source.as_uri()], dest, expected_hash=sha256(PAYLOAD), progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_mirror_fallback_after_bad_checksum(source, tmp_path):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"a web page, not the file")
    dest = tmp_path / "data.bin"
    download_file([bad.as_uri(), source.as_uri()], dest, expected_hash=sha256(PAYLOAD),
                  progress=False)
    assert dest.read_bytes() == PAYLOAD


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/Dataset_BUSI.zip",
                                 "https://scholar.cu.edu.eg/Dataset_BUSI.zip"])
def test_network_unreachable_gives_by_hand_instructions(tmp_path, url):
    dest = tmp_path / "busi" / "Dataset_BUSI.zip"
    with pytest.raises(DownloadError) as info:
        download_file(url, dest, expected_hash="cd" * 32, progress=False, timeout=2)
    message = str(info.value)
    assert not isinstance(info.value, ChecksumError)
    assert url in message and str(dest) in message and "cd" * 32 in message
    assert "by hand" in message and "again" in message
    assert not dest.exists() and leftovers(dest.parent) == []


def test_unknown_checksum_downloads_and_reports_sha256(source, tmp_path):
    dest = tmp_path / "data.bin"
    with pytest.warns(UserWarning, match=sha256(PAYLOAD)):
        download_file(source.as_uri(), dest, expected_hash=None, progress=False)
    assert dest.read_bytes() == PAYLOAD


# --- safe_extract ------------------------------------------------------------------------


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def make_tar(path: Path, members: list[tarfile.TarInfo], data: dict[str, bytes] | None = None):
    data = data or {}
    with tarfile.open(path, "w:gz") as tf:
        for info in members:
            payload = data.get(info.name)
            if payload is not None:
                info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload) if payload is not None else None)
    return path


def file_info(name: str) -> tarfile.TarInfo:
    return tarfile.TarInfo(name)


def test_good_zip_extracts(tmp_path):
    archive = make_zip(tmp_path / "a.zip", {"top/benign/b (1).png": b"png",
                                            "top/normal/": b"", "top/readme.txt": b"hi"})
    out = safe_extract(archive, tmp_path / "out")
    assert (out / "top" / "benign" / "b (1).png").read_bytes() == b"png"
    assert (out / "top" / "normal").is_dir()
    assert leftovers(tmp_path) == []
    with pytest.raises(FileExistsError):
        safe_extract(archive, tmp_path / "out")


def test_good_tar_gz_extracts(tmp_path):
    folder = file_info("top/malignant")
    folder.type = tarfile.DIRTYPE
    archive = make_tar(tmp_path / "a.tar.gz", [folder, file_info("top/malignant/m.png")],
                       {"top/malignant/m.png": b"png"})
    out = safe_extract(archive, tmp_path / "out")
    assert (out / "top" / "malignant" / "m.png").read_bytes() == b"png"
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("name", ["/etc/evil", "../evil", "a/../../evil", "C:/evil", "a\\..\\..\\evil"])
def test_zip_with_escaping_path_refused(tmp_path, name):
    archive = make_zip(tmp_path / "bad.zip", {"ok.txt": b"ok", name: b"evil"})
    with pytest.raises(UnsafeArchiveError) as info:
        safe_extract(archive, tmp_path / "out")
    assert "bad.zip" in str(info.value) and repr(name) in str(info.value)
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_zip_with_symlink_refused(tmp_path):
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("link")
        info.external_attr = (0o120777) << 16  # S_IFLNK
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(UnsafeArchiveError, match="link"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_tar_with_symlink_refused(tmp_path):
    link = file_info("innocent")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    archive = make_tar(tmp_path / "s.tar.gz", [link])
    with pytest.raises(UnsafeArchiveError, match="'innocent'"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_tar_with_hardlink_refused(tmp_path):
    link = file_info("hard")
    link.type, link.linkname = tarfile.LNKTYPE, "/etc/passwd"
    archive = make_tar(tmp_path / "h.tar.gz", [file_info("a.txt"), link], {"a.txt": b"a"})
    with pytest.raises(UnsafeArchiveError, match="'hard'"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_tar_with_device_refused(tmp_path):
    device = file_info("dev")
    device.type = tarfile.CHRTYPE
    archive = make_tar(tmp_path / "d.tar.gz", [device])
    with pytest.raises(UnsafeArchiveError, match="'dev'"):
        safe_extract(archive, tmp_path / "out")


@pytest.mark.parametrize("name", ["../evil", "/abs/evil"])
def test_tar_with_escaping_path_refused(tmp_path, name):
    archive = make_tar(tmp_path / "p.tar.gz", [file_info(name)], {name: b"evil"})
    with pytest.raises(UnsafeArchiveError, match="p.tar.gz"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "evil").exists()


def test_zip_bomb_by_declared_size_refused(tmp_path):
    archive = make_zip(tmp_path / "bomb.zip", {"zeros.bin": bytes(1_000_000)})
    assert archive.stat().st_size < 10_000  # compresses very well
    with pytest.raises(UnsafeArchiveError, match="exceeds 100000 bytes"):
        safe_extract(archive, tmp_path / "out", max_total_bytes=100_000)
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_too_many_members_refused(tmp_path):
    archive = make_zip(tmp_path / "many.zip", {f"f{i}.txt": b"x" for i in range(20)})
    with pytest.raises(UnsafeArchiveError, match="more than 10 members"):
        safe_extract(archive, tmp_path / "out", max_members=10)


def understate_zip_sizes(path: Path, fake_size: int) -> None:
    """Rewrite the uncompressed-size fields of a one-member zip, as a lying archiver would."""
    raw = bytearray(path.read_bytes())
    local = raw.index(b"PK\x03\x04")
    struct.pack_into("<I", raw, local + 22, fake_size)
    central = raw.index(b"PK\x01\x02")
    struct.pack_into("<I", raw, central + 24, fake_size)
    path.write_bytes(bytes(raw))


def test_zip_whose_header_understates_size_refused(tmp_path):
    archive = make_zip(tmp_path / "liar.zip", {"zeros.bin": bytes(1_000_000)})
    understate_zip_sizes(archive, 10)
    with zipfile.ZipFile(archive) as zf:
        assert zf.getinfo("zeros.bin").file_size == 10  # the lie is what the header says
    with pytest.raises(UnsafeArchiveError, match="liar.zip.*'zeros.bin'"):
        safe_extract(archive, tmp_path / "out", max_total_bytes=100_000)
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_budget_stops_member_that_outgrows_its_header(tmp_path):
    """The write-time check itself, for readers whose zipfile does not truncate."""
    budget = download._Budget(tmp_path / "x.zip", max_total_bytes=10**9, max_members=10)
    with pytest.raises(UnsafeArchiveError, match="more than the 10 bytes"):
        budget.copy(io.BytesIO(bytes(100)), tmp_path / "member", "member", declared_size=10)


def test_failed_extraction_leaves_no_partial_folder(tmp_path):
    archive = make_zip(tmp_path / "half.zip", {"a/ok.txt": b"ok", "a/../../evil": b"x"})
    with pytest.raises(UnsafeArchiveError):
        safe_extract(archive, tmp_path / "out")
    damaged = tmp_path / "damaged.zip"
    good = make_zip(tmp_path / "good.zip", {"a.txt": b"a" * 1000, "b.txt": b"b" * 1000})
    raw = bytearray(good.read_bytes())
    b_header = raw.index(b"PK\x03\x04", 1)  # a.txt is written before b.txt fails
    raw[b_header + 30 + len("b.txt") + 2] ^= 0xFF  # flip a byte of b.txt's compressed data
    damaged.write_bytes(bytes(raw))
    with pytest.raises(UnsafeArchiveError, match="damaged.*'b.txt'"):
        safe_extract(damaged, tmp_path / "out")
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_not_an_archive(tmp_path):
    page = tmp_path / "page.zip"
    page.write_text("<html>Service unavailable</html>")
    with pytest.raises(DownloadError, match="neither a zip nor a tar"):
        safe_extract(page, tmp_path / "out")


# --- manifest ----------------------------------------------------------------------------


def test_manifest_entries_are_complete():
    manifest = download.load_manifest()
    assert {"busi", "breastmnist", "breastmnist_224"} <= set(manifest)
    for name, entry in manifest.items():
        assert entry["name"] == name
        for key in ("url", "filename", "licence", "citation", "description", "layout"):
            assert isinstance(entry.get(key), str) and entry[key].strip(), (name, key)
        assert entry["url"].startswith("https://"), name
        assert isinstance(entry.get("mirrors"), list), name
        assert entry.get("size") is None or isinstance(entry["size"], int), name
        if entry.get("sha256"):
            assert len(entry["sha256"]) == 64 and int(entry["sha256"], 16) >= 0, name
        if entry.get("md5"):
            assert len(entry["md5"]) == 32 and int(entry["md5"], 16) >= 0, name
        has_checksum = bool(entry.get("sha256") or entry.get("md5"))
        assert has_checksum or entry.get("checksum_missing_reason", "").strip(), name
        if has_checksum:
            assert entry.get("checksum_source", "").strip(), name
        assert entry.get("archive") in (None, "zip", "tar"), name


# --- fetch_dataset -----------------------------------------------------------------------


def fake_busi_zip(path: Path) -> Path:
    members = {}
    for cls in ("benign", "malignant", "normal"):
        for i in (1, 2):
            members[f"Dataset_BUSI_with_GT/{cls}/{cls} ({i}).png"] = f"{cls}{i}".encode()
            members[f"Dataset_BUSI_with_GT/{cls}/{cls} ({i})_mask.png"] = b"mask"
    return make_zip(path, members)


@pytest.fixture
def local_manifest(tmp_path, monkeypatch):
    """A manifest whose URLs are file:// paths in tmp_path."""
    server = tmp_path / "server"
    server.mkdir()
    archive = fake_busi_zip(server / "Dataset_BUSI.zip")
    npz = server / "breastmnist.npz"
    npz.write_bytes(PAYLOAD)
    common = {"licence": "CC BY 4.0", "citation": "test", "description": "test", "layout": "test"}
    manifest = {
        "busi": {**common, "name": "busi", "url": (server / "gone.zip").as_uri(),
                 "mirrors": [archive.as_uri()], "filename": "Dataset_BUSI.zip",
                 "sha256": file_hash(archive), "md5": None, "archive": "zip",
                 "data_root": "Dataset_BUSI_with_GT",
                 "expected_subdirs": ["benign", "malignant", "normal"]},
        "breastmnist": {**common, "name": "breastmnist", "url": npz.as_uri(), "mirrors": [],
                        "filename": "breastmnist.npz", "sha256": None,
                        "md5": hashlib.md5(PAYLOAD).hexdigest(), "archive": None},
        "nochecksum": {**common, "name": "nochecksum", "url": npz.as_uri(), "mirrors": [],
                       "filename": "x.npz", "sha256": None, "md5": None, "archive": None},
    }
    monkeypatch.setattr(download, "load_manifest", lambda: manifest)
    return manifest


def test_fetch_dataset_builds_busi_folder(local_manifest, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    root = fetch_dataset("busi", cache_dir=cache, progress=False)
    assert root == cache / "busi" / "extracted" / "Dataset_BUSI_with_GT"
    assert sorted(p.name for p in root.iterdir()) == ["benign", "malignant", "normal"]
    assert (root / "benign" / "benign (1).png").read_bytes() == b"benign1"

    # Second call: no download, no re-extraction.
    marker = root / "benign" / "reader-note.txt"
    marker.write_text("kept")
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("downloaded"))
    assert fetch_dataset("busi", cache_dir=cache, progress=False) == root
    assert marker.read_text() == "kept"


def test_fetch_dataset_npz_and_env_cache(local_manifest, tmp_path, monkeypatch):
    monkeypatch.setenv("BUSUTILS_CACHE", str(tmp_path / "envcache"))
    path = fetch_dataset("breastmnist", progress=False)
    assert path == tmp_path / "envcache" / "breastmnist" / "breastmnist.npz"
    assert path.read_bytes() == PAYLOAD


def test_fetch_dataset_without_checksum_reports_and_accepts_sha256(local_manifest, tmp_path):
    with pytest.warns(UserWarning, match=f"sha256='{sha256(PAYLOAD)}'"):
        fetch_dataset("nochecksum", cache_dir=tmp_path / "c", progress=False)
    path = fetch_dataset("nochecksum", cache_dir=tmp_path / "c", progress=False,
                         sha256=sha256(PAYLOAD))
    assert path.read_bytes() == PAYLOAD


def test_fetch_dataset_unknown_name(local_manifest, tmp_path):
    with pytest.raises(ValueError, match="busi"):
        fetch_dataset("mnist", cache_dir=tmp_path)


def test_fetch_real_manifest_offline_explains(tmp_path):
    """With the shipped manifest and no network: a DownloadError saying what to do."""
    with pytest.raises(DownloadError) as info:
        fetch_dataset("busi", cache_dir=tmp_path, progress=False, timeout=2)
    message = str(info.value)
    entry = download.load_manifest()["busi"]
    assert entry["url"] in message and entry["sha256"] in message
    assert str(tmp_path / "busi" / "Dataset_BUSI.zip") in message


def test_zip_with_duplicate_member_refused(tmp_path):
    archive = tmp_path / "dup.zip"
    with pytest.warns(UserWarning, match="Duplicate"), zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("benign/a.png", b"first")
        zf.writestr("benign/a.png", b"second")
    with pytest.raises(UnsafeArchiveError, match="'benign/a.png' clashes"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_zip_with_an_unreadable_compression_method_is_refused(tmp_path):
    import zipfile as zf

    from busutils.download import UnsafeArchiveError, safe_extract

    archive = tmp_path / "odd.zip"
    with zf.ZipFile(archive, "w") as z:
        z.writestr("benign/a.txt", "x")
    data = bytearray(archive.read_bytes())
    # Set the compression method (byte 8 of the local header, byte 10 of the central record) to 99 (AES).
    local = data.find(b"PK\x03\x04")
    central = data.find(b"PK\x01\x02")
    data[local + 8:local + 10] = (99).to_bytes(2, "little")
    data[central + 10:central + 12] = (99).to_bytes(2, "little")
    archive.write_bytes(bytes(data))
    with pytest.raises(UnsafeArchiveError, match="compression method 99"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()
