"""The book's build script: which notebooks it executes, and how it tidies them for readers."""

from __future__ import annotations

import json
import types
from pathlib import Path

import nbformat
import pytest
import yaml

import book_sources
import execute_book
from busutils import precision
from busutils.precision import choose_precision, cpu_name

ROOT = Path(__file__).resolve().parents[1]


def test_every_toc_entry_exists_and_notebooks_have_a_parameters_cell():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = book_sources.toc_files(toc)
    assert files[0] == "book/intro" and "book/01_data_tour" in files
    assert "book/exercises/01_audit_your_folder" in files
    for name in files:
        candidates = [ROOT / f"{name}{suffix}" for suffix in (".md", ".ipynb")]
        assert any(p.exists() for p in candidates), name
        notebook = ROOT / f"{name}.ipynb"
        if notebook.exists():
            nb = nbformat.read(notebook, as_version=4)
            tags = [c.metadata.get("tags", []) for c in nb.cells if c.cell_type == "code"]
            assert any("parameters" in t for t in tags), f"{name} has no parameters cell"
            assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{name} has outputs"


def test_every_part_of_the_toc_but_the_references_is_numbered():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    captions = [part["caption"] for part in toc["parts"]]
    assert captions == ["Data", "The paper's three models", "What the paper did not show",
                        "Exercises", "Appendix", "References"]
    numbered = {part["caption"]: part.get("numbered", False) for part in toc["parts"]}
    assert [c for c, n in numbered.items() if not n] == ["References"]


def test_strip_tf_logs_keeps_real_warnings():
    cell = nbformat.v4.new_code_cell("1")
    cell.outputs = [
        nbformat.v4.new_output("stream", name="stderr", text=(
            "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
            "I0000 00:00:1795627946.995331   29948 port.cc:153] oneDNN custom operations are on.\n")),
        nbformat.v4.new_output("stream", name="stderr", text=(
            "E0000 00:00:1795626143.965012   16382 cuda_platform.cc:52] failed call to cuInit\n"
            "models.py:413: RandomInitWarning: RANDOM INITIALISATION\n")),
        nbformat.v4.new_output("stream", name="stdout", text="I0000 printed by the user stays\n"),
    ]
    notebook = nbformat.v4.new_notebook(cells=[cell])
    execute_book.strip_tf_logs(notebook)
    assert [o.text for o in notebook.cells[0].outputs] == [
        "models.py:413: RandomInitWarning: RANDOM INITIALISATION\n", "I0000 printed by the user stays\n"]


def test_only_the_injected_parameters_cell_is_removed():
    cells = [nbformat.v4.new_code_cell('profile = "quick"', metadata={"tags": ["parameters"]}),
             nbformat.v4.new_code_cell('profile = "paper"', metadata={"tags": ["injected-parameters"]}),
             nbformat.v4.new_code_cell("print(profile)")]
    notebook = nbformat.v4.new_notebook(cells=cells)
    execute_book.hide_injected_parameters(notebook)
    execute_book.hide_injected_parameters(notebook)  # twice: still one tag
    assert [c.metadata.get("tags") for c in notebook.cells] == [
        ["parameters"], ["injected-parameters", "remove-cell"], None]


def test_machine_info_names_the_cpu_counts_cores_and_says_the_precision_and_any_cap(monkeypatch):
    monkeypatch.setattr(execute_book.shutil, "which", lambda name: None)  # no nvidia-smi
    monkeypatch.setattr(precision, "gpu_compute_capabilities", lambda: [])  # nor one TensorFlow sees
    monkeypatch.delenv("BUSUTILS_PRECISION", raising=False)
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        monkeypatch.delenv(name, raising=False)
    machine = execute_book.machine_info("quick")
    assert machine["cpu"] == cpu_name() and machine["gpus"] == []
    assert isinstance(machine["cores"], int) and machine["cores"] >= 1
    assert machine["precision"] == choose_precision("auto") and machine["onednn_cap"] is None
    # Timed as on an AVX2-only processor: bfloat16 is barred there, so the book runs in float32
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx2")
    capped = execute_book.machine_info("quick")
    assert capped["onednn_cap"] == "AVX2" and capped["precision"] == "float32"
    # A precision the reader sets wins over the profile's "auto", as in the chapters
    monkeypatch.setenv("BUSUTILS_PRECISION", "mixed_float16")
    assert execute_book.machine_info("quick")["precision"] == "mixed_float16"


@pytest.mark.parametrize("seconds, text", [(0.4, "0 s"), (42.6, "43 s"), (185, "3 min 5 s"),
                                           (3600, "1 h 0 min 0 s"), (7327, "2 h 2 min 7 s")])
def test_format_duration(seconds, text):
    assert execute_book.format_duration(seconds) == text


def test_run_note_states_time_machine_precision_and_profile():
    machine = {"cpu": "AMD EPYC", "cores": 2, "gpus": []}
    assert execute_book.run_note(185.2, machine, "quick") == (
        "This chapter ran in 3 min 5 s on AMD EPYC, 2 cores, profile quick, in this build of the book.")
    machine["gpus"] = ["NVIDIA A100-SXM4-40GB"]
    assert execute_book.run_note(61, machine, "paper", "This exercise, solution included,") == (
        "This exercise, solution included, ran in 1 min 1 s on AMD EPYC, 2 cores and 1 GPU "
        "(NVIDIA A100-SXM4-40GB), profile paper, in this build of the book.")
    # the precision it computed in, and a cap on oneDNN if the build was timed as on an older CPU
    machine.update(gpus=[], precision="float32", onednn_cap="AVX2")
    assert execute_book.run_note(42, machine, "quick") == (
        "This chapter ran in 42 s on AMD EPYC, 2 cores, in float32, oneDNN capped at AVX2 (timed as on "
        "an older processor), profile quick, in this build of the book.")


def _notebook(*cells, duration=None):
    notebook = nbformat.v4.new_notebook(cells=list(cells))
    if duration is not None:
        notebook.metadata["papermill"] = {"duration": duration}
    return notebook


def test_finish_notebook_puts_the_measured_time_right_after_the_title(tmp_path):
    machine = {"cpu": "AMD EPYC", "cores": 2, "gpus": []}
    for folder, what in (("book", "This chapter ran in 1 min 2 s"),
                         ("book/exercises", "This exercise, solution included, ran in 1 min 2 s")):
        path = tmp_path / folder / "n.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(_notebook(nbformat.v4.new_markdown_cell("# Title\n\nIntro."),
                                 nbformat.v4.new_code_cell("x = 1"),
                                 nbformat.v4.new_markdown_cell("## Next"), duration=62.3), path)
        assert execute_book.finish_notebook(path, machine, "quick") == 62.3
        cells = nbformat.read(path, as_version=4).cells
        assert [c.cell_type for c in cells] == ["markdown", "markdown", "code", "markdown"]
        assert cells[1].source.startswith(what) and "AMD EPYC, 2 cores, profile quick" in cells[1].source


def test_book_config_adds_colab_buttons_only_with_a_repository_address():
    config = book_sources.read_config(ROOT)
    assert book_sources.repository_url(config) == "" and "launch_buttons" not in execute_book.book_config(config)
    config["repository"]["url"] = "https://github.com/example/bus-book/"
    built = execute_book.book_config(config)
    assert built["launch_buttons"] == {"colab_url": "https://colab.research.google.com"}
    assert built["repository"] == {"url": "https://github.com/example/bus-book/", "branch": "main",
                                   "path_to_book": ""}
    assert "launch_buttons" not in config  # the original is left alone


def test_chapter_timeout_prefers_the_profile_and_falls_back_by_name(monkeypatch):
    import busutils.profiles

    profiles = {"quick": types.SimpleNamespace(name="quick", chapter_timeout=123),
                "paper": types.SimpleNamespace(name="paper"),
                "other": types.SimpleNamespace(name="other", chapter_timeout=None)}
    monkeypatch.setattr(busutils.profiles, "get_profile", lambda name: profiles[name])
    assert execute_book.chapter_timeout("quick") == 123
    assert execute_book.chapter_timeout("paper") == 4 * 3600
    assert execute_book.chapter_timeout("other") == execute_book.FALLBACK_TIMEOUT


def _tiny_book(root: Path, code: str) -> Path:
    (root / "book").mkdir(parents=True)
    (root / "_config.yml").write_text("title: Tiny\nrepository:\n  url: ''\n")
    (root / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n  - file: book/one\n")
    (root / "book" / "intro.md").write_text("# Intro\n")
    notebook = _notebook(nbformat.v4.new_markdown_cell("# One cell"),
                         nbformat.v4.new_code_cell('profile = "none"', metadata={"tags": ["parameters"]}),
                         nbformat.v4.new_code_cell(code))
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, root / "book" / "one.ipynb")
    return root


def test_execute_book_runs_papermill_and_records_what_it_measured(tmp_path):
    root = _tiny_book(tmp_path / "src", "print(profile)")
    out = tmp_path / "out"
    times = execute_book.execute_book(root, out, "quick", timeout=120)

    cells = nbformat.read(out / "book" / "one.ipynb", as_version=4).cells
    assert [c.metadata.get("tags", []) for c in cells] == [
        [], [], ["parameters"], ["injected-parameters", "remove-cell"], []]
    assert cells[4].outputs[0].text == "quick\n"
    recorded = json.loads((out / "run_times.json").read_text())
    assert recorded == times and recorded["profile"] == "quick" and recorded["timeout_s"] == 120
    seconds = recorded["notebooks"]["book/one"]["seconds"]
    assert seconds > 0 and set(recorded["machine"]) == {"cpu", "cores", "gpus", "platform", "precision",
                                                        "onednn_cap"}
    machine = recorded["machine"]
    expected = execute_book.run_note(seconds, machine, "quick")
    # run_times.json rounds to 0.1 s; the note rounds to whole seconds
    assert cells[1].source.split(" on ")[1:] == expected.split(" on ")[1:]
    assert "{'cpu'" not in cells[1].source and f"{machine['cores']} cores" in cells[1].source
    assert (out / "_config.yml").exists() and (out / "book" / "intro.md").exists()


def test_a_cell_that_runs_past_the_timeout_fails_the_build(tmp_path):
    root = _tiny_book(tmp_path / "src", "import time\ntime.sleep(120)")
    with pytest.raises(TimeoutError, match=r"book/one: a cell ran past its limit \(2 s.*\), in each of 2 attempts"):
        execute_book.execute_book(root, tmp_path / "out", "quick", timeout=2)


def test_a_notebook_that_hangs_once_is_executed_again_from_its_source(tmp_path, capsys):
    """A cell that never ends the first time (as nbclient can miss the end of a widget's cell) and
    ends the second: the build goes on, says so, and the page holds the second run's outputs only."""
    hangs_once = ("from pathlib import Path\nimport time\nif not Path('tried').exists():\n"
                  "    Path('tried').write_text('once')\n    time.sleep(120)\nprint('done')")
    root = _tiny_book(tmp_path / "src", hangs_once)
    execute_book.execute_book(root, tmp_path / "out", "quick", timeout=3)
    assert "book/one: a cell ran past its limit (3 s, " in capsys.readouterr().out
    page = nbformat.read(tmp_path / "out" / "book" / "one.ipynb", as_version=4)
    printed = [o.get("text", "") for c in page.cells if c.cell_type == "code" for o in c.outputs]
    assert printed == ["done\n"]
    assert sum("injected-parameters" in c.metadata.get("tags", []) for c in page.cells) == 1


def test_a_widgets_cell_that_hangs_is_given_up_on_soon_whatever_the_chapters_limit(tmp_path, capsys, monkeypatch):
    """nbclient can miss the end of a cell that shows an ipywidget (chapter 09's slider, in CI): such a
    cell waits WIDGET_TIMEOUT, not the chapter's limit, before the notebook is executed again."""
    monkeypatch.setattr(execute_book, "WIDGET_TIMEOUT", 2)
    hangs_once = ("from pathlib import Path\nimport time\nimport types\n"
                  "widgets = types.SimpleNamespace(show=lambda: None)\nwidgets.show()\n"
                  "if not Path('tried').exists():\n    Path('tried').write_text('once')\n    time.sleep(300)\n"
                  "print('done')")
    root = _tiny_book(tmp_path / "src", hangs_once)
    execute_book.execute_book(root, tmp_path / "out", "quick", timeout=600)
    printed = capsys.readouterr().out  # under the chapter's 600 s the sleep would end and nothing retry
    assert "book/one: a cell ran past its limit (600 s, " in printed
    assert "; 2 s for a widget's cell); executing the notebook once more" in printed
    timeouts = execute_book.cell_timeouts(600)
    assert timeouts(nbformat.v4.new_code_cell("widgets.interact(f, t=slider)")) == 2
    assert timeouts(nbformat.v4.new_code_cell("train(model)  # no widget here")) == 600


def test_every_bibliography_entry_is_cited_and_every_citation_exists():
    """Read as the book build reads it (pybtex, under sphinxcontrib-bibtex): a missing brace fails here."""
    import re

    from pybtex.database import parse_file

    keys = set(parse_file(ROOT / "book" / "references.bib", bib_format="bibtex").entries)
    cited = set()
    for path in [*ROOT.joinpath("book").rglob("*.ipynb"), *ROOT.joinpath("book").rglob("*.md")]:
        for group in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", path.read_text()):
            cited.update(key.strip() for key in group.split(","))
    assert keys, "no entries read from references.bib"
    assert sorted(keys - cited) == [], "entries never cited (the bibliography would drop them)"
    assert sorted(cited - keys) == [], "citations with no entry in references.bib"


def test_the_data_and_weights_folders_count_as_this_machines_paths(monkeypatch, tmp_path):
    busi, weights = tmp_path / "shared" / "busi", tmp_path / "weights" / "vgg16.h5"
    monkeypatch.setenv("BUSI_DIR", str(busi))
    monkeypatch.setenv("VGG16_WEIGHTS", str(weights))
    assert execute_book.data_folders() == [busi, weights.parent]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)", outputs=[
        nbformat.v4.new_output("stream", name="stdout", text=f"data: {busi}, 519 images\n")])])
    assert execute_book.machine_paths(notebook, execute_book.data_folders()) == ["cell 0"]
    monkeypatch.delenv("BUSI_DIR")
    monkeypatch.delenv("VGG16_WEIGHTS")
    assert execute_book.data_folders() == []
