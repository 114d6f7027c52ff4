"""The chapter template and the line length, checked on small notebooks and on the book itself."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

import book_sources
import check_chapters

ROOT = Path(__file__).resolve().parents[1]
TITLE = """# A chapter

What and why.

**What you will learn**

- one thing;
- another.

```{include} _admonitions/not-clinical.md
```"""
CLOSING = """## What to take away

- A point.

## What's next

{doc}`02_next` goes on."""
FIGURE = {"mystnb": {"figure": {"caption": "A line.", "name": "fig-line"}, "image": {"alt": "A rising line"}}}


def _write(root: Path, cells: list, name: str = "book/ch.ipynb") -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)
    return path


def _chapter(title=TITLE, closing=CLOSING, code="x = 1", metadata=None):
    return [nbformat.v4.new_markdown_cell(title),
            nbformat.v4.new_code_cell(code, metadata=metadata or {}),
            nbformat.v4.new_markdown_cell(closing)]


@pytest.fixture
def root(tmp_path):
    (tmp_path / "book" / "_admonitions").mkdir(parents=True)
    (tmp_path / "book" / "_admonitions" / "not-clinical.md").write_text("```{warning}\nNo.\n```\n")
    return tmp_path


def test_a_notebook_that_follows_the_template_passes(root):
    path = _write(root, _chapter(code="import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()",
                                 metadata=FIGURE))
    assert check_chapters.template_problems(path, root) == []


EXERCISE_META = ("\n\n**Difficulty**: ★☆☆ introductory. **Time**: 20 minutes of work; it runs in 2 minutes "
                 "on a CPU and about 1 on a Colab GPU (estimated).")
SELF_CHECK = "from busutils import checks\n\nchecks.audit(root)"


def _exercise(title=TITLE.replace("{include} _admonitions", "{include} ../_admonitions") + EXERCISE_META,
              check=SELF_CHECK):
    cells = _chapter(title=title)
    cells.insert(2, nbformat.v4.new_code_cell(check))
    return cells


def test_exercises_include_the_admonition_from_one_folder_up(root):
    path = _write(root, _exercise(), "book/exercises/ex.ipynb")
    assert check_chapters.template_problems(path, root) == []
    wrong = _write(root, _exercise(title=TITLE + EXERCISE_META), "book/exercises/wrong.ipynb")
    assert check_chapters.template_problems(wrong, root) == [
        "no include of the shared admonition (write: ```{include} ../_admonitions/not-clinical.md)"]


@pytest.mark.parametrize("change, problem", [
    (lambda t, c: (t.replace("**Difficulty**: ★☆☆ introductory. ", ""), c), "no '**Difficulty**:' under the title"),
    (lambda t, c: (t.replace("on a CPU", "here"), c), "no '**Time**:' under the title giving the time on a CPU"),
    (lambda t, c: (t.replace("Colab GPU", "Colab"), c), "no '**Time**:' under the title giving the time on a CPU"),
    (lambda t, c: (t, "x = 1"), "no self-check cell"),
])
def test_an_exercise_states_its_difficulty_and_times_and_checks_itself(root, change, problem):
    title, check = change(TITLE.replace("{include} _admonitions", "{include} ../_admonitions") + EXERCISE_META,
                          SELF_CHECK)
    path = _write(root, _exercise(title=title, check=check), "book/exercises/ex.ipynb")
    problems = check_chapters.template_problems(path, root)
    assert len(problems) == 1 and problems[0].startswith(problem)


def test_a_self_check_inside_the_solution_does_not_count(root):
    cells = _exercise(check="x = 1")
    cells[2:2] = [nbformat.v4.new_markdown_cell("```{solution-start} ex\n:class: dropdown\n```"),
                  nbformat.v4.new_code_cell("checks.audit(root)"),
                  nbformat.v4.new_markdown_cell("```{solution-end}\n```")]
    path = _write(root, cells, "book/exercises/ex.ipynb")
    assert check_chapters.template_problems(path, root) == [
        "no self-check cell (a call of busutils.checks) outside the solution"]


READING = "\n\n## Further reading\n\n- {cite:t}`smith2020` shows more."


@pytest.mark.parametrize("closing, problems", [
    (CLOSING + READING, []),
    (CLOSING, ["a numbered chapter ends with '## Further reading'"]),
    (CLOSING.replace("## What to take away", READING.strip() + "\n\n## What to take away"),
     ["a numbered chapter ends with '## Further reading'"]),
    (CLOSING + READING.replace("{cite:t}`smith2020` shows", "Smith shows"),
     ["'## Further reading' has no list item with a {cite} reference"]),
])
def test_a_numbered_chapter_ends_with_further_reading(root, closing, problems):
    path = _write(root, _chapter(closing=closing), "book/03_chapter.ipynb")
    assert check_chapters.template_problems(path, root) == problems
    unnumbered = _write(root, _chapter(closing=CLOSING), "book/appendix_x.ipynb")
    assert check_chapters.template_problems(unnumbered, root) == []


@pytest.mark.parametrize("text", [
    "{cite:t}`a2020` showed it.",
    "As {cite:t}`a2020` showed, it holds.",
    "Table 1 of {cite:t}`a2020` reports it.",
    "It holds. {cite:t}`a2020` showed it.",
    "- {cite:t}`a2020` show it.",
    "It holds (see {cite:t}`a2020`).",
    "Grad-CAM {cite:p}`a2020` weighs the maps.",
    "Weighs the maps {cite:p}`a2020`.",
])
def test_citations_that_read_as_sentences_pass(text):
    assert check_chapters.citation_problems(text) == []


@pytest.mark.parametrize("text, problem", [
    ("**DeLong's test** {cite:t}`delong1988` estimates it.", "{cite:t}`delong1988` follows 'test'"),
    ("Grad-CAM\n{cite:t}`s2017` looks at one layer.", "{cite:t}`s2017` follows 'grad-cam'"),
    ("Platt scaling {cite:t}`p1999` fits a curve.", "{cite:t}`p1999` follows 'scaling'"),
    ("{cite:p}`n2005` compared both.", "{cite:p}`n2005` opens a sentence"),
    ("It is so. {cite:p}`n2005` compared both.", "{cite:p}`n2005` opens a sentence"),
    ("- {cite:p}`n2005` compare both.", "{cite:p}`n2005` opens a sentence"),
])
def test_citations_that_interrupt_or_open_a_sentence_are_found(text, problem):
    problems = check_chapters.citation_problems(text)
    assert len(problems) == 1 and problems[0].startswith(problem)


def test_citations_in_code_blocks_are_not_prose_and_notebooks_are_checked(root):
    assert check_chapters.citation_problems("```python\nx = '{cite:p}`a`'\n```\n\nText.") == []
    path = _write(root, _chapter(closing=CLOSING + "\n\nGrad-CAM {cite:t}`s2017` looks."))
    problems = check_chapters.template_problems(path, root)
    assert len(problems) == 1 and problems[0].startswith("cell 2: {cite:t}`s2017` follows 'grad-cam'")


@pytest.mark.parametrize("title, problem", [
    (TITLE.replace("# A chapter", "A chapter"), "the first cell is not a title cell"),
    (TITLE.replace("# A chapter", "## A chapter"), "the first cell is not a title cell"),
    (TITLE.replace("**What you will learn**", "**Contents**"), "no 'What you will learn' list"),
    (TITLE.replace("- one thing;\n- another.", "Things."), "no 'What you will learn' list"),
    (TITLE.replace("```{include} _admonitions/not-clinical.md\n```", ""), "no include of the shared admonition"),
    (TITLE.replace("not-clinical.md", "other.md"), "no include of the shared admonition"),
])
def test_each_opening_rule_can_fail(root, title, problem):
    problems = check_chapters.template_problems(_write(root, _chapter(title=title)), root)
    assert len(problems) == 1 and problems[0].startswith(problem)


def test_the_objectives_must_come_before_any_code(root):
    cells = _chapter(title="# A chapter\n\n```{include} _admonitions/not-clinical.md\n```")
    cells.insert(2, nbformat.v4.new_markdown_cell("## What you will learn\n\n- late"))
    problems = check_chapters.template_problems(_write(root, cells), root)
    assert problems == ["no 'What you will learn' list before the first code cell"]


@pytest.mark.parametrize("closing, problem", [
    (CLOSING.replace("## What to take away", "## Summary"), "missing closing heading(s): ## What to take away"),
    (CLOSING.replace("## What's next", "What's next"), "missing closing heading(s): ## What's next"),
    ("## What's next\n\n{doc}`x`\n\n## What to take away\n", "'## What's next' comes before"),
    (CLOSING.replace("{doc}`02_next` goes on.", "More soon."), "'## What's next' has no {doc} link"),
    (CLOSING.replace("- A point.", "- See {doc}`x`.").replace("{doc}`02_next` goes on.", "More."),
     "'## What's next' has no {doc} link"),
    ("```\n## What to take away\n## What's next\n{doc}`x`\n```", "missing closing heading(s)"),
])
def test_each_closing_rule_can_fail(root, closing, problem):
    problems = check_chapters.template_problems(_write(root, _chapter(closing=closing)), root)
    assert len(problems) == 1 and problems[0].startswith(problem)


def test_the_last_notebook_needs_no_link_onwards(root):
    path = _write(root, _chapter(closing=CLOSING.replace("{doc}`02_next` goes on.", "The end.")))
    assert check_chapters.template_problems(path, root, last=True) == []
    assert check_chapters.template_problems(path, root, last=False) != []


def test_typographic_apostrophes_count(root):
    path = _write(root, _chapter(closing=CLOSING.replace("What's", "What\u2019s")))
    assert check_chapters.template_problems(path, root) == []


@pytest.mark.parametrize("code, count", [
    ("x = 1", 0),
    ("plt.plot([1])\nplt.show()", 1),
    ("%matplotlib inline\nplt.plot([1])\nplt.show()", 1),
    ("fig, ax = plt.subplots()\nax.plot([1])\nfig", 1),
    ("fig = make()\ndisplay(fig)", 1),
    ("plots.show_images(a)\nplt.show()\nplots.plot_roc(b)\nplt.show()", 2),
    ("if ok:\n    plt.show()\nelse:\n    print('no figure')", 1),
    ("figures = 3\nprint(figures)", 0),
])
def test_figures_made_reads_the_code(code, count):
    assert check_chapters.figures_made(nbformat.v4.new_code_cell(code)) == count


def test_figures_made_counts_image_outputs_of_executed_cells():
    cell = nbformat.v4.new_code_cell("draw()")
    cell.outputs = [nbformat.v4.new_output("display_data", data={"image/png": "iVBOR", "text/plain": "<Figure>"}),
                    nbformat.v4.new_output("stream", name="stdout", text="done\n")]
    assert check_chapters.figures_made(cell) == 1


def test_figure_cells_need_caption_name_and_alt_text_and_one_figure_each():
    cell = nbformat.v4.new_code_cell("plt.show()", metadata={"mystnb": {"figure": {"caption": "C"}}})
    assert check_chapters.figure_problems(cell) == ["lacks mystnb figure.name, image.alt in its metadata"]
    cell = nbformat.v4.new_code_cell("plt.show()\nplt.show()", metadata=FIGURE)
    assert check_chapters.figure_problems(cell) == [
        "makes 2 figures, but one caption and name fit one figure: split the cell"]
    assert check_chapters.figure_problems(nbformat.v4.new_code_cell("print(1)")) == []


def test_long_code_lines_are_found_and_markdown_is_not_checked():
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("word " * 30),
        nbformat.v4.new_code_cell("x = 1\n" + "y" * 88 + "\n" + "z" * 89)])
    assert check_chapters.long_code_lines(notebook) == [(1, 3, 89)]


@pytest.mark.parametrize("path", book_sources.toc_notebooks(ROOT), ids=lambda p: p.stem)
def test_every_notebook_in_the_toc_follows_the_chapter_template(path):
    last = path == book_sources.toc_notebooks(ROOT)[-1]
    assert check_chapters.template_problems(path, ROOT, last=last) == []


@pytest.mark.parametrize("path", sorted((ROOT / "book").rglob("*.ipynb")), ids=lambda p: p.stem)
def test_no_code_line_is_longer_than_88_characters(path):
    notebook = nbformat.read(path, as_version=4)
    assert [f"cell {i} line {n}: {length}" for i, n, length in check_chapters.long_code_lines(notebook)] == []
