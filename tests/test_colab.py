"""The book on Google Colab: one profile rule everywhere, and paths inside the session's folder.

The end-to-end check in a stand-in for Colab's own environment is tests/test_colab_stand_in.py.
"""

from __future__ import annotations

import ast
import html
import re
import sys
import types
from pathlib import Path

import nbformat
import numpy as np
import pytest
from PIL import Image

import book_sources
from busutils import precision, profiles

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = book_sources.toc_notebooks(ROOT)


def parameters(path: Path) -> dict:
    """The values the notebook's ``parameters`` cell assigns, run as the kernel would run them."""
    notebook = nbformat.read(path, as_version=4)
    cell = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
    namespace: dict = {}
    exec(compile(cell.source, f"{path.name}:parameters", "exec"), namespace)
    return {k: v for k, v in namespace.items() if not k.startswith("__")}


@pytest.fixture(params=["T4 GPU", "A100 GPU", "CPU"])
def colab(request, monkeypatch):
    """A pretend Colab runtime: google.colab imported, and the GPU (or none) that TensorFlow sees."""
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    gpus = {"T4 GPU": [(7, 5)], "A100 GPU": [(8, 0)], "CPU": []}[request.param]
    monkeypatch.setattr(precision, "gpu_compute_capabilities", lambda: gpus)
    return "quick" if not gpus else "paper"


def test_every_chapter_and_exercise_gets_one_profile_on_a_colab_runtime(colab):
    """On a Colab GPU, chapter 08 gets the settings chapter 04 trained with; on a CPU, quick."""
    chosen = {path.relative_to(ROOT).as_posix(): profiles.get_profile(parameters(path)["profile"]).name
              for path in NOTEBOOKS}
    assert len(chosen) == len(NOTEBOOKS) and set(chosen.values()) == {colab}, chosen


def test_the_profile_rule_is_written_once_and_the_same_in_every_notebook():
    lines = set()
    for path in NOTEBOOKS:
        cell = next(c for c in nbformat.read(path, as_version=4).cells
                    if "parameters" in c.metadata.get("tags", []))
        line = next(line for line in cell.source.splitlines() if line.startswith("profile ="))
        lines.add(" ".join(line.split()))
    assert lines == {'profile = None # None: "quick" on a CPU, "paper" on a GPU'}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_path_a_notebook_writes_is_inside_its_working_folder(path):
    for name, value in parameters(path).items():
        if isinstance(value, str) and ("/" in value or name.endswith(("_dir", "_file", "folder"))):
            assert not Path(value).is_absolute() and ".." not in Path(value).parts, (name, value)
    tree = ast.parse("\n".join(c.source for c in nbformat.read(path, as_version=4).cells
                               if c.cell_type == "code"))
    literals = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    paths_outside = [s for s in literals if re.fullmatch(r"(\.\./|/)[\w.-][\w./-]*", s)]
    assert paths_outside == [], f"{path.name} names a path outside its working folder"


def test_the_data_banner_names_the_data_set_and_its_source_never_a_path_of_this_machine(tmp_path, monkeypatch):
    from busutils.data import banner, describe, load_dataset

    folder = tmp_path / "build-machine" / "busi"
    for k, cls in enumerate(("benign", "malignant", "normal")):
        (folder / cls).mkdir(parents=True)
        for i in range(3):
            pixels = np.random.default_rng(10 * k + i).integers(0, 255, (40, 40), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / cls / f"{cls} ({i + 1}).png")
    monkeypatch.setenv("BUSI_DIR", str(folder))
    data = load_dataset(None, task="benign-malignant", image_size=16)
    for shown in (describe(data), html.unescape(banner(data).data)):
        assert str(tmp_path) not in shown and "/build-machine" not in shown
        assert "BUSI, the Breast Ultrasound Images data set (Al-Dhabyani et al., 2020; CC BY 4.0)" in shown
        assert "read from the folder $BUSI_DIR ('busi')" in shown
    monkeypatch.delenv("BUSI_DIR")
    assert describe(load_dataset(folder, task="benign-malignant", image_size=16)).endswith(
        "read from the folder 'busi'")
    phantom = load_dataset(None, task="benign-malignant", image_size=32, phantom_n=12)
    assert "synthetic phantom (n=12" in describe(phantom) and str(tmp_path) not in banner(phantom).data


def test_the_run_time_note_names_the_machine_never_its_folders_and_the_build_reports_any_page_that_does():
    pytest.importorskip("papermill")  # the build's tool: not on Colab
    import execute_book

    machine = {"cpu": "Example CPU @ 2.0GHz", "cores": 2, "gpus": [], "platform": "Linux"}
    note = execute_book.run_note(75, machine, "quick")
    assert note == ("This chapter ran in 1 min 15 s on Example CPU @ 2.0GHz, 2 cores, profile quick, "
                    "in this build of the book.")
    build = Path("/srv/build/book/_build/src")
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("print(root)", outputs=[nbformat.v4.new_output(
            "stream", name="stdout", text=f"data from {build}/book/results\n")]),
        nbformat.v4.new_code_cell("x", outputs=[nbformat.v4.new_output(
            "display_data", data={"text/html": "<b>BUSI</b>, read from the folder 'busi'"})]),
        nbformat.v4.new_code_cell("y", outputs=[nbformat.v4.new_output(
            "execute_result", data={"text/plain": f"PosixPath('{build}/x')"}, execution_count=1)]),
    ])
    assert execute_book.machine_paths(notebook, [build, Path("/")]) == ["cell 0", "cell 2"]
