"""Measure the book's heavy steps on this machine and write ``_build/bench/results.json``.

Run by ``make bench``.  Two parts:

* the micro-benchmarks (a few minutes): the input pipeline, VGG16 feature extraction with the
  automatic precision against float32, and a fine-tuning epoch on cached activations against
  one through the whole network; plus the book's run times from the last ``make book``;
* the paper-profile runs (long on a CPU: tens of minutes each): the ``paper`` profile's
  transfer and fine-tuning runs, on BUSI with the ImageNet weights when ``BUSI_DIR`` and
  ``VGG16_WEIGHTS`` are set, else on the phantom with random weights, as the file records.
  ``BENCH_PAPER=0 make bench`` (``--no-paper``) skips them and keeps those of an earlier run.

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
PAPER_KEYS = {"vgg16-transfer": "paper_transfer_s", "vgg16-finetune": "paper_finetune_s"}


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
    _say(f"VGG16 feature extraction: {args.feature_images} images at {args.image_size} px ...")
    out["feature_extraction_speedup"] = benchmark.feature_extraction_speed(
        image_size=args.image_size, n_images=args.feature_images, batch_size=args.batch_size, repeats=args.repeats)
    _say(f"fine-tuning epochs: {args.epoch_images} images at {args.image_size} px, cached and uncached ...")
    with benchmark.fresh_activation_cache():
        out["cached_finetune_epoch_speedup"] = benchmark.finetune_epoch_speed(
            n_images=args.epoch_images, image_size=args.image_size, batch_size=args.batch_size,
            repeats=args.repeats)
    expected = [path.relative_to(ROOT).with_suffix("").as_posix() for path in toc_notebooks(ROOT)]
    out["quick_book_s"] = benchmark.book_run_times(ROOT / benchmark.BOOK_TIMES_PATH, expected)
    return out


def paper_runs(args: argparse.Namespace) -> dict:
    """The paper profile's transfer and fine-tuning runs (or, with --paper-tiny, a small test of them)."""
    overrides = dict(image_size=48, phantom_n=60, augment_copies=2, epochs=2, n_boot=50, batch_size=8) \
        if args.paper_tiny else {}
    out = {}
    for name, key in PAPER_KEYS.items():
        _say(f"paper profile, {name}{' (tiny test sizes)' if overrides else ''} ...")
        run = benchmark.paper_run(name, verbose=0 if overrides else 2, **overrides)
        out[key] = {**run, "measured_utc": _now()}
        _say(f"  {out[key]['value']} s, AUC {out[key]['auc']}")
    return out


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
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds of each comparison")
    args = parser.parse_args()
    if args.no_paper and args.paper_only:
        parser.error("--no-paper and --paper-only exclude each other")

    previous = read_json(args.out) if args.out.is_file() else {}
    results = {key: previous[key] for key in PAPER_KEYS.values() if key in previous}
    results["machine"] = benchmark.machine()
    results["paper_gpu"] = benchmark.paper_gpu_times()
    flags = ", ".join(f"{flag} {'yes' if present else 'no'}" for flag, present in results["machine"]["flags"].items())
    _say(f"{results['machine']['cpu']}, {results['machine']['cores']} cores; {flags}; "
         f"automatic precision: {results['machine']['precision']}")
    if not args.paper_only:
        results.update(micro_benchmarks(args), micro_measured_utc=_now())
    elif previous:
        results.update({key: value for key, value in previous.items() if key not in results})
    if not args.no_paper:
        results.update(paper_runs(args))
    for key in PAPER_KEYS.values():
        results.setdefault(key, {"value": None, "reason": "not measured yet: run `make bench` without BENCH_PAPER=0"})
    write_json_atomic(args.out, results)
    _say(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
