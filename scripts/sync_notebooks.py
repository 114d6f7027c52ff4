"""Write the one canonical set-up cell into every notebook of the book.

The first code cell of every chapter and exercise makes the notebook self-sufficient on
Google Colab: it installs busutils from the book's repository (the ``repository: url:`` of
_config.yml) and fetches BUSI.  Everywhere else it does nothing.  This script writes that
cell, so that every notebook carries the same one; run it again after changing the address
(``make sync``), and ``--check`` to list the notebooks whose cell differs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

from book_sources import ROOT, read_config, repository_url, toc_notebooks

MARKER = "# Set-up for Google Colab"
TAGS = ["hide-input"]
CELL_ID = "colab-setup"

_HEAD = f'''{MARKER}: install busutils, fetch BUSI. Elsewhere: nothing.
# Written by scripts/sync_notebooks.py: edit the script, not this cell.
import sys

if "google.colab" in sys.modules:
    import importlib.util
    import os
    import subprocess

    def run_python(*args):
        """Run `python -m ARGS`; return its output, raise its errors."""
        command = [sys.executable, "-m", *args]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(done.stderr)
        return done.stdout

    if importlib.util.find_spec("busutils") is None:
'''

_INSTALL = '''        # Colab's TensorFlow and Keras stay: busutils asks for ranges, not pins.
        package = "busutils @ git+{url}"
        run_python("pip", "install", "--quiet", package)
        importlib.invalidate_caches()
'''

_NO_ADDRESS = '''        raise RuntimeError(
            "This book has no public address yet, so busutils cannot be "
            "installed from it. Clone or upload the book's repository into "
            "this session, run `pip install -e <the clone>`, then run this "
            "notebook again."
        )
'''

_TAIL = '''    if not os.environ.get("BUSI_DIR"):
        print("Fetching BUSI (its checksum is checked) ...")
        printed = run_python("busutils", "fetch", "busi")
        os.environ["BUSI_DIR"] = printed.splitlines()[-1]
    print("BUSI_DIR =", os.environ["BUSI_DIR"])'''


def setup_cell_source(url: str) -> str:
    """The set-up cell's code for a book whose repository is at ``url`` ("" while it has none)."""
    return _HEAD + (_INSTALL.format(url=url) if url else _NO_ADDRESS) + _TAIL


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
