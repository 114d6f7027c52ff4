"""BUS-BRA and BrEaST-Lesions-USG: small copies in their published layouts, read as every other layout.

The copies follow the layouts as the data sets publish them: BUS-BRA's ``bus_data.csv`` (its
header as released) beside ``Images/bus_0001-l.png`` and ``Masks/mask_0001-l.png``; BrEaST's
clinical spreadsheet (``.xlsx``, its first sheet) beside ``BrEaST-Lesions_USG-images_and_masks/``
with ``case001.png`` and ``case001_tumor.png``.  The images are phantom images with their lesion
masks, so that the masks read back can be checked against the lesions drawn.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from busutils.cli import main
from busutils.data import (
    DataError, describe, detect_layout, lesion_masks, load_dataset, load_folder, scan, source_name,
)
from busutils.duplicates import groups_from_hashes, join_groups
from busutils.images import resize
from busutils.phantom import phantom_image
from busutils.splits import check_disjoint, group_kfold, new_images_split

SIZE = 64
BUSBRA_COLUMNS = ["ID", "Case", "Histology", "Pathology", "BIRADS", "Device", "Width", "Height", "Side", "BBOX"]
# BrEaST's columns that the code reading it relies on, among the spreadsheet's others
BREAST_COLUMNS = ["CaseID", "Image_filename", "Mask_tumor_filename", "Mask_other_filename", "Pixel_size", "Age",
                  "Tissue_composition", "Symptoms", "Shape", "Margin", "Echogenicity", "Posterior_features",
                  "Calcifications", "Skin_thickening", "Interpretation", "BIRADS", "Verification", "Diagnosis",
                  "Classification"]
BREAST_XLSX = "BrEaST-Lesions-USG-clinical-data-Dec-15-2023.xlsx"
BREAST_IMAGES = "BrEaST-Lesions_USG-images_and_masks"


def _save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _edit_cell(table, row: int, column: str, value) -> None:
    """Change one cell of a CSV table (``row`` counted from 0, below the header)."""
    frame = pd.read_csv(table)
    frame.loc[row, column] = value
    frame.to_csv(table, index=False)


def _digest(root) -> dict[str, str]:
    return {os.path.join(d, f): hashlib.sha256(open(os.path.join(d, f), "rb").read()).hexdigest()
            for d, _, files in os.walk(root) for f in files}


def write_busbra(root, n_cases: int = 14, seed: int = 0):
    """A BUS-BRA copy: two views (-l, -r) of most patients, one (-s) of every fifth; masks 0/255.

    The last image's mask is left out.  Returns ``{image ID: lesion mask}``.
    """
    rng = np.random.default_rng(seed)
    rows, drawn = [], {}
    for case in range(1, n_cases + 1):
        pathology = "malignant" if case % 3 == 0 else "benign"
        for side in (("s",) if case % 5 == 0 else ("l", "r")):
            image_id = f"bus_{case:04d}-{side}"
            image, mask = phantom_image(pathology, size=SIZE, rng=rng)
            _save(root / "Images" / f"{image_id}.png", image)
            _save(root / "Masks" / f"mask_{case:04d}-{side}.png", mask.astype(np.uint8) * 255)
            drawn[image_id] = mask
            rows.append([image_id, case, "fibroadenoma" if pathology == "benign" else "invasive ductal carcinoma",
                         pathology, 4, "GE Logiq 7 @10-14MHz", SIZE, SIZE,
                         {"l": "left", "r": "right", "s": "single"}[side], "[1,2,30,20]"])
    (root / "Masks" / f"mask_{rows[-1][0][4:]}.png").unlink()
    pd.DataFrame(rows, columns=BUSBRA_COLUMNS).to_csv(root / "bus_data.csv", index=False)
    (root / "5-fold-cv.csv").write_text("ID,Pathology,kFold\n")
    (root / "LICENSE.txt").write_text("cite the article\n")
    return drawn


@pytest.fixture(scope="module")
def busbra(tmp_path_factory):
    """The folder the archive was unpacked into, holding BUSBRA/; and the lesions drawn."""
    parent = tmp_path_factory.mktemp("busbra")
    drawn = write_busbra(parent / "BUSBRA")
    return parent, drawn


def write_breast(root, images_dir=None, table: str = "xlsx"):
    """A BrEaST copy: 12 cases, the last two normal (no mask), case003 with two tumours, case002
    with a mask of another finding; masks saved 0/1.  Returns ``{file name: lesion mask}``."""
    images_dir = images_dir or root / BREAST_IMAGES
    rng = np.random.default_rng(5)
    rows, drawn = [], {}
    classes = ["benign", "malignant"] * 5 + ["normal", "normal"]
    for case, classification in enumerate(classes, start=1):
        name = f"case{case:03d}.png"
        image, mask = phantom_image(classification, size=SIZE, rng=rng)
        _save(images_dir / name, image)
        tumour, other = "", ""
        if classification != "normal":
            if case == 3:  # two tumours: the lesion cut in two halves, one mask each
                halves = mask.copy(), mask.copy()
                halves[0][:, SIZE // 2:] = False
                halves[1][:, :SIZE // 2] = False
                tumour = "case003_tumor1.png&case003_tumor2.png"
                for part, half in zip(tumour.split("&"), halves):
                    _save(images_dir / part, half.astype(np.uint8))
            else:
                tumour = f"case{case:03d}_tumor.png"
                _save(images_dir / tumour, mask.astype(np.uint8))
            drawn[name] = mask
        if case == 2:
            other = "case002_other1.png"
            _save(images_dir / other, np.full((SIZE, SIZE), 1, np.uint8))
        rows.append([case, name, tumour or np.nan, other or np.nan, 0.007, 50, "heterogeneous", "no", "oval",
                     "circumscribed", "hypoechoic", "no", "no", "no", "benign finding", "3", "biopsy", "fibroadenoma",
                     classification])
    frame = pd.DataFrame(rows, columns=BREAST_COLUMNS)
    root.mkdir(parents=True, exist_ok=True)
    if table == "xlsx":
        frame.to_excel(root / BREAST_XLSX, sheet_name="BrEaST-Lesions-USG clinical dat", index=False)
    else:
        frame.to_csv(root / BREAST_XLSX.replace(".xlsx", ".csv"), index=False)
    return drawn


@pytest.fixture(scope="module")
def breast(tmp_path_factory):
    pytest.importorskip("openpyxl")  # a declared dependency (requirements.txt, pyproject.toml)
    root = tmp_path_factory.mktemp("breast")
    return root, write_breast(root)


# --- BUS-BRA ------------------------------------------------------------------------------


def test_busbra_is_read_from_its_folder_or_the_one_it_was_unpacked_into(busbra):
    parent, drawn = busbra
    assert detect_layout(parent) == detect_layout(parent / "BUSBRA") == "bus-bra"
    found = scan(parent)
    assert found.root == parent / "BUSBRA"
    assert found.counts() == {"benign": 18, "malignant": 8} and len(found.files) == len(drawn) == 26
    assert found.skipped == []  # the fold tables, licence and masks are not images of the data set


def test_busbra_classes_patients_and_images(busbra):
    parent, drawn = busbra
    data = load_folder(parent, task="benign-malignant", image_size=32)
    assert data.layout == "bus-bra" and data.task == "benign-malignant"
    assert data.counts() == {"benign": 18, "malignant": 8}
    assert data.images.shape == (26, 32, 32) and data.images.dtype == np.uint8
    assert data.ids[:3] == ["Images/bus_0001-l.png", "Images/bus_0001-r.png", "Images/bus_0002-l.png"]
    cases = [int(i.split("_")[1][:4]) for i in data.ids]
    assert data.patient_ids.tolist() == [str(c) for c in cases]
    malignant = {i for i, c in enumerate(cases) if c % 3 == 0}
    assert {i for i in range(len(data)) if data.labels[i] == 1} == malignant
    every = load_folder(parent, task=None, image_size=32)
    assert every.class_names == ("benign", "malignant") and len(every) == 26


def test_busbra_has_no_normal_images_for_the_three_class_task(busbra):
    with pytest.raises(DataError, match=r"needs classes .*'normal'.*its table gives no image.*'benign-malignant'"):
        load_folder(busbra[0], task="three-class", image_size=32)


def test_busbra_masks_are_the_lesions_drawn(busbra):
    parent, drawn = busbra
    before = _digest(parent)
    data = load_folder(parent, image_size=SIZE)
    masks, found = lesion_masks(data)
    names = [i.split("/")[1].removesuffix(".png") for i in data.ids]
    assert found.tolist() == [name != names[-1] for name in names]  # the last one's mask was left out
    for i, name in enumerate(names[:-1]):
        np.testing.assert_array_equal(masks[i], drawn[name])
    assert not masks[-1].any()
    part = data.take([4, 1])  # masks follow a split
    np.testing.assert_array_equal(lesion_masks(part)[0], masks[[4, 1]])
    assert _digest(parent) == before  # the reader's files are only read


def test_a_patients_images_stay_on_one_side_of_every_split(busbra):
    data = load_folder(busbra[0], image_size=SIZE)
    near = groups_from_hashes(data.hashes)
    assert len(np.unique(near)) > len(np.unique(data.patient_ids))  # the two views are not near-copies
    groups = data.groups
    for patient in np.unique(data.patient_ids):
        assert len(np.unique(groups[data.patient_ids == patient])) == 1
    for train, test in group_kfold(data.labels, groups, n_splits=3, seed=1):
        assert not set(data.patient_ids[train]) & set(data.patient_ids[test])
    part = data.take(np.arange(0, 26, 2))
    assert part.patient_ids.tolist() == data.patient_ids[::2].tolist()
    # the same folds by duplicate group alone would split some patient
    split_apart = [set(data.patient_ids[tr]) & set(data.patient_ids[te])
                   for tr, te in group_kfold(data.labels, near, n_splits=3, seed=1)]
    assert any(split_apart)


@pytest.mark.filterwarnings("ignore:The least populated class")  # a small copy: few images per fold
def test_the_split_of_a_chapter_keeps_patients_whole(busbra):
    from busutils.experiment import split_dataset

    data = load_folder(busbra[0], image_size=SIZE)
    split = split_dataset(data, test_size=0.3, val_size=0.2, seed=0)
    sides = [set(part.patient_ids) for part in (split.train, split.val, split.test)]
    assert all(sides) and not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_new_images_split_keeps_patients_whole(busbra, seed):
    from busutils.experiment import split_dataset

    data = load_folder(busbra[0], image_size=SIZE)
    split = split_dataset(data, test_size=0.3, val_size=0.2, seed=seed, test_part="new-images")
    parts = [set(split.train.patient_ids), set(split.val.patient_ids), set(split.test.patient_ids)]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])


def test_busbra_reads_through_busi_dir_and_names_its_source(busbra, monkeypatch):
    monkeypatch.setenv("BUSI_DIR", str(busbra[0] / "BUSBRA"))
    data = load_dataset(image_size=32)
    assert data.layout == "bus-bra" and not data.is_phantom
    name = source_name(data)
    assert name.startswith("BUS-BRA") and "Gómez-Flores" in name and "$BUSI_DIR ('BUSBRA')" in name
    assert str(busbra[0]) not in describe(data)


@pytest.fixture
def busbra_copy(tmp_path):
    root = tmp_path / "BUSBRA"
    write_busbra(root, n_cases=4)
    return root


def test_busbra_without_a_column_names_the_file_and_the_column(busbra_copy):
    table = busbra_copy / "bus_data.csv"
    pd.read_csv(table).drop(columns="Pathology").to_csv(table, index=False)
    with pytest.raises(DataError, match=r"bus_data.csv: column\(s\) \['Pathology'\] are missing"):
        load_folder(busbra_copy)


def test_busbra_with_an_unknown_pathology_names_the_row(busbra_copy):
    _edit_cell(busbra_copy / "bus_data.csv", 2, "Pathology", "borderline")
    with pytest.raises(DataError, match=r"bus_data.csv, row 4: Pathology of bus_0002-l is 'borderline'; "
                                        r"expected 'benign' or 'malignant'"):
        scan(busbra_copy)


def test_busbra_without_its_images_folder_is_an_error(busbra_copy):
    (busbra_copy / "Images").rename(busbra_copy / "images_elsewhere")
    with pytest.raises(DataError, match=r"bus_data.csv: BUS-BRA's images are expected in .*Images/"):
        scan(busbra_copy)


def test_busbra_missing_and_unlisted_images_are_skipped_with_reasons(busbra_copy):
    (busbra_copy / "Images" / "bus_0002-r.png").unlink()
    _save(busbra_copy / "Images" / "bus_9999-s.png", np.zeros((SIZE, SIZE), np.uint8))
    found = scan(busbra_copy)
    reasons = {os.path.basename(s.path): s.reason for s in found.skipped}
    assert reasons == {"bus_0002-r.png": "listed in bus_data.csv but missing",
                       "bus_9999-s.png": "not listed in bus_data.csv"}
    assert len(found.files) == 7


def test_busbra_table_cannot_point_outside_its_folder(busbra_copy):
    _edit_cell(busbra_copy / "bus_data.csv", 0, "ID", "../../etc/passwd")
    with pytest.raises(DataError, match=r"row 2: ID is '../../etc/passwd'; expected a file name"):
        scan(busbra_copy)


# --- BrEaST-Lesions-USG ---------------------------------------------------------------------


def test_breast_classes_cases_and_normal_images(breast):
    root, _ = breast
    assert detect_layout(root) == "breast-lesions-usg"
    found = scan(root)
    assert found.counts() == {"benign": 5, "malignant": 5, "normal": 2} and found.skipped == []
    three = load_folder(root, task="three-class", image_size=32)
    assert three.counts() == {"normal": 2, "benign": 5, "malignant": 5}
    assert three.ids[0] == f"{BREAST_IMAGES}/case001.png" and three.images.dtype == np.uint8
    assert three.patient_ids.tolist() == [str(c) for c in range(1, 13)]
    two = load_folder(root, image_size=32)
    assert two.counts() == {"benign": 5, "malignant": 5}
    assert source_name(two).startswith("BrEaST-Lesions-USG") and "CC BY 4.0" in source_name(two)


def test_breast_masks_join_the_tumours_and_leave_other_findings_out(breast):
    root, drawn = breast
    before = _digest(root)
    data = load_folder(root, task="three-class", image_size=SIZE)
    masks, found = lesion_masks(data)
    names = [i.split("/")[-1] for i in data.ids]
    assert found.tolist() == [name in drawn for name in names]  # the normal images have none
    for i, name in enumerate(names):
        np.testing.assert_array_equal(masks[i], drawn.get(name, np.zeros((SIZE, SIZE), bool)))
    assert data.mask_ids[names.index("case003.png")] == (f"{BREAST_IMAGES}/case003_tumor1.png",
                                                         f"{BREAST_IMAGES}/case003_tumor2.png")
    assert data.mask_ids[names.index("case002.png")] == (f"{BREAST_IMAGES}/case002_tumor.png",)
    small = lesion_masks(load_folder(root, image_size=32))[0]  # resized as the images are
    np.testing.assert_array_equal(small[0], resize(drawn["case001.png"].astype(np.uint8), 32) >= 1)
    assert _digest(root) == before


def test_breast_from_a_csv_export_and_from_the_zips_own_folder(tmp_path):
    root = tmp_path / "breast"
    write_breast(root, images_dir=root / "BrEaST-Lesions_USG-images_and_masks-Dec-15-2023" / BREAST_IMAGES,
                 table="csv")
    data = load_folder(root, task="three-class", image_size=32)
    assert data.layout == "breast-lesions-usg" and len(data) == 12
    assert data.ids[0] == f"BrEaST-Lesions_USG-images_and_masks-Dec-15-2023/{BREAST_IMAGES}/case001.png"
    assert lesion_masks(data)[1].sum() == 10


def test_breast_without_its_spreadsheet_says_where_to_get_it(tmp_path):
    root = tmp_path / "breast"
    write_breast(root, table="csv")
    with pytest.raises(DataError, match=r"holds BrEaST-Lesions-USG's images; give the folder above it"):
        scan(root / BREAST_IMAGES)
    (root / BREAST_XLSX.replace(".xlsx", ".csv")).unlink()
    for folder in (root, root / BREAST_IMAGES):
        with pytest.raises(DataError, match=r"clinical spreadsheet .*BrEaST-Lesions-USG-clinical-data-\*\.xlsx.*"
                                            r"Cancer Imaging Archive"):
            scan(folder)


def test_breast_without_its_images_says_where_they_go(tmp_path):
    root = tmp_path / "breast"
    write_breast(root, images_dir=tmp_path / "elsewhere", table="csv")
    with pytest.raises(DataError, match=r"its images \(e.g. case001.png\) are neither in .*"
                                        r"BrEaST-Lesions_USG-images_and_masks/"):
        scan(root)


def test_breast_with_two_spreadsheets_or_a_bad_class_is_an_error(tmp_path):
    root = tmp_path / "breast"
    write_breast(root, table="csv")
    _edit_cell(root / BREAST_XLSX.replace(".xlsx", ".csv"), 4, "Classification", "suspicious")
    with pytest.raises(DataError, match=r"\.csv, row 6: Classification of case005.png is 'suspicious'; "
                                        r"expected one of \['benign', 'malignant', 'normal'\]"):
        scan(root)
    (root / "BrEaST-Lesions-USG-clinical-data-copy.csv").write_text("CaseID\n")
    with pytest.raises(DataError, match="several BrEaST-Lesions-USG spreadsheets .*keep only one"):
        scan(root)


def test_breast_xlsx_without_openpyxl_says_what_to_do(breast, monkeypatch):
    def no_openpyxl(*args, **kwargs):
        raise ImportError("Missing optional dependency 'openpyxl'.")

    monkeypatch.setattr(pd, "read_excel", no_openpyxl)
    with pytest.raises(DataError, match=r"\.xlsx: reading an \.xlsx spreadsheet needs the openpyxl package.*"
                                        r"or save the sheet as CSV"):
        scan(breast[0])


def test_a_listed_tumour_mask_that_is_missing_is_reported(tmp_path):
    root = tmp_path / "breast"
    write_breast(root, table="csv")
    (root / BREAST_IMAGES / "case004_tumor.png").unlink()
    found = scan(root)
    assert [(os.path.basename(s.path), s.reason) for s in found.skipped] == [
        ("case004_tumor.png", "tumour mask listed in BrEaST-Lesions-USG-clinical-data-Dec-15-2023.csv but missing")]
    data = load_folder(root, image_size=32)
    assert not lesion_masks(data)[1][data.ids.index(f"{BREAST_IMAGES}/case004.png")]


# --- the audit --------------------------------------------------------------------------------


def test_data_audit_of_both(busbra, breast, capsys):
    assert main(["data", str(busbra[0]), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["layout"] == "bus-bra" and result["counts"] == {"benign": 18, "malignant": 8}
    assert result["n_patients"] == 14 and result["skipped"] == []
    assert main(["data", str(breast[0])]) == 0
    out = capsys.readouterr().out
    assert "Layout: breast-lesions-usg" in out and "normal: 2" in out and "Patients: 12" in out
    assert main(["split", str(busbra[0]), "--folds", "3", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    folds = {}
    for row in table["files"]:
        folds.setdefault(row["file"][len("Images/bus_"):][:4], set()).add(row["fold"])
    assert len(folds) == 14 and all(len(f) == 1 for f in folds.values())  # a patient's views share a fold


# --- joining groups -----------------------------------------------------------------------------


def test_join_groups_joins_whatever_either_grouping_joins():
    duplicates = np.array([0, 0, 1, 2, 3, 4])
    patients = np.array(["a", "b", "b", "c", "d", "d"])
    np.testing.assert_array_equal(join_groups(duplicates, patients), [0, 0, 0, 1, 2, 2])
    np.testing.assert_array_equal(join_groups(np.arange(4), np.arange(4)), np.arange(4))
    with pytest.raises(ValueError, match="alike"):
        join_groups(np.arange(3), np.arange(4))


def test_new_images_split_keeps_groups_whole():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 32, 32), dtype=np.uint8)  # unrelated noise: nothing alike
    labels = np.repeat([0, 1], 20)
    pairs = np.arange(40) // 2  # pairs of one label, like two views of one patient
    rest, test, _ = new_images_split(images, labels, test_size=0.3, seed=0, max_similarity=0.999)
    assert len(np.intersect1d(pairs[rest], pairs[test]))  # alone, the pixels split pairs
    rest, test, _ = new_images_split(images, labels, test_size=0.3, seed=0, max_similarity=0.999, groups=pairs)
    check_disjoint(pairs, rest, test)
    assert np.bincount(labels[test]).tolist() == [6, 6]
    with pytest.raises(ValueError, match="groups has shape"):
        new_images_split(images, labels, groups=pairs[:10])
