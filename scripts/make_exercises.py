"""Write the student edition of every exercise in book/exercises: no solutions, no outputs.

An exercise notebook holds its solution between a ``{solution-start}`` and a ``{solution-end}``
markdown cell, in cells tagged ``solution``; the book shows it folded, and executes it like any
chapter.  The student edition drops those cells and markers, clears every output and execution
count, and keeps none of the cell or notebook metadata (tags, papermill's records, widget state)
that could give a solution away.  Markdown that only Jupyter Book renders ({exercise},
admonitions, {include}, roles such as {doc}) becomes plain Markdown, so that the handout reads
well in Jupyter or Colab.  Each notebook goes to _build/exercises/, and all of them into one zip.

The instructor's guide goes elsewhere, to _build/instructor/guide.md, never into the students'
folder or zip: for each exercise its goals, difficulty and time (read from the notebook), a
rubric, the expected answers, and the values a correct solution gives on BUSI and on the
phantom (from instructor/guide.yml; the tests check the phantom's against the solutions).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import yaml

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


GUIDE_SOURCE = Path("instructor") / "guide.yml"
GUIDE_HEADING = re.compile(r"^# (.+)$", re.MULTILINE)
GUIDE_META = re.compile(r"\*\*Difficulty\*\*:.*?(?=\*\*Needs\*\*|\n\s*\n|$)", re.DOTALL)


def read_guide(root: Path = ROOT) -> dict:
    """instructor/guide.yml: per exercise, the rubric, the answers and the expected values."""
    guide = yaml.safe_load((root / GUIDE_SOURCE).read_text())
    names = [p.stem for p in exercise_notebooks(root)]
    if sorted(guide.get("exercises", {})) != sorted(names):
        raise ValueError(f"{GUIDE_SOURCE} must have one entry per exercise: {names}, "
                         f"it has {sorted(guide.get('exercises', {}))}")
    return guide


def _objectives(notebook: nbformat.NotebookNode) -> list[str]:
    """The 'What you will learn' list of an exercise's title cell."""
    text = notebook.cells[0].source
    part = text.split("**What you will learn**", 1)[-1]
    items, current = [], None
    for line in part.splitlines():
        if line.startswith("- "):
            current = line[2:].strip()
            items.append(current)
        elif line.startswith("  ") and current is not None:
            items[-1] += " " + line.strip()
        elif line.strip() and items:
            break
    return items


def _shown(value) -> str:
    """An expected value as the guide prints it: a range, an exact value, or words."""
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
        return f"{value[0]:g} to {value[1]:g}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    return str(value)


def guide_markdown(root: Path = ROOT) -> str:
    """The instructor's guide as Markdown (see the module docstring)."""
    guide = read_guide(root)
    lines = ["# The exercises: an instructor's guide", "", guide["intro"].strip(), ""]
    for path in exercise_notebooks(root):
        entry = guide["exercises"][path.stem]
        notebook = nbformat.read(path, as_version=4)
        title = GUIDE_HEADING.search(notebook.cells[0].source).group(1).strip()
        meta = GUIDE_META.search(notebook.cells[0].source)
        lines += [f"## {path.stem}: {title}", ""]
        if meta:
            lines += [plain_markdown(" ".join(meta.group(0).split()), path.parent), ""]
        lines += ["**Goals** (the exercise's own list, *What you will learn*):", ""]
        lines += [f"- {plain_markdown(item, path.parent)}" for item in _objectives(notebook)] + [""]
        lines += ["**Rubric** (points per part):", "", "| part | points | full marks for |", "|---|---|---|"]
        lines += [f"| {r['part']} | {r['points']} | {r['criterion']} |" for r in entry["rubric"]]
        total = sum(r["points"] for r in entry["rubric"])
        lines += [f"| total | {total} | |", "", "**Expected answers.**", ""]
        lines += [f"- *{a['part']}* {a['answer'].strip()}" for a in entry["answers"]] + [""]
        if entry.get("expected"):
            lines += ["**What a correct solution gives** (the self-check's values; the phantom's are checked "
                      "by the book's tests, BUSI's measured as said at the top):", "",
                      "| quantity | on BUSI | on the phantom (tests) |", "|---|---|---|"]
            lines += [f"| {e['what']} | {_shown(e.get('busi', '-'))} | {_shown(e.get('phantom', '-'))} |"
                      for e in entry["expected"]]
            lines.append("")
        if entry.get("notes"):
            lines += [f"**Notes.** {entry['notes'].strip()}", ""]
    return "\n".join(lines).rstrip() + "\n"


def write_instructor_guide(root: Path, out: Path) -> Path:
    """Write the instructor's guide to ``out`` (a fresh folder, never the students' one)."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    target = out / "guide.md"
    target.write_text(guide_markdown(root))
    (out / "expected.json").write_text(json.dumps(
        {name: entry.get("expected", []) for name, entry in read_guide(root)["exercises"].items()}, indent=1))
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "exercises",
                        help="where to write the student notebooks and the zip")
    parser.add_argument("--guide-out", type=Path, default=ROOT / "_build" / "instructor",
                        help="where to write the instructor's guide (kept apart from the students' folder)")
    args = parser.parse_args(argv)
    if args.guide_out.resolve() == args.out.resolve() or args.out.resolve() in args.guide_out.resolve().parents:
        parser.error("--guide-out must lie outside --out: the guide never goes to students")
    written, archive = make_exercises(ROOT, args.out)
    wheel = add_wheel(ROOT, args.out, archive)
    guide = write_instructor_guide(ROOT, args.guide_out)
    print(f"{len(written)} student notebook(s) in {args.out}:")
    for path in written:
        print(f"  {path.name}")
    print(f"busutils for them, installed by their set-up cell: {wheel.name}")
    print(f"all of them in one zip: {archive}")
    print(f"the instructor's guide, kept apart: {guide}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
