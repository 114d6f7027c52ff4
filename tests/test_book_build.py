"""A Jupyter Book build of the book's own sources, with a repository address set (nothing executed).

It checks what only the rendered HTML can show: Colab links that point at the notebooks' real
paths in the repository, the set-up cell folded, exercise solutions in a dropdown.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import bs4  # comes with jupyter-book's theme
import pytest
import yaml

import book_sources
import execute_book

ROOT = Path(__file__).resolve().parents[1]
URL = "https://github.com/example/bus-book"


@pytest.fixture(scope="module")
def html(tmp_path_factory) -> Path:
    """The HTML book built from a copy of the sources whose _config.yml names URL."""
    tmp = tmp_path_factory.mktemp("book")
    repo = tmp / "repo"
    shutil.copytree(ROOT / "book", repo / "book", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    shutil.copy2(ROOT / "_toc.yml", repo / "_toc.yml")
    config = book_sources.read_config(ROOT)
    config["repository"]["url"] = URL
    (repo / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    src = tmp / "src"
    execute_book.prepare_sources(repo, src)
    build = subprocess.run(
        [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", str(src),
         "--path-output", str(tmp), "--keep-going"],
        capture_output=True, text=True)
    log = re.sub(r"\x1b\[[0-9;]*m", "", build.stdout + build.stderr)
    assert build.returncode == 0, log[-3000:]
    # Nothing was executed, so the figures (cell outputs) and their labels are missing: references
    # to them are the only warnings allowed, and only to labels the notebooks really define.
    warnings = re.findall(r"WARNING: (.*)", log)
    unexplained = [w for w in warnings if not (w.startswith("undefined label: ") and
                                               w.split("'")[1] in _figure_names())]
    assert unexplained == [], "\n".join(unexplained)
    return tmp / "_build" / "html"


def _figure_names() -> set[str]:
    """The names given to figures in the notebooks' cell metadata (``mystnb.figure.name``)."""
    import nbformat

    names = set()
    for path in (ROOT / "book").rglob("*.ipynb"):
        for cell in nbformat.read(path, as_version=4).cells:
            name = cell.metadata.get("mystnb", {}).get("figure", {}).get("name")
            if name:
                names.add(name)
    return names


@pytest.mark.slow
def test_each_notebook_page_links_to_its_own_notebook_on_colab(html):
    notebooks = book_sources.toc_notebooks(ROOT)
    assert len(notebooks) >= 5
    for path in notebooks:
        relative = path.relative_to(ROOT).as_posix()
        page = (html / relative).with_suffix(".html").read_text()
        links = set(re.findall(r'href="(https://colab\.research\.google\.com/[^"]+)"', page))
        assert links == {f"https://colab.research.google.com/github/example/bus-book/blob/main/{relative}"}
    assert "colab.research.google.com" not in (html / "book" / "intro.html").read_text()


@pytest.mark.slow
def test_the_exercise_page_folds_the_setup_cell_and_the_solution(html):
    page = bs4.BeautifulSoup((html / "book" / "exercises" / "01_audit_your_folder.html").read_text(), "html.parser")
    setup = page.select("div.cell.tag_hide-input")
    assert len(setup) == 1 and "Set-up for Google Colab" in setup[0].get_text()
    solution = page.select_one("div.solution.dropdown")
    assert solution is not None and len(solution.select("div.cell.tag_solution")) == 3
    assert not [cell for cell in page.select("div.cell.tag_solution") if solution not in cell.parents]
    assert page.find("script", src=re.compile("togglebutton"))
    assert "Not for clinical use" in page.get_text()
    assert re.search(r"Exercise \d+\.1 \(Break the folder, then read the audit\)", page.get_text())


@pytest.mark.slow
def test_pages_carry_the_stylesheet_that_wraps_long_code_lines(html):
    page = (html / "book" / "01_data_tour.html").read_text()
    assert "_static/code.css" in page
    assert "white-space: pre-wrap" in (html / "_static" / "code.css").read_text()
