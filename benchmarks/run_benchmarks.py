"""Measure the book's heavy steps on this machine and write ``_build/bench/results.json``.

Run by ``make bench``.  Three parts, the results file rewritten after each:

* the micro-benchmarks (a few minutes): the input pipeline; VGG16 feature extraction with the
  automatic precision against float32, in the same rounds as a large matrix product in float32
  (and in bfloat16 where the machine computes it natively), whose rate is the machine's peak;
  a fine-tuning epoch on cached activations against one through the whole network, and one
  whose trainable back is compiled by XLA; plus the book's run times from the last ``make book``;
* the accuracy of bfloat16 (minutes per precision): chapter 04's quick fine-tuning under
  ``mixed_bfloat16`` and float32 on BUSI with the ImageNet weights (without them, the reason);
* the paper-profile runs (long on a CPU: tens of minutes each): the ``paper`` profile's
  transfer run and fine-tuning run, each from an empty activation cache, and the fine-tuning
  run again after the transfer run has cached the same activations (warm); on BUSI with the
  ImageNet weights when ``BUSI_DIR`` and ``VGG16_WEIGHTS`` are set, else on the phantom with
  random weights, as the file records.  Each is set beside its floor, the time its
  multiply-adds need at the measured peak.  ``BENCH_PAPER=0 make bench`` (``--no-paper``)
  skips them and keeps those of an earlier run.

Every comparison runs its candidates in turn and reports the median round (see
:mod:`busutils.benchmark`).  Not a test: timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from busutils import benchmark  # noqa: E402
from busutils.records import read_json, write_json_atomic  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
#: The paper-profile runs: results key, model, and the run whose activations it finds cached (None: cold).
PAPER_RUNS = {"paper_transfer_s": ("vgg16-transfer", None),
              "paper_finetune_warm_s": ("vgg16-finetune", "paper_transfer_s"),
              "paper_finetune_s": ("vgg16-finetune", None)}
#: The floor of each paper-profile run: the seconds its arithmetic needs at the measured peak.
FLOOR_KEYS = {"paper_transfer_s": "paper_transfer_floor_s", "paper_finetune_s": "paper_finetune_floor_s",
              "paper_finetune_warm_s": "paper_finetune_warm_floor_s"}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _say(text: str) -> None:
    print(text, flush=True)


def micro_benchmarks(args: argparse.Namespace) -> dict:
    """The pipeline, feature-extraction and fine-tuning-epoch measurements, and the book's times."""
    from book_sources import toc_notebooks
    from busutils.data import phantom_dataset

    out = {}
    data = phantom_dataset(args.pipeline_images, image_size=args.image_size, seed=0)
    _say(f"input pipeline: {args.pipeline_images} images at {args.image_size} px ...")
    out["pipeline_images_per_s"] = benchmark.pipeline_speed(data.images, data.labels, batch_size=args.batch_size,
                                                            repeats=args.repeats)
    _say(f"VGG16 feature extraction: {args.feature_images} images at {args.image_size} px, and the peak: "
         f"products of {args.matmul_size} x {args.matmul_size} matrices, in the same rounds ...")
    out["feature_extraction_speedup"] = benchmark.feature_extraction_speed(
        image_size=args.image_size, n_images=args.feature_images, batch_size=args.batch_size, repeats=args.repeats,
        matmul_size=args.matmul_size)
    out.update(benchmark.peak_reports(out["feature_extraction_speedup"]))
    _say(f"  peak GFLOPS {out['matmul_peak_gflops']['value']}; feature extraction at "
         f"{out['feature_extraction_peak_fraction']['value']} of the peak")
    _say(f"fine-tuning epochs: {args.epoch_images} images at {args.image_size} px, cached (with and without "
         "XLA) and uncached ...")
    with benchmark.fresh_activation_cache():
        out["cached_finetune_epoch_speedup"] = benchmark.finetune_epoch_speed(
            n_images=args.epoch_images, image_size=args.image_size, batch_size=args.batch_size,
            repeats=args.repeats)
    expected = [path.relative_to(ROOT).with_suffix("").as_posix() for path in toc_notebooks(ROOT)]
    out["quick_book_s"] = benchmark.book_run_times(ROOT / benchmark.BOOK_TIMES_PATH, expected)
    return out


def precision_check(args: argparse.Namespace) -> dict:
    """Chapter 04's quick fine-tuning under bfloat16 and float32 (or why it could not run)."""
    _say("accuracy under mixed_bfloat16 against float32: chapter 04's quick fine-tuning, twice ...")
    report = benchmark.precision_accuracy(verbose=0)
    _say("  " + benchmark.describe_precision_accuracy(report))
    return {"precision_accuracy": {**report, "measured_utc": _now()}}


def paper_runs(args: argparse.Namespace, results: dict, save) -> None:
    """The paper profile's runs (or, with --paper-tiny, a small test of them), into ``results``:
    the transfer run and the warm fine-tuning run share one activation cache, the cold
    fine-tuning run has its own."""
    overrides = dict(image_size=48, phantom_n=60, augment_copies=2, epochs=2, n_boot=50, batch_size=8) \
        if args.paper_tiny else {}
    feeds = {after for _, after in PAPER_RUNS.values() if after}
    with benchmark.fresh_activation_cache() as shared:
        for key, (name, after) in PAPER_RUNS.items():
            cache = shared if after or key in feeds else None
            _say(f"paper profile, {name}{' (tiny test sizes)' if overrides else ''}, "
                 f"{'after ' + PAPER_RUNS[after][0] + ' (warm cache)' if after else 'cold cache'} ...")
            run = benchmark.paper_run(name, verbose=0 if overrides else 2, cache=cache, **overrides)
            results[key] = {**run, "measured_utc": _now(), **({"after": PAPER_RUNS[after][0]} if after else {})}
            _say(f"  {run['value']} s, AUC {run['auc']}, {run['cache']}, peak memory {run['peak_rss_mb']} MB, "
                 f"load average {run['load_average']}")
            save()


def floors(results: dict) -> dict:
    """Each paper-profile run's floor at the measured peak."""
    peak = results.get("matmul_peak_gflops") or {}
    return {floor: benchmark.floor_report(results.get(key) or {}, peak) for key, floor in FLOOR_KEYS.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / benchmark.RESULTS_PATH, help="the results file")
    parser.add_argument("--no-paper", action="store_true",
                        help="skip the paper-profile runs (keep those of an earlier results file)")
    parser.add_argument("--paper-only", action="store_true", help="run only the paper-profile runs")
    parser.add_argument("--paper-tiny", action="store_true",
                        help="run the paper-profile part at tiny sizes on a small phantom (a test of the code)")
    parser.add_argument("--image-size", type=int, default=224, help="image size of the micro-benchmarks")
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--pipeline-images", type=int, default=200)
    parser.add_argument("--feature-images", type=int, default=40)
    parser.add_argument("--epoch-images", type=int, default=360)
    parser.add_argument("--matmul-size", type=int, default=4096,
                        help="rows and columns of the matrices whose product measures the peak")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds of each comparison")
    parser.add_argument("--no-accuracy", action="store_true",
                        help="skip the accuracy check of bfloat16 against float32 (keep an earlier one)")
    args = parser.parse_args()
    if args.no_paper and args.paper_only:
        parser.error("--no-paper and --paper-only exclude each other")

    previous = read_json(args.out) if args.out.is_file() else {}
    results = {key: previous[key] for key in PAPER_RUNS if key in previous}
    results["machine"] = benchmark.machine()
    results["paper_gpu"] = benchmark.paper_gpu_times()
    flags = ", ".join(f"{flag} {'yes' if present else 'no'}" for flag, present in results["machine"]["flags"].items())
    _say(f"{results['machine']['cpu']}, {results['machine']['cores']} cores; {flags}; "
         f"automatic precision: {results['machine']['precision']}")

    def save() -> None:
        write_json_atomic(args.out, {**results, **floors(results)})

    if not args.paper_only:
        results.update(micro_benchmarks(args), micro_measured_utc=_now(), micro_load_average=benchmark.load_average())
        save()
        if not args.no_accuracy:
            results.update(precision_check(args))
            save()
    elif previous:
        results.update({key: value for key, value in previous.items() if key not in results})
    if "precision_accuracy" not in results and "precision_accuracy" in previous:
        results["precision_accuracy"] = previous["precision_accuracy"]
    if not args.no_paper:
        paper_runs(args, results, save)
    for key in PAPER_RUNS:
        results.setdefault(key, {"value": None, "reason": "not measured yet: run `make bench` without BENCH_PAPER=0"})
    results.setdefault("precision_accuracy", {"value": None, "reason": "not measured yet: run `make bench`"})
    save()
    _say(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
