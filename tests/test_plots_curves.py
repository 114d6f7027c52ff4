"""Tests for the figures of busutils.plots added for stages, curves with bands, intervals and resamples."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from busutils.plots import plot_curves, plot_distributions, plot_intervals, plot_stages  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


HEAD = {"loss": [0.7, 0.5, 0.45], "val_loss": [0.7, 0.6, 0.62], "auc": [0.6, 0.8, 0.85], "val_auc": [0.6, 0.75, 0.74]}
FINETUNE = {"loss": [0.4, 0.35], "val_loss": [0.6, 0.61], "auc": [0.88, 0.9], "val_auc": [0.74, 0.76]}


def test_stages_are_joined_on_one_epoch_axis():
    fig = plot_stages({"classifier": HEAD, "fine-tuning": FINETUNE}, best_epochs={"classifier": 2, "fine-tuning": 2},
                      title="Two stages")
    loss_ax, auc_ax = fig.axes
    assert fig._suptitle.get_text() == "Two stages"
    lines = {line.get_label(): line for line in auc_ax.get_lines()}
    assert list(lines["classifier, validation"].get_xdata()) == [1, 2, 3]
    assert list(lines["fine-tuning, validation"].get_xdata()) == [4, 5]  # numbered on
    assert list(lines["fine-tuning, training"].get_ydata()) == [0.88, 0.9]
    vertical = [line.get_xdata()[0] for line in auc_ax.get_lines() if len(set(line.get_xdata())) == 1]
    assert 3.5 in vertical and 2 in vertical and 5 in vertical  # stage boundary, kept epochs
    assert auc_ax.get_xlabel() and auc_ax.get_ylabel() == "auc" and loss_ax.get_ylabel() == "loss"
    with pytest.raises(KeyError, match="no 'auc'"):
        plot_stages({"classifier": {"loss": [1.0]}})


def test_curves_with_bands_marks_and_levels():
    x = np.linspace(0.01, 0.6, 20)
    ax = plot_curves({"PPV": (x, x ** 0.5)}, bands={"PPV": (x ** 0.5 - 0.1, x ** 0.5 + 0.1)},
                     marks={"BUSI": 0.32}, levels={"NPV 98 %": 0.98}, xlabel="prevalence", ylabel="value",
                     title="Predictive values")
    assert ax.get_title() == "Predictive values" and ax.get_xlabel() == "prevalence"
    assert len(ax.collections) == 1  # the band
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["PPV", "BUSI", "NPV 98 %"]
    with pytest.raises(ValueError, match="one length"):
        plot_curves({"bad": ([1, 2], [1])}, xlabel="x", ylabel="y", title="t")


def test_intervals_drawn_as_a_forest_plot():
    rows = [{"label": "bootstrap, images", "value": 0.8, "low": 0.7, "high": 0.88},
            {"label": "DeLong", "value": 0.8, "low": 0.72, "high": 0.87}]
    ax = plot_intervals(rows, xlabel="AUC", title="Three intervals", reference={"chance": 0.5})
    at = dict(zip(ax.get_yticks(), [t.get_text() for t in ax.get_yticklabels()]))
    assert at[max(at)] == "bootstrap, images" and at[min(at)] == "DeLong"  # the first row on top
    assert ax.get_xlabel() == "AUC" and ax.get_title() == "Three intervals"


def test_distributions_share_their_bins_and_mark_intervals():
    rng = np.random.default_rng(0)
    ax = plot_distributions({"images": rng.normal(0.8, 0.02, 500), "groups": rng.normal(0.8, 0.04, 500)},
                            intervals={"images": (0.76, 0.84)}, observed=0.8, xlabel="AUC", title="Resampled AUCs")
    assert len(ax.patches) == 2 and ax.get_ylabel() == "resamples"
    assert sum(len(set(line.get_xdata())) == 1 for line in ax.get_lines()) == 3  # two ends, one observed value
