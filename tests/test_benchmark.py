"""The benchmark helpers: fair turns, the right work counted, honest reports; the bench script's
results and the Performance page that shows them (one run of the script serves both).  No timing
is asserted: only what the measurements are of, and that their reports add up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from busutils import benchmark, precision
from busutils.precision import choose_precision, cpu_flags, runs_here

ROOT = Path(__file__).resolve().parents[1]


def test_interleaved_rounds_alternate_the_order_of_the_tasks():
    calls = []
    seconds = benchmark.interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3)
    assert calls == ["a", "b", "b", "a", "a", "b"]
    assert [len(s) for s in seconds.values()] == [3, 3]
    with pytest.raises(ValueError, match="repeats"):
        benchmark.interleaved({"a": lambda: None}, repeats=0)


def test_training_multiply_adds_counts_forward_and_the_gradients_needed():
    inputs = keras.Input((8, 8, 1))
    frozen = keras.layers.Conv2D(4, 3, padding="same", trainable=False)
    trained = keras.layers.Conv2D(4, 3, padding="same")
    x = trained(frozen(inputs))
    model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Flatten()(x)))
    forward = {"frozen": 8 * 8 * 9 * 1 * 4, "trained": 8 * 8 * 9 * 4 * 4, "dense": 8 * 8 * 4}
    # frozen: forward only; trained: forward + weight gradient (nothing trainable before it);
    # dense: forward + weight gradient + input gradient (a trainable layer lies before it).
    expected = forward["frozen"] + 2 * forward["trained"] + 3 * forward["dense"]
    assert benchmark.training_multiply_adds(model) == expected


def test_multiply_adds_are_counted_by_the_type_each_layer_computes_in():
    from busutils.precision import precision_scope

    with precision_scope("mixed_bfloat16"):
        inputs = keras.Input((8, 8, 1))
        x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
        x = keras.layers.Flatten()(x)
        outputs = keras.layers.Dense(1, dtype="float32")(x)
        model = keras.Model(inputs, outputs)
    conv, dense = 8 * 8 * 9 * 1 * 4, 8 * 8 * 4
    assert benchmark.multiply_adds_by_dtype(model) == {"bfloat16": conv, "float32": dense}
    assert benchmark.forward_multiply_adds(model) == conv + dense
    # training: the convolution's weight gradient; the dense layer's weight and input gradients
    assert benchmark.multiply_adds_by_dtype(model, training=True) == {"bfloat16": 2 * conv, "float32": 3 * dense}
    assert benchmark.training_multiply_adds(model) == 2 * conv + 3 * dense


def test_vgg16_multiply_adds_are_its_known_15_billion():
    from busutils.models import vgg16_base

    base, _ = vgg16_base((224, 224, 3), None, seed=0)
    for layer in base.layers:
        layer.trainable = False
    assert benchmark.training_multiply_adds(base) == 15_346_630_656  # VGG16's convolutions at 224 px
    assert benchmark.forward_multiply_adds(base) == 15_346_630_656


def test_machine_reports_this_cpus_flags_and_its_precision():
    found = benchmark.machine()
    flags = cpu_flags()
    assert found["flags"] == {flag: flag in flags for flag in benchmark.REPORTED_FLAGS}
    assert found["precision"] == choose_precision("auto")
    assert found["cores"] >= 1 and found["cpu"]


def test_book_run_times_add_up_and_say_what_is_missing(tmp_path):
    missing = benchmark.book_run_times(tmp_path / "run_times.json")
    assert missing["value"] is None and "make book" in missing["reason"]
    assert str(tmp_path) not in missing["reason"] and missing["source"] == "run_times.json"
    times = {"profile": "quick", "machine": {"cpu": "x"},
             "notebooks": {"book/01_data_tour": {"seconds": 30.5}, "book/02_baseline_cnn": {"seconds": 100.0}}}
    (tmp_path / "run_times.json").write_text(json.dumps(times))
    found = benchmark.book_run_times(tmp_path / "run_times.json", ["book/01_data_tour", "book/02_baseline_cnn"])
    assert found["value"] == 130.5 and found["missing"] == [] and "reason" not in found
    assert found["source"] == "run_times.json"  # never where this machine keeps it
    partial = benchmark.book_run_times(tmp_path / "run_times.json", ["book/01_data_tour", "book/03_vgg16_transfer"])
    assert partial["missing"] == ["book/03_vgg16_transfer"] and "partial" in partial["reason"]
    assert partial["value"] is None and partial["chapters"]
    (tmp_path / "run_times.json").write_text(json.dumps({**times, "profile": "paper"}))
    other = benchmark.book_run_times(tmp_path / "run_times.json")
    assert other["value"] is None and "'paper'" in other["reason"] and other["chapters"]


def test_a_book_build_is_described_with_its_precision_and_any_onednn_cap():
    capped = {"cpu": "AMD EPYC", "cores": 2, "gpus": [], "platform": "Linux", "precision": "float32",
              "onednn_cap": "AVX2"}
    assert benchmark.describe_book_machine(capped) == (
        "on AMD EPYC, 2 cores, in float32, oneDNN capped at AVX2 (timed as on an older processor)")
    native = {**capped, "precision": "mixed_bfloat16", "onednn_cap": None}
    assert benchmark.describe_book_machine(native) == "on AMD EPYC, 2 cores, in mixed_bfloat16"
    gpu = {**native, "gpus": ["Tesla T4"], "precision": "mixed_float16"}
    assert benchmark.describe_book_machine(gpu) == "on AMD EPYC, 2 cores and 1 GPU (Tesla T4), in mixed_float16"
    # a build recorded before builds said their precision: the machine alone, never a guess
    assert benchmark.describe_book_machine({"cpu": "x", "cores": 4, "gpus": []}) == "on x, 4 cores"
    assert benchmark.describe_book_machine(None) == "on a machine the build did not record"


def test_find_results_looks_in_the_folder_and_above(tmp_path):
    nested = tmp_path / "_build" / "src" / "book"
    nested.mkdir(parents=True)
    assert benchmark.find_results(nested) is None
    (tmp_path / benchmark.RESULTS_PATH).parent.mkdir(parents=True)
    (tmp_path / benchmark.RESULTS_PATH).write_text("{}")
    assert benchmark.find_results(nested) == tmp_path / benchmark.RESULTS_PATH


def test_paper_gpu_times_are_the_papers():
    gpu = benchmark.paper_gpu_times()
    assert gpu["hardware"] == "NVIDIA GeForce GTX 1050"
    assert {model: run["seconds"] for model, run in gpu["runs"].items()} == {
        "baseline": 300, "vgg16-transfer": 100, "vgg16-finetune": 2196}


def test_a_fresh_activation_cache_is_empty_and_the_old_one_comes_back(monkeypatch, tmp_path):
    monkeypatch.setenv("BUSUTILS_CACHE", str(tmp_path))
    with benchmark.fresh_activation_cache() as folder:
        assert os.environ["BUSUTILS_CACHE"] == str(folder) != str(tmp_path)
        assert not any(folder.iterdir())
    assert os.environ["BUSUTILS_CACHE"] == str(tmp_path) and not folder.exists()


def test_pipeline_report_is_consistent():
    x = np.zeros((8, 16, 16), np.uint8)
    report = benchmark.pipeline_speed(x, np.arange(8) % 2, batch_size=4, augmentations=("light", "none"),
                                      repeats=2)
    assert set(report["runs"]) == {"light", "none"} and report["augmentation"] == "light"
    light = report["runs"]["light"]
    assert len(light["seconds"]) == 2
    assert report["value"] == light["images_per_s"] == pytest.approx(8 / light["median_s"], rel=0.01)


def test_epoch_sizes_must_fill_every_batch():
    with pytest.raises(ValueError, match="multiple of batch_size"):
        benchmark.finetune_epoch_speed(n_images=10, batch_size=4)


@pytest.mark.slow
def test_micro_benchmarks_measure_what_they_say(monkeypatch, tmp_path):
    monkeypatch.setenv("BUSUTILS_CACHE", str(tmp_path))
    found = benchmark.measure_here(image_size=32, n_images=8, batch_size=4, repeats=1, pipeline_images=8,
                                   matmul_size=64)
    features = found["feature_extraction_speedup"]
    assert set(features["runs"]) == {f"auto ({choose_precision('auto')})", "float32", "mixed_bfloat16"} - (
        {"mixed_bfloat16"} if choose_precision("auto") == "mixed_bfloat16" or not runs_here("mixed_bfloat16")
        else set())
    auto, float32 = (run["median_s"] for run in list(features["runs"].values())[:2])
    assert features["value"] == pytest.approx(float32 / auto, rel=0.01)
    assert set(found["matmul_peak_gflops"]["value"]) == set(benchmark.peak_dtypes(choose_precision("auto")))
    assert found["feature_extraction_peak_fraction"]["multiply_adds_per_image"] == 313_196_544  # VGG16 at 32 px
    epochs = found["cached_finetune_epoch_speedup"]
    cached, uncached, forward, xla = (run["median_s"] for run in epochs["runs"].values())
    assert epochs["value"] == pytest.approx(uncached / cached, rel=0.01)
    assert epochs["cached_forward_s"] == forward
    assert epochs["xla"]["speedup"] == pytest.approx(cached / xla, rel=0.01)
    assert epochs["cached_after"] == "block4_pool" and 4 < epochs["multiply_add_ratio"] < 6
    assert not any(tmp_path.iterdir())  # the epoch benchmark left no activations behind


#: ``run_benchmarks.py`` at tiny sizes: seconds of work, every key written.
SMALL = ["--image-size", "32", "--batch-size", "4", "--pipeline-images", "8", "--feature-images", "4",
         "--epoch-images", "8", "--matmul-size", "128", "--repeats", "1"]


def _bench_script(out: Path, cache: Path, *options: str) -> None:
    """Run ``benchmarks/run_benchmarks.py`` on the phantom with random weights, writing ``out``."""
    unset = ("BUSI_DIR", "VGG16_WEIGHTS", *precision._ONEDNN_CAP_VARIABLES)
    env = {key: value for key, value in os.environ.items() if key not in unset}
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run_benchmarks.py"), "--out", str(out),
                    *SMALL, *options], check=True, capture_output=True, env={**env, "BUSUTILS_CACHE": str(cache)})


@pytest.fixture(scope="module")
def bench_results(tmp_path_factory) -> Path:
    """One ``results.json`` of the bench script, paper runs (tiny) included: read, never changed."""
    folder = tmp_path_factory.mktemp("bench")
    _bench_script(folder / "results.json", folder / "cache", "--paper-tiny")
    return folder / "results.json"


@pytest.mark.slow
def test_bench_script_writes_every_key_and_keeps_earlier_paper_runs(bench_results, tmp_path, monkeypatch):
    for name in precision._ONEDNN_CAP_VARIABLES:  # the script ran without a oneDNN cap (_bench_script)
        monkeypatch.delenv(name, raising=False)
    results = json.loads(bench_results.read_text())
    for key in ("pipeline_images_per_s", "feature_extraction_speedup", "cached_finetune_epoch_speedup",
                "quick_book_s", "paper_transfer_s", "paper_finetune_s", "machine", "paper_gpu",
                "matmul_peak_gflops", "feature_extraction_peak_fraction", "paper_transfer_floor_s",
                "paper_finetune_floor_s", "paper_finetune_warm_s", "precision_accuracy"):
        assert key in results
    assert set(results["matmul_peak_gflops"]["value"]) == set(benchmark.peak_dtypes(choose_precision("auto")))
    assert results["precision_accuracy"]["value"] is None and "BUSI_DIR" in results["precision_accuracy"]["reason"]
    for key in ("paper_transfer_s", "paper_finetune_s", "paper_finetune_warm_s"):
        run = results[key]
        assert run["is_phantom"] and run["weights"].startswith("random") and run["overrides"]
        assert run["value"] == pytest.approx(run["seconds"]["train"] + run["seconds"]["evaluate"], abs=0.2)
        assert run["auc"] is None or 0 <= run["auc"] <= 1
        assert len(run["load_average"]) == 3 and run["peak_rss_mb"] > 0
        assert set(run["best_epochs"]) == ({"head"} if key == "paper_transfer_s" else {"head", "finetune"})
        floor = results[key.replace("_s", "_floor_s")]
        assert floor["value"] > 0 and floor["ratio"] == pytest.approx(run["value"] / floor["value"], rel=0.05)
    assert results["paper_finetune_s"]["cache"].startswith("cold")
    warm = results["paper_finetune_warm_s"]
    assert warm["cache"].startswith("warm") and warm["after"] == "vgg16-transfer"
    assert warm["multiply_adds"]["parts"]["frozen layers, once per image"] == {}
    assert warm["auc"] == results["paper_finetune_s"]["auc"]  # the same model, from cached activations
    out = tmp_path / "results.json"
    out.write_text(bench_results.read_text())
    _bench_script(out, tmp_path / "cache", "--no-paper", "--no-accuracy")
    again = json.loads(out.read_text())
    assert again["paper_finetune_s"] == results["paper_finetune_s"]  # kept, not lost
    assert again["paper_finetune_warm_s"] == results["paper_finetune_warm_s"]
    assert again["precision_accuracy"] == results["precision_accuracy"]
    assert again["micro_measured_utc"] >= results["micro_measured_utc"]


@pytest.mark.slow
def test_performance_page_shows_the_results_of_make_bench(bench_results, monkeypatch, tmp_path):
    pytest.importorskip("papermill")
    from chapters import copy_of_the_book, figures, outputs, run_chapter

    book = copy_of_the_book(tmp_path)
    # The book's run times, from a build timed as on an AVX2-only processor
    results = json.loads(bench_results.read_text())
    results["quick_book_s"] = {
        "value": 61.5, "chapters": {"book/01_data_tour": 20.5, "book/02_baseline_cnn": 41.0}, "profile": "quick",
        "machine": {"cpu": "AMD EPYC", "cores": 2, "gpus": [], "precision": "float32", "onednn_cap": "AVX2"},
        "source": "_build/src/run_times.json", "missing": []}
    shown = tmp_path / "bench" / "results.json"
    shown.parent.mkdir()
    shown.write_text(json.dumps(results))
    notebook = run_chapter(book, "appendix_performance", monkeypatch, results_file=str(shown))
    text = outputs(notebook)
    assert "read from results.json" in text and "No results of" not in text
    for folder in (bench_results.parent, tmp_path, ROOT):  # no path of the machine
        assert str(folder) not in text
    assert ("profile quick, on AMD EPYC, 2 cores, in float32, oneDNN capped at AVX2 (timed as on an "
            "older processor), from _build/src/run_times.json") in " ".join(text.split())
    assert "NVIDIA GeForce GTX 1050" in text and "the synthetic PHANTOM" in text
    assert "not timed" in text  # the paper's baseline time has no counterpart here
    assert "times the paper's time on its GPU" in text and "Training took" in text
    assert "of the bfloat16 peak" in text or choose_precision("auto") != "mixed_bfloat16"
    assert "as many images a second as float32 here" in text  # bfloat16 beside float32: the choice checked
    # the bench ran without a cap, so its machine's table has no such row: only the book's build says it
    assert text.count("oneDNN capped at") == 1
    assert "The product of two 128 x 128 matrices ran at" in text
    assert "vgg16-finetune, warm cache:" in text and "warm: the activation cache held" in text
    assert text.count("times its floor") == 3 and text.count("GB when it began)") == 3
    assert "Load average over the last 1, 5 and 15 minutes" in text
    assert text.count("Load average at its end (1, 5, 15 minutes)") == 3
    assert "XLA ran the cached epoch" in text
    assert "Not measured: BUSI_DIR is not set and VGG16_WEIGHTS is not set" in text
    # feature extraction, the peak, fine-tuning epochs, paper runs beside the GPU and their floors
    assert figures(notebook) == 5


def test_peak_dtypes_are_float32_and_the_type_the_policy_computes_in():
    assert benchmark.peak_dtypes("float32") == ("float32",)
    assert benchmark.peak_dtypes("mixed_bfloat16") == ("float32", "bfloat16")
    assert benchmark.peak_dtypes("mixed_float16") == ("float32", "float16")


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_matmul_task_multiplies_in_the_type_asked(dtype):
    task = benchmark.matmul_task(16, dtype)
    assert task() is None  # runs, and waits for its product
    with pytest.raises(ValueError, match="size"):
        benchmark.matmul_task(0)


def _features_report(peaks: dict) -> dict:
    """A feature-extraction report as feature_extraction_speed makes it, with round numbers."""
    report = {"policies": {"auto (mixed_bfloat16)": "mixed_bfloat16", "float32": "float32"},
              "runs": {"auto (mixed_bfloat16)": {"images_per_s": 10.0}, "float32": {"images_per_s": 4.0}},
              "multiply_adds_per_image": 2_000_000_000, "image_size": 224, "method": "median of 3"}
    if peaks:
        report["matmul"] = {"size": 1000, "runs": {dtype: {"seconds": [1.0], "median_s": 1.0, "gflops": gflops}
                                                   for dtype, gflops in peaks.items()}}
    return report


def test_peak_reports_divide_the_networks_rate_by_the_peak_of_its_type():
    reports = benchmark.peak_reports(_features_report({"float32": 40.0, "bfloat16": 100.0}))
    peak, fraction = reports["matmul_peak_gflops"], reports["feature_extraction_peak_fraction"]
    assert peak["value"] == {"float32": 40.0, "bfloat16": 100.0} and peak["size"] == 1000
    auto, float32 = fraction["by_precision"]["auto (mixed_bfloat16)"], fraction["by_precision"]["float32"]
    # 2e9 multiply-adds x 2 operations x 10 images/s = 40 GFLOPS, of a bfloat16 peak of 100
    assert auto["gflops"] == 40.0 and auto["peak_dtype"] == "bfloat16" and auto["fraction"] == 0.4
    assert float32["gflops"] == 16.0 and float32["peak_dtype"] == "float32" and float32["fraction"] == 0.4
    assert fraction["value"] == 0.4 and fraction["multiply_adds_per_image"] == 2_000_000_000
    # where bfloat16 is not native only float32 has a peak, and bfloat16's extraction no fraction
    only32 = benchmark.peak_reports(_features_report({"float32": 40.0}))["feature_extraction_peak_fraction"]
    assert set(only32["by_precision"]) == {"float32"} and only32["value"] is None
    without = benchmark.peak_reports(_features_report({}))
    assert all(entry["value"] is None and "matmul_size" in entry["reason"] for entry in without.values())


def test_matmul_peak_is_twice_the_cube_of_the_size_over_the_seconds():
    assert benchmark._gflops(1000, [2.0, 1.0, 4.0]) == {"seconds": [2.0, 1.0, 4.0], "median_s": 2.0, "gflops": 1.0}


def test_floor_is_the_work_of_each_type_at_its_peak():
    work = {"bfloat16": 50_000_000_000, "float32": 1_000_000_000}
    peaks = {"bfloat16": 100.0, "float32": 10.0}
    assert benchmark.floor_seconds(work, peaks) == pytest.approx(1.0 + 0.2)  # 2 x 5e10 / 1e11 + 2 x 1e9 / 1e10
    assert benchmark.floor_seconds(work, {"float32": 10.0}) is None  # no bfloat16 peak: no floor
    run = {"value": 6.0, "multiply_adds": {"total": work}}
    report = benchmark.floor_report(run, {"value": peaks})
    assert report["value"] == 1.2 and report["ratio"] == 5.0 and report["multiply_adds"] == work
    missing = benchmark.floor_report(run, {"value": {"float32": 10.0}})
    assert missing["value"] is None and "bfloat16" in missing["reason"]
    assert benchmark.floor_report({"value": None}, {"value": peaks})["value"] is None


def test_run_multiply_adds_follow_the_runs_steps_and_a_warm_cache_skips_the_frozen_layers():
    from busutils.frozen import FrozenVGG16
    from busutils.profiles import get_profile

    settings = get_profile("smoke", finetune_layers="block5_conv3", head_features="block5", precision="float32")
    frozen = FrozenVGG16(settings, name="vgg16-finetune", seed=0)
    sizes = dict(n_train=10, n_val=4, n_test=5, copies=3, head_copies=3, head_epochs=2)
    transfer = benchmark.vgg16_run_multiply_adds(frozen, **sizes)
    cold = benchmark.vgg16_run_multiply_adds(frozen, **sizes, finetune_epochs=7)
    warm = benchmark.vgg16_run_multiply_adds(frozen, **sizes, finetune_epochs=7, warm=True)
    front = benchmark.forward_multiply_adds(frozen.front)
    assert cold["parts"]["frozen layers, once per image"] == {"float32": front * (10 * 3 + 4)}
    assert "fine-tuning" not in transfer["parts"] and "fine-tuning" in cold["parts"]
    back_step = benchmark.training_multiply_adds(frozen.back)
    back = benchmark.forward_multiply_adds(frozen.back)
    assert cold["parts"]["fine-tuning"] == {"float32": back_step * 10 * 7 + back * 4 * 8}
    whole = benchmark.forward_multiply_adds(frozen.model)
    assert cold["parts"]["testing"] == {"float32": whole * 5 + back * (10 + 4)}
    assert warm["parts"]["frozen layers, once per image"] == {} and warm["parts"]["pooled features"] == {}
    for run in (transfer, cold, warm):
        assert run["total"]["float32"] == sum(part.get("float32", 0) for part in run["parts"].values())
    assert cold["total"]["float32"] - warm["total"]["float32"] == front * 34 + sum(
        cold["parts"]["pooled features"].values())


def test_xla_verdict_says_whether_xla_was_faster():
    slower = benchmark.xla_verdict(2.0, 4.0)
    assert slower["speedup"] == 0.5 and not slower["faster"]
    assert "0.50 times as fast" in slower["says"] and "rightly trains without it" in slower["says"]
    faster = benchmark.xla_verdict(4.0, 2.0)
    assert faster["speedup"] == 2.0 and faster["faster"] and "faster here" in faster["says"]


def test_activation_cache_points_at_a_folder_and_gives_the_old_one_back(monkeypatch, tmp_path):
    monkeypatch.delenv("BUSUTILS_CACHE", raising=False)
    with benchmark.activation_cache(tmp_path / "shared") as folder:
        assert folder == tmp_path / "shared" and os.environ["BUSUTILS_CACHE"] == str(folder)
    assert "BUSUTILS_CACHE" not in os.environ


def test_peak_memory_is_the_peak_within_the_block_not_before():
    earlier = np.ones(256 * 2 ** 20 // 8)  # a peak before the blocks, given back to the system
    del earlier
    with benchmark.peak_memory() as quiet:
        pass
    with benchmark.peak_memory() as busy:
        block = np.ones(128 * 2 ** 20 // 8)  # 128 MB, every page touched
        del block
    if quiet.mb is None:  # not Linux, or the reset was refused: no figure rather than a wrong one
        assert busy.mb is None and busy.start_mb is None
    else:
        assert 100 <= busy.mb - quiet.mb <= 160
        assert busy.start_mb <= quiet.mb + 10 and busy.mb - busy.start_mb >= 100


def test_shown_source_keeps_descriptions_and_drops_the_machines_folders():
    assert benchmark.shown_source("/home/someone/data/busi") == "busi"
    text = "BUSI (class folders), read from the folder $BUSI_DIR ('busi')"
    assert benchmark.shown_source(text) == text
    assert benchmark.shown_source("synthetic phantom (n=80, difficulty=0.5, seed=0)").startswith("synthetic")


def test_load_average_is_three_figures_where_the_system_has_one():
    found = benchmark.load_average()
    if hasattr(os, "getloadavg"):
        assert len(found) == 3 and all(value >= 0 for value in found)
    else:
        assert found is None


def test_shown_path_never_shows_where_the_machine_keeps_a_file(tmp_path):
    assert benchmark.shown_path(tmp_path / benchmark.RESULTS_PATH) == "_build/bench/results.json"
    assert benchmark.shown_path(tmp_path / benchmark.BOOK_TIMES_PATH) == "_build/src/run_times.json"
    assert benchmark.shown_path(tmp_path / "elsewhere" / "results.json") == "results.json"


def test_precision_check_without_busi_or_weights_says_why(monkeypatch):
    for name in precision._ONEDNN_CAP_VARIABLES:  # a cap would be the first reason given (tested below)
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("BUSI_DIR", raising=False)
    monkeypatch.setenv("VGG16_WEIGHTS", "/some/weights.h5")
    report = benchmark.precision_accuracy()
    assert report["value"] is None and report["reason"].startswith("BUSI_DIR is not set:")
    monkeypatch.delenv("VGG16_WEIGHTS")
    report = benchmark.precision_accuracy()
    assert "BUSI_DIR is not set and VGG16_WEIGHTS is not set" in report["reason"]
    assert benchmark.describe_precision_accuracy(report).startswith("Not measured: BUSI_DIR is not set")
    with pytest.raises(ValueError, match="two precisions"):
        benchmark.precision_accuracy(precisions=("float32",))


def test_where_onednn_is_barred_from_bfloat16_the_benchmarks_measure_float32_and_say_why(monkeypatch):
    """On a CPU with AMX, ``ONEDNN_MAX_CPU_ISA=AVX2`` (to time the book as on an AVX2-only CPU)
    makes every 16-bit layer fail: the benchmarks leave those runs out and say why."""
    for name in precision._ONEDNN_CAP_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(precision, "_cpuinfo", lambda: "model name\t: Xeon\nflags\t\t: avx2 avx512_bf16 amx_bf16\n")
    monkeypatch.setattr(precision, "gpu_compute_capabilities", lambda: [])
    assert benchmark.machine()["bfloat16"] == "native" and benchmark.machine()["onednn_cap"] is None
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    machine = benchmark.machine()
    assert (machine["bfloat16"], machine["onednn_cap"], machine["precision"]) == ("barred", "AVX2", "float32")
    assert benchmark.bfloat16_here(machine) == "barred"
    older = {key: value for key, value in machine.items() if key != "bfloat16"}  # a report from before the entry
    assert benchmark.bfloat16_here(older) == "native"
    report = benchmark.precision_accuracy()
    assert report["value"] is None and report["reason"].startswith("mixed_bfloat16 cannot run in this process")
    assert "ONEDNN_MAX_CPU_ISA=AVX2" in report["reason"]
    features = benchmark.feature_extraction_speed(image_size=32, n_images=4, batch_size=4, repeats=1)
    assert set(features["runs"]) == {"auto (float32)", "float32"}
    assert "ONEDNN_MAX_CPU_ISA=AVX2 bars oneDNN" in features["not_measured"]["mixed_bfloat16"]


def _accuracy_report(low: float, high: float) -> dict:
    runs = {"mixed_bfloat16": {"auc": 0.90, "auc_ci95": [0.84, 0.95], "n_test": 156, "test_ids_sha256": "ab" * 32},
            "float32": {"auc": 0.88, "auc_ci95": [0.81, 0.93], "n_test": 156, "test_ids_sha256": "ab" * 32}}
    return {"value": 0.02, "precisions": ["mixed_bfloat16", "float32"], "runs": runs,
            "difference": {"difference": 0.02, "ci95": [low, high], "unit": "group", "n_units": 150}}


def test_the_accuracy_check_is_read_from_the_paired_difference():
    holds_zero = benchmark.describe_precision_accuracy(_accuracy_report(-0.01, 0.05))
    assert "under mixed_bfloat16: 0.900 [0.840, 0.950]; under float32: 0.880 [0.810, 0.930]" in holds_zero
    assert "same 156 test images" in holds_zero and "abababababab" in holds_zero
    assert "The two intervals overlap" in holds_zero and "+0.020, 95% interval [-0.010, +0.050]" in holds_zero
    assert "cannot tell the two precisions apart" in holds_zero and "from -0.010 to +0.050" in holds_zero
    excludes = benchmark.describe_precision_accuracy(_accuracy_report(0.005, 0.04))
    assert "excludes zero: on this test part mixed_bfloat16 scored higher, by 0.005 to 0.040" in excludes
    report = _accuracy_report(-0.04, -0.005)
    report["runs"]["float32"]["auc_ci95"] = [0.96, 0.99]
    lower = benchmark.describe_precision_accuracy(report)
    assert "do not overlap" in lower and "float32 scored higher" in lower


@pytest.mark.slow
def test_precision_check_runs_both_precisions_on_one_split(monkeypatch, tmp_path):
    if not runs_here("mixed_bfloat16"):
        pytest.skip("this process cannot compute in bfloat16 (ONEDNN_MAX_CPU_ISA caps oneDNN below it); "
                    "what the check then reports is tested above")
    monkeypatch.setenv("BUSUTILS_CACHE", str(tmp_path))
    monkeypatch.delenv("BUSI_DIR", raising=False)
    report = benchmark.precision_accuracy(profile="smoke", require_real=False, phantom_n=80, n_boot=50)
    bf16, f32 = report["runs"]["mixed_bfloat16"], report["runs"]["float32"]
    assert report["same_test_part"] and bf16["test_ids_sha256"] == f32["test_ids_sha256"]
    assert (bf16["precision"], f32["precision"]) == ("mixed_bfloat16", "float32")
    assert report["difference"]["difference"] == pytest.approx(bf16["auc"] - f32["auc"])
    assert report["value"] == pytest.approx(bf16["auc"] - f32["auc"], abs=1e-4)
    low, high = report["difference"]["ci95"]
    assert low <= report["difference"]["difference"] <= high
