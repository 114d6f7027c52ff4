"""A stand-in for Google Colab: the set-up cell, a chapter, a student's exercise and the fast tests,
run in an environment with the package versions Colab publishes.

Colab itself cannot be reached from CI, so each of its parts is replaced by a local one:

* its packages: a virtual environment, ``_build/colab-stand-in``, with exactly the versions of
  ``tests/colab/colab-versions.txt`` (rebuilt only when that file changes; each run re-installs
  them, a no-op unless something changed them, and removes busutils). Its Python is this
  machine's, not Colab's 3.13;
* ``google.colab``: a module of that name, imported when the kernel starts, as on Colab;
* the book's public repository: a local git repository holding busutils, tagged ``v<version>``;
* the data hosts: a local HTTP server. The original host answers 503; the mirror serves a
  zip packed otherwise, so only its images can be checked, against their recorded hashes.

Papermill, which Colab does not ship, runs from the book's own environment and drives a kernel
of the stand-in. Building the environment (and, as on Colab, installing busutils'
dependencies) needs PyPI: the tests are skipped, saying so, only when PyPI cannot be reached.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

import book_sources
import make_exercises
import sync_notebooks
from busutils.download import file_hash, image_manifest
from busutils.phantom import write_busi_layout
from local_server import serve

papermill = pytest.importorskip("papermill")

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
VERSIONS = ROOT / "tests" / "colab" / "colab-versions.txt"
VENV = ROOT / "_build" / "colab-stand-in"
KERNEL = "colab-stand-in"
VERSION = book_sources.project_version(ROOT)
#: Modules of the fast tests that test the book's build tools (papermill, jupyter-book, the
#: workflow linters), which a Colab session does not run: the stand-in leaves them out.
BUILD_TOOL_TESTS = ("test_book_build.py", "test_execute_book.py", "test_publishing.py",
                    "test_colab_stand_in.py")
#: Fast tests that fail on Colab's published stack for a known reason outside the set-up, left out
#: here until it is fixed (each passes with the book's pins).
KNOWN_ON_COLABS_STACK: dict[str, str] = {
    # None at present.  The last three (float16 activations moving a random-weights score on
    # TensorFlow 2.20; random-weights fine-tuning diverging under mixed_bfloat16) pass since the
    # He-initialised random weights, the clipped fine-tuning and the divergence guard.
}


def _pinned(name: str) -> str:
    """``name==version`` as requirements.txt pins it."""
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line.split("#")[0].strip().lower().startswith(f"{name}=="):
            return line.split("#")[0].strip()
    raise AssertionError(f"{name} is not pinned in requirements.txt")


def _run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, **kwargs)


def _skip_unless_pypi_answers(python: Path, failure: subprocess.CompletedProcess) -> None:
    probe = _run([str(python), "-m", "pip", "download", "--no-deps", "--dest", str(VENV.parent / "probe"),
                  _pinned("pooch")])
    if probe.returncode:
        pytest.skip(f"PyPI cannot be reached, so the Colab stand-in cannot be built: {probe.stderr[-300:]}")
    raise AssertionError(f"installing Colab's versions failed:\n{failure.stdout[-3000:]}\n{failure.stderr[-3000:]}")


def _stand_in_python() -> Path:
    """The stand-in's Python, with Colab's versions, busutils not installed, google.colab there."""
    python = VENV / "bin" / "python"
    key = hashlib.sha256(VERSIONS.read_bytes() + _pinned("pytest").encode()).hexdigest()
    stamp = VENV / ".colab-versions.sha256"
    if not (python.exists() and stamp.is_file() and stamp.read_text() == key):
        shutil.rmtree(VENV, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    done = _run([str(python), "-m", "pip", "install", "--quiet", "-r", str(VERSIONS), _pinned("pytest")])
    if done.returncode:
        _skip_unless_pypi_answers(python, done)
    stamp.write_text(key)
    _run([str(python), "-m", "pip", "uninstall", "--yes", "--quiet", "busutils"])
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    colab = site / "google" / "colab"
    colab.mkdir(parents=True, exist_ok=True)
    (colab / "__init__.py").write_text('"""Stands in for Colab\'s own module: the set-up cell only asks '
                                       'whether it was imported."""\n')
    return python


def _kernel(python: Path, folder: Path, env: dict[str, str]) -> Path:
    """A kernel spec named KERNEL that starts the stand-in's Python with google.colab imported."""
    spec = folder / "kernels" / KERNEL
    spec.mkdir(parents=True)
    start = "import google.colab\nfrom ipykernel import kernelapp\nkernelapp.launch_new_instance()"
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-c", start, "-f", "{connection_file}"],
        "display_name": "Colab stand-in", "language": "python", "env": env}))
    return folder


def _repository(folder: Path, served: Path, host: str) -> str:
    """A git repository standing in for the book's public one, served over HTTP: busutils at v<version>."""
    folder.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, folder / name)
    shutil.copytree(ROOT / "busutils", folder / "busutils", ignore=shutil.ignore_patterns("__pycache__"))
    git = ["git", "-C", str(folder), "-c", "user.name=stand-in", "-c", "user.email=stand-in@localhost"]
    for command in (["init", "--quiet"], ["add", "."], ["commit", "--quiet", "-m", "busutils"],
                    ["tag", f"v{VERSION}"]):
        subprocess.run(git + command, check=True, capture_output=True)
    bare = served / "busutils.git"  # git's "dumb" HTTP protocol: plain files and their index
    subprocess.run(["git", "clone", "--quiet", "--bare", str(folder), str(bare)], check=True, capture_output=True)
    subprocess.run(["git", "-C", str(bare), "update-server-info"], check=True, capture_output=True)
    return f"{host}/busutils.git"


def _data_hosts(folder: Path) -> Path:
    """BUSI as its hosts would serve it, and a manifest naming them: the original failing, the mirror serving."""
    release = folder / "release"
    write_busi_layout(release / "Dataset_BUSI_with_GT", {"benign": 24, "malignant": 16, "normal": 8},
                      size=128, seed=0)
    served = folder / "served"
    served.mkdir()
    original = folder / "Dataset_BUSI.zip"
    for archive, method in ((original, zipfile.ZIP_DEFLATED), (served / "mirror.zip", zipfile.ZIP_STORED)):
        with zipfile.ZipFile(archive, "w", method) as zf:
            for path in sorted(release.rglob("*")):
                zf.write(path, path.relative_to(release).as_posix())
    manifest_dir = folder / "manifest"
    manifest_dir.mkdir()
    (manifest_dir / "busi_images.json").write_text(json.dumps(
        {"images": image_manifest(release / "Dataset_BUSI_with_GT")}))
    datasets = json.loads((ROOT / "busutils" / "datasets.json").read_text())
    busi = next(entry for entry in datasets["datasets"] if entry["name"] == "busi")
    busi["sources"] = [{"url": "{host}/fail/Dataset_BUSI.zip", "sha256": file_hash(original)},
                       {"url": "{host}/mirror.zip", "filename": "mirror.zip", "verify": "images"}]
    (manifest_dir / "datasets.json").write_text(json.dumps(datasets))
    return served


@pytest.fixture(scope="module")
def colab(tmp_path_factory):
    """Everything the stand-in needs, for the tests of this module."""
    folder = tmp_path_factory.mktemp("colab")
    python = _stand_in_python()
    served = _data_hosts(folder)
    with serve(served) as host, pytest.MonkeyPatch.context() as patch:
        datasets = folder / "manifest" / "datasets.json"
        datasets.write_text(datasets.read_text().replace("{host}", host.url))
        for name in ("BUSI_DIR", "VGG16_WEIGHTS", "MPLBACKEND", "BUSUTILS_DATASETS"):
            patch.delenv(name, raising=False)
        env = {"BUSUTILS_DATASETS": str(datasets), "TF_CPP_MIN_LOG_LEVEL": "2",
               "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        patch.setenv("JUPYTER_PATH", str(_kernel(python, folder / "jupyter", env)))
        yield {"python": python, "folder": folder, "host": host,
               "repository": _repository(folder / "repository", served, host.url)}


def _execute(colab: dict, notebook: nbformat.NotebookNode, where: Path, cache: str) -> nbformat.NotebookNode:
    """Run ``notebook`` in the stand-in's kernel, in the folder ``where``, with the data cache ``cache``."""
    where.mkdir(parents=True, exist_ok=True)
    source, out = where / "in.ipynb", where / "out.ipynb"
    nbformat.write(notebook, source)
    os.environ["BUSUTILS_CACHE"] = str(colab["folder"] / cache)  # the kernel inherits it
    papermill.execute_notebook(str(source), str(out), kernel_name=KERNEL, cwd=str(where),
                               progress_bar=False, execution_timeout=1200)
    return nbformat.read(out, as_version=4)


def _printed(cell: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def _errors(notebook: nbformat.NotebookNode) -> list[str]:
    return [f"{o.ename}: {o.evalue}" for c in notebook.cells if c.cell_type == "code"
            for o in c.outputs if o.output_type == "error"]


def _with_checks(notebook: nbformat.NotebookNode, setup: str) -> nbformat.NotebookNode:
    """The notebook, then its set-up cell again (it must change nothing) and the versions it ran on."""
    notebook.cells.append(nbformat.v4.new_code_cell(setup))
    notebook.cells.append(nbformat.v4.new_code_cell(
        "import importlib.metadata as m\n"
        "print({p: m.version(p) for p in ('tensorflow', 'keras', 'numpy', 'scikit-learn', 'busutils')})"))
    return notebook


def test_a_chapter_installs_busutils_from_the_repository_and_gets_busi_from_the_mirror(colab):
    _run([str(colab["python"]), "-m", "pip", "uninstall", "--yes", "--quiet", "busutils"])
    notebook = nbformat.read(ROOT / "book" / "01_data_tour.ipynb", as_version=4)
    setup = sync_notebooks.setup_cell_source(colab["repository"])
    notebook.cells[sync_notebooks.first_code_cell(notebook)].source = setup
    ran = _execute(colab, _with_checks(notebook, setup), colab["folder"] / "chapter", "cache-chapter")
    assert _errors(ran) == []
    printed = _printed(ran.cells[sync_notebooks.first_code_cell(ran)])
    assert f"-m pip install busutils @ git+{colab['repository']}@v{VERSION}" in printed
    assert "Successfully installed" in printed and f"busutils-{VERSION}" in printed
    busi_dir = colab["folder"] / "cache-chapter" / "busi" / "extracted" / "Dataset_BUSI_with_GT"
    assert printed.endswith(f"BUSI_DIR = {busi_dir}\n")
    data = [r for r in colab["host"].requests if not r.startswith("/busutils.git/")]
    assert data[:2] == ["/fail/Dataset_BUSI.zip", "/mirror.zip"]
    again, versions = ran.cells[-2], ran.cells[-1]
    assert _printed(again) == f"BUSI_DIR = {busi_dir}\n"  # the second run changed nothing
    assert "'tensorflow': '2.20.0', 'keras': '" in _printed(versions) and "'numpy': '2.1.3'" in _printed(versions)
    shown = json.dumps([c.outputs for c in ran.cells if c.cell_type == "code"])
    assert "read from the folder $BUSI_DIR ('Dataset_BUSI_with_GT')" in shown.replace("&#x27;", "'")


def test_a_students_exercise_from_the_bundle_installs_the_wheel_beside_it_with_no_repository(colab):
    bundle = colab["folder"] / "bundle"
    _, archive = make_exercises.make_exercises(ROOT, bundle)
    wheel = make_exercises.add_wheel(ROOT, bundle, archive)
    _run([str(colab["python"]), "-m", "pip", "uninstall", "--yes", "--quiet", "busutils"])
    student = colab["folder"] / "student"
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(student)
    folder = student / "exercises"
    notebook = nbformat.read(folder / "01_audit_your_folder.ipynb", as_version=4)
    setup = notebook.cells[sync_notebooks.first_code_cell(notebook)].source
    assert 'REPOSITORY = ""' in setup  # this copy of the book names no repository
    asked = len(colab["host"].requests)
    ran = _execute(colab, _with_checks(notebook, setup), folder, "cache-exercise")
    assert _errors(ran) == []
    printed = _printed(ran.cells[sync_notebooks.first_code_cell(ran)])
    assert f"-m pip install {folder / wheel.name}\n" in printed and "git+" not in printed
    assert colab["host"].requests[asked:] == ["/fail/Dataset_BUSI.zip", "/mirror.zip"]
    assert any("image/png" in o.get("data", {}) for c in ran.cells if c.cell_type == "code" for o in c.outputs)
    assert f"'busutils': '{VERSION}'" in _printed(ran.cells[-1])


def test_the_fast_tests_pass_with_colabs_versions(colab):
    ignored = [f"--ignore=tests/{name}" for name in BUILD_TOOL_TESTS]
    ignored += [f"--deselect={test}" for test in KNOWN_ON_COLABS_STACK]
    env = {k: v for k, v in os.environ.items() if k not in ("JUPYTER_PATH", "BUSUTILS_CACHE")}
    done = _run([str(colab["python"]), "-m", "pytest", "-m", "not slow", "-q", "-p", "no:cacheprovider",
                 *ignored, "tests"], cwd=ROOT, env=env)
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-2000:]
    assert done.returncode == 0, f"{summary}\n{done.stdout[-6000:]}"
