"""The book on Google Colab: one profile rule everywhere, and paths inside the session's folder.

The end-to-end check in a stand-in for Colab's own environment is tests/test_colab_stand_in.py.
"""

from __future__ import annotations

import ast
import re
import sys
import types
from pathlib import Path

import nbformat
import pytest

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
    """On a Colab GPU, chapter 07 gets the settings chapter 04 trained with; on a CPU, quick."""
    chosen = {path.relative_to(ROOT).as_posix(): profiles.get_profile(parameters(path)["profile"]).name
              for path in NOTEBOOKS}
    assert len(chosen) == 16 and set(chosen.values()) == {colab}, chosen


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
