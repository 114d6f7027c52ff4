"""Tests for busutils.download: a local HTTP server stands in for the data hosts (no network)."""

from __future__ import annotations

import hashlib
import io
import json
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from busutils import download
from busutils.download import (
    ChecksumError,
    DownloadError,
    UnsafeArchiveError,
    check_hash,
    check_images,
    download_file,
    fetch_dataset,
    file_hash,
    image_hash,
    image_manifest,
    safe_extract,
)
from local_server import allow_loopback, serve

PAYLOAD = b"breast ultrasound test payload\n" * 100


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A local HTTP server over tmp_path/server, holding data.bin; /fail/... answers 503."""
    root = tmp_path / "server"
    root.mkdir()
    (root / "data.bin").write_bytes(PAYLOAD)
    allow_loopback(monkeypatch)
    with serve(root) as running:
        yield running


@pytest.fixture
def source(server) -> str:
    """The URL of a file to download."""
    return server.url_of("data.bin")


def leftovers(folder: Path) -> list[str]:
    """Temporary files or folders left behind in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or p.name.startswith("tmp"))


# --- checksums ---------------------------------------------------------------------------


def test_file_hash_and_check_hash(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(PAYLOAD)
    assert file_hash(path) == sha256(PAYLOAD)
    assert file_hash(path, "md5") == hashlib.md5(PAYLOAD).hexdigest()
    assert check_hash(path, sha256(PAYLOAD).upper(), "sha256")
    assert not check_hash(path, "0" * 64, "sha256")
    assert not check_hash(path, None, "sha256")  # unknown never counts as verified
    with pytest.raises(ValueError):
        file_hash(path, "crc32")


def test_default_cache_dir_honours_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("BUSUTILS_CACHE", str(tmp_path / "c"))
    assert download.default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("BUSUTILS_CACHE")
    assert download.default_cache_dir() == Path.home() / ".cache" / "busutils"


# --- download_file -----------------------------------------------------------------------


def test_download_over_http_is_verified_with_a_progress_bar(source, tmp_path, capsys):
    dest = tmp_path / "cache" / "data.bin"
    out = download_file(source, dest, expected_hash=sha256(PAYLOAD), progress=True)
    assert out == dest and dest.read_bytes() == PAYLOAD
    assert leftovers(dest.parent) == []
    assert "100%" in capsys.readouterr().err  # tqdm's bar


def test_md5_checksum_is_accepted(source, tmp_path):
    dest = tmp_path / "data.bin"
    download_file(source, dest, expected_hash=hashlib.md5(PAYLOAD).hexdigest(), algorithm="md5",
                  progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_checksum_mismatch_is_refused_and_nothing_left(source, tmp_path):
    dest = tmp_path / "cache" / "data.bin"
    with pytest.raises(ChecksumError) as info:
        download_file(source, dest, expected_hash="ab" * 32, progress=False)
    message = str(info.value)
    assert "data.bin" in message and "ab" * 32 in message and sha256(PAYLOAD) in message
    assert not dest.exists()
    assert leftovers(dest.parent) == []


def test_cached_good_file_reused_without_network(tmp_path):
    dest = tmp_path / "data.bin"
    dest.write_bytes(PAYLOAD)  # the conftest refuses every connection: any download would fail
    out = download_file("https://example.invalid/data.bin", dest, expected_hash=sha256(PAYLOAD),
                        progress=False)
    assert out == dest and dest.read_bytes() == PAYLOAD


def test_cached_corrupt_file_is_detected_and_replaced(source, tmp_path):
    dest = tmp_path / "data.bin"
    dest.write_bytes(PAYLOAD[:-1] + b"X")
    with pytest.warns(UserWarning, match="expected"):
        download_file(source, dest, expected_hash=sha256(PAYLOAD), progress=False)
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


def test_mirror_fallback_after_a_failing_host(server, tmp_path):
    dest = tmp_path / "data.bin"
    download_file([server.url_of("fail/data.bin"), server.url_of("data.bin")], dest,
                  expected_hash=sha256(PAYLOAD), progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests == ["/fail/data.bin", "/data.bin"]


def test_mirror_fallback_after_bad_checksum(server, tmp_path):
    (server.root / "bad.bin").write_bytes(b"a web page, not the file")
    dest = tmp_path / "data.bin"
    download_file([server.url_of("bad.bin"), server.url_of("data.bin")], dest,
                  expected_hash=sha256(PAYLOAD), progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_every_failing_source_is_named_with_its_reason(server, tmp_path):
    dest = tmp_path / "data.bin"
    urls = [server.url_of("fail/data.bin"), server.url_of("missing.bin")]
    with pytest.raises(DownloadError) as info:
        download_file(urls, dest, expected_hash=sha256(PAYLOAD), progress=False)
    message = str(info.value)
    assert urls[0] in message and "503" in message and urls[1] in message and "404" in message
    assert not dest.exists()


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
        download_file(source, dest, expected_hash=None, progress=False)
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
        for key in ("filename", "licence", "citation", "description", "layout"):
            assert isinstance(entry.get(key), str) and entry[key].strip(), (name, key)
        assert entry.get("size") is None or isinstance(entry["size"], int), name
        assert entry.get("archive") in (None, "zip", "tar"), name
        assert entry["sources"], name
        for source in download.sources(entry):
            assert source["url"].startswith("https://"), name
            assert source["verify"] in ("file", "images"), name
            assert source["verified_here"] is False  # no network here: say so, never pretend
            assert source.get("note", source.get("checksum_source", "")).strip(), name
            if source["verify"] == "images":
                assert entry["image_manifest"] and entry["image_manifest_source"].strip(), name
                continue
            if source.get("sha256"):
                assert len(source["sha256"]) == 64 and int(source["sha256"], 16) >= 0, name
            if source.get("md5"):
                assert len(source["md5"]) == 32 and int(source["md5"], 16) >= 0, name
            assert source.get("sha256") or source.get("md5"), name
            assert source["checksum_source"].strip(), name


def test_busi_has_the_original_host_and_a_mirror_under_the_same_terms():
    entry = download.load_manifest()["busi"]
    first, *mirrors = download.sources(entry)
    assert first["url"] == "https://scholar.cu.edu.eg/Dataset_BUSI.zip" and first["verify"] == "file"
    assert mirrors and all(m["verify"] == "images" for m in mirrors)
    assert entry["licence"] == "CC BY 4.0" and "CC BY 4.0" in mirrors[0]["note"]


def test_another_manifest_can_be_named_in_the_environment_with_its_image_hashes_beside_it(tmp_path, monkeypatch):
    other = tmp_path / "datasets.json"
    other.write_text(json.dumps({"datasets": [{"name": "own", "filename": "x.zip", "sources": []}]}))
    (tmp_path / "own_images.json").write_text(json.dumps({"images": {"a/b.png": "00"}}))
    monkeypatch.setenv("BUSUTILS_DATASETS", str(other))
    assert list(download.load_manifest()) == ["own"]
    assert download._image_manifest_file("own_images.json") == {"a/b.png": "00"}
    assert download._image_manifest_file("busi_images.json") is None


# --- per-image hashes --------------------------------------------------------------------


def _png(path: Path, value: int, *, compress: int = 6) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = (np.arange(64, dtype=np.uint8).reshape(8, 8) + value).astype(np.uint8)
    Image.fromarray(pixels).save(path, compress_level=compress)


def test_image_hash_follows_the_pixels_not_the_file(tmp_path):
    _png(tmp_path / "a.png", 1, compress=0)
    _png(tmp_path / "b.png", 1, compress=9)
    _png(tmp_path / "c.png", 2)
    assert file_hash(tmp_path / "a.png") != file_hash(tmp_path / "b.png")
    assert image_hash(tmp_path / "a.png") == image_hash(tmp_path / "b.png")
    assert image_hash(tmp_path / "a.png") != image_hash(tmp_path / "c.png")


def test_check_images_names_what_differs(tmp_path):
    for i, name in enumerate(["benign/b (1).png", "benign/b (2).png", "normal/n (1).png"]):
        _png(tmp_path / "release" / name, i)
    recorded = image_manifest(tmp_path / "release")
    assert sorted(recorded) == ["benign/b (1).png", "benign/b (2).png", "normal/n (1).png"]
    check_images(tmp_path / "release", recorded)  # the same images pass
    _png(tmp_path / "release" / "benign" / "b (2).png", 9)
    (tmp_path / "release" / "normal" / "n (1).png").unlink()
    _png(tmp_path / "release" / "malignant" / "m (1).png", 4)
    with pytest.raises(ChecksumError) as info:
        check_images(tmp_path / "release", recorded)
    message = str(info.value)
    assert "1 with other pixels (benign/b (2).png)" in message
    assert "1 missing (normal/n (1).png)" in message and "1 not in the original (malignant/m (1).png)" in message


# --- fetch_dataset -----------------------------------------------------------------------


def fake_busi(folder: Path) -> Path:
    """A small BUSI-like release: Dataset_BUSI_with_GT/<class>/<class> (i).png and masks."""
    for k, cls in enumerate(("benign", "malignant", "normal")):
        for i in (1, 2):
            _png(folder / "Dataset_BUSI_with_GT" / cls / f"{cls} ({i}).png", 10 * k + i)
            _png(folder / "Dataset_BUSI_with_GT" / cls / f"{cls} ({i})_mask.png", 100 + 10 * k + i)
    return folder


def zip_folder(folder: Path, archive: Path, *, compression=zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(archive, "w", compression) as zf:
        for path in sorted(folder.rglob("*")):
            zf.write(path, path.relative_to(folder).as_posix())
    return archive


@pytest.fixture
def hosts(tmp_path, server, monkeypatch):
    """The original BUSI zip, a mirror's re-packed zip of the same images, and a manifest naming them.

    The original host answers 503 unless a test copies the zip to ``server.root/original/``.
    """
    release = fake_busi(tmp_path / "release")
    original = zip_folder(release, tmp_path / "Dataset_BUSI.zip")
    mirror = zip_folder(release, server.root / "mirror.zip", compression=zipfile.ZIP_STORED)
    assert file_hash(original) != file_hash(mirror)
    npz = server.root / "breastmnist.npz"
    npz.write_bytes(PAYLOAD)
    images = image_manifest(release / "Dataset_BUSI_with_GT")
    common = {"licence": "CC BY 4.0", "citation": "test", "description": "test", "layout": "test"}
    manifest = {
        "busi": {**common, "name": "busi", "filename": "Dataset_BUSI.zip", "archive": "zip",
                 "data_root": "Dataset_BUSI_with_GT", "expected_subdirs": ["benign", "malignant", "normal"],
                 "image_manifest": "busi_images.json",
                 "sources": [{"url": server.url_of("fail/Dataset_BUSI.zip"), "sha256": file_hash(original)},
                             {"url": server.url_of("mirror.zip"), "filename": "mirror.zip",
                              "verify": "images"}]},
        "breastmnist": {**common, "name": "breastmnist", "url": server.url_of("breastmnist.npz"),
                        "mirrors": [], "filename": "breastmnist.npz", "sha256": None,
                        "md5": hashlib.md5(PAYLOAD).hexdigest(), "archive": None},
        "nochecksum": {**common, "name": "nochecksum", "url": server.url_of("breastmnist.npz"),
                       "mirrors": [], "filename": "x.npz", "sha256": None, "md5": None, "archive": None},
    }
    monkeypatch.setattr(download, "load_manifest", lambda: manifest)
    monkeypatch.setattr(download, "_image_manifest_file", lambda name: images)
    return {"manifest": manifest, "original": original, "mirror": mirror, "images": images,
            "server": server}


def test_fetch_busi_from_the_mirror_after_the_original_fails_verified_by_its_images(hosts, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    root = fetch_dataset("busi", cache_dir=cache, progress=False)
    assert root == cache / "busi" / "extracted" / "Dataset_BUSI_with_GT"
    assert sorted(p.name for p in root.iterdir()) == ["benign", "malignant", "normal"]
    assert hosts["server"].requests == ["/fail/Dataset_BUSI.zip", "/mirror.zip"]
    check_images(root, hosts["images"])

    # Second call: no download, no re-extraction.
    marker = root / "benign" / "reader-note.txt"
    marker.write_text("kept")
    assert fetch_dataset("busi", cache_dir=cache, progress=False) == root
    assert marker.read_text() == "kept" and len(hosts["server"].requests) == 2


def test_a_mirror_whose_images_differ_is_refused_and_every_source_named(hosts, tmp_path):
    release = fake_busi(tmp_path / "other")
    _png(release / "Dataset_BUSI_with_GT" / "benign" / "benign (1).png", 99)  # one image changed
    zip_folder(release, hosts["mirror"])
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError) as info:
        fetch_dataset("busi", cache_dir=cache, progress=False)
    message = str(info.value)
    assert "No source of 'busi' gave verified data" in message
    assert hosts["server"].url_of("fail/Dataset_BUSI.zip") in message and "503" in message
    assert hosts["server"].url_of("mirror.zip") in message
    assert "1 with other pixels (benign/benign (1).png)" in message
    assert not (cache / "busi" / "extracted").exists() and not (cache / "busi" / "mirror.zip").exists()


def test_the_original_is_used_when_it_answers_checked_by_its_sha256(hosts, tmp_path):
    server = hosts["server"]
    (server.root / "fail").mkdir()
    busi = hosts["manifest"]["busi"]
    busi["sources"][0]["url"] = server.url_of("original/Dataset_BUSI.zip")
    (server.root / "original").mkdir()
    (server.root / "original" / "Dataset_BUSI.zip").write_bytes(hosts["original"].read_bytes())
    root = fetch_dataset("busi", cache_dir=tmp_path / "cache", progress=False)
    assert server.requests == ["/original/Dataset_BUSI.zip"]
    stamp = (tmp_path / "cache" / "busi" / "extracted" / ".busutils-verified").read_text()
    assert stamp == f"{busi['sources'][0]['url']}\nsha256 {file_hash(hosts['original'])}\n"
    assert (root / "normal" / "normal (2).png").is_file()


def test_a_mirror_without_a_recorded_image_manifest_is_not_tried(hosts, tmp_path, monkeypatch):
    monkeypatch.setattr(download, "_image_manifest_file", lambda name: None)
    with pytest.raises(DownloadError) as info:
        fetch_dataset("busi", cache_dir=tmp_path / "cache", progress=False)
    assert "not tried" in str(info.value) and "busi_images.json" in str(info.value)
    assert hosts["server"].requests == ["/fail/Dataset_BUSI.zip"]


def test_fetch_dataset_npz_and_env_cache(hosts, tmp_path, monkeypatch):
    monkeypatch.setenv("BUSUTILS_CACHE", str(tmp_path / "envcache"))
    path = fetch_dataset("breastmnist", progress=False)
    assert path == tmp_path / "envcache" / "breastmnist" / "breastmnist.npz"
    assert path.read_bytes() == PAYLOAD


def test_fetch_dataset_without_checksum_reports_and_accepts_sha256(hosts, tmp_path):
    with pytest.warns(UserWarning, match=f"sha256='{sha256(PAYLOAD)}'"):
        fetch_dataset("nochecksum", cache_dir=tmp_path / "c", progress=False)
    path = fetch_dataset("nochecksum", cache_dir=tmp_path / "c", progress=False,
                         sha256=sha256(PAYLOAD))
    assert path.read_bytes() == PAYLOAD


def test_fetch_dataset_unknown_name(hosts, tmp_path):
    with pytest.raises(ValueError, match="busi"):
        fetch_dataset("mnist", cache_dir=tmp_path)


def test_fetch_real_manifest_offline_explains(tmp_path):
    """With the shipped manifest and no network: an error naming every source and what to do."""
    with pytest.raises(DownloadError) as info:
        fetch_dataset("busi", cache_dir=tmp_path, progress=False, timeout=2)
    message = str(info.value)
    original, mirror = download.sources(download.load_manifest()["busi"])
    assert original["url"] in message and original["sha256"] in message
    assert mirror["url"] in message
    assert str(tmp_path / "busi" / "Dataset_BUSI.zip") in message and "by hand" in message


def test_a_manifest_of_image_hashes_is_recorded_only_from_a_checksum_verified_source(hosts, tmp_path):
    out = tmp_path / "busi_images.json"
    with pytest.raises(DownloadError, match="recorded only from a source verified by its own checksum"):
        download.write_image_manifest("busi", out, cache_dir=tmp_path / "c1", progress=False)
    server = hosts["server"]
    (server.root / "original").mkdir()
    (server.root / "original" / "Dataset_BUSI.zip").write_bytes(hosts["original"].read_bytes())
    hosts["manifest"]["busi"]["sources"][0]["url"] = server.url_of("original/Dataset_BUSI.zip")
    download.write_image_manifest("busi", out, cache_dir=tmp_path / "c2", progress=False)
    assert json.loads(out.read_text())["images"] == hosts["images"]


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
