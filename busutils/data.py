"""Finding and loading breast-ultrasound data sets.

Five layouts are read:

* ``busi`` – the original BUSI release, ``<root>/{benign,malignant,normal}/<class> (N).png``
  with segmentation masks ``<class> (N)_mask.png`` (and ``_mask_1.png``) beside the images;
* ``class-folders`` – one folder per class, optionally under ``train/`` and ``test/``
  (a clinic export, or the paper's own data);
* ``breastmnist`` – a local MedMNIST ``breastmnist*.npz`` file;
* ``bus-bra`` – BUS-BRA as its Zenodo archive unpacks: ``bus_data.csv`` (columns ``ID``, ``Case``,
  ``Pathology``, ...) beside ``Images/bus_0001-l.png`` and ``Masks/mask_0001-l.png``; ``Case``
  names the patient (several images per patient);
* ``breast-lesions-usg`` – BrEaST-Lesions-USG as The Cancer Imaging Archive gives it: the
  spreadsheet ``BrEaST-Lesions-USG-clinical-data-*.xlsx`` (or a CSV export of it; columns
  ``CaseID``, ``Image_filename``, ``Mask_tumor_filename``, ``Classification``, ...) beside the
  folder ``BrEaST-Lesions_USG-images_and_masks/`` (``case001.png``, ``case001_tumor.png``).

The two tabled data sets take each image's class, patient and masks from their table, never
from file names; a table without the columns the data set publishes is an error that names
the file and what it lacks.

With no path and no ``BUSI_DIR``, :func:`load_dataset` falls back to the synthetic phantom so
that every chapter runs offline, and says so.  Source files are only ever read.
"""

from __future__ import annotations

import os
import re
import warnings
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from .images import ImageError, ImageWarning, is_image_name, read_image, resize

BUSI_CLASSES = ("benign", "malignant", "normal")
SUBSETS = ("train", "test")
_MASK = re.compile(r"_mask(_\d+)?$", re.IGNORECASE)
_BUSI_NAME = re.compile(r"^(benign|malignant|normal) \((\d+)\)$")
BUSBRA_TABLE = "bus_data.csv"
BREAST_IMAGES = "BrEaST-Lesions_USG-images_and_masks"
_BREAST_TABLE = re.compile(r"^BrEaST-Lesions-USG.*clinical.*\.(xlsx|csv)$", re.IGNORECASE)
_BREAST_IMAGE = re.compile(r"^case\d+\.png$", re.IGNORECASE)


@dataclass(frozen=True)
class Task:
    """A classification task: which source classes map to which label."""

    name: str
    class_names: tuple[str, ...]
    mapping: dict[str, int]  # source class (folder name) -> label index
    description: str


TASKS: dict[str, Task] = {
    "benign-malignant": Task(
        "benign-malignant",
        ("benign", "malignant"),
        {"benign": 0, "malignant": 1},
        "benign vs malignant lesions, the paper's task (normal images are left out)",
    ),
    "three-class": Task(
        "three-class",
        ("normal", "benign", "malignant"),
        {"normal": 0, "benign": 1, "malignant": 2},
        "normal vs benign vs malignant",
    ),
    "breastmnist": Task(
        "breastmnist",
        ("normal+benign", "malignant"),
        {"normal": 0, "benign": 0, "malignant": 1},
        "BreastMNIST's task: normal and benign together vs malignant",
    ),
}


class DataError(ValueError):
    """A data folder or file that cannot be used; the message says what to do."""


@dataclass(frozen=True)
class Skipped:
    """A file left out of a data set, and why."""

    path: str
    reason: str


@dataclass
class Scan:
    """What a folder holds, before any image is decoded."""

    root: Path
    layout: str
    files: list[tuple[Path, str, str | None]]  # (path, source class, subset or None)
    skipped: list[Skipped] = field(default_factory=list)
    patients: list[str] | None = None  # patient of each file, where the data set names patients
    masks: list[tuple[Path, ...]] | None = None  # lesion mask files of each file, where a table lists them

    def counts(self) -> dict[str, int]:
        """Number of candidate image files per source class."""
        return dict(sorted(Counter(cls for _, cls, _ in self.files).items()))


@dataclass
class Dataset:
    """Images (greyscale, ``uint8``), integer labels and where each image came from."""

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    ids: list[str]
    source: str
    layout: str
    task: str
    subsets: np.ndarray | None = None
    skipped: list[Skipped] = field(default_factory=list)
    is_phantom: bool = False
    group_ids: np.ndarray | None = None
    hash_values: np.ndarray | None = None
    masks: np.ndarray | None = None  # lesion masks (n, h, w), bool, where the data carry them (the phantom)
    patient_ids: np.ndarray | None = None  # patient of each image, where the data set names patients
    mask_ids: list[tuple[str, ...]] | None = None  # mask files of each image (relative to source), from a table

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def image_size(self) -> int:
        return int(self.images.shape[1])

    @property
    def hashes(self) -> np.ndarray:
        """Perceptual hash of every image (computed once, on first use)."""
        if self.hash_values is None:
            from .duplicates import perceptual_hashes

            self.hash_values = perceptual_hashes(self.images)
        return self.hash_values

    @property
    def groups(self) -> np.ndarray:
        """The group of every image that splits keep whole (computed once, on first use).

        Near-duplicates share a group; where the data set names patients (BUS-BRA has several
        images of each), so do all the images of one patient, so that no patient is both
        trained on and tested.
        """
        if self.group_ids is None:
            from .duplicates import groups_from_hashes, join_groups

            groups = groups_from_hashes(self.hashes)
            if self.patient_ids is not None:
                groups = join_groups(groups, self.patient_ids)
            self.group_ids = groups
        return self.group_ids

    def counts(self) -> dict[str, int]:
        """Number of images per class name."""
        return {name: int((self.labels == i).sum()) for i, name in enumerate(self.class_names)}

    def take(self, index: Iterable[int] | np.ndarray) -> "Dataset":
        """A new data set with the images at ``index`` (a split, a fold)."""
        index = np.asarray(index, dtype=int)
        return Dataset(
            images=self.images[index],
            labels=self.labels[index],
            class_names=self.class_names,
            ids=[self.ids[i] for i in index],
            source=self.source,
            layout=self.layout,
            task=self.task,
            subsets=None if self.subsets is None else self.subsets[index],
            skipped=[],
            is_phantom=self.is_phantom,
            group_ids=None if self.group_ids is None else self.group_ids[index],
            hash_values=None if self.hash_values is None else self.hash_values[index],
            masks=None if self.masks is None else self.masks[index],
            patient_ids=None if self.patient_ids is None else self.patient_ids[index],
            mask_ids=None if self.mask_ids is None else [self.mask_ids[i] for i in index],
        )


def get_task(task: str) -> Task:
    """Look up a task by name, with an error listing the valid names."""
    try:
        return TASKS[task]
    except KeyError:
        raise ValueError(f"task={task!r} is not known; use one of {sorted(TASKS)}") from None


def _is_mask(path: Path) -> bool:
    return bool(_MASK.search(path.stem))


def _scan_class_folders(folder: Path, subset: str | None, files: list, skipped: list) -> None:
    for class_dir in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        source_class = class_dir.name.lower()
        n_before = len(files)
        for path in sorted(class_dir.iterdir()):
            if path.name.startswith("."):
                continue
            if path.is_dir():
                skipped.append(Skipped(str(path), "sub-folder inside a class folder (not read)"))
            elif not is_image_name(path):
                skipped.append(Skipped(str(path), f"not an image file ({path.suffix or 'no suffix'})"))
            elif _is_mask(path):
                skipped.append(Skipped(str(path), "segmentation mask"))
            else:
                files.append((path, source_class, subset))
        if len(files) == n_before:
            where = f"{class_dir}"
            skipped.append(Skipped(where, "empty class folder (no images)"))


def _read_table(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    """The rows of a data set's table (CSV, or the first sheet of an ``.xlsx``) as stripped strings.

    Raises :class:`DataError` naming the file when it cannot be read or lacks a ``required`` column.
    """
    import pandas as pd

    try:
        if path.suffix.lower() == ".xlsx":
            frame = pd.read_excel(path, sheet_name=0, dtype=str)
        else:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except ImportError as error:
        raise DataError(
            f"{path}: reading an .xlsx spreadsheet needs the openpyxl package ({error}); install it "
            "(pip install openpyxl), or save the sheet as CSV under the same name with .csv"
        ) from error
    except Exception as error:  # pandas raises many kinds for a corrupt or foreign file
        raise DataError(f"{path}: cannot be read as a table ({type(error).__name__}: {error})") from error
    frame.columns = [str(column).strip() for column in frame.columns]
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise DataError(
            f"{path}: column(s) {missing} are missing (found {list(frame.columns)}); expected the table "
            "as the data set publishes it"
        )
    frame = frame.fillna("").astype(str)
    return [{key: value.strip() for key, value in row.items()} for row in frame.to_dict(orient="records")]


def _file_name(value: str, table: Path, row: int, column: str) -> str:
    """A file name from a table cell: a plain name, never a path that could leave the data folder."""
    if not value or "/" in value or "\\" in value or value in (".", ".."):
        raise DataError(f"{table}, row {row}: {column} is {value!r}; expected a file name such as case001.png")
    return value


def _unlisted(folder: Path, listed: set[str], table: Path) -> list[Skipped]:
    """Files in ``folder`` that its table does not mention, to report as skipped."""
    return [Skipped(str(path), f"not listed in {table.name}") for path in sorted(folder.iterdir())
            if path.is_file() and not path.name.startswith(".") and path.name not in listed and path != table]


def _scan_busbra(root: Path) -> Scan:
    """BUS-BRA: ``bus_data.csv`` gives each image's class (``Pathology``) and patient (``Case``)."""
    table = root / BUSBRA_TABLE
    rows = _read_table(table, ("ID", "Case", "Pathology"))
    images, masks_dir = root / "Images", root / "Masks"
    if not images.is_dir():
        raise DataError(f"{table}: BUS-BRA's images are expected in {images}/ (Images/bus_0001-l.png, ...), "
                        "which is missing; unpack the whole archive")
    files: list[tuple[Path, str, str | None]] = []
    patients: list[str] = []
    masks: list[tuple[Path, ...]] = []
    skipped: list[Skipped] = []
    seen: set[str] = set()
    for row_number, row in enumerate(rows, start=2):
        name = _file_name(row["ID"], table, row_number, "ID")
        pathology = row["Pathology"].lower()
        if pathology not in ("benign", "malignant"):
            raise DataError(f"{table}, row {row_number}: Pathology of {name} is {row['Pathology']!r}; "
                            "expected 'benign' or 'malignant'")
        if not row["Case"]:
            raise DataError(f"{table}, row {row_number}: Case (the patient) of {name} is empty")
        if name in seen:
            raise DataError(f"{table}, row {row_number}: ID {name} is listed twice")
        seen.add(name)
        path = images / f"{name}.png"
        if not path.is_file():
            skipped.append(Skipped(str(path), f"listed in {BUSBRA_TABLE} but missing"))
            continue
        mask = masks_dir / f"mask_{name.removeprefix('bus_')}.png"
        files.append((path, pathology, None))
        patients.append(row["Case"])
        masks.append((mask,) if mask.is_file() else ())
    skipped += _unlisted(images, {f"{name}.png" for name in seen}, table)
    if not files:
        raise DataError(f"{table}: none of the {len(rows)} images it lists is in {images}/")
    return Scan(root, "bus-bra", files, skipped, patients=patients, masks=masks)


def _scan_breast(root: Path, tables: list[Path]) -> Scan:
    """BrEaST-Lesions-USG: its clinical spreadsheet gives each image's class, case and tumour masks."""
    if len(tables) > 1:
        raise DataError(f"{root}: several BrEaST-Lesions-USG spreadsheets ({', '.join(p.name for p in tables)}); "
                        "keep only one")
    table = tables[0]
    rows = _read_table(table, ("CaseID", "Image_filename", "Classification"))
    names = [_file_name(row["Image_filename"], table, n, "Image_filename") for n, row in enumerate(rows, start=2)]
    if not names:
        raise DataError(f"{table}: lists no images")
    candidates = [root / BREAST_IMAGES, *sorted(root.glob(f"*/{BREAST_IMAGES}")), root]
    folder = next((c for c in candidates if (c / names[0]).is_file()), None)
    if folder is None:
        raise DataError(
            f"{table}: its images (e.g. {names[0]}) are neither in {root / BREAST_IMAGES}/, the folder TCIA's "
            f"zip unpacks to, nor beside the spreadsheet; unpack BrEaST-Lesions_USG-images_and_masks-*.zip into {root}"
        )
    files: list[tuple[Path, str, str | None]] = []
    patients: list[str] = []
    masks: list[tuple[Path, ...]] = []
    skipped: list[Skipped] = []
    listed: set[str] = set()
    for row_number, (row, name) in enumerate(zip(rows, names), start=2):
        classification = row["Classification"].lower()
        if classification not in BUSI_CLASSES:
            raise DataError(f"{table}, row {row_number}: Classification of {name} is {row['Classification']!r}; "
                            f"expected one of {list(BUSI_CLASSES)}")
        if not row["CaseID"]:
            raise DataError(f"{table}, row {row_number}: CaseID of {name} is empty")
        if name in listed:
            raise DataError(f"{table}, row {row_number}: Image_filename {name} is listed twice")
        tumour = [_file_name(m.strip(), table, row_number, "Mask_tumor_filename")
                  for m in row.get("Mask_tumor_filename", "").split("&") if m.strip()]
        other = [m.strip() for m in row.get("Mask_other_filename", "").split("&") if m.strip()]
        listed.update([name, *tumour, *other])
        path = folder / name
        if not path.is_file():
            skipped.append(Skipped(str(path), f"listed in {table.name} but missing"))
            continue
        for mask in tumour:
            if not (folder / mask).is_file():
                skipped.append(Skipped(str(folder / mask), f"tumour mask listed in {table.name} but missing"))
        files.append((path, classification, None))
        patients.append(row["CaseID"])
        masks.append(tuple(folder / m for m in tumour if (folder / m).is_file()))
    skipped += _unlisted(folder, listed, table)
    if not files:
        raise DataError(f"{table}: none of the {len(rows)} images it lists is in {folder}/")
    return Scan(root, "breast-lesions-usg", files, skipped, patients=patients, masks=masks)


def _scan_tabled(root: Path, entries: list[Path]) -> Scan | None:
    """The scan of a BUS-BRA or BrEaST-Lesions-USG folder, or None for any other folder."""
    if (root / BUSBRA_TABLE).is_file():
        return _scan_busbra(root)
    if (root / "BUSBRA" / BUSBRA_TABLE).is_file():  # the folder the Zenodo archive was unpacked into
        return _scan_busbra(root / "BUSBRA")
    tables = sorted(p for p in entries if p.is_file() and _BREAST_TABLE.match(p.name))
    if tables:
        return _scan_breast(root, tables)
    flat_cases = not any(p.is_dir() for p in entries) and any(_BREAST_IMAGE.match(p.name) for p in entries)
    if (root / BREAST_IMAGES).is_dir() or flat_cases:
        if any(_BREAST_TABLE.match(p.name) for p in root.parent.glob("*")):
            raise DataError(f"{root}: holds BrEaST-Lesions-USG's images; give the folder above it, {root.parent}, "
                            "which holds the clinical spreadsheet that gives each image's class")
        raise DataError(
            f"{root}: looks like BrEaST-Lesions-USG, but its clinical spreadsheet "
            "(BrEaST-Lesions-USG-clinical-data-*.xlsx), which gives each image's class, is not here: download "
            f"it from The Cancer Imaging Archive into the folder that holds {BREAST_IMAGES}/, and give that folder"
        )
    return None


def detect_layout(root: str | Path) -> str:
    """Name the layout of ``root``: ``busi``, ``class-folders``, ``class-folders-split``, ``breastmnist``,
    ``bus-bra`` or ``breast-lesions-usg``."""
    return scan(root).layout


def scan(root: str | Path) -> Scan:
    """List the image files of a data folder (or ``.npz`` file) by class, without decoding them.

    Raises :class:`DataError` when the path is missing or matches no known layout.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"{root}: no such file or folder. Give the folder that holds the class folders.")
    if root.is_file():
        if root.suffix.lower() == ".npz":
            return Scan(root, "breastmnist", [])
        raise DataError(
            f"{root}: is a file; give a data folder (class per folder, BUSI's benign/malignant/normal, "
            "BUS-BRA's or BrEaST-Lesions-USG's folder) or a BreastMNIST .npz file"
        )
    try:
        entries = [p for p in root.iterdir() if not p.name.startswith(".")]
    except PermissionError as error:
        raise DataError(f"{root}: cannot be read ({error})") from error
    tabled = _scan_tabled(root, entries)
    if tabled is not None:
        return tabled
    subdirs = {p.name.lower(): p for p in entries if p.is_dir()}
    files: list[tuple[Path, str, str | None]] = []
    skipped: list[Skipped] = []
    if subdirs and set(subdirs) <= set(SUBSETS) and len(subdirs) >= 1:
        for subset in SUBSETS:
            if subset in subdirs:
                _scan_class_folders(subdirs[subset], subset, files, skipped)
        layout = "class-folders-split"
    elif subdirs:
        _scan_class_folders(root, None, files, skipped)
        classes = {cls for _, cls, _ in files} | {Path(s.path).name.lower() for s in skipped if "empty" in s.reason}
        busi_named = [p for p, _, _ in files if _BUSI_NAME.match(p.stem)]
        if classes and classes <= set(BUSI_CLASSES) and files and len(busi_named) >= 0.9 * len(files):
            layout = "busi"
        else:
            layout = "class-folders"
    else:
        raise DataError(
            f"{root}: matches no known layout: it has no class folders. Expected BUSI's "
            "benign/ malignant/ normal/ folders, one folder per class (optionally under train/ and "
            f"test/), BUS-BRA's {BUSBRA_TABLE} with Images/, BrEaST-Lesions-USG's clinical spreadsheet with "
            f"{BREAST_IMAGES}/, or a BreastMNIST .npz file."
        )
    for path in (p for p in entries if p.is_file()):
        skipped.append(Skipped(str(path), "file outside the class folders"))
    if not files:
        raise DataError(
            f"{root}: no image files found in its class folders ({', '.join(sorted(subdirs))}). "
            "Put PNG or JPEG images in one folder per class."
        )
    return Scan(root, layout, files, skipped)


def _resolve_root(path: str | Path | None) -> Path | None:
    if path is not None and str(path) != "":
        return Path(path).expanduser()
    env = os.environ.get("BUSI_DIR")
    return Path(env).expanduser() if env else None


def load_folder(
    root: str | Path,
    *,
    task: str | None = "benign-malignant",
    image_size: int = 224,
) -> Dataset:
    """Load a data folder in any layout of :func:`scan` for ``task``, images resized to ``image_size``.

    ``task=None`` keeps every class found, as its own class (for auditing any export).
    Files that cannot be read are skipped with a warning and listed in ``Dataset.skipped``;
    a class the task needs but the folder lacks is an error.  BUS-BRA and BrEaST-Lesions-USG
    also give each image's patient (``Dataset.patient_ids``, kept together by every split) and
    its lesion mask files (read by :func:`lesion_masks`).
    """
    found = scan(root)
    if found.layout == "breastmnist":
        return load_breastmnist(found.root, image_size=image_size, task=task or "breastmnist")
    present = set(found.counts())
    if task is None:
        names = tuple(sorted(present))
        spec = Task("all-classes", names, {name: i for i, name in enumerate(names)}, "every class folder")
    else:
        spec = get_task(task)
    missing = sorted(set(spec.mapping) - present)
    if missing:
        if found.patients is None:
            raise DataError(
                f"{found.root}: task {task!r} needs class folders {sorted(spec.mapping)}, but "
                f"{missing} {'is' if len(missing) == 1 else 'are'} missing or empty (found {sorted(present) or 'none'}). "
                "Name the folders after the classes, or choose another task."
            )
        raise DataError(
            f"{found.root}: task {task!r} needs classes {sorted(spec.mapping)}, but its table gives no image of "
            f"{missing} (found {sorted(present)}); choose another task, e.g. 'benign-malignant'."
        )
    images, labels, ids, subsets, patients, mask_ids = [], [], [], [], [], []
    skipped = list(found.skipped)
    for index, (path, source_class, subset) in enumerate(found.files):
        if source_class not in spec.mapping:
            continue
        try:
            grey = read_image(path, image_size)
        except ImageError as error:
            warnings.warn(f"skipped {error}", ImageWarning, stacklevel=2)
            skipped.append(Skipped(str(path), str(error).removeprefix(f"{path}: ")))
            continue
        images.append(grey)
        labels.append(spec.mapping[source_class])
        ids.append(path.relative_to(found.root).as_posix())
        subsets.append(subset or "")
        if found.patients is not None:
            patients.append(found.patients[index])
        if found.masks is not None:
            mask_ids.append(tuple(m.relative_to(found.root).as_posix() for m in found.masks[index]))
    if not images:
        raise DataError(f"{found.root}: none of the images could be read; see the warnings above")
    counts = Counter(labels)
    for index, name in enumerate(spec.class_names):
        if counts[index] == 0:
            raise DataError(f"{found.root}: no readable images left for class {name!r}")
    return Dataset(
        images=np.stack(images),
        labels=np.asarray(labels, dtype=np.int64),
        class_names=spec.class_names,
        ids=ids,
        source=str(found.root),
        layout=found.layout,
        task=spec.name,
        subsets=np.asarray(subsets) if found.layout == "class-folders-split" else None,
        skipped=skipped,
        patient_ids=None if found.patients is None else np.asarray(patients, dtype=str),
        mask_ids=None if found.masks is None else mask_ids,
    )


def load_breastmnist(path: str | Path, *, image_size: int | None = None, task: str = "breastmnist") -> Dataset:
    """Load a local MedMNIST BreastMNIST ``.npz`` (train, val and test parts together).

    BreastMNIST labels 0 = malignant and 1 = normal or benign; here malignant is label 1, the
    positive class, as in every other task.  The file is opened without pickle support.
    """
    path = Path(path)
    if task != "breastmnist":
        raise DataError(
            f"{path}: BreastMNIST merges normal and benign images, so task={task!r} cannot be built "
            "from it; use task='breastmnist'"
        )
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise DataError(f"{path}: not a readable .npz file ({error})") from error
    with archive:
        expected = [f"{part}_{kind}" for part in ("train", "val", "test") for kind in ("images", "labels")]
        missing = [key for key in expected if key not in archive.files]
        if missing:
            raise DataError(f"{path}: not a MedMNIST file, keys {missing} are missing (found {archive.files})")
        images, labels, subsets = [], [], []
        for part in ("train", "val", "test"):
            x = archive[f"{part}_images"]
            y = archive[f"{part}_labels"].reshape(-1)
            if x.ndim == 4:  # (n, h, w, c)
                x = x.mean(axis=-1).round().astype(np.uint8)
            if x.ndim != 3 or len(x) != len(y):
                raise DataError(f"{path}: {part}_images has shape {x.shape}, expected (n, h, w)")
            images.append(x.astype(np.uint8))
            labels.append(1 - y.astype(np.int64))
            subsets += [part] * len(y)
    images_arr = np.concatenate(images)
    if image_size is not None and images_arr.shape[1] != image_size:
        images_arr = np.stack([resize(im, image_size) for im in images_arr])
    spec = TASKS["breastmnist"]
    return Dataset(
        images=images_arr,
        labels=np.concatenate(labels),
        class_names=spec.class_names,
        ids=[f"{s}/{i}" for i, s in enumerate(subsets)],
        source=str(path),
        layout="breastmnist",
        task="breastmnist",
        subsets=np.asarray(subsets),
    )


def phantom_dataset(
    n: int = 400,
    *,
    task: str = "benign-malignant",
    image_size: int = 224,
    difficulty: float = 0.5,
    seed: int = 0,
) -> Dataset:
    """The synthetic phantom as a :class:`Dataset`, for running everything with no real data."""
    from .phantom import make_phantom

    spec = get_task(task)
    classes = tuple(dict.fromkeys(c for c in BUSI_CLASSES if c in spec.mapping))
    images, names, masks = make_phantom(n, size=image_size, classes=classes, difficulty=difficulty, seed=seed)
    labels = np.asarray([spec.mapping[str(c)] for c in names], dtype=np.int64)
    return Dataset(
        images=images,
        labels=labels,
        class_names=spec.class_names,
        ids=[f"phantom/{c} ({i + 1})" for i, c in enumerate(names)],
        source=f"synthetic phantom (n={n}, difficulty={difficulty}, seed={seed})",
        layout="phantom",
        task=task,
        is_phantom=True,
        masks=masks,
    )


def load_dataset(
    path: str | Path | None = None,
    *,
    task: str | None = "benign-malignant",
    image_size: int = 224,
    phantom_n: int = 400,
    phantom_difficulty: float = 0.5,
    seed: int = 0,
) -> Dataset:
    """Load the data a chapter runs on: ``path``, else ``$BUSI_DIR``, else the synthetic phantom.

    ``task=None`` keeps every class folder of a real data set (see :func:`load_folder`).
    """
    root = _resolve_root(path)
    if root is None:
        return phantom_dataset(phantom_n, task=task, image_size=image_size, difficulty=phantom_difficulty, seed=seed)
    return load_folder(root, task=task, image_size=image_size)


#: What each layout is, for readers: the data set's name and where it comes from.
_LAYOUT_NAMES = {
    "busi": "BUSI, the Breast Ultrasound Images data set (Al-Dhabyani et al., 2020; CC BY 4.0)",
    "breastmnist": "BreastMNIST, from MedMNIST v2 (Yang et al., 2023; CC BY 4.0)",
    "class-folders": "images in one folder per class",
    "class-folders-split": "images in one folder per class, under train/ and test/",
    "bus-bra": ("BUS-BRA, breast ultrasound from the National Institute of Cancer, Rio de Janeiro "
                "(Gómez-Flores et al., Medical Physics 51 (2024) 3110-3123; free to use and share, citing that article)"),
    "breast-lesions-usg": ("BrEaST-Lesions-USG, breast ultrasound from Poland (Pawłowska et al., Scientific Data "
                           "11 (2024) 148; The Cancer Imaging Archive, CC BY 4.0, citation required)"),
}


def source_name(dataset: Dataset) -> str:
    """The data set's name and where it was read from, without the machine's paths.

    A published page must not show the folders of the computer that built it: the folder is
    named by its last component only, and as ``$BUSI_DIR`` when that is where it came from.
    """
    if dataset.is_phantom:
        return dataset.source
    path = Path(dataset.source)
    given = os.environ.get("BUSI_DIR")
    where = f"'{path.name}'"
    if given and Path(given).expanduser().resolve() == path.resolve():
        where = f"$BUSI_DIR ({where})"
    kind = "file" if path.suffix else "folder"
    return f"{_LAYOUT_NAMES.get(dataset.layout, dataset.layout)}, read from the {kind} {where}"


def mask_files(image: str | Path) -> list[Path]:
    """The segmentation masks saved beside an image, as the original BUSI release names them.

    ``benign (3).png`` has ``benign (3)_mask.png`` and, where the lesion was outlined twice or
    the image holds two lesions, ``benign (3)_mask_1.png`` and so on.
    """
    image = Path(image)
    found = []
    for suffix in dict.fromkeys((image.suffix, ".png")):
        names = [f"{image.stem}_mask{suffix}"]
        while (image.parent / names[-1]).is_file():
            names.append(f"{image.stem}_mask_{len(names)}{suffix}")
        found += [image.parent / name for name in names[:-1]]
    return found


def _read_mask(path: Path, size: int) -> np.ndarray:
    """A mask file as a bool array at ``size``: on where it is at least half its brightest value,
    so that masks saved as 0/255 and as 0/1 both read as drawn."""
    grey = read_image(path, size)
    top = int(grey.max())
    return grey >= (top + 1) // 2 if top else np.zeros(grey.shape, dtype=bool)


def lesion_masks(dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Lesion masks ``(n, h, w)`` (bool, at the images' size) and which images have one ``(n,)``.

    The phantom knows its lesions.  A folder in the original BUSI layout has mask files beside
    its images (:func:`mask_files`; several masks of one image are joined); BUS-BRA's are in its
    ``Masks/`` folder, BrEaST-Lesions-USG's are the tumour masks its spreadsheet lists (several
    tumours joined; masks of other findings left out).  They are read as the images are, resized
    the same way, and the reader's files are only read.  An image without a mask file gets an
    empty mask and ``False``; so does every image of a data set without masks (BreastMNIST, BUSI
    copies that left the masks out).
    """
    size = dataset.image_size
    if dataset.masks is not None:
        masks = np.asarray(dataset.masks, dtype=bool)
        return masks, masks.reshape(len(masks), -1).any(axis=1)
    masks = np.zeros((len(dataset), size, size), dtype=bool)
    found = np.zeros(len(dataset), dtype=bool)
    root = Path(dataset.source)
    if not root.is_dir():
        return masks, found
    if dataset.mask_ids is not None:
        for i, names in enumerate(dataset.mask_ids):
            for name in names:
                masks[i] |= _read_mask(root / name, size)
                found[i] = True
        return masks, found
    if dataset.layout not in ("busi", "class-folders", "class-folders-split"):
        return masks, found
    for i, image_id in enumerate(dataset.ids):
        for path in mask_files(root / image_id):
            masks[i] |= read_image(path, size) >= 128
            found[i] = True
    return masks, found


def describe(dataset: Dataset) -> str:
    """A one-paragraph, human-readable account of a data set (what a chapter prints first)."""
    counts = ", ".join(f"{name} {count}" for name, count in dataset.counts().items())
    text = (f"{len(dataset)} images ({counts}) at {dataset.image_size}x{dataset.image_size}: "
            f"{source_name(dataset)}")
    if dataset.is_phantom:
        text = (
            "SYNTHETIC PHANTOM DATA - no real images were given (set BUSI_DIR or pass a data folder). "
            "Numbers below describe the phantom, not patients.\n" + text
        )
    return text


def banner(dataset: Dataset):
    """An HTML banner for notebooks saying which data a chapter runs on (loud for the phantom)."""
    from html import escape

    from IPython.display import HTML

    if dataset.is_phantom:
        style = "background:#fff3cd;border:2px solid #e0a800;padding:0.8em;border-radius:6px"
        head = "&#9888; Running on the SYNTHETIC PHANTOM, not on real ultrasound images"
        body = (
            "No data folder was given and BUSI_DIR is not set. Every number and figure below describes "
            "synthetic images; set <code>BUSI_DIR</code> (or the <code>data_dir</code> parameter) to run on BUSI.<br>"
            + escape(describe(dataset).splitlines()[-1])
        )
    else:
        style = "background:#e8f4fd;border:2px solid #1c7ed6;padding:0.8em;border-radius:6px"
        head = "Running on real data"
        body = escape(describe(dataset))
    return HTML(f'<div style="{style}"><strong>{head}</strong><br>{body}</div>')
