"""busutils.paper: the paper's statements as data, the side-by-side table and the leak arithmetic."""

from __future__ import annotations

import os
import re
from types import SimpleNamespace

import pytest

from busutils import paper
from busutils.evaluate import PAPER_TABLE1


def test_every_profile_setting_has_a_statement():
    assert list(paper.SETTINGS) == list(paper.PROFILE_FIELDS)


def test_statements_are_consistent():
    for name, statement in paper.SETTINGS.items():
        assert statement.note, name
        if statement.says is None:
            assert statement.section is None and statement.value is paper.UNSTATED, name
        else:
            assert statement.section in paper.SECTIONS, name


def test_a_value_without_the_papers_words_is_refused():
    with pytest.raises(ValueError, match="needs the paper's words"):
        paper.Statement(None, None, "note", value=3)
    with pytest.raises(ValueError, match="section"):
        paper.Statement("words", "II.Z", "note")


def test_table1_rows_of_the_paper_match_the_evaluation_table():
    own = {model: {"accuracy": acc, "auc": auc} for _, model, acc, auc in paper.TABLE1 if model}
    assert own == PAPER_TABLE1
    assert len(paper.table1()) == 6


def test_the_data_counts_add_up():
    train, test = paper.FACTS["training_set"].value, paper.FACTS["test_set"].value
    assert sum(train.values()) + sum(test.values()) == paper.FACTS["images_collected"].value == 1300
    assert paper.FACTS["augmented_images"].value == 24 * 900


def test_leak_arithmetic_finds_6480_and_rules_out_the_unaugmented_test_sets():
    table = paper.leak_arithmetic().set_index(["reported", "n"])
    assert table.loc[(0.9511, 6480), "k"] == (6163,)
    assert table.loc[(0.9739, 6480), "k"] == (6311,)
    for value in (0.9511, 0.9739):
        for n in (300, 1000, 1300):
            assert not table.loc[(value, n), "fits"]
            assert table.loc[(value, n), "k"] == ()
    assert table.loc[(0.9511, 21600), "k"] == (20543, 20544)


def test_leak_arithmetic_counts_a_value_half_way_as_fitting():
    # 0.1 with one decimal covers [0.05, 0.15]: 1/20, 2/20 and 3/20.
    table = paper.leak_arithmetic(values=(0.1,), denominators=(20,), decimals=1)
    assert table.loc[0, "k"] == (1, 2, 3)


def test_chance_fit_is_the_share_of_values_any_k_over_n_reaches():
    table = paper.leak_arithmetic(values=(0.5,), denominators=(1, 2, 100), decimals=2)
    assert table["chance_fit"].tolist() == pytest.approx([2 / 101, 3 / 101, 1.0])


def test_leak_arithmetic_refuses_bad_input():
    with pytest.raises(ValueError, match="more than 4 decimals"):
        paper.leak_arithmetic(values=(0.95115,))
    with pytest.raises(ValueError, match="denominators"):
        paper.leak_arithmetic(denominators=(0,))
    with pytest.raises(ValueError, match="between 0 and 1"):
        paper.leak_arithmetic(values=(1.5,))


def _profiles():
    settings = {name: "book's own" for name in paper.PROFILE_FIELDS}
    settings.update(name="paper", baseline_epochs=50, finetune_epochs=50, batch_size=20,
                    finetune_layers=["block5_conv1", "block5_conv2", "block5_conv3"], baseline_learning_rate=0.001)
    quick = dict(settings, name="quick", baseline_epochs=30)
    return {"paper": SimpleNamespace(**settings), "quick": SimpleNamespace(**quick)}


def test_side_by_side_reads_each_profile_and_judges_the_paper_profile():
    table = paper.side_by_side(_profiles())
    assert list(table.index) == list(paper.PROFILE_FIELDS)
    assert table.loc["baseline_epochs", "paper"] == 50
    assert table.loc["baseline_epochs", "quick"] == 30
    assert table.loc["baseline_epochs", "section"] == "III"
    verdicts = table["verdict"]
    assert verdicts["baseline_epochs"] == "follows"
    assert verdicts["baseline_learning_rate"] == "follows"
    assert verdicts["finetune_epochs"] == "follows one reading"
    assert verdicts["finetune_layers"] == "departs"  # three layers, where the paper says "the last one"
    assert verdicts["augment_copies"] == "departs"
    assert verdicts["val_size"] == "fills a silence"
    assert verdicts["phantom_n"] == "book only"
    assert table.loc["val_size", "the paper says"] == "(silent)"


def test_side_by_side_names_what_is_missing():
    profiles = _profiles()
    del profiles["quick"].momentum
    with pytest.raises(ValueError, match="'quick' has no setting 'momentum'"):
        paper.side_by_side(profiles)
    with pytest.raises(ValueError, match="paper_profile='paper'"):
        paper.side_by_side({"quick": profiles["paper"]})
    assert "verdict" not in paper.side_by_side({"quick": profiles["paper"]}, paper_profile=None)


def test_verdict_refuses_an_unknown_setting():
    with pytest.raises(ValueError, match="not known"):
        paper.verdict("epochs", 50)


def test_quotes_are_the_papers_words():
    """Needs the paper's text: set HIJAB2019_TEXT to its path (skipped otherwise)."""
    path = os.environ.get("HIJAB2019_TEXT")
    if not path or not os.path.isfile(path):
        pytest.skip("HIJAB2019_TEXT is not set to the paper's text file")
    with open(path, encoding="utf-8") as handle:
        text = re.sub(r"\s+", " ", handle.read())
    quotes = [s.says for s in [*paper.SETTINGS.values(), *paper.FACTS.values()] if s.says]
    missing = [q for q in quotes if re.sub(r"\s+", " ", q) not in text]
    assert not missing
