"""The command line: ``python -m busutils {data,split,fetch,train,evaluate,compare} ...``.

Every sub-command explains its options with ``--help`` and turns bad input into a one-line
error and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .data import DataError
from .duplicates import MAX_DISTANCE
from .images import ImageError
from .progress import QUIET_VAR

MODELS = ("baseline", "vgg16-transfer", "vgg16-finetune")  # busutils.models.MODEL_NAMES, without importing Keras


def _existing_path(text: str) -> Path:
    path = Path(text).expanduser()
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text}: no such file or folder")
    return path


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _cmd_data(args: argparse.Namespace) -> int:
    from .audit import audit, format_audit

    result = audit(args.dir, max_distance=args.max_distance)
    print(json.dumps(result, indent=2) if args.json else format_audit(result))
    return 0


def _cmd_split(args: argparse.Namespace) -> int:
    from .audit import fold_table

    if args.folds < 2:
        raise ValueError(f"--folds must be at least 2, got {args.folds}")
    table = fold_table(args.dir, n_splits=args.folds, seed=args.seed, task=args.task, profile=args.profile)
    if args.json:
        print(json.dumps(table, indent=2))
    else:
        for row in table["files"]:
            print(f"{row['fold']}\t{row['class']}\t{row['file']}")
        for skipped in table["skipped"]:
            print(f"skipped {skipped['file']}: {skipped['reason']}", file=sys.stderr)
    return 0


def _cmd_fetch(args: argparse.Namespace) -> int:
    from .download import fetch_dataset, write_image_manifest

    if args.record_images:
        out = write_image_manifest(args.name, args.record_images, cache_dir=args.cache_dir, sha256=args.sha256)
        print(f"per-image hashes of {args.name} written to {out}")
        return 0
    path = fetch_dataset(args.name, cache_dir=args.cache_dir, sha256=args.sha256, progress=not args.quiet)
    print(path)
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .runs import train_run

    result = train_run(
        data=args.data,
        model=args.model,
        profile=args.profile,
        out=args.out,
        task=args.task,
        seed=args.seed,
        weights=args.weights,
        epochs=args.epochs,
        folds=args.folds,
        overwrite=args.overwrite,
        keep_given_test=args.keep_test_part,
        test_part=args.test_part,
        verbose=0 if args.quiet else 1 if sys.stdout.isatty() else 2,  # Keras' bar in a terminal, else a line per epoch
    )
    from .evaluate import format_metric

    metrics = result["test"]["metrics"]
    print(f"data: {result['data']['source']} ({result['data']['test_part']})")
    print(f"weights: {result['weights']}")
    print(f"{args.model}: test AUC {format_metric(metrics, 'auc')}, accuracy {format_metric(metrics, 'accuracy')} "
          f"(n={metrics['n']})")
    if "cross_validation" in result:
        cv = result["cross_validation"]["models"][args.model]
        auc = cv["summary"]["auc"]
        sd = "" if auc["std"] is None else f" ± {auc['std']:.3f}"
        mean = "n/a" if auc["mean"] is None else f"{auc['mean']:.3f}{sd}"
        undefined = f", undefined in {auc['n_undefined']} fold(s)" if auc["n_undefined"] else ""
        print(f"{args.folds}-fold cross-validation: test AUC per fold {mean}{undefined}; pooled out of fold "
              f"{format_metric(cv['pooled']['metrics'], 'auc')}")
    print(f"model and results written to {args.out}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .runs import evaluate_run

    result = evaluate_run(args.run, data=args.data, out=args.out)
    metrics, dropped = result["metrics"], result["dropped"]
    if args.json:
        summary = {k: metrics.get(k) for k in ("auc", "accuracy", "sensitivity", "specificity", "precision", "f1", "n")}
        summary.update(ci95=result.get("ci95", {}), data=result["data"]["source"], model=result["model"],
                       weights=result.get("weights"), dropped=dropped)
        print(json.dumps(summary))
        return 0
    from .evaluate import format_metric

    print(f"data: {result['data']['source']}")
    print(f"dropped {dropped['seen']} image(s) the run trained or validated on and "
          f"{dropped['near_duplicate_of_seen']} near-duplicate(s) of them; evaluating on {dropped['kept']} unseen image(s)")
    print(f"weights: {result.get('weights')}")
    for key in ("auc", "accuracy", "sensitivity", "specificity", "precision", "f1", "n"):
        if key in metrics:
            low_high = result.get("ci95", {}).get(key)
            ci = f"  95% CI [{low_high[0]:.3f}, {low_high[1]:.3f}]" if low_high and None not in low_high else ""
            print(f"{key:>12}: {format_metric(metrics, key)}{ci}")
    if result.get("bootstrap", {}).get("reliable") is False:
        print(f"note: {result['bootstrap']['reason']}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    if args.folds < 2:
        raise ValueError(f"--folds must be at least 2, got {args.folds}")
    for option, values in (("--models", args.models), ("--seeds", args.seeds)):
        if len(set(values)) != len(values):
            raise ValueError(f"{option} names the same value twice: {' '.join(map(str, values))}")
    out = args.out
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; give the path of the JSON file to write, e.g. {out / 'compare.json'}")
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"--out {out} exists; nothing was changed. Choose another file, or pass --overwrite")

    from .crossval import compare_models, paired_table, summary_table
    from .data import load_dataset
    from .profiles import get_profile
    from .records import write_json_atomic

    settings = get_profile(args.profile, epochs=args.epochs)
    dataset = load_dataset(args.data, task=args.task, image_size=settings.image_size, phantom_n=settings.phantom_n,
                           seed=args.seeds[0])
    print(f"data: {dataset.source} ({len(dataset)} images)", flush=True)
    result = compare_models(dataset, settings, models=args.models, folds=args.folds, seeds=args.seeds,
                            weights=args.weights, log=None if args.quiet else lambda line: print(line, flush=True))
    write_json_atomic(out, result)
    with _wide_tables():
        print(summary_table(result, include_paper=args.task == "benign-malignant").to_string())
        if len(args.models) > 1:
            print(paired_table(result).to_string())
    for name, model in result["models"].items():
        print(f"weights of {name}: {model['weights']}")
    print(f"comparison written to {out}")
    return 0


def _wide_tables():
    """Print whole tables, however wide."""
    import pandas as pd

    return pd.option_context("display.width", 200, "display.max_columns", None)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m busutils``."""
    parser = argparse.ArgumentParser(
        prog="python -m busutils",
        description="Breast ultrasound classification with transfer learning: data audit, splits, training, evaluation.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    quiet = argparse.ArgumentParser(add_help=False)
    quiet.add_argument("--quiet", action="store_true", help="no progress bars and no per-epoch lines: results only (sets $BUSUTILS_QUIET)")

    data = sub.add_parser("data", help="audit a data folder", description="Audit a data folder: layout, counts per class, skipped files, near-duplicate and cross-label groups.")
    data.add_argument("dir", type=_existing_path, help="data folder (BUSI layout, one folder per class, BUS-BRA or BrEaST-Lesions-USG) or BreastMNIST .npz")
    data.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    data.add_argument("--max-distance", type=int, default=MAX_DISTANCE, help="perceptual-hash distance (bits) up to which two images count as near-duplicates (default: %(default)s)")
    data.set_defaults(func=_cmd_data)

    split = sub.add_parser("split", help="assign each file a cross-validation fold", description="Assign every image a fold for group-aware stratified k-fold cross-validation, exactly as 'train --folds' and 'compare' cut them with the same task, profile, folds and seed; near-duplicates, and the images of one patient where the data set names patients, always share a fold.")
    split.add_argument("dir", type=_existing_path, help="data folder (BUSI layout, one folder per class, BUS-BRA or BrEaST-Lesions-USG)")
    split.add_argument("--folds", type=_positive_int, default=5, help="number of folds (default: %(default)s)")
    split.add_argument("--seed", type=int, default=0, help="random seed of the fold assignment, as train's --seed and compare's first --seeds (default: %(default)s)")
    split.add_argument("--task", default="benign-malignant", choices=["benign-malignant", "three-class", "breastmnist"], help="classification task: which images take part (default: %(default)s)")
    split.add_argument("--profile", default="quick", choices=["quick", "paper"], help="settings profile, whose image size the near-duplicate hashes are computed at (default: %(default)s)")
    split.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    split.set_defaults(func=_cmd_split)

    fetch = sub.add_parser("fetch", parents=[quiet], help="download a public data set (verified before use)", description="Download a data set listed in the package's manifest (busi, breastmnist, breastmnist_224) from the first of its sources that gives verified data (the original's checksum, or a mirror's images against the per-image manifest), with a progress bar; unpack it once, and print the path to pass as --data or BUSI_DIR. When every source fails, the error names each one and why; offline, it says where to put the file by hand.")
    fetch.add_argument("name", help="data set name from the manifest, e.g. busi or breastmnist")
    fetch.add_argument("--cache-dir", type=Path, default=None, help="where to keep downloads (default: $BUSUTILS_CACHE or ~/.cache/busutils)")
    fetch.add_argument("--sha256", default=None, help="expected sha256, overriding the manifest's")
    fetch.add_argument("--record-images", type=Path, default=None, metavar="FILE", help="maintainers: write the per-image hashes that let a mirror be checked, from a source verified by its own checksum")
    fetch.set_defaults(func=_cmd_fetch)

    train = sub.add_parser("train", parents=[quiet], help="train a model and save it with its results", description="Train one of the paper's three models on a data folder, evaluate it on a group-aware held-out test part, and save the model and a results JSON in the run folder.")
    train.add_argument("--data", type=_existing_path, default=None, help="data folder or .npz (default: $BUSI_DIR, else the synthetic phantom)")
    train.add_argument("--model", required=True, choices=["baseline", "vgg16-transfer", "vgg16-finetune"], help="which model to train")
    train.add_argument("--profile", default="quick", choices=["quick", "paper"], help="settings profile: quick (CPU) or paper (the paper's settings) (default: %(default)s)")
    train.add_argument("--out", type=Path, required=True, help="run folder to create for the model and results.json")
    train.add_argument("--task", default="benign-malignant", choices=["benign-malignant", "three-class", "breastmnist"], help="classification task (default: %(default)s)")
    train.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    train.add_argument("--weights", default=None, help="VGG16 weights: a local .h5 file, 'imagenet' ($VGG16_WEIGHTS, else Keras' cache or download), or 'none' for random (default: the profile's, 'imagenet')")
    train.add_argument("--epochs", type=_positive_int, default=None, help="cap every training stage (baseline, classifier head, fine-tuning) at this many epochs")
    train.add_argument("--folds", type=int, default=0, help="also cross-validate the model on this many group-aware folds, as 'compare' does with this seed (checked against the data before any training; default: 0 = off)")
    train.add_argument("--overwrite", action="store_true", help="replace the run already in --out (whole; by default an existing run is never touched)")
    train.add_argument("--test-part", default="group-aware", choices=["group-aware", "new-images"], help="how the test part is held out: at random by duplicate group, or the images least like all the others (what to expect on new images) (default: %(default)s)")
    train.add_argument("--keep-test-part", action="store_true", help="keep a test/ part that came with the data even if near-duplicates of its images are in train/ (the leak is recorded); by default such data are re-split by group")
    train.set_defaults(func=_cmd_train)

    evaluate = sub.add_parser("evaluate", parents=[quiet], help="evaluate a saved run on images it has not seen", description="Evaluate the model saved in a run folder on a data folder. Every image the run trained or validated on, and every near-duplicate of one, is dropped first (and counted); with nothing unseen left it refuses.")
    evaluate.add_argument("run", type=_existing_path, help="run folder written by 'train'")
    evaluate.add_argument("--data", type=_existing_path, default=None, help="data folder or .npz to test on (default: $BUSI_DIR, else the synthetic phantom)")
    evaluate.add_argument("--out", type=Path, default=None, help="where to write the evaluation JSON (default: RUN/evaluation.json)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object (auc, accuracy, sensitivity, specificity, n, ...)")
    evaluate.set_defaults(func=_cmd_evaluate)

    compare = sub.add_parser("compare", parents=[quiet], help="cross-validate several models on the same folds and compare them in pairs", description="Train and test each model on the same group-aware k-fold cross-validation folds (and seeds), then test the differences of their out-of-fold ROC AUCs in pairs (DeLong's test, a paired bootstrap over duplicate groups). Writes one JSON file: per-fold and pooled metrics, every out-of-fold prediction, training times, the weights used and the paired tests.")
    compare.add_argument("--data", type=_existing_path, default=None, help="data folder or .npz (default: $BUSI_DIR, else the synthetic phantom)")
    compare.add_argument("--out", type=Path, required=True, help="the JSON file to write (written whole or not at all)")
    compare.add_argument("--folds", type=_positive_int, default=5, help="k of the k-fold cross-validation, at least 2 (default: %(default)s)")
    compare.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS, metavar="MODEL", help=f"models to compare, from {', '.join(MODELS)} (default: all three)")
    compare.add_argument("--seeds", nargs="+", type=int, default=[0], metavar="SEED", help="one cross-validation per seed: its folds and every model's training (default: 0)")
    compare.add_argument("--profile", default="quick", choices=["quick", "paper"], help="settings profile (default: %(default)s)")
    compare.add_argument("--task", default="benign-malignant", choices=["benign-malignant", "breastmnist"], help="two-class task (default: %(default)s)")
    compare.add_argument("--weights", default=None, help="VGG16 weights: a local .h5 file, 'imagenet' or 'none' (default: the profile's)")
    compare.add_argument("--epochs", type=_positive_int, default=None, help="cap every training stage at this many epochs")
    compare.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    compare.set_defaults(func=_cmd_compare)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "quiet", False):
        os.environ[QUIET_VAR] = "1"
    try:
        return args.func(args)
    except (DataError, ImageError, ValueError, FileNotFoundError, FileExistsError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
