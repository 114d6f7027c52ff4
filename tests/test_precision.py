"""The precision is chosen by the hardware: bfloat16 where it is native, float32 elsewhere."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from busutils import precision
from busutils.precision import (PRECISIONS, bfloat16_support, choose_precision, cpu_flags, cpu_name, precision_scope,
                                runs_here)

# /proc/cpuinfo excerpts of three kinds of CPU (flags shortened to the ones that matter).
AVX2_ONLY = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse2 avx fma avx2\n"
AVX512_BF16 = "model name\t: AMD EPYC 9B14\nflags\t\t: avx2 avx512f avx512bw avx512_bf16 avx512_vnni\n"
AMX = "model name\t: Intel(R) Xeon(R) Platinum 8481C\nflags\t\t: avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n"


@pytest.mark.parametrize("cpuinfo, expected", [
    (AVX2_ONLY, "float32"),
    (AVX512_BF16, "mixed_bfloat16"),
    (AMX, "mixed_bfloat16"),
    ("model name\t: Intel Xeon\nflags\t\t: avx2 avx512f avx512bw\n", "float32"),  # AVX-512 without BF16
    ("model name\t: Intel Xeon\nflags\t\t: avx2 amx_bf16 amx_tile\n", "mixed_bfloat16"),  # AMX alone
    ("", "float32"),  # not Linux: no flags known
])
def test_cpu_without_a_gpu_gets_bfloat16_only_with_native_support(cpuinfo, expected):
    assert choose_precision("auto", flags=cpu_flags(cpuinfo), gpus=[]) == expected


@pytest.mark.parametrize("gpus, expected", [
    ([(8, 0)], "mixed_bfloat16"),  # A100
    ([(8, 9)], "mixed_bfloat16"),  # L4
    ([(7, 5)], "mixed_float16"),  # T4 (Colab's free GPU)
    ([(6, 1)], "mixed_float16"),  # GTX 1050, the paper's
    ([(8, 6), (7, 0)], "mixed_float16"),  # the oldest GPU decides
])
def test_gpus_decide_whatever_the_cpu(gpus, expected):
    for cpuinfo in (AVX2_ONLY, AMX):
        assert choose_precision("auto", flags=cpu_flags(cpuinfo), gpus=gpus) == expected


def test_an_explicit_setting_is_kept_and_an_unknown_one_refused():
    for setting in PRECISIONS[1:]:
        assert choose_precision(setting, flags=set(), gpus=[]) == setting
    with pytest.raises(ValueError, match="bfloat16.*is not known"):
        choose_precision("bfloat16", flags=set(), gpus=[])


@pytest.fixture
def uncapped(monkeypatch):
    """No oneDNN cap in this process, whatever the shell that started the tests set."""
    for name in precision._ONEDNN_CAP_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_auto_on_this_machine_follows_its_own_flags(monkeypatch, uncapped):
    monkeypatch.setattr(precision, "gpu_compute_capabilities", lambda: [])
    native = bool({"amx_bf16", "avx512_bf16"} & cpu_flags())
    assert choose_precision("auto") == ("mixed_bfloat16" if native else "float32")


@pytest.mark.parametrize("variable, cap, expected", [
    (None, None, "mixed_bfloat16"),
    ("ONEDNN_MAX_CPU_ISA", "AVX2", "float32"),  # timing the book as on an AVX2-only CPU
    ("ONEDNN_MAX_CPU_ISA", "avx512_core", "float32"),  # AVX-512 without its bfloat16 part
    ("DNNL_MAX_CPU_ISA", "AVX512_CORE_VNNI", "float32"),  # oneDNN's older name for the variable
    ("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16", "mixed_bfloat16"),
    ("ONEDNN_MAX_CPU_ISA", "avx512_core_amx", "mixed_bfloat16"),
    ("ONEDNN_MAX_CPU_ISA", "ALL", "mixed_bfloat16"),
    ("ONEDNN_MAX_CPU_ISA", "", "mixed_bfloat16"),  # set but empty: no cap
])
def test_auto_keeps_float32_where_onednn_may_not_use_the_cpus_bfloat16(monkeypatch, uncapped, variable, cap,
                                                                        expected):
    monkeypatch.setattr(precision, "_cpuinfo", lambda: AMX)
    monkeypatch.setattr(precision, "gpu_compute_capabilities", lambda: [])
    if variable:
        monkeypatch.setenv(variable, cap)
    assert choose_precision("auto") == expected
    # a question about another machine is answered from its flags alone
    assert choose_precision("auto", flags=cpu_flags(AMX), gpus=[]) == "mixed_bfloat16"


@pytest.mark.parametrize("cpuinfo, cap, expected", [
    (AMX, None, "native"),
    (AMX, "AVX2", "barred"),  # the CPU has bfloat16 instructions; oneDNN may not use them
    (AVX512_BF16, "AVX512_CORE_BF16", "native"),
    (AVX2_ONLY, None, "emulated"),
    (AVX2_ONLY, "AVX2", "emulated"),  # nothing to bar: bfloat16 is converted to and from float32
])
def test_bfloat16_support_says_how_and_whether_16_bit_precisions_run(monkeypatch, uncapped, cpuinfo, cap,
                                                                      expected):
    monkeypatch.setattr(precision, "_cpuinfo", lambda: cpuinfo)
    monkeypatch.setattr(precision, "gpu_compute_capabilities", lambda: [])
    if cap:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    assert precision.onednn_cap() == cap
    assert bfloat16_support() == expected and expected in precision.BFLOAT16_SUPPORT
    assert runs_here("float32") and runs_here("auto")
    for setting in ("mixed_bfloat16", "mixed_float16"):
        assert runs_here(setting) is (expected != "barred")
    # a question about another machine is answered from its flags alone
    assert bfloat16_support(flags=cpu_flags(cpuinfo), gpus=[]) == ("emulated" if cpuinfo == AVX2_ONLY else "native")
    assert bfloat16_support(gpus=[(7, 5)]) == "gpu"


def test_cpu_flags_and_name_are_read_from_cpuinfo(monkeypatch):
    assert cpu_flags(AMX) >= {"amx_bf16", "amx_tile", "avx512_bf16"}
    assert "avx512_bf16" not in cpu_flags(AVX2_ONLY)
    assert cpu_name(AMX) == "Intel(R) Xeon(R) Platinum 8481C"
    assert cpu_flags("model name\t: a CPU without flags\n") == set()
    # no model name (not Linux, or a processor that gives none): what `platform` knows
    monkeypatch.setattr(precision.platform, "processor", lambda: "arm")
    assert cpu_name("processor\t: 0\n") == "arm"


def test_precision_scope_sets_the_policy_for_new_layers_and_restores_it(monkeypatch, uncapped):
    monkeypatch.setattr(precision, "cpu_flags", lambda: cpu_flags(AMX))
    monkeypatch.setattr(precision, "gpu_compute_capabilities", lambda: [])
    before = keras.config.dtype_policy().name
    with precision_scope("auto") as policy:
        layer = keras.layers.Dense(2)
    assert policy == "mixed_bfloat16"
    assert (layer.compute_dtype, layer.variable_dtype) == ("bfloat16", "float32")
    assert keras.config.dtype_policy().name == before
    with pytest.raises(RuntimeError), precision_scope("float32"):
        raise RuntimeError("a failure inside the block")
    assert keras.config.dtype_policy().name == before


def faint_blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noisy 32x32 images; those of class 1 hold a faint bright disc (a task a CNN half solves)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    yy, xx = np.mgrid[:32, :32]
    disc = ((yy - 16) ** 2 + (xx - 16) ** 2 < 64) * 15.0
    images = rng.normal(100, 40, (n, 32, 32)) + labels[:, None, None] * disc
    return np.clip(images, 0, 255).astype(np.uint8), labels


def test_bfloat16_predictions_rank_images_as_float32_ones_do():
    """The same trained weights, run in float32 and in mixed_bfloat16, give the same AUC within
    noise (bfloat16 keeps 8 bits of mantissa; the output layer stays float32)."""
    from sklearn.metrics import roc_auc_score

    from busutils.models import baseline_cnn
    from busutils.train import predict_scores, set_seed, to_model_input

    set_seed(0)
    images, labels = faint_blobs(160, seed=0)
    train, test = slice(0, 120), slice(120, 160)
    options = dict(filters=(8, 16), hidden=16, seed=0)
    model, _ = baseline_cnn((32, 32, 3), 2, **options)
    model.fit(to_model_input(images[train]), labels[train], epochs=8, batch_size=16, verbose=0)
    with precision_scope("mixed_bfloat16"):
        half, _ = baseline_cnn((32, 32, 3), 2, **options)
    half.set_weights(model.get_weights())
    assert half.get_layer("conv1").compute_dtype == "bfloat16"
    scores = {name: predict_scores(m, images[test]) for name, m in [("float32", model), ("bf16", half)]}
    aucs = {name: roc_auc_score(labels[test], s) for name, s in scores.items()}
    assert 0.7 < aucs["float32"] < 1  # learned, yet with mistakes whose order bfloat16 could change
    assert abs(aucs["bf16"] - aucs["float32"]) <= 0.03
    np.testing.assert_allclose(scores["bf16"], scores["float32"], atol=0.05)


def test_the_environment_overrides_the_profiles_precision_but_not_an_explicit_one(monkeypatch):
    from busutils.profiles import get_profile

    monkeypatch.setenv("BUSUTILS_PRECISION", "mixed_float16")
    assert get_profile("quick").precision == "mixed_float16"
    assert get_profile("paper").precision == "mixed_float16"
    assert get_profile("quick", precision="float32").precision == "float32"
    monkeypatch.setenv("BUSUTILS_PRECISION", "")
    assert get_profile("quick").precision == "auto"


def test_an_unknown_precision_in_the_environment_is_refused_by_name(monkeypatch):
    from busutils.profiles import get_profile

    monkeypatch.setenv("BUSUTILS_PRECISION", "bf16")
    with pytest.raises(ValueError, match="BUSUTILS_PRECISION='bf16'"):
        get_profile("quick")


def test_results_record_the_precision_override(monkeypatch):
    from busutils.records import environment_info

    monkeypatch.setenv("BUSUTILS_PRECISION", "mixed_bfloat16")
    assert environment_info()["precision_override"] == "mixed_bfloat16"
    monkeypatch.delenv("BUSUTILS_PRECISION")
    assert environment_info()["precision_override"] is None


@pytest.mark.parametrize("cpuinfo, cap", [(AMX, "AVX2"), (AMX, None), (AVX2_ONLY, "AVX2")])
def test_a_precision_this_process_cannot_compute_is_refused_before_tensorflow_crashes(monkeypatch, uncapped,
                                                                                    cpuinfo, cap):
    """Under ONEDNN_MAX_CPU_ISA=AVX2 on a CPU with bfloat16 instructions, a bfloat16 product crashed
    Python (a segmentation fault in the test run): asking for 16 bits there is a clear error,
    raised before any layer is built, and elsewhere nothing changes."""
    import keras

    from busutils import benchmark

    monkeypatch.setattr(precision, "_cpuinfo", lambda: cpuinfo)
    monkeypatch.setattr(precision, "gpu_compute_capabilities", lambda: [])
    if cap:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    barred = bfloat16_support() == "barred"
    assert precision.require_runs_here("float32") == "float32"
    assert precision.require_runs_here("auto") == choose_precision("auto")
    before = keras.config.dtype_policy().name
    for setting, dtype in (("mixed_bfloat16", "bfloat16"), ("mixed_float16", "float16")):
        if barred:
            with pytest.raises(precision.PrecisionBarredError, match=rf"'{setting}'.*ONEDNN_MAX_CPU_ISA=AVX2.*float32"):
                with precision.precision_scope(setting):
                    pass
            with pytest.raises(precision.PrecisionBarredError, match="ONEDNN_MAX_CPU_ISA"):
                benchmark.matmul_task(4, dtype)
        else:
            assert precision.require_runs_here(setting) == setting
        assert keras.config.dtype_policy().name == before  # the policy was never changed
