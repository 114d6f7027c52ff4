"""Benchmark the synthetic phantom: images per second at 224 x 224 on one core.

Run with ``python benchmarks/bench_phantom.py [n_images]``.  The target is 200 images/s
(5 ms per image including its mask), so that the book's default data set is generated in
a couple of seconds.  Not a test: timings depend on the machine.
"""

from __future__ import annotations

import os

# One core: keep BLAS / OpenMP thread pools to a single thread (set before numpy loads).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import sys
import time

import numpy as np

from busutils.phantom import CLASSES, make_phantom

TARGET = 200.0  # images per second


def main(n: int = 500) -> float:
    """Time ``make_phantom(n)`` at 224 x 224 (three classes) and print images/s."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # pin to a single CPU
    make_phantom(4, classes=CLASSES, seed=123)  # warm up caches and imports
    best = np.inf
    for _ in range(3):
        start = time.perf_counter()
        make_phantom(n, size=224, classes=CLASSES, seed=0)
        best = min(best, time.perf_counter() - start)
    rate = n / best
    print(f"{n} images at 224x224, best of 3: {best:.2f} s")
    print(
        f"{rate:.0f} images/s ({1e3 / rate:.2f} ms/image), "
        f"{rate / TARGET:.2f} x the {TARGET:.0f} images/s target"
    )
    return rate


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 500)
