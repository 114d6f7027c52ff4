"""``python -m busutils data`` and ``split`` on folders written to disk."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from busutils.cli import main
from busutils.phantom import write_busi_layout


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli") / "busi"
    write_busi_layout(root, {"benign": 12, "malignant": 8, "normal": 5}, size=64, seed=2)
    (root / "benign" / "benign (99).png").write_bytes(b"broken")
    return root


def test_data_json(folder, capsys):
    assert main(["data", str(folder), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["layout"] == "busi"
    assert result["counts"] == {"benign": 12, "malignant": 8, "normal": 5}
    reasons = {s["file"].split("/")[-1]: s["reason"] for s in result["skipped"]}
    assert "not an image" in reasons["benign (99).png"]
    assert sum(r == "segmentation mask" for r in reasons.values()) >= 25
    assert isinstance(result["duplicate_groups"], list) and isinstance(result["cross_label_groups"], list)


def test_data_text(folder, capsys):
    assert main(["data", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "Layout: busi" in out and "benign: 12" in out and "Near-duplicate groups" in out


def test_split_json_assigns_every_file_a_fold(folder, capsys):
    assert main(["split", str(folder), "--folds", "5", "--seed", "0", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert len(table["files"]) == 20 and {row["class"] for row in table["files"]} == {"benign", "malignant"}
    assert {row["fold"] for row in table["files"]} == set(range(5))
    assert table["task"] == "benign-malignant" and table["image_size"] == 128  # train's defaults
    assert [s["file"].split("/")[-1] for s in table["skipped"]] == ["benign (99).png"]
    by_group = {}
    for row in table["files"]:
        by_group.setdefault(row["group"], set()).add(row["fold"])
    assert all(len(folds) == 1 for folds in by_group.values())
    assert main(["split", str(folder), "--folds", "3", "--task", "three-class", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["files"]) == 25  # the normal images take part too


@pytest.mark.parametrize("task, profile, seed", [("benign-malignant", "quick", 0), ("three-class", "paper", 3)])
def test_split_cuts_the_folds_that_train_and_compare_cut(folder, capsys, task, profile, seed):
    from busutils.crossval import check_folds
    from busutils.data import load_dataset
    from busutils.images import ImageWarning
    from busutils.profiles import get_profile

    assert main(["split", str(folder), "--folds", "4", "--seed", str(seed), "--task", task, "--profile", profile,
                 "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    settings = get_profile(profile)
    with pytest.warns(ImageWarning, match=r"benign \(99\)"):  # the broken file, skipped as split skipped it
        dataset = load_dataset(folder, task=task, image_size=settings.image_size)  # as train and compare load it
    folds = {dataset.ids[i]: k for k, (_, test) in enumerate(check_folds(dataset, 4, [seed])[seed]) for i in test}
    assert {row["file"]: row["fold"] for row in table["files"]} == folds


def test_split_refuses_more_folds_than_a_class_can_fill(folder, capsys):
    assert main(["split", str(folder), "--folds", "9"]) == 2
    assert "class 'malignant' has images in only 8 duplicate group(s): cannot make 9 folds" in capsys.readouterr().err


def test_unreadable_folder_exits_nonzero_with_a_message(tmp_path):
    (tmp_path / "stray.txt").write_text("x")
    for args in (["data", str(tmp_path)], ["split", str(tmp_path)], ["data", str(tmp_path / "absent")]):
        proc = subprocess.run([sys.executable, "-m", "busutils", *args], capture_output=True, text=True)
        assert proc.returncode != 0
        assert "error" in proc.stderr and "Traceback" not in proc.stderr


def test_bad_fold_count(folder, capsys):
    with pytest.raises(SystemExit):
        main(["split", str(folder), "--folds", "zero"])
    assert "not an integer" in capsys.readouterr().err


def test_fetch_offline_says_how_to_place_the_file_by_hand(tmp_path, capsys):
    # The conftest refuses every connection, as a machine without network would.
    assert main(["fetch", "breastmnist", "--cache-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and str(tmp_path) in err and "breastmnist.npz" in err


def test_fetch_reuses_a_verified_file_put_in_place_by_hand(tmp_path, capsys, monkeypatch):
    import hashlib

    from busutils import download

    payload = tmp_path / "payload.npz"
    payload.write_bytes(b"not really an npz, but the checksum is what is checked")
    digest = hashlib.sha256(payload.read_bytes()).hexdigest()
    manifest = {"toy": {"name": "toy", "url": "https://example.invalid/toy.npz", "mirrors": [], "filename": "toy.npz",
                        "sha256": digest, "md5": None, "archive": None, "licence": "CC0", "citation": "-"}}
    monkeypatch.setattr(download, "load_manifest", lambda: manifest)
    cache = tmp_path / "cache"
    (cache / "toy").mkdir(parents=True)
    (cache / "toy" / "toy.npz").write_bytes(payload.read_bytes())
    assert main(["fetch", "toy", "--cache-dir", str(cache)]) == 0
    assert capsys.readouterr().out.strip() == str(cache / "toy" / "toy.npz")
