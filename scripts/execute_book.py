"""Execute every notebook listed in _toc.yml with papermill, into _build/src, ready for jupyter-book.

The committed notebooks stay free of outputs: the book's sources (_config.yml, _toc.yml and
book/) are copied to _build/src, and each notebook is executed there in place with the named
profile's parameters.  `jupyter-book build _build/src` then renders them without re-executing.

Each executed notebook is tidied for readers: TensorFlow's start-up log lines are dropped,
papermill's injected-parameters cell is removed from the page (the ``parameters`` cell stays
as the visible list of knobs), and a sentence after the title says how long the notebook took
and on what machine.  The same measurements go to ``_build/src/run_times.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import nbformat
import papermill
import yaml

from book_sources import ROOT, read_config, repository_url, toc_notebooks

COLAB_URL = "https://colab.research.google.com"
# A hung cell fails the build after this long (papermill's execution_timeout applies to each
# cell). The profile's own `chapter_timeout` wins when it has one.
TIMEOUTS = {"quick": 30 * 60, "paper": 4 * 60 * 60}
FALLBACK_TIMEOUT = 4 * 60 * 60
RUN_TIMES = "run_times.json"
RESULTS_DIR = "results"  # under book/: the runs every chapter and exercise saves and reuses
# A notebook whose cell times out is executed once more from its source before the build fails:
# nbclient can, at random, never see the end of a cell that shows an ipywidget (an open issue,
# jupyter/nbclient#312), as chapter 09's slider did once in a CI run beside the tests.
ATTEMPTS = 2
# A cell that shows an ipywidget computes little, so it gets this many seconds, not the chapter's
# limit: when its end goes unseen, the build loses two minutes, not the half hour it lost in CI.
WIDGET_TIMEOUT = 120
WIDGET_CELL = re.compile(r"\bwidgets\.\w+\(")


def cell_timeouts(timeout: int) -> Callable[[nbformat.NotebookNode], int]:
    """nbclient's ``timeout_func``: ``timeout`` seconds for a cell, at most :data:`WIDGET_TIMEOUT`
    for one that shows an ipywidget (``widgets.<name>(`` in its source)."""
    def timeout_of(cell: nbformat.NotebookNode) -> int:
        return min(timeout, WIDGET_TIMEOUT) if WIDGET_CELL.search(cell.source) else timeout

    return timeout_of

# TensorFlow's C++ start-up log lines (CUDA probing, oneDNN notices) reach a notebook's stderr
# before any Python setting can silence them; they are noise in a rendered book.
TF_LOG_LINE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
                         r"|[IWE]\d{4} [\d:.]+\s+\d+ [\w.]+:\d+\]|To enable the following instructions)")


def strip_tf_logs(notebook: nbformat.NotebookNode) -> None:
    """Remove TensorFlow's C++ log lines from the stderr outputs of an executed notebook."""
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for output in cell.outputs:
            if output.output_type == "stream" and output.name == "stderr":
                lines = [line for line in output.text.splitlines(keepends=True) if not TF_LOG_LINE.match(line)]
                if not "".join(lines).strip():
                    continue
                output.text = "".join(lines)
            kept.append(output)
        cell.outputs = kept


def hide_injected_parameters(notebook: nbformat.NotebookNode) -> None:
    """Tag papermill's injected-parameters cell ``remove-cell``: readers see one parameters cell."""
    for cell in notebook.cells:
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")


def machine_info(profile: str = "quick") -> dict:
    """Where and how the notebooks run: the CPU, the cores this process may use, NVIDIA GPUs if
    any, the precision ``profile`` computes in here, and the oneDNN cap if one is set (a book timed
    under ``ONEDNN_MAX_CPU_ISA=AVX2`` is timed as on an older processor, in float32)."""
    from busutils.precision import choose_precision, cpu_name, onednn_cap
    from busutils.profiles import get_profile

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpus = []
    if shutil.which("nvidia-smi"):
        query = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                               capture_output=True, text=True)
        if query.returncode == 0:
            gpus = [line.strip() for line in query.stdout.splitlines() if line.strip()]
    return {"cpu": cpu_name(), "cores": cores, "gpus": gpus, "platform": platform.platform(),
            "precision": choose_precision(get_profile(profile).precision), "onednn_cap": onednn_cap()}


def format_duration(seconds: float) -> str:
    """'42 s', '3 min 5 s' or '2 h 0 min 7 s'."""
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min {secs} s"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


def run_note(seconds: float, machine: dict, profile: str, what: str = "This chapter") -> str:
    """The sentence placed under a notebook's title: how long it ran, on what, in which precision,
    with which profile."""
    from busutils.benchmark import describe_book_machine  # busutils loads Keras: only when a note is made

    return (f"{what} ran in {format_duration(seconds)} {describe_book_machine(machine)}, profile {profile}, "
            "in this build of the book.")


def insert_after_title(notebook: nbformat.NotebookNode, text: str) -> None:
    """Insert a markdown cell holding ``text`` right after the notebook's title cell."""
    title = next((i for i, c in enumerate(notebook.cells)
                  if c.cell_type == "markdown" and c.source.lstrip().startswith("# ")), -1)
    notebook.cells.insert(title + 1, nbformat.v4.new_markdown_cell(text))


def machine_paths(notebook: nbformat.NotebookNode, folders: list[Path]) -> list[str]:
    """Where the notebook's outputs show one of ``folders`` (this machine's paths): 'cell N'."""
    needles = {str(f) for f in folders} | {str(f.resolve()) for f in folders}
    needles -= {"/", ""}
    found = []
    for index, cell in enumerate(notebook.cells):
        for output in cell.get("outputs", []):
            text = output.get("text", "") + json.dumps(output.get("data", {}))
            if any(needle in text for needle in needles):
                found.append(f"cell {index}")
                break
    return found


def data_folders() -> list[Path]:
    """The folders of the data and weights this build reads (``$BUSI_DIR``, ``$VGG16_WEIGHTS``'s)."""
    folders = []
    if os.environ.get("BUSI_DIR"):
        folders.append(Path(os.environ["BUSI_DIR"]).expanduser())
    if os.environ.get("VGG16_WEIGHTS"):
        folders.append(Path(os.environ["VGG16_WEIGHTS"]).expanduser().parent)
    return folders


def finish_notebook(path: Path, machine: dict, profile: str, *, folders: list[Path] | None = None) -> float:
    """Tidy an executed notebook for readers and note its run time in it; return the seconds.

    A published page shows no path of the machine that built it: the run-time note names the
    CPU, never a folder, and every output that shows one of ``folders`` (the build's and the
    repository's) is reported on stderr, naming the notebook and the cell.
    """
    notebook = nbformat.read(path, as_version=4)
    seconds = float(notebook.metadata["papermill"]["duration"])
    strip_tf_logs(notebook)
    hide_injected_parameters(notebook)
    what = "This exercise, solution included," if "exercises" in path.parts else "This chapter"
    insert_after_title(notebook, run_note(seconds, machine, profile, what))
    for where in machine_paths(notebook, folders or []):
        print(f"warning: {path.name}, {where}: an output shows a path of this machine "
              f"({', '.join(str(f) for f in folders)}); a published page should not", file=sys.stderr)
    nbformat.write(notebook, path)
    return seconds


def book_config(config: dict) -> dict:
    """The executed book's _config.yml: Colab launch buttons when the repository has an address."""
    config = copy.deepcopy(config)
    if repository_url(config):
        repository = config["repository"]
        repository.setdefault("branch", "main")
        repository.setdefault("path_to_book", "")  # _build/src mirrors the repository's root
        config.setdefault("launch_buttons", {})["colab_url"] = COLAB_URL
    return config


def prepare_sources(root: Path, out: Path) -> None:
    """Copy the book's sources from ``root`` to a fresh ``out``, with the executed book's config."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    shutil.copy2(root / "_toc.yml", out / "_toc.yml")
    (out / "_config.yml").write_text(yaml.safe_dump(book_config(read_config(root)), sort_keys=False))
    shutil.copytree(root / "book", out / "book", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))


def chapter_timeout(profile: str) -> int:
    """Seconds a cell may run under ``profile`` before the build fails."""
    from busutils.profiles import get_profile

    settings = get_profile(profile)
    return getattr(settings, "chapter_timeout", None) or TIMEOUTS.get(settings.name, FALLBACK_TIMEOUT)


def execute_in_place(path: Path, parameters: dict, *, timeout: int, name: str, limit: str = "",
                     attempts: int = ATTEMPTS) -> None:
    """Execute the notebook ``path`` in place with papermill, in its folder, each cell given at most
    ``timeout`` seconds (a cell that shows an ipywidget at most :data:`WIDGET_TIMEOUT`).

    A cell that runs past it (nbclient can miss the end of a cell that shows an ipywidget) gets
    the notebook back as it was and executed once more, up to ``attempts`` times in all; then a
    ``TimeoutError`` names the notebook (``name``) and the limit (``limit`` says where it comes from).
    """
    original = path.read_bytes()
    limits = f"{timeout} s{limit}" + (f"; {WIDGET_TIMEOUT} s for a widget's cell" if WIDGET_TIMEOUT < timeout else "")
    for attempt in range(1, attempts + 1):
        try:
            papermill.execute_notebook(str(path), str(path), parameters=parameters, cwd=str(path.parent),
                                       kernel_name="python3", progress_bar=False, log_output=False,
                                       execution_timeout=timeout, timeout_func=cell_timeouts(timeout))
            return
        except TimeoutError as error:
            if attempt == attempts:
                raise TimeoutError(
                    f"{name}: a cell ran past its limit ({limits}), in each of {attempts} attempts; "
                    f"the partly executed notebook is {path}") from error
            print(f"  {name}: a cell ran past its limit ({limits}); executing the notebook once more",
                  flush=True)
            path.write_bytes(original)


def execute_book(root: Path, out: Path, profile: str, *, only: list[str] | None = None,
                 timeout: int | None = None) -> dict:
    """Execute the book's notebooks into ``out``; return (and write) their run times."""
    prepare_sources(root, out)
    notebooks = toc_notebooks(out)
    if only:
        notebooks = [p for p in notebooks
                     if p.stem in only or p.relative_to(out).with_suffix("").as_posix() in only]
    from busutils.benchmark import describe_book_machine

    timeout = timeout or chapter_timeout(profile)
    machine = machine_info(profile)
    times = {"profile": profile, "timeout_s": timeout, "machine": machine, "notebooks": {}}
    print(f"Executing {len(notebooks)} notebook(s) with profile {profile!r} (at most {timeout} s a cell) "
          f"{describe_book_machine(machine)}; BUSI_DIR={os.environ.get('BUSI_DIR', '<unset>')}")
    results = out / "book" / RESULTS_DIR
    for path in notebooks:
        name = path.relative_to(out).with_suffix("").as_posix()
        parameters = {"profile": profile}
        if "results_dir" in papermill.inspect_notebook(str(path)):  # one folder of runs for the whole book
            parameters["results_dir"] = os.path.relpath(results, path.parent)
        execute_in_place(path, parameters, timeout=timeout, name=name,
                         limit=f", the limit for profile {profile!r} (--timeout changes it)")
        seconds = finish_notebook(path, machine, profile, folders=[out, root, Path.home(), *data_folders()])
        times["notebooks"][name] = {"seconds": round(seconds, 1)}
        (out / RUN_TIMES).write_text(json.dumps(times, indent=2) + "\n")
        print(f"  {name}: {format_duration(seconds)}", flush=True)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="quick", help="settings profile passed to every notebook")
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "src", help="where to put the executed book")
    parser.add_argument("--only", nargs="*", default=None, help="execute only these notebooks (names)")
    parser.add_argument("--timeout", type=int, default=None,
                        help="seconds a cell may run before the build fails (default: the profile's)")
    args = parser.parse_args()

    # Figures must be captured by the kernel's inline backend, whatever the calling shell set.
    os.environ.pop("MPLBACKEND", None)
    os.environ.setdefault("BUSUTILS_QUIET", "1")  # no progress bars on the book's pages
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    execute_book(ROOT, args.out, args.profile, only=args.only, timeout=args.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
