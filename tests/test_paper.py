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


def test_table1_names_the_source_of_every_row():
    table = paper.table1()
    hadad = table["task"].str.startswith("Hadad")
    assert hadad.sum() == 3
    assert table.loc[hadad, "source"].str.startswith("Hadad et al. 2017").all()
    assert table.loc[~hadad, "source"].str.startswith("Hijab et al. 2019").all()


def test_the_real_profiles_are_marked_where_the_paper_does_not_state_their_setting():
    from busutils.profiles import PROFILES

    table = paper.side_by_side(PROFILES)
    for setting, statement in paper.SETTINGS.items():
        if statement.value is paper.UNSTATED:
            assert table.loc[setting, "verdict"] in ("fills a silence", "book only"), setting
        if statement.book_adds:
            assert table.loc[setting, "verdict"] != "follows", setting
    verdicts = table["verdict"]
    # The paper's 70/30 is of augmented copies, its image split 1,000/300: 30% of the images is the book's.
    assert verdicts["test_size"] == "departs"
    # The strengths of the augmentation, augmenting after the split and global average pooling are the book's.
    for setting in ("augmentation", "augment_copies", "head_features"):
        assert verdicts[setting] == "follows in part", setting
        assert table.loc[setting, "book's part"], setting
    assert (table.loc[verdicts != "follows in part", "book's part"] == "").all()
    assert verdicts["restore_best"] == "fills a silence"
    assert "best validation epoch" in table.loc["restore_best", "note"]
    for setting in ("baseline_epochs", "head_epochs", "finetune_epochs"):  # what an epoch is, model by model
        assert "an epoch of" in table.loc[setting, "note"], setting


def test_book_adds_needs_the_value_it_adds_to():
    with pytest.raises(ValueError, match="give the value"):
        paper.Statement("words", "III", "note", book_adds="strengths")
    assert paper.verdict("augmentation", "light") == "departs"


def test_the_leak_verdict_says_what_the_arithmetic_shows():
    table = paper.leak_arithmetic(denominators=(300, 6480, 7200)).groupby("n")["fits"].all()
    assert not table[300] and table[6480] and table[7200]
    for number in ("6,480", "7,200", "300", "1,000"):
        assert number in paper.LEAK_VERDICT
    assert "possible, not established" in paper.LEAK_VERDICT
    evidence = paper.leak_evidence()
    assert len(evidence) == len(paper.LEAK_EVIDENCE) and evidence["bears on a leak"].str.startswith("against").sum() == 2


#: Wordings that state the leak more strongly than the evidence allows (see paper.LEAK_VERDICT).
OVERCLAIMS = (
    r"\blikely (one|reading)\b",
    r"\bprobably\b[^.]{0,80}\b(leak|augmented copies of training)",
    r"gives the evidence that they were measured",
    r"augmented every image\s+``?K``? times and \*then\* split",
    r"came, as its text reads, from test images",
    r"the paper's 70/30\)",
)


def _book_texts():
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for path in sorted((root / "book").rglob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        yield path.name, "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    for path in [root / "README.md", root / "book" / "intro.md", *sorted((root / "busutils").glob("*.py"))]:
        yield path.name, path.read_text()


@pytest.mark.parametrize("pattern", OVERCLAIMS)
def test_no_page_states_the_leak_more_strongly_than_the_evidence(pattern):
    found = [name for name, text in _book_texts() if re.search(pattern, re.sub(r"\s+", " ", text))]
    assert found == []


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
    quotes += [q for evidence, _, _ in paper.LEAK_EVIDENCE for q in re.findall(r"'([^']+)'", evidence)]
    for fact in paper.FACTS.values():  # words the notes quote from other sections
        quotes += [q for q in re.findall(r"'([^']{12,})'", fact.note)]
    missing = [q for q in quotes if re.sub(r"\s+", " ", q) not in text]
    assert not missing
