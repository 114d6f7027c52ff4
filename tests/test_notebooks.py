"""Every chapter executes on the synthetic phantom (CI's `make book` runs them on BUSI when it can).

The kernel runs in its own process, outside the socket guard of conftest: the chapters are given
``weights="none"`` so that no download of ImageNet weights is even attempted.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
papermill = pytest.importorskip("papermill")


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    target = tmp_path_factory.mktemp("book")
    shutil.copytree(ROOT / "book", target / "book")
    return target / "book"


def _run(book: Path, name: str, monkeypatch, **parameters) -> dict:
    monkeypatch.delenv("BUSI_DIR", raising=False)
    monkeypatch.delenv("MPLBACKEND", raising=False)
    path = book / f"{name}.ipynb"
    papermill.execute_notebook(str(path), str(path), parameters={"profile": "quick", **parameters},
                               cwd=str(book), kernel_name="python3", progress_bar=False)
    return json.loads(path.read_text())


def _outputs(notebook: dict) -> str:
    texts = []
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            texts.append("".join(output.get("text", "")))
            texts.append("".join(output.get("data", {}).get("text/html", "")))
    return "\n".join(texts)


def _figures(notebook: dict) -> int:
    return sum("image/png" in o.get("data", {}) for c in notebook["cells"] for o in c.get("outputs", []))


@pytest.mark.slow
def test_data_tour_runs_on_the_phantom(book, monkeypatch):
    notebook = _run(book, "01_data_tour", monkeypatch)
    text = _outputs(notebook)
    assert "SYNTHETIC PHANTOM" in text and "no true copies" in text
    assert _figures(notebook) >= 4


@pytest.mark.slow
@pytest.mark.parametrize("name, key", [
    ("02_baseline_cnn", "baseline"),
    ("03_vgg16_transfer", "vgg16-transfer"),
    ("04_vgg16_finetune", "vgg16-finetune"),
])
def test_model_chapters_run_on_the_phantom(book, monkeypatch, name, key):
    notebook = _run(book, name, monkeypatch, epochs=2, weights="none")
    assert "SYNTHETIC PHANTOM" in _outputs(notebook)
    assert _figures(notebook) >= 2  # learning curves, confusion matrix and ROC
    results = json.loads((book / "results" / f"{key}.json").read_text())
    assert results["data"]["is_phantom"] and results["model"] == key
    assert results["profile"]["baseline_epochs"] == results["profile"]["finetune_epochs"] == 2
    assert results["weights"].startswith("random")
    assert (book / "results" / f"{key}.keras").is_file()  # saved for the later chapters


@pytest.mark.slow
def test_performance_page_measures_what_it_can_without_make_bench(book, monkeypatch):
    notebook = _run(book, "appendix_performance", monkeypatch, image_size=32, n_images=8, repeats=1)
    text = _outputs(notebook)
    assert "No results of `make bench` were found" in text and "32 x 32 pixels" in text
    assert "precision chosen" in text and "float32" in text
    assert "No paper-profile run has been timed" in text
    assert "as many images a second as float32 here" in text  # the check of the precision choice
    assert "The product of two 1024 x 1024 matrices ran at" in text and "of the float32 peak" in text
    assert "XLA ran the cached epoch" in text
    assert "Not measured: only `make bench` runs this check" in text  # the accuracy of bfloat16
    # feature extraction, the peak and fine-tuning epochs; no paper-run or accuracy figure
    assert _figures(notebook) == 3


@pytest.mark.slow
def test_performance_page_shows_the_results_of_make_bench(book, monkeypatch, tmp_path):
    import subprocess
    import sys

    from busutils.precision import choose_precision

    results = tmp_path / "results.json"
    small = ["--image-size", "32", "--batch-size", "4", "--pipeline-images", "8", "--feature-images", "4",
             "--epoch-images", "8", "--matmul-size", "128", "--repeats", "1", "--paper-tiny"]
    env = {key: value for key, value in os.environ.items() if key not in ("BUSI_DIR", "VGG16_WEIGHTS")}
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run_benchmarks.py"), "--out", str(results),
                    *small], check=True, capture_output=True, env={**env, "BUSUTILS_CACHE": str(tmp_path)})
    notebook = _run(book, "appendix_performance", monkeypatch, results_file=str(results))
    text = _outputs(notebook)
    assert "read from results.json" in text and "No results of" not in text
    assert str(tmp_path) not in text and str(ROOT) not in text  # no path of the machine
    assert "NVIDIA GeForce GTX 1050" in text and "the synthetic PHANTOM" in text
    assert "not timed" in text  # the paper's baseline time has no counterpart here
    assert "times the paper's time on its GPU" in text and "Training took" in text
    assert "of the bfloat16 peak" in text or choose_precision("auto") != "mixed_bfloat16"
    assert "The product of two 128 x 128 matrices ran at" in text
    assert "vgg16-finetune, warm cache:" in text and "warm: the activation cache held" in text
    assert text.count("times its floor") == 3 and text.count("GB when it began)") == 3
    assert "Load average over the last 1, 5 and 15 minutes" in text
    assert text.count("Load average at its end (1, 5, 15 minutes)") == 3
    assert "XLA ran the cached epoch" in text
    assert "Not measured: BUSI_DIR is not set and VGG16_WEIGHTS is not set" in text
    # feature extraction, the peak, fine-tuning epochs, paper runs beside the GPU and their floors
    assert _figures(notebook) == 5


@pytest.mark.slow
def test_leakage_chapter_runs_on_the_phantom_with_random_features(book, monkeypatch, tmp_path):
    notebook = _run(book, "05_leakage", monkeypatch, weights="none", image_size=64, n_copies=2,
                    n_seeds=1, results_dir=str(tmp_path))
    text = _outputs(notebook)
    assert "SYNTHETIC PHANTOM" in text and "the features are random" in text
    assert "n =    300: neither of the two accuracies fit" in text
    assert _figures(notebook) >= 2  # the copies of one image, the two protocols (and leaked pairs)
    saved = json.loads((tmp_path / "leakage.json").read_text())
    assert saved["is_phantom"] and saved["weights"].startswith("random") and saved["n_copies"] == 2
    runs = saved["runs"]
    assert len(runs) == 3 * 2  # three classifiers, two protocols, one seed
    assert all(run["leaked"] == 0 for run in runs if run["protocol"] == "honest")
    assert all(run["leaked"] > 0 for run in runs if run["protocol"] == "paper")


@pytest.mark.slow
def test_gradcam_chapter_runs_alone_on_the_phantom(book, monkeypatch, tmp_path):
    # an empty results_dir: chapters 02-04 have not run, so the chapter trains the three models
    notebook = _run(book, "07_gradcam", monkeypatch, weights="none", image_size=64, epochs=1,
                    results_dir=str(tmp_path))
    text = _outputs(notebook)
    assert "SYNTHETIC PHANTOM" in text and "The phantom has no burned-in text" in text
    assert "layer block5_conv3" in text and "layer relu5" in text
    flagged = int(re.search(r"(\d+) of \d+ test images have flagged pixels", text).group(1))
    # a Grad-CAM grid per model; with flagged pixels, the flagged pixels and the masked scores too
    assert _figures(notebook) == 3 + 2 * (flagged > 0)
    for key in ("baseline", "vgg16-transfer", "vgg16-finetune"):
        results = json.loads((tmp_path / f"{key}.json").read_text())
        assert results["data"]["is_phantom"] and results["profile"]["image_size"] == 64
        assert (tmp_path / f"{key}.keras").is_file()


# Chapters 6 and 8 on a tiny phantom, each in a fresh copy of the book: they must run without the
# runs that chapters 2-4 save (chapter 8 then trains its model itself).
TINY = {"weights": "none", "epochs": 1,
        "overrides": {"image_size": 48, "phantom_n": 80, "augment_copies": 2, "n_boot": 200}}


@pytest.fixture
def fresh_book(tmp_path):
    shutil.copytree(ROOT / "book", tmp_path / "book")
    return tmp_path / "book"


@pytest.mark.slow
def test_comparison_runs_on_the_phantom(fresh_book, monkeypatch):
    notebook = _run(fresh_book, "06_comparison", monkeypatch, folds=2, **TINY)
    text = _outputs(notebook)
    assert "SYNTHETIC PHANTOM" in text and "RANDOM weights" in text
    assert _figures(notebook) == 2  # fold AUCs, ROC curves
    result = json.loads((fresh_book / "results" / "comparison.json").read_text())
    assert list(result["models"]) == ["baseline", "vgg16-transfer", "vgg16-finetune"]
    assert result["protocol"]["folds"] == 2 and result["data"]["is_phantom"]
    ids = result["predictions"]["id"]
    assert len(ids) == len(set(ids)) == 80
    for pair in result["paired"]:
        assert f"{pair['a']} - {pair['b']}: AUC difference {pair['bootstrap']['difference']:+.3f}" in text


@pytest.mark.slow
def test_operating_point_runs_on_the_phantom_without_earlier_chapters(fresh_book, monkeypatch):
    from busutils.operating_point import threshold_for_sensitivity

    assert not (fresh_book / "results").exists()
    notebook = _run(fresh_book, "08_operating_point", monkeypatch, model="vgg16-transfer",
                    target_sensitivity=0.9, **TINY)
    text = _outputs(notebook)
    assert "SYNTHETIC PHANTOM" in text and "RANDOM weights" in text
    assert _figures(notebook) == 3  # trade-off, confusion matrices, reliability curves
    run = json.loads((fresh_book / "results" / "vgg16-transfer.json").read_text())
    threshold = threshold_for_sensitivity(run["val"]["labels"], run["val"]["scores"], 0.9)
    assert f"threshold for sensitivity >= 0.9 on the validation part: {threshold:.3f}" in text
    assert "Brier score" in text and "isotonic" in text
