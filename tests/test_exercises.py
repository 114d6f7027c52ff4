"""Exercises: the book shows each solution folded; the student edition has none of it."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import nbformat
import pytest
import yaml

import book_sources
import make_exercises
import sync_notebooks

ROOT = Path(__file__).resolve().parents[1]
EXERCISES = make_exercises.exercise_notebooks(ROOT)
papermill = pytest.importorskip("papermill")


def _solution_lines(notebook: nbformat.NotebookNode) -> list[str]:
    """The non-trivial lines of solution code: not blank, not a comment, not an import, not short."""
    lines = []
    for cell in notebook.cells:
        if cell.cell_type == "code" and make_exercises.SOLUTION_TAG in cell.metadata.get("tags", []):
            for line in cell.source.splitlines():
                line = line.strip()
                if len(line) >= 10 and not line.startswith(("#", "import ", "from ")):
                    lines.append(line)
    return lines


def _text(notebook: nbformat.NotebookNode) -> str:
    return "\n".join(cell.source for cell in notebook.cells)


def test_the_book_has_exercises_and_lists_them_all():
    assert [p.name for p in EXERCISES][:1] == ["01_audit_your_folder.ipynb"]
    toc = book_sources.toc_files(yaml.safe_load((ROOT / "_toc.yml").read_text()))
    assert [f"book/exercises/{p.stem}" for p in EXERCISES] == [f for f in toc if f.startswith("book/exercises/")]


@pytest.mark.parametrize("path", EXERCISES, ids=lambda p: p.stem)
def test_each_exercise_has_a_labelled_exercise_and_a_folded_solution(path):
    notebook = nbformat.read(path, as_version=4)
    text = _text(notebook)
    labels = re.findall(r"^```\{exercise\}.*\n:label: (\S+)", text, re.MULTILINE)
    assert labels, "no {exercise} directive with a :label:"
    for label in labels:
        assert re.search(rf"^```{{solution-start}} {re.escape(label)}\n:class: dropdown\n```$", text, re.MULTILINE)
    assert text.count("{solution-start}") == text.count("{solution-end}") == len(labels)
    assert _solution_lines(notebook), "no code cell tagged 'solution'"


@pytest.mark.parametrize("path", EXERCISES, ids=lambda p: p.stem)
def test_the_student_edition_holds_no_solution(path):
    notebook = nbformat.read(path, as_version=4)
    student = make_exercises.student_notebook(notebook, path.parent)
    nbformat.validate(student)
    text = _text(student)
    assert "{solution" not in text and "solution" not in json.dumps([c.get("metadata") for c in student.cells])
    leaked = [line for line in _solution_lines(notebook) if line in text]
    assert leaked == []
    assert len(student.cells) < len(notebook.cells)


@pytest.mark.parametrize("path", EXERCISES, ids=lambda p: p.stem)
def test_the_student_edition_starts_like_every_chapter_and_carries_no_metadata(path):
    notebook = nbformat.read(path, as_version=4)
    notebook.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    notebook.metadata["papermill"] = {"parameters": {"profile": "quick"}}
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.execution_count = 3
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="answer\n")]
    student = make_exercises.student_notebook(notebook, path.parent)
    url = book_sources.repository_url(book_sources.read_config(ROOT))
    first = sync_notebooks.first_code_cell(student)
    assert student.cells[first].source == sync_notebooks.setup_cell_source(url)
    assert set(student.metadata) <= {"kernelspec", "language_info"}
    assert all(cell.metadata == {} for cell in student.cells)
    code = [cell for cell in student.cells if cell.cell_type == "code"]
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)


@pytest.mark.parametrize("path", EXERCISES, ids=lambda p: p.stem)
def test_the_student_edition_reads_as_plain_markdown(path):
    student = make_exercises.student_notebook(nbformat.read(path, as_version=4), path.parent)
    text = _text(student)
    assert "```{" not in text and "{doc}`" not in text
    assert "> **Not for clinical use**" in text and "> **Exercise" in text


def test_make_exercises_writes_every_student_notebook_and_one_zip(tmp_path):
    written, archive = make_exercises.make_exercises(ROOT, tmp_path / "exercises")
    assert [p.name for p in written] == [p.name for p in EXERCISES]
    with zipfile.ZipFile(archive) as bundle:
        assert bundle.namelist() == [f"exercises/{p.name}" for p in EXERCISES]
        for path in written:
            assert bundle.read(f"exercises/{path.name}") == path.read_bytes()


def test_plain_markdown_turns_myst_into_markdown(tmp_path):
    (tmp_path / "_admonitions").mkdir()
    (tmp_path / "_admonitions" / "note.md").write_text("```{admonition} Careful\n:class: warning\n\nHot.\n```\n")
    (tmp_path / "01_tour.ipynb").write_text(nbformat.writes(nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_markdown_cell("# A tour\n\nText.")])))
    base = tmp_path / "exercises"
    base.mkdir()
    source = ("Read {doc}`../01_tour` and {doc}`this one <../01_tour>`, see {numref}`fig-x`.\n\n"
              "````{exercise} Count\n:label: ex-count\n\nCount to 3:\n\n```python\nx = 1\n```\n````\n\n"
              "```{include} ../_admonitions/note.md\n```\n\n"
              "```{solution} ex-count\nThe answer.\n```\n\n"
              "```{figure} a.png\nA figure.\n```")
    assert make_exercises.plain_markdown(source, base) == (
        "Read *A tour* and this one, see fig-x.\n\n"
        "> **Exercise: Count**\n>\n> Count to 3:\n>\n> ```python\n> x = 1\n> ```\n\n"
        "> **Careful**\n>\n> Hot.\n\n"
        "```{figure} a.png\nA figure.\n```")


@pytest.mark.parametrize("sources, message", [
    (["```{solution-start} ex\n:class: dropdown\n```"], "has no {solution-end} after it"),
    (["```{solution-end}\n```"], "has no {solution-start} before it"),
    (["Some text.\n\n```{solution-start} ex\n```", "```{solution-end}\n```"], "must be alone in its markdown cell"),
])
def test_unbalanced_or_buried_solution_markers_are_refused(sources, message):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(s) for s in sources])
    with pytest.raises(ValueError, match=re.escape(message)):
        make_exercises.student_notebook(notebook, ROOT / "book" / "exercises")


def test_everything_between_the_markers_is_dropped_tagged_or_not():
    cells = [nbformat.v4.new_markdown_cell("Question."),
             nbformat.v4.new_code_cell("starter = 1"),
             nbformat.v4.new_markdown_cell("```{solution-start} ex\n:class: dropdown\n```"),
             nbformat.v4.new_markdown_cell("The explanation."),
             nbformat.v4.new_code_cell("answer = 42"),
             nbformat.v4.new_markdown_cell("```{solution-end}\n```"),
             nbformat.v4.new_code_cell("hint = 'tagged'", metadata={"tags": ["solution"]}),
             nbformat.v4.new_markdown_cell("Closing.")]
    student = make_exercises.student_notebook(nbformat.v4.new_notebook(cells=cells), ROOT)
    assert [c.source for c in student.cells] == ["Question.", "starter = 1", "Closing."]


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """Each exercise executed on the phantom, solution included, as `make book` runs it."""
    folder = tmp_path_factory.mktemp("exercises")
    notebooks = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("BUSI_DIR", raising=False)
        patch.delenv("MPLBACKEND", raising=False)
        for path in EXERCISES:
            out = folder / path.name
            papermill.execute_notebook(str(path), str(out), parameters={"profile": "quick"}, cwd=str(folder),
                                       kernel_name="python3", progress_bar=False)
            notebooks[path.stem] = nbformat.read(out, as_version=4)
    return notebooks


def _outputs(notebook: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.outputs)


@pytest.mark.slow
@pytest.mark.parametrize("path", EXERCISES, ids=lambda p: p.stem)
def test_each_exercise_runs_with_its_solution(executed, path):
    notebook = executed[path.stem]
    assert [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"] == []
    assert sum("image/png" in o.get("data", {}) for c in notebook.cells for o in c.get("outputs", [])) >= 1


@pytest.mark.slow
def test_the_audit_exercise_solution_finds_each_fault_as_its_text_says(executed):
    text = _outputs(executed["01_audit_your_folder"])
    assert "images per class, clean:  {'benign': 12, 'malignant': 6, 'normal': 4}" in text
    assert "images per class, broken: {'benign': 11, 'malignant': 8, 'normal': 4}" in text
    assert "near-duplicate groups: 0 -> 1" in text
    assert "newly skipped: benign/benign (3).png - corrupt or truncated image" in text
    assert "converted on reading: malignant/malignant (2) mask.png: 1-bit" in text
    assert "label conflict: benign/benign (5).png [benign]  <->  malignant/malignant (7).jpg [malignant]" in text
    assert "the report matches the clean folder's: True" in text
