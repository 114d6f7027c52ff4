"""How fast the book's heavy steps run on this machine: the measurements behind ``make bench``.

The Performance appendix shows these numbers next to the times Hijab et al. (2019) report for
their GPU.  Every number comes from a run of the functions below on the machine at hand; none
is typed in.  A shared machine is noisy, so a comparison runs its candidates in turn, round
after round, in alternating order (A B, B A, A B, ...), and reports the median round of each:
a slow spell then slows every candidate alike instead of the one that happened to run in it.
A first, untimed run of each candidate traces its graphs and warms its caches.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import keras
import numpy as np

from .precision import choose_precision, cpu_flags, cpu_name, gpu_compute_capabilities, precision_scope

__all__ = [
    "BOOK_TIMES_PATH",
    "REPORTED_FLAGS",
    "RESULTS_PATH",
    "book_run_times",
    "feature_extraction_speed",
    "finetune_epoch_speed",
    "find_results",
    "fresh_activation_cache",
    "interleaved",
    "machine",
    "measure_here",
    "paper_gpu_times",
    "paper_run",
    "pipeline_speed",
    "training_multiply_adds",
]

#: CPU flags a benchmark reports: those that make bfloat16 native (AMX, AVX512-BF16), and the
#: vector units that float32 runs on (AVX-512, AVX2).
REPORTED_FLAGS = ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2")

#: Where ``make bench`` writes its results, relative to the repository.
RESULTS_PATH = Path("_build") / "bench" / "results.json"

#: Where ``make book`` writes the run time of each notebook, relative to the repository.
BOOK_TIMES_PATH = Path("_build") / "src" / "run_times.json"


def machine() -> dict:
    """The machine measured: CPU model, its bfloat16-related flags, cores, GPUs, and the
    precision ``"auto"`` chooses on it (see :mod:`busutils.precision`)."""
    flags = cpu_flags()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    versions = {}
    for name in ("tensorflow", "keras"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpu": cpu_name(),
        "cores": cores,
        "flags": {flag: flag in flags for flag in REPORTED_FLAGS},
        "gpus": [f"compute capability {major}.{minor}" for major, minor in gpu_compute_capabilities()],
        "precision": choose_precision("auto"),
        "keras_backend": keras.backend.backend(),
        **versions,
    }


def interleaved(tasks: Mapping[str, Callable[[], object]], *, repeats: int = 3) -> dict[str, list[float]]:
    """Wall-clock seconds of each task in ``repeats`` rounds, the tasks taking turns.

    Round 1 runs the tasks in the given order, round 2 in reverse, and so on, so that neither
    always runs first.  Warm the tasks up before (the first call of a Keras model traces it).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    seconds: dict[str, list[float]] = {name: [] for name in tasks}
    order = list(tasks)
    for round_ in range(repeats):
        for name in order if round_ % 2 == 0 else reversed(order):
            start = time.perf_counter()
            tasks[name]()
            seconds[name].append(time.perf_counter() - start)
    return seconds


def _rate(seconds: list[float], items: int) -> dict:
    """Median seconds of the rounds, and items per second at that median."""
    median = float(np.median(seconds))
    return {"seconds": [round(s, 3) for s in seconds], "median_s": round(median, 3),
            "images_per_s": round(items / median, 2)}


def _method(repeats: int) -> str:
    return f"median of {repeats} interleaved rounds (order alternating), after an untimed warm-up"


def pipeline_speed(
    images: np.ndarray, labels: np.ndarray, *, batch_size: int = 20,
    augmentations: Sequence[str] = ("paper", "light", "none"), repeats: int = 3, seed: int = 0,
) -> dict:
    """Images per second through :func:`busutils.train.make_dataset`, one entry per augmentation.

    The pipeline of online training: batches of compact greyscale ``uint8`` images cast to
    float32, augmented, repeated into RGB, prefetched.  (Images are decoded once, when the data
    set is loaded, so no decoding is timed.)  ``value`` is the rate with the first augmentation.
    """
    from .augment import make_augmentation
    from .train import make_dataset

    pipelines = {kind: make_dataset(images, labels, batch_size=batch_size, shuffle=True, seed=seed,
                                    augmentation=make_augmentation(kind, seed=seed))
                 for kind in augmentations}

    def one_pass(data) -> None:
        for _ in data:
            pass

    tasks = {kind: partial(one_pass, data) for kind, data in pipelines.items()}
    for task in tasks.values():
        task()
    seconds = interleaved(tasks, repeats=repeats)
    runs = {kind: _rate(s, len(images)) for kind, s in seconds.items()}
    return {"value": runs[augmentations[0]]["images_per_s"], "augmentation": augmentations[0], "runs": runs,
            "n_images": len(images), "image_size": int(images.shape[1]), "batch_size": batch_size,
            "method": _method(repeats)}


def feature_extraction_speed(
    *, image_size: int = 224, n_images: int = 40, batch_size: int = 20, repeats: int = 3,
    compare: Sequence[str] = ("mixed_bfloat16",), seed: int = 0,
) -> dict:
    """VGG16 feature extraction (the whole convolutional base) in images per second, with the
    automatic precision and with float32; ``value`` is their ratio.

    ``compare`` adds precisions measured alongside, e.g. bfloat16 where ``"auto"`` declined it,
    to check that choice on this machine.  Random weights: the speed does not depend on them.
    """
    from .models import vgg16_base
    from .train import extract_features

    automatic = choose_precision("auto")
    names = {f"auto ({automatic})": automatic, "float32": "float32"}
    names.update({policy: policy for policy in compare if policy not in names.values()})
    x = np.random.default_rng(seed).integers(0, 256, size=(n_images, image_size, image_size), dtype=np.uint8)
    tasks = {}
    for label, policy in names.items():
        with precision_scope(policy):
            base, _ = vgg16_base((image_size, image_size, 3), None, seed=seed)
        tasks[label] = partial(extract_features, base, x, batch_size=batch_size)
        extract_features(base, x[:batch_size], batch_size=batch_size)  # warm-up
    seconds = interleaved(tasks, repeats=repeats)
    runs = {label: _rate(s, n_images) for label, s in seconds.items()}
    auto_label = next(iter(names))
    return {"value": round(runs[auto_label]["images_per_s"] / runs["float32"]["images_per_s"], 3),
            "automatic_precision": automatic, "runs": runs, "n_images": n_images, "image_size": image_size,
            "batch_size": batch_size, "method": _method(repeats)}


def _multiply_adds(layer: keras.layers.Layer) -> int:
    """Multiply-adds of one forward pass of a convolution or dense layer for one image (else 0)."""
    if isinstance(layer, keras.layers.Conv2D):
        height, width = layer.output.shape[1:3]
        return int(height * width * np.prod(layer.kernel.shape))
    if isinstance(layer, keras.layers.Dense):
        return int(np.prod(layer.kernel.shape))
    return 0


def _flat_layers(model: keras.Model) -> list[keras.layers.Layer]:
    layers = []
    for layer in model.layers:
        layers += _flat_layers(layer) if isinstance(layer, keras.Model) else [layer]
    return layers


def training_multiply_adds(model: keras.Model) -> int:
    """Multiply-adds of one training step of a chain-shaped model, per image (convolutions and
    dense layers only): every layer's forward pass, the weight gradient of each trainable layer,
    and the input gradient of each layer that has a trainable layer before it.

    A measure of work, not of time: it tells how much caching the frozen layers can save at
    most when every multiply-add costs the same.
    """
    total, trainable_before = 0, False
    for layer in _flat_layers(model):
        work = _multiply_adds(layer)
        trains = bool(layer.trainable_weights)
        total += work * (1 + trains + trainable_before)
        trainable_before = trainable_before or trains
    return total


def finetune_epoch_speed(
    *, n_images: int = 360, image_size: int = 224, batch_size: int = 20, finetune_layers: str = "block5",
    augmentation: str = "paper", copies: int = 2, repeats: int = 3, seed: int = 0,
) -> dict:
    """Seconds of one fine-tuning epoch, cached against uncached; ``value`` is their ratio.

    Cached: the automatic precision, on activations of the frozen layers kept by
    :class:`busutils.frozen.FrozenVGG16` (``copies`` augmented copies per image, one per
    epoch), as ``train_model(..., finetune_mode="cached")`` trains.  Uncached: float32, images
    augmented online through the whole network, as before the cache (``finetune_mode="online"``).
    Training passes only (no validation), phantom images, random weights.  Also reported, to
    show where a cached epoch spends its time: the seconds spent only producing its batches, and
    those of a forward pass alone over them (the rest is the backward pass and the update); and
    the ratio of multiply-adds (:func:`training_multiply_adds`), the saving caching could give at
    most in equal arithmetic.
    """
    from .augment import augmented_copies, make_augmentation
    from .data import phantom_dataset
    from .frozen import CopiesSequence, FrozenVGG16
    from .models import vgg16_finetune
    from .profiles import get_profile
    from .train import make_dataset

    if n_images % batch_size:
        raise ValueError(f"n_images={n_images} must be a multiple of batch_size={batch_size}: a smaller last "
                         "batch would make Keras trace its training step again inside a timed round")
    data = phantom_dataset(n_images, image_size=image_size, seed=seed)
    shape = (image_size, image_size, 3)
    with precision_scope("float32"):
        whole, _ = vgg16_finetune(shape, 2, weights=None, seed=seed, trainable_layers=finetune_layers)
    online = make_dataset(data.images, data.labels, batch_size=batch_size, shuffle=True, seed=seed,
                          augmentation=make_augmentation(augmentation, seed=seed))
    whole.fit(online.take(1), epochs=1, verbose=0, shuffle=False)  # warm-up: traces the training step

    settings = get_profile("paper", image_size=image_size, finetune_layers=finetune_layers, batch_size=batch_size,
                           weights="none", precision="auto")
    frozen = FrozenVGG16(settings, name="vgg16-finetune", seed=seed)
    policy = frozen.policy
    cached = frozen.copies_sequence(augmented_copies(data.images, copies, augmentation, seed=seed), data.labels,
                                    seed=seed)
    back = frozen.compiled_back(settings)
    warm_up = CopiesSequence(cached.x[:batch_size], data.labels[:batch_size], batch_size=batch_size)
    back.fit(warm_up, epochs=1, verbose=0)
    back.predict(warm_up, verbose=0)

    def feed() -> None:
        for i in range(len(cached)):
            cached[i]

    tasks = {"cached": lambda: back.fit(cached, epochs=1, verbose=0, shuffle=False),
             "uncached": lambda: whole.fit(online, epochs=1, verbose=0, shuffle=False),
             "forward": lambda: back.predict(cached, verbose=0)}
    seconds = interleaved(tasks, repeats=repeats)
    feed_seconds = interleaved({"feed": feed}, repeats=repeats)["feed"]
    runs = {f"cached, {policy}": _rate(seconds["cached"], n_images),
            "uncached, float32": _rate(seconds["uncached"], n_images),
            f"cached, {policy}, forward pass only": _rate(seconds["forward"], n_images)}
    work = training_multiply_adds(whole) / training_multiply_adds(back)
    return {"value": round(float(np.median(seconds["uncached"]) / np.median(seconds["cached"])), 3),
            "cached_precision": policy, "cached_after": frozen.layer, "runs": runs,
            "cached_feed_s": round(float(np.median(feed_seconds)), 3),
            "cached_forward_s": round(float(np.median(seconds["forward"])), 3),
            "multiply_add_ratio": round(work, 2),
            "n_images": n_images, "image_size": image_size, "batch_size": batch_size,
            "finetune_layers": finetune_layers, "augmentation": augmentation, "copies": copies,
            "method": _method(repeats) + "; training passes only, no validation"}


def book_run_times(path: str | os.PathLike, expected: Sequence[str] = ()) -> dict:
    """The book's run times measured by ``make book`` (``run_times.json``), or why there are none.

    ``value`` is the sum over the notebooks: ``None`` when the file is missing, when the build ran
    another profile than ``quick``, or when it lacks notebooks of ``expected`` (listed as
    ``missing``): a part of the book is not the whole.
    """
    path = Path(path)
    if not path.is_file():
        return {"value": None, "source": str(path),
                "reason": f"{path} does not exist: run `make book` (quick profile) before `make bench`."}
    times = json.loads(path.read_text())
    notebooks = {name: entry["seconds"] for name, entry in times.get("notebooks", {}).items()}
    out = {"value": round(sum(notebooks.values()), 1), "chapters": notebooks, "profile": times.get("profile"),
           "machine": times.get("machine"), "source": str(path),
           "missing": [name for name in expected if name not in notebooks]}
    if times.get("profile") != "quick":
        out.update(value=None, reason=f"The last book build ran profile {times.get('profile')!r}, not 'quick'.")
    elif out["missing"]:
        out.update(value=None, reason=f"A partial build: {len(out['missing'])} notebook(s) of the book "
                                      "were not executed.")
    return out


@contextlib.contextmanager
def fresh_activation_cache() -> Iterator[Path]:
    """Point the activation cache (``$BUSUTILS_CACHE``) at an empty temporary folder for a while,
    so that a timed run computes every activation itself; the folder is deleted afterwards."""
    previous = os.environ.get("BUSUTILS_CACHE")
    with tempfile.TemporaryDirectory(prefix="busutils-bench-cache-") as folder:
        os.environ["BUSUTILS_CACHE"] = folder
        try:
            yield Path(folder)
        finally:
            if previous is None:
                os.environ.pop("BUSUTILS_CACHE", None)
            else:
                os.environ["BUSUTILS_CACHE"] = previous


def paper_run(name: str, *, data_dir: str | None = None, weights: str | None = None, seed: int = 0,
              verbose: int | str = 0, **overrides) -> dict:
    """Time one run of the ``paper`` profile (``run_experiment``), from a cold activation cache.

    ``data_dir`` None: ``$BUSI_DIR``, else the phantom.  ``weights`` None: ``$VGG16_WEIGHTS``,
    else random weights (never a download).  ``overrides`` change profile settings (for a
    small test); they are recorded, and a run with any is not the paper profile.  ``verbose``
    goes to Keras (2: a line per epoch).
    ``value`` is the seconds of training and testing, the span the paper's times cover.
    """
    from .data import load_dataset
    from .experiment import run_experiment
    from .profiles import get_profile

    weights = weights or os.environ.get("VGG16_WEIGHTS") or "none"
    settings = get_profile("paper", weights=weights, **overrides)
    dataset = load_dataset(data_dir, task="benign-malignant", image_size=settings.image_size,
                           phantom_n=settings.phantom_n, seed=seed)
    with fresh_activation_cache():
        trained, results = run_experiment(name, dataset, settings, seed=seed, verbose=verbose)
    timings = results["timings"]
    test = results["test"]
    return {"value": round(timings["train"] + timings["evaluate"], 1), "model": name,
            "seconds": {key: round(value, 1) for key, value in timings.items()},
            "auc": test["metrics"].get("auc"), "auc_ci95": test["ci95"].get("auc"),
            "n_test": test["metrics"]["n"], "n_train": len(results["seen"]["train"]["ids"]),
            "data": dataset.source, "is_phantom": dataset.is_phantom, "weights": results["weights"],
            "precision": trained.settings.get("precision"), "used": trained.settings,
            "profile": "paper" if not overrides else f"paper with {overrides}", "overrides": overrides,
            "cache": "cold: an empty activation cache at the start of the run"}


def paper_gpu_times() -> dict:
    """The run times Hijab et al. (2019) report for their GPU, with their words."""
    from .paper import FACTS

    keys = {"baseline": "seconds_baseline", "vgg16-transfer": "seconds_vgg16_transfer",
            "vgg16-finetune": "seconds_vgg16_finetune"}
    return {"hardware": FACTS["hardware"].value,
            "runs": {model: {"seconds": FACTS[key].value, "says": FACTS[key].says, "note": FACTS[key].note}
                     for model, key in keys.items()}}


def measure_here(*, image_size: int = 80, n_images: int = 16, batch_size: int = 8, repeats: int = 3,
                 pipeline_images: int = 96, seed: int = 0) -> dict:
    """The cheap measurements of ``make bench`` at a reduced size, for a page that has no results
    of it: the machine, the input pipeline (on ``pipeline_images``: with fewer, starting each pass
    costs more than the pass), feature extraction and the fine-tuning epochs."""
    from .data import phantom_dataset

    data = phantom_dataset(pipeline_images, image_size=image_size, seed=seed)
    sizes = {"image_size": image_size, "n_images": n_images, "batch_size": batch_size, "repeats": repeats,
             "pipeline_images": pipeline_images, "seed": seed}
    out = {"machine": machine(), "paper_gpu": paper_gpu_times(), "measured_here": sizes}
    out["pipeline_images_per_s"] = pipeline_speed(data.images, data.labels, batch_size=batch_size,
                                                  repeats=repeats, seed=seed)
    out["feature_extraction_speedup"] = feature_extraction_speed(
        image_size=image_size, n_images=n_images, batch_size=batch_size, repeats=repeats, seed=seed)
    with fresh_activation_cache():
        out["cached_finetune_epoch_speedup"] = finetune_epoch_speed(
            n_images=n_images, image_size=image_size, batch_size=batch_size, repeats=repeats, seed=seed)
    return out


def find_results(start: str | os.PathLike | None = None, relative: str | os.PathLike = RESULTS_PATH) -> Path | None:
    """The file ``relative`` (default ``_build/bench/results.json``) under ``start`` (default: the
    working folder) or under the nearest folder above it that has one, else ``None``."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / relative).is_file():
            return folder / relative
    return None
