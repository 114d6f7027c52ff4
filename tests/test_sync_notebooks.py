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


class _FakePip:
    """Stands in for subprocess.Popen on a pretend Colab: records pip commands, prints like pip."""

    def __init__(self, returncode: int = 0):
        self.commands: list[list[str]] = []
        self.returncode = returncode
        self.installed = False

    def __call__(self, command, **kwargs):
        assert kwargs["stdout"] is subprocess.PIPE and kwargs["stderr"] is subprocess.STDOUT
        self.commands.append(list(command))
        self.installed = self.returncode == 0
        fake = self

        class Process:
            stdout = io.StringIO("Collecting busutils\nSuccessfully installed busutils-0.1.0\n")
            returncode = fake.returncode

            def wait(self):
                return fake.returncode

        return Process()


@pytest.fixture
def colab(monkeypatch, tmp_path):
    """A pretend Colab: google.colab imported, busutils not installed until pip runs, BUSI_DIR unset."""
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    pip = _FakePip()
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args):
        if name == "busutils" and not pip.installed:
            return None
        return real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.setattr(subprocess, "Popen", pip)
    # set, then deleted: monkeypatch records it only so, and removes at teardown what the cell sets
    monkeypatch.setenv("BUSI_DIR", "")
    monkeypatch.delenv("BUSI_DIR")
    from busutils import download

    fetched = []
    monkeypatch.setattr(download, "fetch_dataset", lambda name: fetched.append(name) or tmp_path / "busi")
    monkeypatch.chdir(tmp_path)
    pip.fetched, pip.folder = fetched, str(tmp_path / "busi")
    return pip


def test_on_colab_it_installs_the_tagged_busutils_from_the_repository_and_fetches_busi(colab):
    _, printed = _run_cell(sync_notebooks.setup_cell_source(URL, "1.2.3"))
    assert colab.commands == [[sys.executable, "-m", "pip", "install", f"busutils @ git+{URL}@v1.2.3"]]
    assert "Successfully installed busutils-0.1.0\n" in printed  # pip's output, shown as it came
    assert colab.fetched == ["busi"] and os.environ["BUSI_DIR"] == colab.folder
    assert printed.endswith(f"BUSI_DIR = {colab.folder}\n")


def test_the_cell_pins_the_version_of_pyproject_by_default():
    version = book_sources.project_version(ROOT)
    assert f'VERSION = "{version}"' in sync_notebooks.setup_cell_source(URL)


@pytest.mark.parametrize("url", [URL, ""])
def test_on_colab_a_wheel_beside_the_notebook_is_installed_before_the_network(colab, tmp_path, url):
    wheel = tmp_path / "busutils-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"a wheel")
    _run_cell(sync_notebooks.setup_cell_source(url))
    assert colab.commands == [[sys.executable, "-m", "pip", "install", str(wheel)]]


def test_running_the_cell_twice_changes_nothing(colab):
    source = sync_notebooks.setup_cell_source(URL)
    _run_cell(source)
    before = (list(colab.commands), list(colab.fetched), os.environ["BUSI_DIR"])
    _, printed = _run_cell(source)
    assert (colab.commands, colab.fetched, os.environ["BUSI_DIR"]) == before
    assert printed == f"BUSI_DIR = {colab.folder}\n"


def test_on_colab_a_given_busi_dir_is_kept(colab, monkeypatch, tmp_path):
    monkeypatch.setenv("BUSI_DIR", str(tmp_path))
    _run_cell(sync_notebooks.setup_cell_source(URL))
    assert [c[3] for c in colab.commands] == ["install"] and colab.fetched == []
    assert os.environ["BUSI_DIR"] == str(tmp_path)


def test_without_an_address_or_a_wheel_it_says_exactly_what_to_do(colab, tmp_path):
    with pytest.raises(RuntimeError) as info:
        _run_cell(sync_notebooks.setup_cell_source(""))
    message = str(info.value)
    assert "no busutils-*.whl in " + str(tmp_path) in message and "Upload" in message
    assert "run this cell again" in message and "no restart is needed" in message
    assert "pip install -e" not in message  # an editable install needs a restart: never advised
    assert colab.commands == [] and colab.fetched == []


def test_a_failing_pip_stops_the_cell_and_its_output_stays_shown(colab):
    colab.returncode = 1
    printed = io.StringIO()
    with pytest.raises(RuntimeError, match=r"pip install failed \(exit status 1\)"):
        with contextlib.redirect_stdout(printed):
            exec(compile(sync_notebooks.setup_cell_source(URL), "<setup cell>", "exec"), {})
    assert "Collecting busutils" in printed.getvalue() and colab.fetched == []


def test_a_failing_download_is_raised_not_swallowed(colab, monkeypatch):
    from busutils import download

    def fail(name):
        raise download.DownloadError("No source of 'busi' gave verified data; tried, in order: ...")

    monkeypatch.setattr(download, "fetch_dataset", fail)
    with pytest.raises(download.DownloadError, match="tried, in order"):
        _run_cell(sync_notebooks.setup_cell_source(URL))
    assert "BUSI_DIR" not in os.environ


def test_the_setup_cell_fits_the_books_line_length():
    assert max(len(line) for line in sync_notebooks.setup_cell_source(URL).splitlines()) <= 88


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


def test_the_setup_cell_differs_only_in_the_address():
    with_url = sync_notebooks.setup_cell_source(URL).splitlines()
    without = sync_notebooks.setup_cell_source("").splitlines()
    differ = [(a, b) for a, b in zip(with_url, without) if a != b]
    assert len(with_url) == len(without) and differ == [
        (f'    REPOSITORY = "{URL}"', '    REPOSITORY = ""')]


@pytest.mark.parametrize("path", book_sources.toc_notebooks(ROOT), ids=lambda p: p.stem)
def test_every_notebook_in_the_toc_starts_with_the_setup_cell(path):
    url = book_sources.repository_url(book_sources.read_config(ROOT))
    notebook = nbformat.read(path, as_version=4)
    first = sync_notebooks.first_code_cell(notebook)
    parameters = next(i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", []))
    assert sync_notebooks.in_sync(notebook, url), f"run `make sync`: {path.name}'s first code cell is not the set-up cell"
    assert first < parameters
