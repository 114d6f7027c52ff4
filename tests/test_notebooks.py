"""Every chapter executes on the synthetic phantom (CI's `make book` runs them on BUSI when it can).

They run at the ``smoke`` profile's settings (tiny images, an epoch or two, few copies) or at tiny
overrides of ``quick``: these tests prove the code paths, not the numbers; numbers are checked by
the unit tests of busutils on small seeded data.  The kernel runs in its own process, outside the
socket guard of conftest: the chapters are given random weights (``weights="none"``, the smoke
profile's) so that no download of ImageNet weights is even attempted.
"""

from __future__ import annotations

import html
import json
import re

import pytest

from busutils.precision import cpu_flags
from chapters import copy_of_the_book, figures, outputs, run_chapter

papermill = pytest.importorskip("papermill")


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    return copy_of_the_book(tmp_path_factory.mktemp("book"))


@pytest.mark.slow
def test_data_tour_runs_on_the_phantom(book, monkeypatch):
    notebook = run_chapter(book, "01_data_tour", monkeypatch, profile="smoke")
    text = outputs(notebook)
    assert "SYNTHETIC PHANTOM" in text and "no true copies" in text
    assert figures(notebook) >= 4


def test_a_print_the_kernel_sent_in_two_messages_reads_as_the_book_shows_it():
    printed = [{"output_type": "stream", "name": "stdout", "text": "95% interval [0.3, 0.7]"},
               {"output_type": "stream", "name": "stdout", "text": "\nthe interval reported\n"},
               {"output_type": "stream", "name": "stderr", "text": "a warning\n"},
               {"output_type": "display_data", "data": {"text/html": "<table></table>"}},
               {"output_type": "stream", "name": "stdout", "text": "after the table\n"}]
    notebook = {"cells": [{"cell_type": "code", "outputs": printed},
                          {"cell_type": "code", "outputs": printed[4:]}]}
    assert outputs(notebook) == ("95% interval [0.3, 0.7]\nthe interval reported\n\na warning\n\n\n"
                                 "<table></table>\nafter the table\n\nafter the table\n")


# What the mechanics sections of chapters 2 to 4 print, whatever the run gives.
MECHANICS = {
    "02_baseline_cnn": [r"loss of a malignant image",
                        r"area under them (\d\.\d+), the AUC \1",  # the ROC by hand, the same area
                        r"95% interval (\[\d\.\d+, \d\.\d+\])\nthe interval reported with the "
                        r"test metrics: \1"],  # the bootstrap loop gives the chapter's interval
    "03_vgg16_transfer": [r"penalty chosen on the validation part: C = ",
                          r"classifier minus probe, on the same test images: AUC difference"],
    "04_vgg16_finetune": [r"frozen, not recompiled: the frozen layer's weights moved",
                          r"frozen, recompiled: the frozen layer's weights did not move",
                          r"left trainable: block5_conv1, block5_conv2, block5_conv3, head",
                          r"the larger rate moved the weights block5_conv1 \d|Some run diverged"],
}


@pytest.mark.slow
@pytest.mark.parametrize("name, key", [
    ("02_baseline_cnn", "baseline"),
    ("03_vgg16_transfer", "vgg16-transfer"),
    ("04_vgg16_finetune", "vgg16-finetune"),
])
def test_model_chapters_run_on_the_phantom(book, monkeypatch, name, key):
    notebook = run_chapter(book, name, monkeypatch, profile="smoke")  # proves the code paths, not the numbers
    text = outputs(notebook)
    assert "SYNTHETIC PHANTOM" in text
    assert figures(notebook) >= 2  # learning curves, confusion matrix and ROC
    for expected in MECHANICS[name]:
        assert re.search(expected, text), expected
    results = json.loads((book / "results" / f"{key}.json").read_text())
    assert results["data"]["is_phantom"] and results["model"] == key
    assert results["profile"]["name"] == "smoke"
    assert results["weights"].startswith("random")
    assert (book / "results" / f"{key}.keras").is_file()  # saved for the later chapters
    if key == "vgg16-finetune":  # the take-away says what this run showed, against chapter 03's model
        text = outputs(notebook)
        assert "Fine-tuning kept epoch" in text or "No fine-tuning epoch beat the classifier alone" in text
        assert re.search(r"rank these test images alike|cannot tell the fine-tuned VGG16|ranks these test images better",
                         text), "no comparison with the transfer model of chapter 03"


@pytest.mark.slow
def test_how_sure_chapter_runs_on_the_phantom(book, monkeypatch):
    # after chapters 2 to 4 in the same book, their runs are reused
    notebook = run_chapter(book, "05_how_sure", monkeypatch, profile="smoke", seeds=[0, 1])
    text = outputs(notebook)
    assert "SYNTHETIC PHANTOM" in text
    assert figures(notebook) == 4  # resampled AUCs, five intervals, seeds, power
    widths = {label: float(width) for label, width in
              re.findall(r"scores, (copies as images|copies grouped by image): .* width (\d\.\d+)", text)}
    assert widths["copies as images"] < widths["copies grouped by image"] / 3  # about sqrt(24) narrower
    assert "DeLong standard error" in text
    assert len(re.findall(r": the two (differ|cannot be told apart)", text)) == 3  # one verdict per pair
    power = re.search(r"0.97 against 0.98 on the paper's 300 images: power (\d\.\d+) by the formula, "
                      r"(\d\.\d+) in 500 simulated", text)
    formula, simulated = float(power.group(1)), float(power.group(2))
    assert abs(formula - simulated) < 0.2 and max(formula, simulated) < 0.8  # 300 images: not reliably


@pytest.mark.slow
def test_performance_page_measures_what_it_can_without_make_bench(book, monkeypatch):
    # with oneDNN capped at AVX2, as to time the book as on an AVX2-only CPU: float32, and on a
    # CPU with bfloat16 instructions no bfloat16 run (it would fail), but the page says why
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    notebook = run_chapter(book, "appendix_performance", monkeypatch, image_size=32, n_images=8, repeats=1)
    text = outputs(notebook)
    assert "No results of `make bench` were found" in text and "32 x 32 pixels" in text
    assert "precision chosen" in text and "float32" in text and "mixed_bfloat16" not in text
    assert "oneDNN capped at" in text  # the machine table shows the cap
    assert "No paper-profile run has been timed" in text
    if {"amx_bf16", "avx512_bf16"} & cpu_flags():
        assert "but this process caps oneDNN at AVX2" in text
        assert "bfloat16 was not measured: ONEDNN_MAX_CPU_ISA=AVX2 bars oneDNN" in text
    else:  # the check of the precision choice: bfloat16 emulated beside float32
        assert "neither AMX nor AVX512-BF16" in text and "as many images a second as float32 here" in text
    assert "The product of two 1024 x 1024 matrices ran at" in text and "of the float32 peak" in text
    assert "XLA ran the cached epoch" in text
    assert "Not measured: only `make bench` runs this check" in text  # the accuracy of bfloat16
    # feature extraction, the peak and fine-tuning epochs; no paper-run or accuracy figure
    assert figures(notebook) == 3


@pytest.mark.slow
def test_leakage_chapter_runs_on_the_phantom_with_random_features(book, monkeypatch, tmp_path):
    notebook = run_chapter(book, "06_leakage", monkeypatch, weights="none", image_size=64, n_copies=2,
                    n_seeds=1, results_dir=str(tmp_path))
    text = outputs(notebook)
    assert "SYNTHETIC PHANTOM" in text and "the features are random" in text
    assert "n =    300: neither of the two accuracies fit" in text
    assert figures(notebook) >= 2  # the copies of one image, the two protocols (and leaked pairs)
    saved = json.loads((tmp_path / "leakage.json").read_text())
    assert saved["is_phantom"] and saved["weights"].startswith("random") and saved["n_copies"] == 2
    runs = saved["runs"]
    assert len(runs) == 3 * 2  # three classifiers, two protocols, one seed
    assert all(run["leaked"] == 0 for run in runs if run["protocol"] == "honest")
    assert all(run["leaked"] > 0 for run in runs if run["protocol"] == "paper")
    design = saved["design"]  # the 2x2 design: three classifiers, four cells, one seed
    assert len(design) == 3 * 4 and {(r["augment"], r["split"]) for r in design} == {
        ("after", "by group"), ("after", "by image"), ("before", "by group"), ("before", "by image")}
    assert all(r["copies_leaked"] == 0 for r in design if r["augment"] == "after")
    assert all(r["copies_leaked"] > 0 for r in design if r["augment"] == "before")
    assert all(r["duplicates_leaked"] == 0 for r in design if r["split"] == "by group")
    assert "augmenting before the split adds" in text and "splitting image by image adds" in text


@pytest.mark.slow
def test_gradcam_chapter_runs_alone_on_the_phantom(book, monkeypatch, tmp_path):
    # an empty results_dir: chapters 02-04 have not run, so the chapter trains the three models
    notebook = run_chapter(book, "08_gradcam", monkeypatch, profile="smoke", image_size=64,
                    results_dir=str(tmp_path))
    text = outputs(notebook)
    assert "SYNTHETIC PHANTOM" in text and "The phantom has no burned-in text" in text
    assert "layer block5_conv3" in text and "layer relu5" in text
    flagged = int(re.search(r"(\d+) of \d+ test images have flagged pixels", text).group(1))
    # a Grad-CAM grid per model; with flagged pixels, the flagged pixels and the masked scores too;
    # the cascade (curves and maps), block 4 against block 5, the lesion outlines
    assert figures(notebook) == 3 + 2 * (flagged > 0) + 4
    correlations = re.findall(r"everything random: (-?\d\.\d+)", text)
    assert len(correlations) == 3 and all(-1 <= float(r) <= 1 for r in correlations)
    outlined = re.search(r"(\d+) of (\d+) test images have a lesion outline", text)
    assert outlined.group(1) == outlined.group(2)  # the phantom knows all its lesions
    assert "heat inside the lesion" in text and "AUC, without block4 features" in text
    for key in ("baseline", "vgg16-transfer", "vgg16-finetune"):
        results = json.loads((tmp_path / f"{key}.json").read_text())
        assert results["data"]["is_phantom"] and results["profile"]["image_size"] == 64
        assert (tmp_path / f"{key}.keras").is_file()


# Chapters 7 and 9 on a tiny phantom, each in a fresh copy of the book: they must run without the
# runs that chapters 2-4 save (chapter 8 then trains its model itself).
TINY = {"weights": "none", "epochs": 1,
        "overrides": {"image_size": 48, "phantom_n": 80, "augment_copies": 2, "n_boot": 200}}


@pytest.fixture
def fresh_book(tmp_path):
    return copy_of_the_book(tmp_path)


@pytest.mark.slow
def test_comparison_runs_on_the_phantom(fresh_book, monkeypatch):
    notebook = run_chapter(fresh_book, "07_comparison", monkeypatch, folds=2, **TINY)
    text = outputs(notebook)
    assert "SYNTHETIC PHANTOM" in text and "RANDOM weights" in text
    assert figures(notebook) == 2  # fold AUCs, ROC curves
    assert "It cannot show how much a result moves when only the training seed changes" in text
    assert "With 2 folds each model trains on 50% of the images (less its validation part), against 80%" in text
    assert "p (bootstrap, Holm)" in text
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
    notebook = run_chapter(fresh_book, "09_operating_point", monkeypatch, model="vgg16-transfer",
                    target_sensitivity=0.9, **TINY)
    text = outputs(notebook)
    assert "SYNTHETIC PHANTOM" in text and "RANDOM weights" in text
    # trade-off, confusion matrices, reliability curves, predictive values, decision curve
    assert figures(notebook) == 5
    assert re.search(r"BI-RADS 3 asks for at most 2%|No test lesion has a calibrated probability", text)
    assert "2% on the calibrated probability (BI-RADS 3/4)" in text
    assert "chose the epoch, the threshold and the calibration" in text
    run = json.loads((fresh_book / "results" / "vgg16-transfer.json").read_text())
    threshold = threshold_for_sensitivity(run["val"]["labels"], run["val"]["scores"], 0.9)
    assert f"threshold for sensitivity >= 0.9 on the validation part: {threshold:.3f}" in text
    assert "Brier score" in text and "isotonic" in text


@pytest.mark.slow
def test_new_images_chapter_scores_every_model_on_both_test_parts(fresh_book, monkeypatch):
    notebook = run_chapter(fresh_book, "10_new_images", monkeypatch, profile="smoke")
    text = outputs(notebook)
    assert "SYNTHETIC PHANTOM" in text and "new images: no test image correlates at" in text
    assert figures(notebook) == 2  # likeness, the six intervals
    for name in ("baseline", "vgg16-transfer", "vgg16-finetune"):
        assert re.search(rf"{name}: AUC \d\.\d{{3}} on the group-aware test part, \d\.\d{{3}} on new images", text)
        for folder in ("results", "results/new-images"):
            run = json.loads((fresh_book / folder / f"{name}.json").read_text())
            assert run["data"]["test_part"].startswith("new images") == folder.endswith("new-images")
    assert "what chose it" in text
    from busutils.profiles import QUICK_CHOSEN_BY

    for why in QUICK_CHOSEN_BY.values():  # each reason shown whole, never cut to "..."
        assert html.escape(why, quote=False) in text or why in text, why
