"""Check that every notebook of the book follows the chapter template (see CONTRIBUTING.md).

For each notebook listed in _toc.yml: a title cell; a "What you will learn" list before any
code; an include of the shared admonition book/_admonitions/not-clinical.md; the closing
headings "What to take away" and "What's next" (with a {doc} link, except in the last
notebook); and, on every code cell that makes a figure, myst-nb's figure caption and name and
the image's alt text in the cell metadata, one figure per such cell.  A numbered chapter ends
with "## Further reading", a list of cited references.  An exercise states its difficulty and
its time (on a CPU and on a GPU) under its title, and has a self-check cell that calls
busutils.checks outside its solution.  In every notebook and Markdown page of the toc,
citations read as sentences: {cite:t} (the authors' names in the text) where the names are part
of the sentence, {cite:p} (in parentheses) where they support it (see ``citation_problems``).
For every notebook under book/: no code line longer than 88 characters.  Prints each problem;
exits 1 if there are any.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import sys
from pathlib import Path

import nbformat

import yaml

from book_sources import ROOT, toc_files, toc_notebooks

MAX_LINE = 88
ADMONITION = Path("book/_admonitions/not-clinical.md")
CLOSING = ("What to take away", "What's next")
OBJECTIVES = re.compile(r"^(#{1,6}\s*|\*\*)What you will learn\b", re.IGNORECASE)
LIST_ITEM = re.compile(r"^\s*([-*+]|\d+[.)])\s+\S")
OPTION_LINE = re.compile(r"^:[\w-]+:")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
INCLUDE = re.compile(r"^\s*(`{3,}|:{3,})\{include\}\s+(\S+)", re.MULTILINE)
FENCE = re.compile(r"^(`{3,}|:{3,})")
FIGURE_NAME = re.compile(r"fig", re.IGNORECASE)
FURTHER_READING = "Further reading"
CITE = re.compile(r"\{cite:(?P<kind>[a-z]+)\}`(?P<keys>[^`]*)`")
#: Words after which the authors' names read as part of the sentence: "Table 1 of Hijab et al.
#: (2019)", "as Chollet (2016) showed".  After any other word (a noun: "Grad-CAM Selvaraju et
#: al. (2017) looks...") the names interrupt the sentence, and {cite:p} reads right.
NAME_FOLLOWS = {"of", "by", "from", "in", "and", "or", "but", "as", "than", "with", "that", "what", "see",
                "to", "for", "like", "unlike", "whereas", "while", "after", "before", "following", "where",
                "when", "which", "whom", "since", "because", "if", "then", "thus", "so", "how", "why",
                "also", "cf.", "e.g.", "i.e.", "both", "on", "per"}
SENTENCE_START = re.compile(r"(^|[.!?:;(]|^\s*([-*+]|\d+[.)]))$")
DIFFICULTY = re.compile(r"\*\*Difficulty\*\*:\s*\S")
TIME = re.compile(r"\*\*Time\*\*:(?P<text>.*?)(\n\s*\n|$)", re.DOTALL)
SELF_CHECK = re.compile(r"\bchecks\.\w+\(")


def _plain(text: str) -> str:
    return text.replace("\u2019", "'").strip()


def markdown_lines(notebook: nbformat.NotebookNode) -> list[tuple[int, str, bool]]:
    """Every markdown line as (cell index, line, inside a fenced block or directive)."""
    found = []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "markdown":
            continue
        fence = None
        for line in cell.source.splitlines():
            stripped = line.strip()
            if fence:
                found.append((index, line, True))
                if stripped.startswith(fence) and not stripped.lstrip(fence[0]):
                    fence = None
                continue
            opening = FENCE.match(stripped)
            fence = opening.group(1) if opening else None
            found.append((index, line, bool(fence)))
    return found


def headings(lines: list[tuple[int, str, bool]]) -> list[tuple[int, int, str]]:
    """The headings among markdown ``lines``, as (position in lines, level, text)."""
    return [(position, len(match.group(1)), _plain(match.group(2)))
            for position, (_, line, fenced) in enumerate(lines)
            if not fenced and (match := HEADING.match(line))]


def _python(source: str) -> ast.Module | None:
    """The cell's code as a syntax tree (IPython magics turned into Python), or None."""
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        return ast.parse(TransformerManager().transform_cell(source))
    except SyntaxError:
        return None


def _is_figure_expression(node: ast.AST) -> bool:
    name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")
    return bool(FIGURE_NAME.search(name))


def figures_made(cell: nbformat.NotebookNode) -> int:
    """How many figures a code cell shows: image outputs if executed, else calls to plt.show(),
    display(fig), or a figure as the cell's last expression."""
    images = sum(any(k.startswith("image/") for k in o.get("data", {})) for o in cell.get("outputs", []))
    tree = _python(cell.source)
    shown = 0
    if tree is not None:
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if (isinstance(func, ast.Attribute) and func.attr == "show"
                    and isinstance(func.value, ast.Name) and func.value.id in ("plt", "pyplot")):
                shown += 1
            elif (isinstance(func, ast.Name) and func.id == "display"
                  and any(_is_figure_expression(a) for a in node.args)):
                shown += 1
        last = tree.body[-1] if tree.body else None
        if isinstance(last, ast.Expr) and _is_figure_expression(last.value):
            shown += 1
    return max(images, shown)


def figure_problems(cell: nbformat.NotebookNode) -> list[str]:
    """What a figure cell lacks for a numbered caption and alt text (empty if all is there)."""
    count = figures_made(cell)
    if not count:
        return []
    mystnb = cell.metadata.get("mystnb", {})
    figure, image = mystnb.get("figure", {}), mystnb.get("image", {})
    missing = [key for key, value in (("figure.caption", figure.get("caption")),
                                      ("figure.name", figure.get("name")),
                                      ("image.alt", image.get("alt")))
               if not (isinstance(value, str) and value.strip())]
    problems = [f"lacks mystnb {', '.join(missing)} in its metadata"] if missing else []
    if count > 1:
        problems.append(f"makes {count} figures, but one caption and name fit one figure: split the cell")
    return problems


def long_code_lines(notebook: nbformat.NotebookNode, limit: int = MAX_LINE) -> list[tuple[int, int, int]]:
    """Code lines longer than ``limit`` characters, as (cell index, line number, length)."""
    return [(index, number, len(line))
            for index, cell in enumerate(notebook.cells) if cell.cell_type == "code"
            for number, line in enumerate(cell.source.splitlines(), start=1) if len(line) > limit]


def section(lines: list[tuple[int, str, bool]], title: str) -> str:
    """The markdown under the level-2 heading ``title``, up to the next heading of level 1 or 2."""
    marks = headings(lines)
    start = next(position for position, level, text in marks if level == 2 and text == title)
    end = next((position for position, level, _ in marks if position > start and level <= 2), len(lines))
    return "\n".join(line for _, line, _ in lines[start:end])


def _paragraphs(text: str) -> list[str]:
    """The prose of Markdown ``text`` (fenced code left out, directive bodies kept), one string per
    paragraph or list item, whitespace collapsed."""
    paragraphs, current, fence = [], [], None

    def flush():
        if current:
            paragraphs.append(" ".join(current))
        current.clear()

    for line in text.splitlines():
        stripped = line.strip()
        if fence:
            if stripped.startswith(fence) and not stripped.lstrip(fence[0]):
                fence = None
            continue
        opening = FENCE.match(stripped)
        if opening and not stripped[len(opening.group(1)):].startswith("{"):
            flush()
            fence = opening.group(1)  # a code block: not prose
        elif opening or OPTION_LINE.match(stripped) or not stripped:
            flush()  # a directive's fence or option line, or a blank line, ends the paragraph
        else:
            if LIST_ITEM.match(line):
                flush()
            current.append(stripped)
    flush()
    return paragraphs


def citation_problems(text: str) -> list[str]:
    """Citations in Markdown ``text`` whose form does not fit the sentence around them.

    The rule, checkable without parsing English: ``{cite:t}`` (authors' names in the text, the
    year in parentheses) must open a sentence, a clause or a list item, or follow a word after
    which a name can stand (``of``, ``by``, ``and``, ``as``... :data:`NAME_FOLLOWS`); after a
    noun it interrupts the sentence, and ``{cite:p}`` is meant.  ``{cite:p}`` (names and year
    in parentheses) must not open a sentence, where it would have to be its subject.
    """
    problems = []
    for paragraph in _paragraphs(text):
        for match in CITE.finditer(paragraph):
            before = re.sub(r"[*_`]+$", "", paragraph[:match.start()].rstrip()).rstrip()
            at_start = bool(SENTENCE_START.search(before))
            word = before.split()[-1].strip("*_`(\"'").lower() if before.split() else ""
            role = match.group(0)
            if match.group("kind") == "t" and not at_start and word not in NAME_FOLLOWS:
                problems.append(f"{role} follows {word!r}: the names interrupt the sentence there; "
                                "write {cite:p} after a noun, {cite:t} where the names are the subject")
            elif match.group("kind") == "p" and at_start:
                problems.append(f"{role} opens a sentence, as its subject: write {{cite:t}} there")
    return problems


def _solution_ranges(cells: list) -> set[int]:
    """Indexes of the cells between a {solution-start} and a {solution-end} marker, markers included."""
    inside, found = False, set()
    for index, cell in enumerate(cells):
        if cell.cell_type == "markdown" and "{solution-start}" in cell.source:
            inside = True
        if inside:
            found.add(index)
        if cell.cell_type == "markdown" and "{solution-end}" in cell.source:
            inside = False
    return found


def exercise_problems(notebook: nbformat.NotebookNode) -> list[str]:
    """What an exercise lacks of the instructor's layer: its difficulty, its time on a CPU and a
    GPU under the title, and a self-check cell (a call of busutils.checks) outside its solution."""
    cells = notebook.cells
    title = cells[0].source if cells and cells[0].cell_type == "markdown" else ""
    problems = []
    if not DIFFICULTY.search(title):
        problems.append("no '**Difficulty**:' under the title")
    time = TIME.search(title)
    if not time or "CPU" not in time.group("text") or "GPU" not in time.group("text"):
        problems.append("no '**Time**:' under the title giving the time on a CPU and on a GPU")
    solution = _solution_ranges(cells)
    checks = [i for i, c in enumerate(cells) if c.cell_type == "code" and i not in solution
              and "solution" not in c.metadata.get("tags", []) and SELF_CHECK.search(c.source)]
    if not checks:
        problems.append("no self-check cell (a call of busutils.checks) outside the solution")
    return problems


def template_problems(path: Path, root: Path, *, last: bool = False) -> list[str]:
    """How the notebook at ``path`` departs from the chapter template (empty if it follows it)."""
    notebook = nbformat.read(path, as_version=4)
    cells = notebook.cells
    lines = markdown_lines(notebook)
    marks = headings(lines)
    problems = []
    if not cells or cells[0].cell_type != "markdown" or not marks or lines[marks[0][0]][0] != 0 or marks[0][1] != 1:
        problems.append("the first cell is not a title cell (a markdown cell starting with '# Title')")

    first_code = next((i for i, c in enumerate(cells) if c.cell_type == "code"), len(cells))
    intro = [line for index, line, _ in lines if index < first_code and line.strip()]
    start = next((i for i, line in enumerate(intro) if OBJECTIVES.match(line.strip())), None)
    if start is None or start + 1 >= len(intro) or not LIST_ITEM.match(intro[start + 1]):
        problems.append("no 'What you will learn' list before the first code cell")

    admonition = (root / ADMONITION).resolve()
    included = {(path.parent / m.group(2)).resolve() for c in cells if c.cell_type == "markdown"
                for m in INCLUDE.finditer(c.source)}
    if admonition not in included:
        relative = Path(os.path.relpath(admonition, path.parent.resolve())).as_posix()
        problems.append(f"no include of the shared admonition (write: ```{{include}} {relative})")

    level2 = [text for _, level, text in marks if level == 2]
    missing = [title for title in CLOSING if title not in level2]
    if missing:
        problems.append(f"missing closing heading(s): {', '.join('## ' + t for t in missing)}")
    elif level2.index(CLOSING[0]) > level2.index(CLOSING[1]):
        problems.append(f"'## {CLOSING[1]}' comes before '## {CLOSING[0]}'")
    elif not last and "{doc}" not in section(lines, CLOSING[1]):
        problems.append(f"'## {CLOSING[1]}' has no {{doc}} link to the next notebook")

    if path.parent.name == "book" and path.stem[:1].isdigit():  # a numbered chapter
        if not level2 or level2[-1] != FURTHER_READING:
            problems.append(f"a numbered chapter ends with '## {FURTHER_READING}'")
        elif not any(LIST_ITEM.match(line) and CITE.search(line)
                     for line in section(lines, FURTHER_READING).splitlines()):
            problems.append(f"'## {FURTHER_READING}' has no list item with a {{cite}} reference")
    if path.parent.name == "exercises":
        problems += exercise_problems(notebook)
    problems += [f"cell {index}: {p}" for index, cell in enumerate(cells) if cell.cell_type == "markdown"
                 for p in citation_problems(cell.source)]

    for index, cell in enumerate(cells):
        if cell.cell_type == "code":
            problems += [f"cell {index} makes a figure but {p}" for p in figure_problems(cell)]
    return problems


def toc_pages(root: Path = ROOT) -> list[Path]:
    """The Markdown pages listed in ``root/_toc.yml`` (the notebooks are :func:`toc_notebooks`)."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    return [root / f"{name}.md" for name in toc_files(toc) if (root / f"{name}.md").exists()]


def book_problems(root: Path = ROOT) -> dict[Path, list[str]]:
    """Template problems of every notebook in _toc.yml, citation problems of its Markdown pages and
    long code lines of every notebook in book/."""
    problems: dict[Path, list[str]] = {}
    notebooks = toc_notebooks(root)
    for path in notebooks:
        problems.setdefault(path, []).extend(template_problems(path, root, last=path == notebooks[-1]))
    for path in toc_pages(root):
        problems.setdefault(path, []).extend(citation_problems(path.read_text()))
    for path in sorted((root / "book").rglob("*.ipynb")):
        if ".ipynb_checkpoints" in path.parts:
            continue
        for index, number, length in long_code_lines(nbformat.read(path, as_version=4)):
            problems.setdefault(path, []).append(f"cell {index} line {number}: {length} characters (> {MAX_LINE})")
    return {path: found for path, found in problems.items() if found}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=ROOT,
                        help="the book's root (with _toc.yml), e.g. _build/src for the executed book")
    args = parser.parse_args(argv)
    problems = book_problems(args.root)
    for path, found in problems.items():
        print(f"{path.relative_to(args.root)}:")
        print("\n".join(f"  {p}" for p in found))
    print(f"{len(problems)} notebook(s) depart from the template" if problems else "every notebook follows the template")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
