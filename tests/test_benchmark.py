"""The benchmark helpers: fair turns, the right work counted, honest reports.  No timing is
asserted: only what the measurements are of, and that their reports add up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from busutils import benchmark
from busutils.precision import choose_precision, cpu_flags

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


def test_vgg16_multiply_adds_are_its_known_15_billion():
    from busutils.models import vgg16_base

    base, _ = vgg16_base((224, 224, 3), None, seed=0)
    for layer in base.layers:
        layer.trainable = False
    assert benchmark.training_multiply_adds(base) == 15_346_630_656  # VGG16's convolutions at 224 px


def test_machine_reports_this_cpus_flags_and_its_precision():
    found = benchmark.machine()
    flags = cpu_flags()
    assert found["flags"] == {flag: flag in flags for flag in benchmark.REPORTED_FLAGS}
    assert found["precision"] == choose_precision("auto")
    assert found["cores"] >= 1 and found["cpu"]


def test_book_run_times_add_up_and_say_what_is_missing(tmp_path):
    missing = benchmark.book_run_times(tmp_path / "run_times.json")
    assert missing["value"] is None and "make book" in missing["reason"]
    times = {"profile": "quick", "machine": {"cpu": "x"},
             "notebooks": {"book/01_data_tour": {"seconds": 30.5}, "book/02_baseline_cnn": {"seconds": 100.0}}}
    (tmp_path / "run_times.json").write_text(json.dumps(times))
    found = benchmark.book_run_times(tmp_path / "run_times.json", ["book/01_data_tour", "book/02_baseline_cnn"])
    assert found["value"] == 130.5 and found["missing"] == [] and "reason" not in found
    partial = benchmark.book_run_times(tmp_path / "run_times.json", ["book/01_data_tour", "book/03_vgg16_transfer"])
    assert partial["missing"] == ["book/03_vgg16_transfer"] and "partial" in partial["reason"]
    assert partial["value"] is None and partial["chapters"]
    (tmp_path / "run_times.json").write_text(json.dumps({**times, "profile": "paper"}))
    other = benchmark.book_run_times(tmp_path / "run_times.json")
    assert other["value"] is None and "'paper'" in other["reason"] and other["chapters"]


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
    found = benchmark.measure_here(image_size=32, n_images=8, batch_size=4, repeats=1, pipeline_images=8)
    features = found["feature_extraction_speedup"]
    assert set(features["runs"]) == {f"auto ({choose_precision('auto')})", "float32", "mixed_bfloat16"} - (
        {"mixed_bfloat16"} if choose_precision("auto") == "mixed_bfloat16" else set())
    auto, float32 = (run["median_s"] for run in list(features["runs"].values())[:2])
    assert features["value"] == pytest.approx(float32 / auto, rel=0.01)
    epochs = found["cached_finetune_epoch_speedup"]
    cached, uncached, forward = (run["median_s"] for run in epochs["runs"].values())
    assert epochs["value"] == pytest.approx(uncached / cached, rel=0.01)
    assert epochs["cached_forward_s"] == forward
    assert epochs["cached_after"] == "block4_pool" and 4 < epochs["multiply_add_ratio"] < 6
    assert not any(tmp_path.iterdir())  # the epoch benchmark left no activations behind


@pytest.mark.slow
def test_bench_script_writes_every_key_and_keeps_earlier_paper_runs(tmp_path):
    out = tmp_path / "results.json"
    env = {**os.environ, "BUSUTILS_CACHE": str(tmp_path / "cache")}
    env.pop("BUSI_DIR", None)
    env.pop("VGG16_WEIGHTS", None)
    small = ["--image-size", "32", "--batch-size", "4", "--pipeline-images", "8", "--feature-images", "4",
             "--epoch-images", "8", "--repeats", "1"]
    script = [sys.executable, str(ROOT / "benchmarks" / "run_benchmarks.py"), "--out", str(out)]
    subprocess.run(script + small + ["--paper-tiny"], check=True, env=env, capture_output=True)
    results = json.loads(out.read_text())
    for key in ("pipeline_images_per_s", "feature_extraction_speedup", "cached_finetune_epoch_speedup",
                "quick_book_s", "paper_transfer_s", "paper_finetune_s", "machine", "paper_gpu"):
        assert key in results
    for key in ("paper_transfer_s", "paper_finetune_s"):
        run = results[key]
        assert run["is_phantom"] and run["weights"].startswith("random") and run["overrides"]
        assert run["value"] == pytest.approx(run["seconds"]["train"] + run["seconds"]["evaluate"], abs=0.2)
        assert run["auc"] is None or 0 <= run["auc"] <= 1
    subprocess.run(script + small + ["--no-paper"], check=True, env=env, capture_output=True)
    again = json.loads(out.read_text())
    assert again["paper_finetune_s"] == results["paper_finetune_s"]  # kept, not lost
    assert again["micro_measured_utc"] >= results["micro_measured_utc"]
