"""Write the one canonical set-up cell into every notebook of the book.

The first code cell of every chapter and exercise makes the notebook self-sufficient on
Google Colab, and does nothing anywhere else.  On Colab it installs busutils into the running
kernel (no restart needed), from the first of:

1. a ``busutils-*.whl`` beside the notebook (an instructor's bundle, ``make exercises``), tried
   before the network;
2. the book's public repository (``repository: url:`` in _config.yml), at the tag ``v<version>``
   of pyproject.toml, so a notebook always gets the busutils it was written for;

and otherwise stops with a message that says exactly what to do.  Then it fetches BUSI (each
source verified, with a progress bar) unless ``BUSI_DIR`` is set.  pip's output is streamed as
it comes, every error is raised, and running the cell again changes nothing.

This script writes that cell, so that every notebook carries the same one: run it after
changing the address or the version (``make sync``), and ``--check`` to list the notebooks
whose cell differs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

from book_sources import ROOT, project_version, read_config, repository_url, toc_notebooks

MARKER = "# Set-up for Google Colab"
TAGS = ["hide-input"]
CELL_ID = "colab-setup"

_CELL = f'''{MARKER}: install busutils, fetch BUSI. Elsewhere: nothing.
# Written by scripts/sync_notebooks.py (`make sync`): edit the script, not this cell.
import sys

if "google.colab" in sys.modules:
    import importlib
    import importlib.util
    import os
    import subprocess
    from pathlib import Path

    # The book's public repository ("": none yet) and the tag of busutils it installs.
    REPOSITORY = "{{url}}"
    VERSION = "{{version}}"

    def pip_install(*args):
        """pip install into this kernel's Python, its output shown as it comes."""
        command = [sys.executable, "-m", "pip", "install", *args]
        print("$", " ".join(command), flush=True)
        pip = subprocess.Popen(command, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
        for line in pip.stdout:
            print(line, end="", flush=True)
        if pip.wait():
            raise RuntimeError(f"pip install failed (exit status {{{{pip.returncode}}}}); "
                               "its output above says why")
        importlib.invalidate_caches()

    if importlib.util.find_spec("busutils") is None:
        wheels = sorted(Path.cwd().glob("busutils-*.whl"))
        if wheels:  # an instructor's bundle: its wheel, before the network
            pip_install(str(wheels[-1]))
        elif REPOSITORY:  # Colab's TensorFlow and Keras stay: busutils asks for ranges
            pip_install(f"busutils @ git+{{{{REPOSITORY}}}}@v{{{{VERSION}}}}")
        else:
            raise RuntimeError(
                "busutils is not installed and this notebook cannot install it: there "
                f"is no busutils-*.whl in {{{{Path.cwd()}}}}, and this copy of the book "
                "names no public repository. Upload the busutils-...whl file that came "
                "with this notebook (in the same zip) into that folder (on Colab: the "
                "folder icon on the left, then Upload), then run this cell again; no "
                "restart is needed. Without the file, ask whoever gave you the notebook"
            )
    if not os.environ.get("BUSI_DIR"):
        from busutils.download import fetch_dataset

        print("Fetching BUSI (each source is verified before use) ...", flush=True)
        os.environ["BUSI_DIR"] = str(fetch_dataset("busi"))
    print("BUSI_DIR =", os.environ["BUSI_DIR"])'''


def setup_cell_source(url: str, version: str | None = None) -> str:
    """The set-up cell's code for a book at ``url`` ("" while it has none) and busutils ``version``.

    ``version`` defaults to pyproject.toml's.
    """
    if '"' in url or "\\" in url:
        raise ValueError(f"repository url {url!r} must not contain quotes or backslashes")
    return _CELL.format(url=url, version=version or project_version(ROOT))


def setup_cell(url: str) -> nbformat.NotebookNode:
    """The set-up cell itself: its code, folded in the HTML book by the ``hide-input`` tag."""
    cell = nbformat.v4.new_code_cell(setup_cell_source(url), metadata={"tags": list(TAGS)})
    cell.id = CELL_ID
    return cell


def first_code_cell(notebook: nbformat.NotebookNode) -> int | None:
    """Index of the notebook's first code cell, or None."""
    return next((i for i, c in enumerate(notebook.cells) if c.cell_type == "code"), None)


def in_sync(notebook: nbformat.NotebookNode, url: str) -> bool:
    """True when the notebook's first code cell is the set-up cell for ``url``, tags included."""
    index = first_code_cell(notebook)
    if index is None:
        return False
    cell = notebook.cells[index]
    tags = cell.metadata.get("tags", [])
    return cell.source == setup_cell_source(url) and all(t in tags for t in TAGS)


def sync_notebook(path: Path, url: str) -> bool:
    """Make the first code cell of the notebook at ``path`` the set-up cell; True if it changed.

    An existing set-up cell (recognised by its first line) is rewritten in place, keeping its
    other tags; otherwise the cell is inserted before the first code cell.
    """
    notebook = nbformat.read(path, as_version=4)
    if in_sync(notebook, url):
        return False
    index = first_code_cell(notebook)
    if index is not None and notebook.cells[index].source.startswith(MARKER):
        cell = notebook.cells[index]
        cell.source = setup_cell_source(url)
        tags = cell.metadata.setdefault("tags", [])
        tags.extend(t for t in TAGS if t not in tags)
    else:
        cell = setup_cell(url)
        if any(c.get("id") == CELL_ID for c in notebook.cells):
            cell.id = nbformat.v4.new_code_cell().id
        notebook.cells.insert(len(notebook.cells) if index is None else index, cell)
    nbformat.write(notebook, path)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="notebooks to sync (default: every notebook listed in _toc.yml)")
    parser.add_argument("--check", action="store_true",
                        help="change nothing; list the notebooks whose set-up cell differs, exit 1 if any")
    args = parser.parse_args(argv)

    url = repository_url(read_config(ROOT))
    paths = args.notebooks or toc_notebooks(ROOT)
    if args.check:
        stale = [p for p in paths if not in_sync(nbformat.read(p, as_version=4), url)]
        for path in stale:
            print(f"{path}: the first code cell is not the set-up cell; run `make sync`")
        return 1 if stale else 0
    changed = [p for p in paths if sync_notebook(p, url)]
    print(f"set-up cell for {url or 'a book without a public address'}: "
          f"{len(changed)} of {len(paths)} notebook(s) changed")
    for path in changed:
        print(f"  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
