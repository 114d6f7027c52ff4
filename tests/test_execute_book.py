"""The book's build script: which notebooks it executes, and the log noise it strips."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("execute_book", ROOT / "scripts" / "execute_book.py")
execute_book = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(execute_book)


def test_every_toc_entry_exists_and_notebooks_have_a_parameters_cell():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = execute_book.toc_files(toc)
    assert files[0] == "book/intro" and "book/01_data_tour" in files
    for name in files:
        candidates = [ROOT / f"{name}{suffix}" for suffix in (".md", ".ipynb")]
        assert any(p.exists() for p in candidates), name
        notebook = ROOT / f"{name}.ipynb"
        if notebook.exists():
            nb = nbformat.read(notebook, as_version=4)
            tags = [c.metadata.get("tags", []) for c in nb.cells if c.cell_type == "code"]
            assert any("parameters" in t for t in tags), f"{name} has no parameters cell"
            assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{name} has outputs"


def test_strip_tf_logs_keeps_real_warnings(tmp_path):
    nb = nbformat.v4.new_notebook()
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
    nb.cells = [cell]
    path = tmp_path / "n.ipynb"
    nbformat.write(nb, path)
    execute_book.strip_tf_logs(path)
    outputs = nbformat.read(path, as_version=4).cells[0].outputs
    assert [o.text for o in outputs] == ["models.py:413: RandomInitWarning: RANDOM INITIALISATION\n",
                                         "I0000 printed by the user stays\n"]
