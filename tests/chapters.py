"""Running the book's chapters in tests: a copy of the book, one chapter executed by papermill on
the phantom, and what it showed (its printed text and HTML, its figures)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def copy_of_the_book(folder: Path) -> Path:
    """The book's chapters copied into ``folder``, so that their runs and results land there."""
    shutil.copytree(ROOT / "book", folder / "book")
    return folder / "book"


#: Seconds a cell of a chapter run by a test may take (the slowest take about a minute here) before
#: the chapter is executed once more, as the book's build does: nbclient can, at random, never see
#: the end of a cell that shows an ipywidget (chapter 09's slider hung a CI run's tests that way).
CELL_TIMEOUT = 600


def run_chapter(book: Path, name: str, monkeypatch, **parameters) -> dict:
    """Execute ``book/<name>.ipynb`` in place, without BUSI (the phantom) and with the profile
    ``quick`` unless ``parameters`` say otherwise; the executed notebook, as JSON."""
    from execute_book import execute_in_place  # papermill: the book's environment has it, Colab's not

    monkeypatch.delenv("BUSI_DIR", raising=False)
    monkeypatch.delenv("MPLBACKEND", raising=False)
    path = book / f"{name}.ipynb"
    execute_in_place(path, {"profile": "quick", **parameters}, timeout=CELL_TIMEOUT, name=f"book/{name}")
    return json.loads(path.read_text())


def outputs(notebook: dict) -> str:
    """Everything the notebook printed or showed as HTML, one output a line.  What a cell prints
    to one stream is one output, as the book shows it (``nb_merge_streams``): the kernel may
    send a single print in two messages, split anywhere."""
    texts = []
    for cell in notebook["cells"]:
        stream = None  # the stream of the cell's last output, when it was one
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                text = "".join(output.get("text", ""))
                if output.get("name") == stream:
                    texts[-1] += text
                else:
                    texts.append(text)
                stream = output.get("name")
            else:
                texts.append("".join(output.get("text", "")))
                texts.append("".join(output.get("data", {}).get("text/html", "")))
                stream = None
    return "\n".join(texts)


def figures(notebook: dict) -> int:
    """How many figures (PNG outputs) the notebook shows."""
    return sum("image/png" in o.get("data", {}) for c in notebook["cells"] for o in c.get("outputs", []))
