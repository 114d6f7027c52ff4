"""Run folders: train and save a run, evaluate it later on images it has never seen, tabulate runs.

A run folder holds ``model.keras`` and ``results.json``; the results record what the run
trained on (ids, pixel digests and perceptual hashes of its training, validation and test
images), so that :func:`evaluate_run` can drop every image the model has seen, or a
near-duplicate of one, before it reports a single number.  A run folder is written aside and
moved into place whole: a finished run is never overwritten by accident, and a folder never
mixes the files of two runs.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from .crossval import check_folds, compare_models
from .data import Dataset, load_dataset
from .duplicates import MAX_DISTANCE
from .evaluate import metrics_table
from .cache import image_digests
from .experiment import Split, data_summary, metrics_of_model, run_experiment, seen_images, split_dataset
from .models import MODEL_NAMES
from .profiles import Profile, as_dict, get_profile
from .records import environment_info, read_json, write_json_atomic
from .train import save_model_atomic

MODEL_FILE = "model.keras"
RESULTS_FILE = "results.json"
EVALUATION_FILE = "evaluation.json"


class RunExistsError(FileExistsError):
    """``--out`` already holds a run and replacing it was not asked for."""


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        what = "a run" if (out / RESULTS_FILE).exists() or (out / MODEL_FILE).exists() else "other files"
        raise RunExistsError(f"--out {out} already holds {what}; nothing was changed. Choose another folder, "
                             "or pass --overwrite to replace it whole")


def _move_into_place(staged: Path, out: Path) -> None:
    """Replace ``out`` by the finished folder ``staged`` (same parent), never leaving a mixture."""
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}-old-", dir=out.parent))
        out.rename(old / out.name)
        staged.rename(out)
        shutil.rmtree(old)
    else:
        staged.rename(out)


def train_run(
    *,
    data: str | Path | None,
    model: str,
    profile: str | None = "quick",
    out: str | Path,
    task: str = "benign-malignant",
    seed: int = 0,
    weights: str | None = None,
    epochs: int | None = None,
    folds: int = 0,
    overwrite: bool = False,
    keep_given_test: bool = False,
    test_part: str = "group-aware",
    verbose: int | str = 2,
) -> dict:
    """Train, evaluate and save a run folder ``out``: ``model.keras`` and ``results.json``.

    Refuses an ``out`` folder that is not empty unless ``overwrite``; the run is written in a
    folder beside it and moved into place only when complete.  A test part that comes with the
    data and leaks is re-split by group unless ``keep_given_test``; ``test_part="new-images"``
    holds out the images least like the rest instead (see
    :func:`busutils.experiment.split_dataset`).  With ``folds``, the model is also
    cross-validated by :func:`busutils.crossval.compare_models` (what ``compare`` runs, with
    this seed), recorded under ``"cross_validation"``; the folds are checked against the data
    before anything is trained.
    """
    settings = get_profile(profile, epochs=epochs)
    if folds and folds < 2:
        raise ValueError(f"--folds must be 0 (off) or at least 2, got {folds}")
    out = Path(out)
    _check_out(out, overwrite)
    dataset = load_dataset(data, task=task, image_size=settings.image_size, phantom_n=settings.phantom_n, seed=seed)
    if folds:
        check_folds(dataset, folds, seeds=[seed])
    trained, results = run_experiment(model, dataset, settings, seed=seed, weights=weights, verbose=verbose,
                                      keep_given_test=keep_given_test, test_part=test_part)
    if folds:
        results["cross_validation"] = compare_models(dataset, settings, models=[model], folds=folds, seeds=[seed],
                                                     weights=weights, log=print if verbose else None)
    out.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{out.name}-new-", dir=out.parent))
    try:
        save_model_atomic(trained.model, staged / MODEL_FILE)
        write_json_atomic(staged / RESULTS_FILE, results)
        _check_out(out, overwrite)  # nothing appeared there while training
        _move_into_place(staged, out)
    finally:
        if staged.exists():
            shutil.rmtree(staged)
    return results


def unseen_part(dataset: Dataset, seen: dict, *, max_distance: int = MAX_DISTANCE) -> tuple[Dataset, dict]:
    """The images of ``dataset`` a run has not trained or selected its model on, nor near-copies of them.

    ``seen`` is a results file's ``"seen"`` record.  Returns the remaining data set and how many
    images were dropped, and why.
    """
    digests = set(seen["train"]["digests"]) | set(seen["val"]["digests"])
    hashes = np.array([int(h, 16) for h in seen["train"]["hashes"] + seen["val"]["hashes"]], dtype=np.uint64)
    same = np.array([d in digests for d in image_digests(dataset.images)], dtype=bool)
    near = np.zeros(len(dataset), dtype=bool)
    if len(hashes):
        xor = np.asarray(dataset.hashes, dtype=np.uint64)[:, None] ^ hashes[None, :]
        bits = np.unpackbits(xor.view(np.uint8).reshape(len(dataset), len(hashes), 8), axis=-1).sum(axis=-1)
        near = (bits <= max_distance).any(axis=1) & ~same
    keep = np.flatnonzero(~(same | near))
    dropped = {"seen": int(same.sum()), "near_duplicate_of_seen": int(near.sum()), "kept": len(keep),
               "max_distance": max_distance}
    return dataset.take(keep), dropped


def evaluate_run(run: str | Path, *, data: str | Path | None = None, out: str | Path | None = None,
                 n_boot: int = 2000) -> dict:
    """Evaluate a saved run's model on ``data`` (else ``$BUSI_DIR``, else the phantom), unseen images only.

    Every image the run trained or selected its model on, and every near-duplicate of one, is
    dropped first and counted (``"dropped"``); with nothing unseen left it refuses.  The run's
    own test images, never seen in training, are kept.
    """
    from . import models  # noqa: F401  (registers the custom layers for loading)

    run = Path(run)
    model_path, results_path = run / MODEL_FILE, run / RESULTS_FILE
    for path in (model_path, results_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: is {run} a run folder written by 'python -m busutils train'?")
    saved = read_json(results_path)
    task, size = saved["data"]["task"], saved["data"]["image_size"]
    dataset = load_dataset(data, task=task, image_size=size, seed=saved.get("seed", 0) + 1000)
    if list(dataset.class_names) != saved["data"]["class_names"]:
        raise ValueError(f"{data}: classes {dataset.class_names} differ from the model's {saved['data']['class_names']}")
    if "seen" not in saved:
        raise ValueError(f"{results_path} does not record which images the run trained on (written by an older "
                         "busutils); train the run again to evaluate it safely")
    unseen, dropped = unseen_part(dataset, saved["seen"])
    if len(unseen) == 0:
        raise ValueError(f"{dataset.source}: all {len(dataset)} images were seen by the run (in training or "
                         f"validation) or are near-duplicates of such images; nothing unseen is left to evaluate on")
    if len(set(unseen.labels.tolist())) < len(unseen.class_names):
        warnings.warn(f"only {len(unseen)} unseen image(s), not all classes present: AUC is undefined", stacklevel=2)
    result = metrics_of_model(keras.models.load_model(model_path), unseen, n_boot=n_boot)
    result.update(model=saved["model"], run=str(run), weights=saved.get("weights"), data=data_summary(unseen),
                  dropped=dropped, environment=environment_info())
    write_json_atomic(Path(out) if out else run / EVALUATION_FILE, result)
    return result


def save_run(trained, results: dict, results_dir: str | Path) -> Path:
    """Save a chapter's run as ``<model>.keras`` and ``<model>.json`` in ``results_dir`` (atomically).

    Later chapters find it there with :func:`load_or_train` instead of training it again.
    """
    folder = Path(results_dir)
    save_model_atomic(trained.model, folder / f"{trained.name}.keras")
    return write_json_atomic(folder / f"{trained.name}.json", results)


def _weights_now(settings: Profile) -> str:
    """What a VGG16 trained now with ``settings`` would record of its weights: ``"random"`` or the
    file's sha256 prefix, as results files carry it."""
    from .download import file_hash
    from .weights import resolve_vgg16_weights

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the warning belongs to training, if it happens
        source = resolve_vgg16_weights(settings.weights, strict=settings.strict_weights)
    return "random" if source.is_random else f"sha256 {file_hash(source.path)[:12]}"


def reuse_mismatches(saved: dict, name: str, split: Split, settings: Profile, seed: int) -> list[str]:
    """Why the saved run ``saved`` of model ``name`` is not the run ``settings`` would train now on
    ``split`` with ``seed`` (empty when it is: it may be reused).

    The saved run's own record decides: its settings, seed and task, the images of each of its
    parts (their pixel digests), the weights it started from (their sha256, or random) and the
    precision it computed in.
    """
    from .precision import choose_precision

    why = []
    if saved.get("model") != name:
        why.append(f"it is a run of {saved.get('model')}")
    if saved.get("profile") != as_dict(settings):
        differ = sorted(k for k, v in as_dict(settings).items() if saved.get("profile", {}).get(k) != v)
        why.append(f"its settings differ ({', '.join(differ)})")
    if saved.get("seed") != seed:
        why.append(f"its seed is {saved.get('seed')}, not {seed}")
    if saved["data"]["task"] != split.train.task:
        why.append(f"its task is {saved['data']['task']}")
    now = seen_images(split)
    parts = [part for part in ("train", "val", "test")
             if sorted(saved.get("seen", {}).get(part, {}).get("digests", [])) != sorted(now[part]["digests"])]
    if parts:
        why.append(f"its {', '.join(parts)} image(s) differ")
    if name != "baseline":
        weights = _weights_now(settings)
        recorded = str(saved.get("weights", ""))
        if not (recorded.startswith("random") if weights == "random" else weights in recorded):
            why.append(f"it started from other weights ({recorded.split(' (')[0]}, not {weights})")
    precision = choose_precision(settings.precision)
    recorded_precision = saved.get("training", {}).get("used", {}).get("precision")
    if recorded_precision != precision:
        why.append(f"it computed in {recorded_precision}, not {precision}")
    return why


def load_or_train(name: str, dataset: Dataset, settings: Profile, *, results_dir: str | Path, seed: int = 0,
                  verbose: int | str = 0, test_part: str = "group-aware") -> tuple[keras.Model, dict]:
    """The model ``name`` as an earlier chapter saved it in ``results_dir``, or trained now and saved.

    A saved run is reused only when it is the run these arguments would train
    (:func:`reuse_mismatches`: settings, seed, the images of each part, weights and precision);
    otherwise, or when a chapter runs alone (e.g. on Colab), the model is trained here, saying why.
    ``test_part`` chooses the split (:func:`busutils.experiment.split_dataset`).  A saved model
    comes back uncompiled, to be scored and looked into (its optimizer's state is not kept:
    compile it again to train it further).
    """
    from . import models  # noqa: F401  (registers the custom layers for loading)

    folder = Path(results_dir)
    model_path, results_path = folder / f"{name}.keras", folder / f"{name}.json"
    if model_path.is_file() and results_path.is_file():
        saved = read_json(results_path)
        split = split_dataset(dataset, test_size=settings.test_size, val_size=settings.val_size, seed=seed,
                              test_part=test_part)
        why = reuse_mismatches(saved, name, split, settings, seed)
        if not why:
            print(f"{name}: the run saved in {folder.name}/ is reused (same settings, images, weights and precision)")
            return keras.models.load_model(model_path, compile=False), saved
        print(f"{name}: training it again, because the run saved in {folder.name}/ differs: {'; '.join(why)}")
    else:
        print(f"{name}: no run saved in {folder.name}/; training it now")
    trained, results = run_experiment(name, dataset, settings, seed=seed, verbose=verbose, test_part=test_part)
    save_run(trained, results, folder)
    return trained.model, results


def run_label(results: dict, where: str = "this run") -> str:
    """A table row name for a run: ``"<model> (<where>)"``, flagged when VGG16 was not pre-trained on
    ImageNet, when test images have a near-duplicate in training (``results["data"]["test_leaks"]``,
    which every run records: 0 unless a leaking test part was kept on purpose), and when a stage of
    its training diverged."""
    weights = str(results.get("weights", ""))
    flags = []
    if results["model"] != "baseline" and not weights.startswith("imagenet"):
        flags.append("RANDOM weights" if weights.startswith("random") else "not ImageNet weights")
    leaks = results.get("data", {}).get("test_leaks", 0)
    if leaks:
        flags.append(f"{leaks} test image{' leaks' if leaks == 1 else 's leak'}")
    diverged = results.get("training", {}).get("diverged") or {}
    flags += [f"DIVERGED in {stage} at epoch {epoch}" for stage, epoch in diverged.items()]
    return f"{results['model']} ({', '.join([where] + flags)})"


def collect_results(results_dir: str | Path, reference: dict, names: tuple[str, ...] = MODEL_NAMES,
                    *, allow_mixed: bool = False) -> dict[str, dict]:
    """Test results of the runs saved in ``results_dir`` (as ``<model>.json``) comparable with ``reference``.

    A run of another task, seed, profile or data source is left out with a warning (unless
    ``allow_mixed``): one table, one protocol.  Keys come from :func:`run_label`, so that a
    table never passes random features off as transfer learning.
    """
    keys = {"task": lambda r: r["data"]["task"], "seed": lambda r: r.get("seed"),
            "profile": lambda r: r["profile"], "data": lambda r: r["data"]["source"]}
    runs = {}
    for name in names:
        path = Path(results_dir) / f"{name}.json"
        if not path.exists():
            continue
        saved = read_json(path)
        differ = [key for key, get in keys.items() if get(saved) != get(reference)]
        if differ and not allow_mixed:
            warnings.warn(f"{path} is left out of the table: its {', '.join(differ)} differ(s) from this run's",
                          stacklevel=2)
            continue
        runs[run_label(saved, "this book")] = saved["test"]
    return runs


def results_table(runs: dict[str, dict], task: str) -> pd.DataFrame:
    """:func:`busutils.evaluate.metrics_table` of ``runs``, with the paper's rows only for its own task."""
    return metrics_table(runs, include_paper=task == "benign-malignant")
