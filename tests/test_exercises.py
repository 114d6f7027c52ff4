"""Exercises: the book shows each solution folded; the student edition has none of it, keeps a
self-check, and the instructor's guide stays apart; the guide's values hold for the solutions."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import nbformat
import numpy as np
import pytest
import yaml

import book_sources
import make_exercises
import sync_notebooks
from busutils import checks

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


def _question_code_lines(notebook: nbformat.NotebookNode) -> set[str]:
    """The code lines outside every solution (plt.show() and the like may be in both parts)."""
    lines, inside = set(), False
    for cell in notebook.cells:
        if cell.cell_type == "markdown" and "{solution-start}" in cell.source:
            inside = True
        elif cell.cell_type == "markdown" and "{solution-end}" in cell.source:
            inside = False
        elif cell.cell_type == "code" and not inside:
            if make_exercises.SOLUTION_TAG not in cell.metadata.get("tags", []):
                lines |= {line.strip() for line in cell.source.splitlines()}
    return lines


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
    shared = _question_code_lines(notebook)
    leaked = [line for line in _solution_lines(notebook) if line in text and line not in shared]
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


@pytest.mark.parametrize("path", EXERCISES, ids=lambda p: p.stem)
def test_the_student_edition_keeps_the_self_check(path):
    student = make_exercises.student_notebook(nbformat.read(path, as_version=4), path.parent)
    calls = [c for c in student.cells if c.cell_type == "code" and re.search(r"\bchecks\.\w+_exercise\(", c.source)]
    assert len(calls) == 1
    markdown = [c.source for c in student.cells if c.cell_type == "markdown"]
    assert any(text.startswith("### Check your work") for text in markdown)


def test_the_instructor_guide_stays_out_of_the_students_bundle(tmp_path):
    written, archive = make_exercises.make_exercises(ROOT, tmp_path / "exercises")
    guide = make_exercises.write_instructor_guide(ROOT, tmp_path / "instructor")
    assert guide.parent != written[0].parent and not (tmp_path / "exercises" / "guide.md").exists()
    with zipfile.ZipFile(archive) as bundle:
        assert all(name.endswith(".ipynb") for name in bundle.namelist())
    text = guide.read_text()
    for path in EXERCISES:
        assert f"## {path.stem}: " in text
    assert text.count("| total | 10 | |") == len(EXERCISES)
    assert text.count("**Difficulty**: ★") == len(EXERCISES) and "What a correct solution gives" in text
    expected = json.loads((tmp_path / "instructor" / "expected.json").read_text())
    assert sorted(expected) == [p.stem for p in EXERCISES]
    with pytest.raises(SystemExit):
        make_exercises.main(["--out", str(tmp_path / "x"), "--guide-out", str(tmp_path / "x" / "guide")])


def test_the_guide_gives_every_exercise_a_rubric_answers_and_values():
    guide = make_exercises.read_guide(ROOT)
    for name, entry in guide["exercises"].items():
        assert sum(r["points"] for r in entry["rubric"]) == 10, name
        assert entry["answers"] and entry["expected"], name
        for item in entry["expected"]:
            assert {"key", "what", "phantom", "busi"} <= set(item), (name, item)
            phantom = item["phantom"]
            if isinstance(phantom, list):
                assert len(phantom) == 2 and phantom[0] <= phantom[1], (name, item)
            assert item["busi"] != "measured", f"{name}: {item['key']} has no value measured on BUSI"


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


#: Tiny settings for the exercises that train: random VGG16 weights (the kernel runs outside the
#: socket guard of conftest, so no download of ImageNet weights may even be attempted), one epoch,
#: small images, a small phantom.  Each notebook gets those of its parameters it has.
TINY = {"weights": "none", "epochs": 1, "finetune_epochs": 1, "augment_copies": 2, "image_size": 64,
        "phantom_n": 120, "n_boot": 200}
#: The run that exercise 05 trains (no chapter ran before it here) and exercise 06 loads.
SHARED_RUN = "vgg16-finetune.json"


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """Each exercise executed on the phantom, solution included, in toc order as `make book` runs it.

    The notebooks run in ``<folder>/exercises``, so that their ``results_dir="results"`` is
    ``<folder>/exercises/results``.  ``"shared run"`` holds the saved run's bytes after each notebook.
    """
    folder = tmp_path_factory.mktemp("book")
    (folder / "exercises").mkdir()
    notebooks, shared = {}, {}
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("BUSI_DIR", raising=False)
        patch.delenv("VGG16_WEIGHTS", raising=False)
        patch.delenv("MPLBACKEND", raising=False)
        for path in EXERCISES:
            out = folder / "exercises" / path.name
            known = papermill.inspect_notebook(str(path))
            parameters = {"profile": "quick", **{k: v for k, v in TINY.items() if k in known}}
            papermill.execute_notebook(str(path), str(out), parameters=parameters, cwd=str(out.parent),
                                       kernel_name="python3", progress_bar=False)
            notebooks[path.stem] = nbformat.read(out, as_version=4)
            run = out.parent / "results" / SHARED_RUN
            shared[path.stem] = run.read_bytes() if run.exists() else None
    notebooks["shared run"] = shared
    notebooks["folder"] = folder
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


def _number_after(text: str, prefix: str) -> float:
    match = re.search(re.escape(prefix) + r"\s*([-+]?\d+(?:\.\d+)?)", text)
    assert match, f"no number after {prefix!r} in the outputs"
    return float(match.group(1))


@pytest.mark.slow
def test_the_augmentation_exercise_trains_three_runs_and_compares_them(executed):
    text = _outputs(executed["02_augmentation"])
    trained = [kind for kind in ("paper", "light", "none") if f"{kind:>5}: kept epoch" in text]
    assert trained == ["paper", "light", "none"]
    assert "largest gap:" in text and "DeLong p =" in text


@pytest.mark.slow
def test_the_unfreeze_exercise_moves_the_cache_cut_one_block_earlier(executed):
    text = _outputs(executed["03_unfreeze_more"])
    assert "finetune_layers='block5': trains block5_conv1, block5_conv2, block5_conv3; frozen up to block4_pool" in text
    assert "finetune_layers='block4+block5': trains block4_conv1, block4_conv2, block4_conv3, block5_conv1, " \
           "block5_conv2, block5_conv3; frozen up to block3_pool" in text
    assert "test AUC, blocks 4 and 5 minus block 5:" in text


@pytest.mark.slow
def test_the_three_class_exercise_prints_the_true_share_of_benign_images(executed, monkeypatch):
    monkeypatch.delenv("BUSI_DIR", raising=False)  # the exercise ran on the phantom: so must this check
    from busutils.data import load_dataset
    from busutils.experiment import split_dataset
    from busutils.profiles import get_profile

    settings = get_profile("quick", image_size=TINY["image_size"], phantom_n=TINY["phantom_n"])
    data = load_dataset(None, task="three-class", image_size=settings.image_size, phantom_n=settings.phantom_n, seed=0)
    test = split_dataset(data, test_size=settings.test_size, val_size=settings.val_size, seed=0).test
    text = _outputs(executed["04_three_classes"])
    benign = data.class_names.index("benign")
    assert _number_after(text, "whole data set") == pytest.approx(np.mean(data.labels == benign), abs=5e-4)
    assert _number_after(text, "test part") == pytest.approx(np.mean(test.labels == benign), abs=5e-4)
    assert "malignant test lesions missed:" in text


@pytest.mark.slow
def test_the_shortcut_exercise_measures_masked_and_control_scores(executed):
    text = _outputs(executed["05_shortcuts"])
    assert "test images have marked pixels" in text and "AUC of the marked area as a score of malignancy" in text
    assert "than the control masks" in text


@pytest.mark.slow
def test_the_operating_point_exercise_loads_the_saved_run_and_reaches_its_target_on_validation(executed):
    shared = executed["shared run"]
    assert shared["05_shortcuts"] is not None  # 05 trained and saved the run (no chapter ran here) ...
    assert shared["06_operating_point"] == shared["05_shortcuts"]  # ... and 06 loaded it, unchanged
    text = _outputs(executed["06_operating_point"])
    assert _number_after(text, "a sensitivity of") >= 0.95
    assert "give a test sensitivity under" in text and "malignant validation images, every one" in text


def _value(values: dict, key: str):
    for part in key.split("."):
        values = values[part]
    return values


@pytest.mark.slow
@pytest.mark.parametrize("path", EXERCISES, ids=lambda p: p.stem)
def test_each_solution_passes_its_self_check_and_gives_the_guides_values(executed, path):
    reports = checks.reports_in(executed[path.stem])
    assert len(reports) == 1, "one self-check report per exercise"
    report = reports[0]
    assert report["passed"], [c for c in report["checks"] if not c["passed"]]
    for item in make_exercises.read_guide(ROOT)["exercises"][path.stem]["expected"]:
        value, expected = _value(report["values"], item["key"]), item["phantom"]
        if isinstance(expected, list):
            assert expected[0] <= value <= expected[1], (item["key"], value, expected)
        else:
            assert value == pytest.approx(expected) if isinstance(expected, float) else value == expected, \
                (item["key"], value, expected)


@pytest.mark.slow
def test_the_student_editions_run_and_their_self_checks_give_nothing_away(executed, tmp_path_factory):
    """Each student edition, run as handed out (in the folder where the solutions saved their run),
    reports every part as not done yet: no answer in the messages, no value computed for the student."""
    folder = executed["folder"] / "students"
    folder.mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("BUSI_DIR", raising=False)
        patch.delenv("VGG16_WEIGHTS", raising=False)
        for path in EXERCISES:
            student = make_exercises.student_notebook(nbformat.read(path, as_version=4), path.parent)
            knobs = next(c for c in student.cells if c.cell_type == "code" and c.source.startswith("profile ="))
            knobs.metadata["tags"] = ["parameters"]  # as papermill needs it; the handout has no tags
            source = folder / path.name
            nbformat.write(student, source)
            known = papermill.inspect_notebook(str(source))
            parameters = {"profile": "quick", **{k: v for k, v in TINY.items() if k in known}}
            if "results_dir" in known:
                parameters["results_dir"] = str(executed["folder"] / "results")
            papermill.execute_notebook(str(source), str(folder / f"run-{path.name}"), parameters=parameters,
                                       cwd=str(folder), kernel_name="python3", progress_bar=False)
            report, = checks.reports_in(nbformat.read(folder / f"run-{path.name}", as_version=4))
            assert all(c["passed"] is None for c in report["checks"]), (path.stem, report["checks"])
            assert all(c["message"].startswith("not yet") for c in report["checks"]), path.stem
