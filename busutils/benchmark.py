"""How fast the book's heavy steps run on this machine: the measurements behind ``make bench``.

The Performance appendix shows these numbers next to the times Hijab et al. (2019) report for
their GPU.  Every number comes from a run of the functions below on the machine at hand; none
is typed in.  A shared machine is noisy, so a comparison runs its candidates in turn, round
after round, in alternating order (A B, B A, A B, ...), and reports the median round of each:
a slow spell then slows every candidate alike instead of the one that happened to run in it.
A first, untimed run of each candidate traces its graphs and warms its caches.

Speeds are also set against the machine's own limit: the rate of a large matrix product
(:func:`matmul_task`), measured in the same rounds as VGG16's feature extraction, gives the
fraction of that peak the network reaches (:func:`peak_reports`) and, for each paper-profile
run, the time its multiply-adds alone would need at that peak, its *floor*
(:func:`vgg16_run_multiply_adds`, :func:`floor_seconds`).  One check is of accuracy, not
speed: chapter 04's fine-tuning under bfloat16 against float32 (:func:`precision_accuracy`).
"""

from __future__ import annotations

import contextlib
import hashlib
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

from .precision import (bfloat16_support, choose_precision, cpu_flags, cpu_name, gpu_compute_capabilities, onednn_cap,
                        precision_scope, require_runs_here, runs_here)

__all__ = [
    "BOOK_TIMES_PATH",
    "FLOPS_PER_MULTIPLY_ADD",
    "REPORTED_FLAGS",
    "RESULTS_PATH",
    "activation_cache",
    "bfloat16_here",
    "book_run_times",
    "describe_book_machine",
    "describe_precision_accuracy",
    "feature_extraction_speed",
    "finetune_epoch_speed",
    "find_results",
    "floor_report",
    "floor_seconds",
    "forward_multiply_adds",
    "fresh_activation_cache",
    "interleaved",
    "load_average",
    "machine",
    "matmul_task",
    "measure_here",
    "multiply_adds_by_dtype",
    "paper_gpu_times",
    "paper_run",
    "peak_dtypes",
    "peak_memory",
    "peak_reports",
    "pipeline_speed",
    "precision_accuracy",
    "shown_path",
    "shown_source",
    "training_multiply_adds",
    "vgg16_run_multiply_adds",
    "xla_verdict",
]

#: CPU flags a benchmark reports: those that make bfloat16 native (AMX, AVX512-BF16), and the
#: vector units that float32 runs on (AVX-512, AVX2).
REPORTED_FLAGS = ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2")

#: Where ``make bench`` writes its results, relative to the repository.
RESULTS_PATH = Path("_build") / "bench" / "results.json"

#: Where ``make book`` writes the run time of each notebook, relative to the repository.
BOOK_TIMES_PATH = Path("_build") / "src" / "run_times.json"

#: A multiply-add is two floating-point operations: peaks are given in GFLOPS (10^9 a second).
FLOPS_PER_MULTIPLY_ADD = 2


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
        "bfloat16": bfloat16_support(),
        "onednn_cap": onednn_cap(),
        "keras_backend": keras.backend.backend(),
        **versions,
    }


def bfloat16_here(report: Mapping) -> str:
    """How the machine of a :func:`machine` report computes bfloat16: a key of
    :data:`busutils.precision.BFLOAT16_SUPPORT` (reports older than that entry: from their flags)."""
    if "bfloat16" in report:
        return report["bfloat16"]
    return "gpu" if report["gpus"] else bfloat16_support(flags={flag for flag, on in report["flags"].items() if on},
                                                         gpus=[])


def _barred() -> str:
    """Why a 16-bit precision cannot run in this process (see :func:`busutils.precision.runs_here`)."""
    return (f"ONEDNN_MAX_CPU_ISA={onednn_cap()} bars oneDNN from the processor's bfloat16 instructions, and "
            "TensorFlow's 16-bit layers fail there (a cap set to time the book as on an older processor)")


def load_average() -> list[float] | None:
    """The machine's load average over the last 1, 5 and 15 minutes (``None`` where the system
    has none): how much other work shared the processor while a benchmark ran."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except (AttributeError, OSError):
        return None


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


def peak_dtypes(policy: str) -> tuple[str, ...]:
    """The number types whose peak a benchmark measures: float32, and the type ``policy``
    computes in when it differs (bfloat16 where the machine computes it natively, so that
    ``"auto"`` chose it; float16 on older GPUs)."""
    compute = keras.DTypePolicy(policy).compute_dtype
    return ("float32",) if compute == "float32" else ("float32", compute)


def matmul_task(size: int, dtype: str = "float32", *, seed: int = 0) -> Callable[[], None]:
    """A task for :func:`interleaved`: one product of two ``size`` x ``size`` matrices in ``dtype``
    (Keras ops, so the backend's own matrix library), waited for.

    Its ``FLOPS_PER_MULTIPLY_ADD * size**3`` operations in the seconds it takes give the
    machine's practical peak in that type: the rate no network built of such products can beat.
    """
    if size < 1:
        raise ValueError(f"size must be at least 1, got {size}")
    require_runs_here({"bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}.get(dtype, "float32"))
    rng = np.random.default_rng(seed)
    a, b = (keras.ops.convert_to_tensor(rng.standard_normal((size, size), dtype=np.float32), dtype=dtype)
            for _ in range(2))

    def product() -> None:
        corner = keras.ops.matmul(a, b)[:1, :1]
        keras.ops.convert_to_numpy(keras.ops.cast(corner, "float32"))  # waits for the product

    return product


def _gflops(size: int, seconds: Sequence[float]) -> dict:
    """Median seconds of the rounds and GFLOPS at that median, for a ``size`` matrix product."""
    median = float(np.median(seconds))
    return {"seconds": [round(s, 4) for s in seconds], "median_s": round(median, 4),
            "gflops": float(f"{FLOPS_PER_MULTIPLY_ADD * size ** 3 / median / 1e9:.4g}")}  # 4 significant digits


def feature_extraction_speed(
    *, image_size: int = 224, n_images: int = 40, batch_size: int = 20, repeats: int = 3,
    compare: Sequence[str] = ("mixed_bfloat16",), matmul_size: int | None = None, seed: int = 0,
) -> dict:
    """VGG16 feature extraction (the whole convolutional base) in images per second, with the
    automatic precision and with float32; ``value`` is their ratio.

    ``compare`` adds precisions measured alongside, e.g. bfloat16 where ``"auto"`` declined it,
    to check that choice on this machine.  Random weights: the speed does not depend on them.
    With ``matmul_size``, the same rounds also time a matrix product of that size in each type
    of :func:`peak_dtypes` (``"matmul"``), so that the network's speed and the machine's peak
    are measured side by side (see :func:`peak_reports`); ``multiply_adds_per_image`` is the
    network's work per image.
    """
    from .models import vgg16_base
    from .train import extract_features

    automatic = choose_precision("auto")
    names = {f"auto ({automatic})": automatic, "float32": "float32"}
    runnable = {policy: runs_here(policy) for policy in compare}
    names.update({policy: policy for policy in compare if policy not in names.values() and runnable[policy]})
    not_measured = {policy: _barred() for policy in compare if not runnable[policy]}
    x = np.random.default_rng(seed).integers(0, 256, size=(n_images, image_size, image_size), dtype=np.uint8)
    tasks = {}
    for label, policy in names.items():
        with precision_scope(policy):
            base, _ = vgg16_base((image_size, image_size, 3), None, seed=seed)
        tasks[label] = partial(extract_features, base, x, batch_size=batch_size)
        extract_features(base, x[:batch_size], batch_size=batch_size)  # warm-up
    matmuls = {dtype: f"matmul {dtype}" for dtype in (peak_dtypes(automatic) if matmul_size else ())}
    for dtype, label in matmuls.items():
        tasks[label] = matmul_task(matmul_size, dtype, seed=seed)
        tasks[label]()  # warm-up
    seconds = interleaved(tasks, repeats=repeats)
    runs = {label: _rate(seconds[label], n_images) for label in names}
    auto_label = next(iter(names))
    out = {"value": round(runs[auto_label]["images_per_s"] / runs["float32"]["images_per_s"], 3),
           "automatic_precision": automatic, "runs": runs, "n_images": n_images, "image_size": image_size,
           "batch_size": batch_size, "method": _method(repeats),
           "policies": names, "multiply_adds_per_image": forward_multiply_adds(base), "not_measured": not_measured}
    if matmuls:
        out["matmul"] = {"size": matmul_size,
                         "runs": {dtype: _gflops(matmul_size, seconds[label]) for dtype, label in matmuls.items()}}
    return out


def peak_reports(features: Mapping) -> dict[str, dict]:
    """From a :func:`feature_extraction_speed` report measured with ``matmul_size``: the entries
    ``matmul_peak_gflops`` and ``feature_extraction_peak_fraction`` of ``results.json``.

    ``matmul_peak_gflops["value"]`` maps each number type measured to its peak in GFLOPS.  The
    fraction of each precision's feature extraction is its arithmetic rate (multiply-adds per
    image x 2 x images per second) over the peak of the type it computes in (a precision whose
    type has no measured peak has none); ``value`` is the automatic precision's.
    """
    if "matmul" not in features:
        reason = "the feature-extraction benchmark ran without a matrix product (matmul_size)"
        return {"matmul_peak_gflops": {"value": None, "reason": reason},
                "feature_extraction_peak_fraction": {"value": None, "reason": reason}}
    matmul = features["matmul"]
    peaks = {dtype: run["gflops"] for dtype, run in matmul["runs"].items()}
    macs = features["multiply_adds_per_image"]
    fractions = {}
    for label, policy in features["policies"].items():
        dtype = keras.DTypePolicy(policy).compute_dtype
        if dtype in peaks:
            rate = features["runs"][label]["images_per_s"]
            gflops = FLOPS_PER_MULTIPLY_ADD * macs * rate / 1e9
            fractions[label] = {"fraction": round(gflops / peaks[dtype], 4), "gflops": float(f"{gflops:.4g}"),
                                "images_per_s": rate, "peak_dtype": dtype, "peak_gflops": peaks[dtype]}
    auto_label = next(iter(features["policies"]))
    method = (f"the same {features['method']} as VGG16's feature extraction; a product of two "
              f"{matmul['size']} x {matmul['size']} matrices")
    return {
        "matmul_peak_gflops": {"value": peaks, "size": matmul["size"], "runs": matmul["runs"], "method": method},
        "feature_extraction_peak_fraction": {
            "value": fractions.get(auto_label, {}).get("fraction"), "automatic_precision": auto_label,
            "by_precision": fractions, "multiply_adds_per_image": macs, "image_size": features["image_size"],
            "method": "multiply-adds per image x 2 x images per second / the matrix-product peak of the "
                      "number type the precision computes in, measured in the same rounds"},
    }


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


def multiply_adds_by_dtype(model: keras.Model, *, training: bool = False) -> dict[str, int]:
    """Multiply-adds of one image through a chain-shaped model (convolutions and dense layers
    only), by the number type each layer computes in (its dtype policy's compute dtype).

    ``training=False``: the forward pass.  ``training=True``: one training step, that is every
    layer's forward pass, the weight gradient of each trainable layer, and the input gradient
    of each layer that has a trainable layer before it.
    """
    totals: dict[str, int] = {}
    trainable_before = False
    for layer in _flat_layers(model):
        work = _multiply_adds(layer)
        trains = training and bool(layer.trainable_weights)
        times = 1 + trains + (training and trainable_before)
        if work:
            dtype = layer.dtype_policy.compute_dtype
            totals[dtype] = totals.get(dtype, 0) + work * times
        trainable_before = trainable_before or trains
    return totals


def forward_multiply_adds(model: keras.Model) -> int:
    """Multiply-adds of one image's forward pass through ``model`` (convolutions and dense layers)."""
    return sum(multiply_adds_by_dtype(model).values())


def training_multiply_adds(model: keras.Model) -> int:
    """Multiply-adds of one training step of a chain-shaped model, per image (convolutions and
    dense layers only): every layer's forward pass, the weight gradient of each trainable layer,
    and the input gradient of each layer that has a trainable layer before it.

    A measure of work, not of time: it tells how much caching the frozen layers can save at
    most when every multiply-add costs the same.
    """
    return sum(multiply_adds_by_dtype(model, training=True).values())


def finetune_epoch_speed(
    *, n_images: int = 360, image_size: int = 224, batch_size: int = 20, finetune_layers: str = "block5",
    augmentation: str = "paper", copies: int = 2, xla: bool = True, repeats: int = 3, seed: int = 0,
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
    most in equal arithmetic.  With ``xla``, a second cached epoch whose trainable back is
    compiled by XLA (``jit_compile=True``; Keras leaves it off on CPUs) takes its turn in the
    same rounds; ``"xla"`` says whether it was faster here.
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
    if xla:  # the same back, built again and compiled by XLA (before its first step)
        back_xla = FrozenVGG16(settings, name="vgg16-finetune", seed=seed).compiled_back(settings)
        back_xla.jit_compile = True
        back_xla.fit(warm_up, epochs=1, verbose=0)
        tasks["xla"] = lambda: back_xla.fit(cached, epochs=1, verbose=0, shuffle=False)
    seconds = interleaved(tasks, repeats=repeats)
    feed_seconds = interleaved({"feed": feed}, repeats=repeats)["feed"]
    runs = {f"cached, {policy}": _rate(seconds["cached"], n_images),
            "uncached, float32": _rate(seconds["uncached"], n_images),
            f"cached, {policy}, forward pass only": _rate(seconds["forward"], n_images)}
    work = training_multiply_adds(whole) / training_multiply_adds(back)
    out = {"value": round(float(np.median(seconds["uncached"]) / np.median(seconds["cached"])), 3),
           "cached_precision": policy, "cached_after": frozen.layer, "runs": runs,
           "cached_feed_s": round(float(np.median(feed_seconds)), 3),
           "cached_forward_s": round(float(np.median(seconds["forward"])), 3),
           "multiply_add_ratio": round(work, 2),
           "n_images": n_images, "image_size": image_size, "batch_size": batch_size,
           "finetune_layers": finetune_layers, "augmentation": augmentation, "copies": copies,
           "method": _method(repeats) + "; training passes only, no validation"}
    if xla:
        runs[f"cached, {policy}, XLA"] = _rate(seconds["xla"], n_images)
        out["xla"] = xla_verdict(float(np.median(seconds["cached"])), float(np.median(seconds["xla"])))
    return out


def xla_verdict(plain_s: float, xla_s: float) -> dict:
    """What the trial of XLA says: how many times as fast as the plain cached epoch its epoch ran,
    and whether that is faster.  XLA is worth keeping only where it is faster; the book's
    fine-tuning compiles without it (Keras' default on processors)."""
    faster = xla_s < plain_s
    verdict = ("faster here, though the book's fine-tuning still trains without it" if faster
               else "slower here, so the book's fine-tuning rightly trains without it")
    return {"speedup": round(plain_s / xla_s, 3), "faster": faster,
            "says": f"XLA ran the cached epoch {plain_s / xla_s:.2f} times as fast as without it: {verdict}"}


def book_run_times(path: str | os.PathLike, expected: Sequence[str] = ()) -> dict:
    """The book's run times measured by ``make book`` (``run_times.json``), or why there are none.

    ``value`` is the sum over the notebooks: ``None`` when the file is missing, when the build ran
    another profile than ``quick``, or when it lacks notebooks of ``expected`` (listed as
    ``missing``): a part of the book is not the whole.  ``source`` names the file as
    :func:`shown_path` does, never as an absolute path of the machine.
    """
    path = Path(path)
    if not path.is_file():
        return {"value": None, "source": shown_path(path),
                "reason": f"{shown_path(path)} does not exist: run `make book` (quick profile) before `make bench`."}
    times = json.loads(path.read_text())
    notebooks = {name: entry["seconds"] for name, entry in times.get("notebooks", {}).items()}
    out = {"value": round(sum(notebooks.values()), 1), "chapters": notebooks, "profile": times.get("profile"),
           "machine": times.get("machine"), "source": shown_path(path),
           "missing": [name for name in expected if name not in notebooks]}
    if times.get("profile") != "quick":
        out.update(value=None, reason=f"The last book build ran profile {times.get('profile')!r}, not 'quick'.")
    elif out["missing"]:
        out.update(value=None, reason=f"A partial build: {len(out['missing'])} notebook(s) of the book "
                                      "were not executed.")
    return out


def describe_book_machine(machine: Mapping | None) -> str:
    """Where and how a build of the book ran, from the ``machine`` of its ``run_times.json``: "on
    AMD EPYC, 2 cores, in float32, oneDNN capped at AVX2".  Its times belong to that machine and
    precision, which need not be those ``make bench`` measured; a build that recorded no precision
    (before builds did) is described without one."""
    if not machine:
        return "on a machine the build did not record"
    where = f"on {machine.get('cpu') or 'an unknown CPU'}, {machine.get('cores', '?')} cores"
    if machine.get("gpus"):
        where += f" and {len(machine['gpus'])} GPU ({', '.join(machine['gpus'])})"
    if machine.get("precision"):
        where += f", in {machine['precision']}"
    if machine.get("onednn_cap"):
        where += f", oneDNN capped at {machine['onednn_cap']} (timed as on an older processor)"
    return where


@contextlib.contextmanager
def activation_cache(folder: str | os.PathLike | None = None) -> Iterator[Path]:
    """Point the activation cache (``$BUSUTILS_CACHE``) at ``folder`` for a while; ``None``: an
    empty temporary folder, deleted afterwards, so that a timed run computes every activation
    itself."""
    previous = os.environ.get("BUSUTILS_CACHE")
    with contextlib.ExitStack() as stack:
        if folder is None:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="busutils-bench-cache-"))
        os.environ["BUSUTILS_CACHE"] = str(folder)
        try:
            yield Path(folder)
        finally:
            if previous is None:
                os.environ.pop("BUSUTILS_CACHE", None)
            else:
                os.environ["BUSUTILS_CACHE"] = previous


def fresh_activation_cache() -> contextlib.AbstractContextManager[Path]:
    """Point the activation cache (``$BUSUTILS_CACHE``) at an empty temporary folder for a while,
    so that a timed run computes every activation itself; the folder is deleted afterwards."""
    return activation_cache(None)


class peak_memory:
    """The peak resident memory of this process within a ``with`` block (``mb``, megabytes), and
    what it held when the block began (``start_mb``).

    Linux resets the process's high-water mark on request (``/proc/self/clear_refs``) and
    reports it (``VmHWM``); elsewhere, or where the reset is refused, both stay ``None``.
    """

    def __init__(self):
        self.mb: float | None = None
        self.start_mb: float | None = None

    @staticmethod
    def _status(field: str) -> float | None:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return round(int(line.split()[1]) / 1024, 1)
        return None

    def __enter__(self) -> "peak_memory":
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.start_mb = self._status("VmRSS")
        except OSError:
            pass
        return self

    def __exit__(self, *exc) -> bool:
        if self.start_mb is not None:
            self.mb = self._status("VmHWM")
        return False


def _scaled(work: Mapping[str, int], times: int) -> dict[str, int]:
    return {dtype: int(macs) * int(times) for dtype, macs in work.items()}


def _summed(*works: Mapping[str, int]) -> dict[str, int]:
    total: dict[str, int] = {}
    for work in works:
        for dtype, macs in work.items():
            total[dtype] = total.get(dtype, 0) + int(macs)
    return {dtype: macs for dtype, macs in total.items() if macs}


def vgg16_run_multiply_adds(
    frozen, *, n_train: int, n_val: int, n_test: int, copies: int, head_copies: int, head_epochs: int,
    finetune_epochs: int | None = None, warm: bool = False,
) -> dict:
    """Multiply-adds of one VGG16 run as :func:`busutils.experiment.run_experiment` makes it,
    by part and by the number type each layer computes in.

    ``frozen`` is the run's :class:`busutils.frozen.FrozenVGG16`.  The parts: the frozen layers
    once per training copy and validation image (none when ``warm``: an earlier run with the
    same frozen layers and copies cached them), the pooled features the classifier reads, the
    classifier's ``head_epochs`` (each with a validation pass), fine-tuning's
    ``finetune_epochs`` (one copy of each training image per epoch, a validation pass before
    and after each), and testing (the whole network on the test images, the back on the
    cached training and validation images).  Data augmentation, pooling and the optimiser's
    updates are not counted: the total is the arithmetic no implementation can skip.
    """
    whole = multiply_adds_by_dtype(frozen.model)
    front, pooler = multiply_adds_by_dtype(frozen.front), multiply_adds_by_dtype(frozen.pooler)
    back = multiply_adds_by_dtype(frozen.back)
    head = frozen.model.get_layer("head")
    head_step, head_pass = multiply_adds_by_dtype(head, training=True), multiply_adds_by_dtype(head)
    front_images = n_train * (copies if finetune_epochs is not None else head_copies) + n_val
    parts = {
        "frozen layers, once per image": {} if warm else _scaled(front, front_images),
        "pooled features": {} if warm else _scaled(pooler, n_train * head_copies + n_val),
        "classifier": _summed(_scaled(head_step, n_train * head_copies * head_epochs),
                              _scaled(head_pass, n_val * head_epochs)),
    }
    if finetune_epochs is not None:
        back_step = multiply_adds_by_dtype(frozen.back, training=True)
        parts["fine-tuning"] = _summed(_scaled(back_step, n_train * finetune_epochs),
                                       _scaled(back, n_val * (finetune_epochs + 1)))
    parts["testing"] = _summed(_scaled(whole, n_test), _scaled(back, n_train + n_val))
    return {"parts": parts, "total": _summed(*parts.values())}


def floor_seconds(work: Mapping[str, int], peak_gflops: Mapping[str, float]) -> float | None:
    """Seconds that ``work`` (multiply-adds by number type) needs at least at ``peak_gflops``
    (GFLOPS by number type); ``None`` when a type with work has no peak."""
    if any(macs and not peak_gflops.get(dtype) for dtype, macs in work.items()):
        return None
    return sum(FLOPS_PER_MULTIPLY_ADD * macs / (peak_gflops[dtype] * 1e9) for dtype, macs in work.items() if macs)


def floor_report(run: Mapping, peak: Mapping) -> dict:
    """A paper-profile run's floor: the seconds its multiply-adds need at the measured peaks
    (``peak``: the ``matmul_peak_gflops`` entry), and how many times that the run took."""
    if run.get("value") is None or "multiply_adds" not in run:
        return {"value": None, "reason": "the run was not timed with its multiply-adds counted: run `make bench`"}
    peaks = peak.get("value") or {}
    work = run["multiply_adds"]["total"]
    floor = floor_seconds(work, peaks)
    if floor is None:
        missing = sorted(dtype for dtype in work if dtype not in peaks)
        return {"value": None, "reason": f"no matrix-product peak measured for {', '.join(missing) or 'any type'}"}
    return {"value": round(floor, 1), "ratio": round(run["value"] / floor, 3), "run_s": run["value"],
            "multiply_adds": work, "peak_gflops": {dtype: peaks[dtype] for dtype in work},
            "method": "the run's multiply-adds (vgg16_run_multiply_adds) x 2 / the peak of the number type "
                      "each layer computes in"}


def paper_run(name: str, *, data_dir: str | None = None, weights: str | None = None, seed: int = 0,
              verbose: int | str = 0, cache: str | os.PathLike | None = None, **overrides) -> dict:
    """Time one run of the ``paper`` profile (``run_experiment``), from a cold activation cache
    unless ``cache`` names a folder (an earlier run's activations there make it warm).

    ``data_dir`` None: ``$BUSI_DIR``, else the phantom.  ``weights`` None: ``$VGG16_WEIGHTS``,
    else random weights (never a download).  ``overrides`` change profile settings (for a
    small test); they are recorded, and a run with any is not the paper profile.  ``verbose``
    goes to Keras (2: a line per epoch).
    ``value`` is the seconds of training and testing, the span the paper's times cover;
    ``multiply_adds`` the run's arithmetic (:func:`vgg16_run_multiply_adds`); ``peak_rss_mb``
    the process's peak memory during the run, ``start_rss_mb`` what it held at the start
    (:class:`peak_memory`).
    """
    from .data import load_dataset, source_name
    from .experiment import run_experiment
    from .profiles import get_profile

    weights = weights or os.environ.get("VGG16_WEIGHTS") or "none"
    settings = get_profile("paper", weights=weights, **overrides)
    dataset = load_dataset(data_dir, task="benign-malignant", image_size=settings.image_size,
                           phantom_n=settings.phantom_n, seed=seed)
    with activation_cache(cache) as folder, peak_memory() as memory:
        warm = (folder / "activations").is_dir() and any((folder / "activations").iterdir())
        trained, results = run_experiment(name, dataset, settings, seed=seed, verbose=verbose)
    timings = results["timings"]
    test = results["test"]
    seen = results["seen"]
    stages = results["training"]["stages"]
    copies = settings.augment_copies if settings.augmentation != "none" else 1
    work = vgg16_run_multiply_adds(
        trained.frozen, n_train=len(seen["train"]["ids"]), n_val=len(seen["val"]["ids"]),
        n_test=len(seen["test"]["ids"]), copies=copies, head_copies=copies if settings.head_augmentation else 1,
        head_epochs=stages["head"]["epochs_run"], warm=warm,
        finetune_epochs=stages["finetune"]["epochs_run"] if "finetune" in stages else None)
    return {"value": round(timings["train"] + timings["evaluate"], 1), "model": name,
            "seconds": {key: round(value, 1) for key, value in timings.items()},
            "auc": test["metrics"].get("auc"), "auc_ci95": test["ci95"].get("auc"),
            "n_test": test["metrics"]["n"], "n_train": len(seen["train"]["ids"]),
            "data": source_name(dataset), "is_phantom": dataset.is_phantom, "weights": results["weights"],
            "precision": trained.settings.get("precision"), "used": trained.settings,
            "best_epochs": {stage: record["best_epoch"] for stage, record in stages.items()},
            "profile": "paper" if not overrides else f"paper with {overrides}", "overrides": overrides,
            "cache": ("warm: the activation cache held an earlier run's activations of the same frozen layers"
                      if warm else "cold: an empty activation cache at the start of the run"),
            "multiply_adds": work, "peak_rss_mb": memory.mb, "start_rss_mb": memory.start_mb,
            "load_average": load_average()}


def paper_gpu_times() -> dict:
    """The run times Hijab et al. (2019) report for their GPU, with their words."""
    from .paper import FACTS

    keys = {"baseline": "seconds_baseline", "vgg16-transfer": "seconds_vgg16_transfer",
            "vgg16-finetune": "seconds_vgg16_finetune"}
    return {"hardware": FACTS["hardware"].value,
            "runs": {model: {"seconds": FACTS[key].value, "says": FACTS[key].says, "note": FACTS[key].note}
                     for model, key in keys.items()}}


def _ids_sha256(ids: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def precision_accuracy(
    *, precisions: Sequence[str] = ("mixed_bfloat16", "float32"), profile: str = "quick", seed: int = 0,
    data_dir: str | None = None, require_real: bool = True, verbose: int | str = 0, **overrides,
) -> dict:
    """Chapter 04's fine-tuning run under each of ``precisions``, same data, split and seed: its
    test AUC with the 95% interval in each, and the paired difference of the first two.

    ``data_dir`` None: ``$BUSI_DIR``.  With ``require_real`` (what ``make bench`` asks), BUSI
    and the ImageNet weights (``$VGG16_WEIGHTS``) must both be there, else ``value`` is ``None``
    and ``reason`` says what is missing: a check of accuracy on the phantom or with random
    weights would say nothing about the book's results.  ``overrides`` change profile settings
    (for a small test).  Each run starts from an empty activation cache.  ``test_ids_sha256``
    of each run shows that both scored the same test images; ``difference`` (first minus
    second) is :func:`busutils.paired_auc.paired_bootstrap_auc` over the test part's duplicate
    groups; ``value`` is its point estimate.
    """
    from .paired_auc import paired_bootstrap_auc
    from .data import load_dataset, source_name
    from .experiment import run_experiment
    from .profiles import get_profile

    if len(precisions) != 2:
        raise ValueError(f"precisions must name two precisions to compare, got {list(precisions)}")
    barred = [precision for precision in precisions if not runs_here(precision)]
    if barred:
        return {"value": None, "precisions": list(precisions),
                "reason": f"{' and '.join(barred)} cannot run in this process: {_barred()}"}
    data_dir = data_dir or os.environ.get("BUSI_DIR") or None
    if require_real:
        missing = [f"{name} is not set" for name, value in (("BUSI_DIR", data_dir),
                                                            ("VGG16_WEIGHTS", os.environ.get("VGG16_WEIGHTS")))
                   if not value]
        if missing:
            return {"value": None, "precisions": list(precisions),
                    "reason": f"{' and '.join(missing)}: the check needs BUSI and the ImageNet weights, because "
                              "on the phantom or with random weights it would say nothing about the book's results"}
    profiles = {precision: get_profile(profile, precision=precision, **overrides) for precision in precisions}
    settings = profiles[precisions[0]]
    dataset = load_dataset(data_dir, task="benign-malignant", image_size=settings.image_size,
                           phantom_n=settings.phantom_n, seed=seed)
    if require_real and dataset.is_phantom:
        return {"value": None, "precisions": list(precisions),
                "reason": f"BUSI_DIR={data_dir} gave the synthetic phantom, not BUSI"}
    runs, tests = {}, {}
    for precision, settings in profiles.items():
        with fresh_activation_cache():
            trained, results = run_experiment("vgg16-finetune", dataset, settings, seed=seed, verbose=verbose)
        if require_real and not results["weights"].startswith("imagenet"):
            return {"value": None, "precisions": list(precisions),
                    "reason": f"the run used {results['weights']}, not the ImageNet weights"}
        test = tests[precision] = results["test"]
        runs[precision] = {
            "auc": test["metrics"]["auc"], "auc_ci95": test["ci95"].get("auc"), "n_test": test["metrics"]["n"],
            "test_ids_sha256": _ids_sha256(test["ids"]), "precision": trained.settings["precision"],
            "weights": results["weights"], "diverged": trained.diverged,
            "best_epochs": {name: stage["best_epoch"] for name, stage in results["training"]["stages"].items()},
            "seconds": {key: round(value, 1) for key, value in results["timings"].items()}}
    first, second = (tests[p] for p in precisions)
    same = first["ids"] == second["ids"] and first["labels"] == second["labels"]
    out = {"precisions": list(precisions), "runs": runs, "same_test_part": same, "profile": profile,
           "seed": seed, "overrides": overrides, "data": source_name(dataset), "is_phantom": dataset.is_phantom,
           "model": "vgg16-finetune"}
    if not same:
        return {**out, "value": None, "reason": "the two runs scored different test images: no paired comparison"}
    paired = paired_bootstrap_auc(first["labels"], first["scores"], second["scores"], groups=first["groups"],
                                  n_boot=settings.n_boot, seed=seed)
    out["difference"] = {key: paired[key] for key in ("difference", "ci95", "p_value", "unit", "n_units", "n_valid")}
    return {**out, "value": round(paired["difference"], 4)}


def describe_precision_accuracy(report: Mapping) -> str:
    """The result of :func:`precision_accuracy` in words: both AUCs with their intervals, whether
    the intervals overlap, and what the paired difference rules out."""
    if report.get("value") is None:
        return f"Not measured: {report.get('reason', 'no result')}."
    first, second = report["precisions"]
    a, b = report["runs"][first], report["runs"][second]

    def auc(run: Mapping) -> str:
        low, high = run["auc_ci95"]
        return f"{run['auc']:.3f} [{low:.3f}, {high:.3f}]"

    overlap = max(a["auc_ci95"][0], b["auc_ci95"][0]) <= min(a["auc_ci95"][1], b["auc_ci95"][1])
    diff = report["difference"]
    low, high = diff["ci95"]
    text = (f"Test AUC under {first}: {auc(a)}; under {second}: {auc(b)}, on the same {a['n_test']} test "
            f"images (their ids' sha256 begins {a['test_ids_sha256'][:12]} in both runs). The two intervals "
            f"{'overlap' if overlap else 'do not overlap'}. The paired difference ({first} minus {second}) is "
            f"{diff['difference']:+.3f}, 95% interval [{low:+.3f}, {high:+.3f}] (bootstrap over "
            f"{diff['n_units']} {diff['unit']}s). ")
    if low <= 0 <= high:
        text += (f"The interval holds zero: this test part cannot tell the two precisions apart, and it does not "
                 f"rule out a difference anywhere from {low:+.3f} to {high:+.3f} either.")
    else:
        better = first if low > 0 else second
        text += (f"The interval excludes zero: on this test part {better} scored higher, by "
                 f"{min(abs(low), abs(high)):.3f} to {max(abs(low), abs(high)):.3f}.")
    return text


def shown_source(source: str) -> str:
    """Where a run's data came from, as a page may show it: an absolute path (older results files
    recorded the folder itself) by its last component; anything else as it is (the description
    of :func:`busutils.data.source_name`)."""
    return Path(source).name if Path(source).is_absolute() else source


def shown_path(path: str | os.PathLike) -> str:
    """``path`` as a page may show it: relative to the repository for the files ``make bench`` and
    ``make book`` write (``_build/...``), else the file name alone, never where the machine keeps it."""
    path = Path(path)
    for known in (RESULTS_PATH, BOOK_TIMES_PATH):
        if path.parts[-len(known.parts):] == known.parts:
            return known.as_posix()
    return path.name


def measure_here(*, image_size: int = 80, n_images: int = 16, batch_size: int = 8, repeats: int = 3,
                 pipeline_images: int = 96, matmul_size: int = 1024, seed: int = 0) -> dict:
    """The cheap measurements of ``make bench`` at a reduced size, for a page that has no results
    of it: the machine, the input pipeline (on ``pipeline_images``: with fewer, starting each pass
    costs more than the pass), feature extraction beside the matrix-product peak, and the
    fine-tuning epochs (with and without XLA)."""
    from .data import phantom_dataset

    data = phantom_dataset(pipeline_images, image_size=image_size, seed=seed)
    sizes = {"image_size": image_size, "n_images": n_images, "batch_size": batch_size, "repeats": repeats,
             "pipeline_images": pipeline_images, "matmul_size": matmul_size, "seed": seed}
    out = {"machine": machine(), "paper_gpu": paper_gpu_times(), "measured_here": sizes}
    out["pipeline_images_per_s"] = pipeline_speed(data.images, data.labels, batch_size=batch_size,
                                                  repeats=repeats, seed=seed)
    out["feature_extraction_speedup"] = feature_extraction_speed(
        image_size=image_size, n_images=n_images, batch_size=batch_size, repeats=repeats, matmul_size=matmul_size,
        seed=seed)
    out.update(peak_reports(out["feature_extraction_speedup"]))
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
