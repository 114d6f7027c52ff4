"""Write the student edition of every exercise in book/exercises: no solutions, no outputs.

An exercise notebook holds its solution between a ``{solution-start}`` and a ``{solution-end}``
markdown cell, in cells tagged ``solution``; the book shows it folded, and executes it like any
chapter.  The student edition drops those cells and markers, clears every output and execution
count, and keeps none of the cell or notebook metadata (tags, papermill's records, widget state)
that could give a solution away.  Markdown that only Jupyter Book renders ({exercise},
admonitions, {include}, roles such as {doc}) becomes plain Markdown, so that the handout reads
well in Jupyter or Colab.  Each notebook goes to _build/exercises/, and all of them into one zip.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat

from book_sources import ROOT

SOLUTION_TAG = "solution"
KEPT_METADATA = ("kernelspec", "language_info")
ADMONITIONS = {"admonition", "attention", "caution", "danger", "error", "hint", "important",
               "note", "seealso", "tip", "warning"}
# A fenced MyST directive: ```{name} argument, option lines, body, closing fence.
DIRECTIVE = re.compile(r"^(?P<fence>`{3,}|:{3,})\{(?P<name>[\w-]+)\}[ \t]*(?P<argument>[^\n]*)\n"
                       r"(?P<body>.*?)^(?P=fence)[ \t]*$\n?", re.MULTILINE | re.DOTALL)
OPTION = re.compile(r"^:[\w-]+:.*$")
ROLE = re.compile(r"\{(?P<role>[\w:-]+)\}`(?P<text>[^`]*)`")


def _title_of(target: str, base: Path) -> str | None:
    """The first-level heading of the book page a {doc} role points at, if it can be found."""
    for suffix in (".ipynb", ".md"):
        path = base / f"{target}{suffix}"
        if not path.is_file():
            continue
        if suffix == ".ipynb":
            text = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells
                             if c.cell_type == "markdown")
        else:
            text = path.read_text()
        heading = re.search(r"^# (.+)$", text, re.MULTILINE)
        return heading.group(1).strip() if heading else None
    return None


def _role(match: re.Match, base: Path) -> str:
    role, text = match.group("role"), match.group("text")
    explicit = re.fullmatch(r"(?P<label>.+?)\s*<(?P<target>[^>]+)>", text, re.DOTALL)
    if explicit:
        return explicit.group("label")
    if role == "doc":
        title = _title_of(text, base)
        return f"*{title}*" if title else text
    return text


def _directive(match: re.Match, base: Path) -> str:
    name, argument = match.group("name"), match.group("argument").strip()
    if name == "include":
        return plain_markdown((base / argument).read_text(), (base / argument).parent) + "\n"
    if name in ("solution", "solution-start", "solution-end"):
        return ""
    if name != "exercise" and name not in ADMONITIONS:
        return match.group(0)
    body = match.group("body").splitlines()
    while body and OPTION.match(body[0].strip()):
        body.pop(0)
    text = plain_markdown("\n".join(body).strip(), base)
    if name == "exercise":
        title = f"Exercise: {argument}" if argument else "Exercise"
    else:
        title = argument if name == "admonition" and argument else name.capitalize()
    lines = [f"**{title}**", ""] + text.splitlines()
    return "\n".join(f"> {line}".rstrip() for line in lines) + "\n"


def plain_markdown(source: str, base: Path) -> str:
    """MyST Markdown as plain Markdown: directives as quotes, includes inlined, roles as text.

    ``base`` is the folder of the notebook, against which includes and {doc} targets resolve.
    Directives other than {exercise}, {include} and the admonitions are left as they are.
    """
    text = DIRECTIVE.sub(lambda m: _directive(m, base), source)
    text = re.sub(r"\n{3,}", "\n\n", text)  # where a dropped directive left a gap
    return ROLE.sub(lambda m: _role(m, base), text).rstrip("\n")


def _is_marker(cell: nbformat.NotebookNode, name: str) -> bool:
    if cell.cell_type != "markdown" or f"{{{name}}}" not in cell.source:
        return False
    match = DIRECTIVE.fullmatch(cell.source.strip() + "\n")
    if not match or match.group("name") != name:
        raise ValueError(f"a {{{name}}} marker must be alone in its markdown cell; found:\n{cell.source}")
    return True


def student_notebook(notebook: nbformat.NotebookNode, base: Path) -> nbformat.NotebookNode:
    """The student edition of an exercise notebook whose folder is ``base`` (see the module doc)."""
    cells = []
    inside = False
    for cell in notebook.cells:
        if _is_marker(cell, "solution-start"):
            if inside:
                raise ValueError("a {solution-start} comes before the previous one's {solution-end}")
            inside = True
        elif _is_marker(cell, "solution-end"):
            if not inside:
                raise ValueError("a {solution-end} has no {solution-start} before it")
            inside = False
        elif not inside and SOLUTION_TAG not in cell.metadata.get("tags", []):
            if cell.cell_type == "code":
                kept = nbformat.v4.new_code_cell(cell.source)
            elif cell.cell_type == "markdown":
                kept = nbformat.v4.new_markdown_cell(plain_markdown(cell.source, base))
            else:
                kept = nbformat.v4.new_raw_cell(cell.source)
            if "id" in cell:
                kept.id = cell.id
            cells.append(kept)
    if inside:
        raise ValueError("a {solution-start} has no {solution-end} after it")
    student = nbformat.v4.new_notebook(cells=cells)
    student.metadata = {key: notebook.metadata[key] for key in KEPT_METADATA if key in notebook.metadata}
    nbformat.validate(student)
    return student


def exercise_notebooks(root: Path = ROOT) -> list[Path]:
    """Every exercise notebook of the book, by name."""
    return sorted(p for p in (root / "book" / "exercises").glob("*.ipynb"))


def make_exercises(root: Path, out: Path) -> tuple[list[Path], Path]:
    """Write the student editions of ``root``'s exercises into a fresh ``out``, and a zip of them."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    written = []
    for path in exercise_notebooks(root):
        student = student_notebook(nbformat.read(path, as_version=4), path.parent)
        target = out / path.name
        nbformat.write(student, target)
        written.append(target)
    archive = out / "exercises.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for target in written:
            bundle.write(target, f"exercises/{target.name}")
    return written, archive


def add_wheel(root: Path, out: Path, archive: Path) -> Path:
    """Build busutils' wheel into ``out`` and add it to ``archive`` beside the notebooks.

    The set-up cell installs a ``busutils-*.whl`` that sits beside the notebook before it tries
    the network, so a bundle works even while the book has no public address.  Built without
    build isolation, from the setuptools already installed: no network is needed.
    """
    for old in out.glob("busutils-*.whl"):
        old.unlink()
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(out), str(root)], check=True)
    wheel, = out.glob("busutils-*.whl")
    with zipfile.ZipFile(archive, "a", compression=zipfile.ZIP_DEFLATED) as bundle:
        bundle.write(wheel, f"exercises/{wheel.name}")
    return wheel


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "exercises",
                        help="where to write the student notebooks and the zip")
    args = parser.parse_args(argv)
    written, archive = make_exercises(ROOT, args.out)
    wheel = add_wheel(ROOT, args.out, archive)
    print(f"{len(written)} student notebook(s) in {args.out}:")
    for path in written:
        print(f"  {path.name}")
    print(f"busutils for them, installed by their set-up cell: {wheel.name}")
    print(f"all of them in one zip: {archive}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
