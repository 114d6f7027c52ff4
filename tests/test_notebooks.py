"""Every chapter executes on the synthetic phantom (CI's `make book` runs them on BUSI when it can).

The kernel runs in its own process, outside the socket guard of conftest: the chapters are given
``weights="none"`` so that no download of ImageNet weights is even attempted.
"""

from __future__ import annotations

import json
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
    assert "SYNTHETIC PHANTOM" in text and "look-alikes" in text
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
    assert results["profile"]["epochs"] == 2
    assert results["weights"] in ("random", "random (trained from scratch)")


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
