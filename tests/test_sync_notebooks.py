"""The Colab set-up cell: a no-op outside Colab, the right commands on it, the same in every notebook."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import subprocess
import sys
import types
from pathlib import Path

import nbformat
import pytest

import book_sources
import sync_notebooks

ROOT = Path(__file__).resolve().parents[1]
URL = "https://github.com/example/bus-book"


def _run_cell(source: str) -> tuple[dict, str]:
    """Execute the cell's code as a kernel would (fresh namespace); return namespace and stdout."""
    namespace: dict = {"__name__": "__main__"}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(source, "<setup cell>", "exec"), namespace)
    return namespace, printed.getvalue()


def _forbid_processes(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the set-up cell started a process outside Colab")

    for name in ("run", "Popen", "call", "check_call", "check_output"):
        monkeypatch.setattr(subprocess, name, refuse)
    monkeypatch.setattr(os, "system", refuse)


@pytest.mark.parametrize("url", [URL, ""])
def test_outside_colab_the_setup_cell_does_nothing(monkeypatch, url):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    _forbid_processes(monkeypatch)
    before = dict(os.environ)
    namespace, printed = _run_cell(sync_notebooks.setup_cell_source(url))
    assert printed == ""
    assert dict(os.environ) == before
    assert set(namespace) - {"__name__", "__builtins__"} == {"sys"}


class _FakeRun:
    """Stands in for subprocess.run on a pretend Colab: records commands, answers like busutils."""

    def __init__(self, folder: str):
        self.commands: list[list[str]] = []
        self.folder = folder

    def __call__(self, command, **kwargs):
        self.commands.append(list(command))
        stdout = f"Downloading...\n{self.folder}\n" if command[2:4] == ["busutils", "fetch"] else ""
        return subprocess.CompletedProcess(command, 0, stdout=stdout, stderr="")


@pytest.fixture
def colab(monkeypatch, tmp_path):
    """A pretend Colab: google.colab imported, busutils not installed yet, BUSI_DIR unset."""
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "busutils" else real_find_spec(name, *a))
    monkeypatch.delenv("BUSI_DIR", raising=False)
    fake = _FakeRun(str(tmp_path / "busi"))
    monkeypatch.setattr(subprocess, "run", fake)
    return fake


def test_on_colab_it_installs_busutils_from_the_repository_and_fetches_busi(colab):
    _, printed = _run_cell(sync_notebooks.setup_cell_source(URL))
    install, fetch = colab.commands
    assert install[:2] == [sys.executable, "-m"] and install[2:5] == ["pip", "install", "--quiet"]
    assert install[5:] == [f"busutils @ git+{URL}"]  # nothing else: Colab's TensorFlow stays
    assert fetch == [sys.executable, "-m", "busutils", "fetch", "busi"]
    assert os.environ["BUSI_DIR"] == colab.folder
    assert printed.endswith(f"BUSI_DIR = {colab.folder}\n")


def test_on_colab_a_given_busi_dir_is_kept(colab, monkeypatch, tmp_path):
    monkeypatch.setenv("BUSI_DIR", str(tmp_path))
    _run_cell(sync_notebooks.setup_cell_source(URL))
    assert [c[2] for c in colab.commands] == ["pip"]
    assert os.environ["BUSI_DIR"] == str(tmp_path)


def test_on_colab_without_an_address_it_says_how_to_install_from_a_clone(colab):
    with pytest.raises(RuntimeError, match=r"pip install -e"):
        _run_cell(sync_notebooks.setup_cell_source(""))
    assert colab.commands == []


def test_a_failing_command_stops_the_cell_with_its_error_output(colab, monkeypatch):
    def fail(command, **kwargs):
        return subprocess.CompletedProcess(command, 1, stdout="", stderr="no network\n")

    monkeypatch.setattr(subprocess, "run", fail)
    with pytest.raises(RuntimeError, match="no network"):
        _run_cell(sync_notebooks.setup_cell_source(URL))


def _chapter(*cells) -> nbformat.NotebookNode:
    return nbformat.v4.new_notebook(cells=list(cells))


def test_sync_inserts_the_cell_before_the_first_code_cell_once(tmp_path):
    path = tmp_path / "n.ipynb"
    nbformat.write(_chapter(nbformat.v4.new_markdown_cell("# Title"),
                            nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]})), path)
    assert sync_notebooks.sync_notebook(path, URL) is True
    cells = nbformat.read(path, as_version=4).cells
    assert [c.cell_type for c in cells] == ["markdown", "code", "code"]
    assert cells[1].source == sync_notebooks.setup_cell_source(URL)
    assert cells[1].metadata.tags == ["hide-input"] and cells[2].metadata.tags == ["parameters"]
    assert sync_notebooks.sync_notebook(path, URL) is False


def test_sync_rewrites_a_stale_setup_cell_in_place(tmp_path):
    path = tmp_path / "n.ipynb"
    old = nbformat.v4.new_code_cell(sync_notebooks.setup_cell_source(""), metadata={"tags": ["remove-output"]})
    nbformat.write(_chapter(nbformat.v4.new_markdown_cell("# Title"), old, nbformat.v4.new_code_cell("x = 1")), path)
    notebook = nbformat.read(path, as_version=4)
    assert not sync_notebooks.in_sync(notebook, URL)  # another address
    assert not sync_notebooks.in_sync(notebook, "")  # the right code, but not folded: no hide-input
    assert sync_notebooks.sync_notebook(path, URL) is True
    cells = nbformat.read(path, as_version=4).cells
    assert len(cells) == 3 and cells[1].source == sync_notebooks.setup_cell_source(URL)
    assert cells[1].metadata.tags == ["remove-output", "hide-input"]


def test_the_setup_cell_differs_only_in_how_busutils_gets_installed():
    with_url = sync_notebooks.setup_cell_source(URL).splitlines()
    without = sync_notebooks.setup_cell_source("").splitlines()
    head = with_url.index('    if importlib.util.find_spec("busutils") is None:') + 1
    tail = with_url.index('    if not os.environ.get("BUSI_DIR"):')
    assert with_url[:head] == without[:head]
    assert with_url[tail:] == without[without.index(with_url[tail]):]
    assert f'        package = "busutils @ git+{URL}"' in with_url[head:tail]


@pytest.mark.parametrize("path", book_sources.toc_notebooks(ROOT), ids=lambda p: p.stem)
def test_every_notebook_in_the_toc_starts_with_the_setup_cell(path):
    url = book_sources.repository_url(book_sources.read_config(ROOT))
    notebook = nbformat.read(path, as_version=4)
    first = sync_notebooks.first_code_cell(notebook)
    parameters = next(i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", []))
    assert sync_notebooks.in_sync(notebook, url), f"run `make sync`: {path.name}'s first code cell is not the set-up cell"
    assert first < parameters
