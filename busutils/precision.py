"""Numeric precision chosen by the hardware: bfloat16 where it is fast, float32 elsewhere.

Keras' ``mixed_bfloat16`` policy computes convolutions in bfloat16 and keeps weights, outputs
and the loss in float32.  It pays where the hardware computes bfloat16 natively: Intel CPUs with AMX,
CPUs with AVX512-BF16, and GPUs of compute capability 8.0 or newer (``mixed_float16`` on older
GPUs).  Elsewhere every operation converts to and from float32, and the gain, if any, is small
(1.1 to 1.2 times float32 for VGG16 features on an AVX2-only CPU, ``make bench``) and bought
with bfloat16's 8-bit precision, so float32 is kept.  The choice is detected, never assumed:
the same book runs on whatever machine its reader has.  That includes what the process allows:
``ONEDNN_MAX_CPU_ISA`` below ``AVX512_CORE_BF16`` (e.g. ``AVX2``, to time the book as on an
AVX2-only CPU) forbids oneDNN, which computes TensorFlow's convolutions on a CPU, the very
instructions bfloat16 needs, and bfloat16 convolutions then fail (a bfloat16 matrix product
crashes Python), so ``auto`` keeps float32 and asking for a 16-bit precision there raises
:class:`PrecisionBarredError`.

``BUSUTILS_PRECISION`` (``auto``, ``float32``, ``mixed_bfloat16`` or ``mixed_float16``) overrides
the profiles' setting for the whole process, like ``VGG16_WEIGHTS`` for the weights: to run the
book, or its tests, under a precision this machine would not choose (bfloat16 and float16 are
emulated on CPUs without them: slower, but they run).
"""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path
from typing import Iterator, Sequence

import keras
import numpy as np

__all__ = ["BF16_CPU_FLAGS", "BFLOAT16_SUPPORT", "ENV_VAR", "PRECISIONS", "PrecisionBarredError", "bfloat16_support", "choose_precision", "onednn_allows_bfloat16", "onednn_cap", "require_runs_here", "runs_here", "precision_from_environment", "to_float32", "cpu_flags", "cpu_name", "gpu_compute_capabilities", "precision_scope"]

#: Values a profile's ``precision`` setting may take.
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")

#: The CPU flags that make bfloat16 native: AMX and AVX512-BF16.
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
#: How a machine may compute bfloat16 (:func:`bfloat16_support`), in words a page can show.
BFLOAT16_SUPPORT = {
    "gpu": "on the GPU",
    "native": "natively",
    "barred": "not at all in this process (ONEDNN_MAX_CPU_ISA bars oneDNN from the processor's bfloat16 instructions)",
    "emulated": "without native support (converted to and from float32 around every operation)",
}
#: The variable that caps the instruction sets oneDNN uses, under its name and its older one.
_ONEDNN_CAP_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")
#: Values of ``ONEDNN_MAX_CPU_ISA`` that leave oneDNN its bfloat16 instructions (``ALL``, ``DEFAULT``:
#: no cap); any other value caps it below them.
_ONEDNN_BF16_ISAS = ("AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX10_1_512", "AVX512_CORE_AMX", "AVX10_1_512_AMX",
                     "AVX512_CORE_AMX_FP16", "AVX10_1_512_AMX_FP16", "AVX10_2_512", "AVX10_2_512_AMX_2", "ALL",
                     "DEFAULT")

#: The environment variable that overrides the profiles' precision for the whole process.
ENV_VAR = "BUSUTILS_PRECISION"


def precision_from_environment() -> str | None:
    """The precision ``$BUSUTILS_PRECISION`` asks for, or ``None`` when it is unset or empty."""
    value = os.environ.get(ENV_VAR, "").strip()
    if not value:
        return None
    if value not in PRECISIONS:
        raise ValueError(f"{ENV_VAR}={value!r} is not known; use one of {', '.join(PRECISIONS)} "
                         "(or unset it for the profile's own setting)")
    return value


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux
        return ""


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU's feature flags (Linux ``/proc/cpuinfo``; empty elsewhere)."""
    text = _cpuinfo() if cpuinfo is None else cpuinfo
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_name(cpuinfo: str | None = None) -> str:
    """The CPU's model name, for benchmark and run-time reports."""
    text = _cpuinfo() if cpuinfo is None else cpuinfo
    for line in text.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def onednn_cap() -> str | None:
    """The instruction set this process caps oneDNN at (``$ONEDNN_MAX_CPU_ISA``, else its older
    name ``$DNNL_MAX_CPU_ISA``), upper-case; ``None`` when neither is set."""
    cap = next((os.environ[name] for name in _ONEDNN_CAP_VARIABLES if os.environ.get(name)), "").strip().upper()
    return cap or None


def onednn_allows_bfloat16() -> bool:
    """Whether this process lets oneDNN use the CPU's bfloat16 instructions: ``$ONEDNN_MAX_CPU_ISA``
    (or its older name ``$DNNL_MAX_CPU_ISA``) unset, or set no lower than ``AVX512_CORE_BF16``.

    TensorFlow sends bfloat16 convolutions to oneDNN whenever the CPU has AVX512-BF16 or AMX;
    under a lower cap oneDNN has no kernel for them and they fail ("could not create a
    primitive descriptor"), so ``auto`` must not choose bfloat16.
    """
    cap = onednn_cap()
    return cap is None or cap in _ONEDNN_BF16_ISAS


def gpu_compute_capabilities() -> list[tuple[int, int]]:
    """Compute capability of each visible GPU (TensorFlow backend; empty without GPUs)."""
    if keras.backend.backend() != "tensorflow":
        return []
    import tensorflow as tf

    found = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        found.append(tuple(details.get("compute_capability", (0, 0))))
    return found


def bfloat16_support(*, flags: set[str] | None = None, gpus: Sequence[tuple[int, int]] | None = None) -> str:
    """How the machine computes bfloat16, a key of :data:`BFLOAT16_SUPPORT`: ``"gpu"``; ``"native"``
    (a CPU with AMX or AVX512-BF16); ``"barred"`` (such a CPU, but this process caps oneDNN below
    those instructions, see :func:`onednn_allows_bfloat16`); else ``"emulated"``.

    ``flags`` and ``gpus`` default to this machine's (pass them to ask about another one; the
    answer then rests on them alone, never ``"barred"``).
    """
    gpus = gpu_compute_capabilities() if gpus is None else list(gpus)
    if gpus:
        return "gpu"
    if flags is None and not onednn_allows_bfloat16():
        return "barred" if any(flag in cpu_flags() for flag in BF16_CPU_FLAGS) else "emulated"
    flags = cpu_flags() if flags is None else flags
    return "native" if any(flag in flags for flag in BF16_CPU_FLAGS) else "emulated"


def choose_precision(
    setting: str = "auto", *, flags: set[str] | None = None, gpus: Sequence[tuple[int, int]] | None = None
) -> str:
    """The Keras dtype policy for ``setting``: itself, or for ``"auto"`` the hardware's best.

    ``"auto"``: ``mixed_bfloat16`` on GPUs of compute capability >= 8.0, ``mixed_float16`` on
    older GPUs, ``mixed_bfloat16`` on CPUs that compute bfloat16 natively (AMX or AVX512-BF16,
    unless this process caps oneDNN below them: :func:`bfloat16_support`), ``float32`` otherwise.
    ``flags`` and ``gpus`` default to this machine's (pass them to ask about another one).
    """
    if setting not in PRECISIONS:
        raise ValueError(f"precision={setting!r} is not known; use one of {PRECISIONS}")
    if setting != "auto":
        return setting
    gpus = gpu_compute_capabilities() if gpus is None else list(gpus)
    if gpus:
        return "mixed_bfloat16" if min(gpus) >= (8, 0) else "mixed_float16"
    return "mixed_bfloat16" if bfloat16_support(flags=flags, gpus=gpus) == "native" else "float32"


def runs_here(setting: str) -> bool:
    """Whether this process can compute in the precision ``setting`` at all: always, except a
    16-bit one (bfloat16 or float16) where :func:`bfloat16_support` is ``"barred"``, since
    TensorFlow then sends its layers to oneDNN, which has no kernel left for them."""
    policy = choose_precision(setting)
    return keras.DTypePolicy(policy).compute_dtype == "float32" or bfloat16_support() != "barred"


class PrecisionBarredError(RuntimeError):
    """A 16-bit precision was asked for in a process that cannot compute it (:func:`runs_here`)."""


def require_runs_here(setting: str) -> str:
    """``choose_precision(setting)``, or :class:`PrecisionBarredError` where this process cannot
    compute in it: TensorFlow would otherwise fail deep inside oneDNN, or crash Python outright
    (a bfloat16 matrix product under ``ONEDNN_MAX_CPU_ISA=AVX2`` on a CPU with AVX512-BF16 does)."""
    policy = choose_precision(setting)
    if not runs_here(policy):
        raise PrecisionBarredError(
            f"precision {setting!r} cannot run in this process: ONEDNN_MAX_CPU_ISA={onednn_cap()} bars oneDNN, "
            "which computes TensorFlow's layers on this CPU, from the processor's 16-bit instructions, and "
            "TensorFlow fails or crashes without them. Use precision 'float32' or 'auto' (which picks float32 "
            "here), or unset ONEDNN_MAX_CPU_ISA")
    return policy


@contextlib.contextmanager
def precision_scope(setting: str = "auto") -> Iterator[str]:
    """Build models inside this block to give them the chosen dtype policy; yields its name.

    Layers take the global policy when they are created, so only model building needs to be
    inside; the previous policy is restored afterwards.  A precision this process cannot
    compute in raises :class:`PrecisionBarredError` here, before any layer is built.
    """
    policy = require_runs_here(setting)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield policy
    finally:
        keras.config.set_dtype_policy(previous)


def to_float32(values) -> np.ndarray:
    """``values`` (a Keras tensor or an array of any float type) as a float32 NumPy array.

    The one door from Keras to NumPy: under a mixed policy, layers return bfloat16 or float16
    tensors, which NumPy cannot multiply, sum exactly or pass to scikit-learn; everything the
    book computes on a network's outputs (features, scores, Grad-CAM maps, cached activations)
    goes through here first.
    """
    if not isinstance(values, np.ndarray):
        values = np.asarray(keras.ops.convert_to_numpy(values))
    return values.astype(np.float32, copy=False)
