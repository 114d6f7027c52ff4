"""Execute every notebook listed in _toc.yml with papermill, into _build/src, ready for jupyter-book.

The committed notebooks stay free of outputs: the book's sources (_config.yml, _toc.yml and
book/) are copied to _build/src, and each notebook is executed there in place with the named
profile's parameters.  `jupyter-book build _build/src` then renders them without re-executing.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import time
from pathlib import Path

import nbformat
import papermill
import yaml

ROOT = Path(__file__).resolve().parents[1]
# TensorFlow's C++ start-up log lines (CUDA probing, oneDNN notices) reach a notebook's stderr
# before any Python setting can silence them; they are noise in a rendered book.
TF_LOG_LINE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
                         r"|[IWE]\d{4} [\d:.]+\s+\d+ [\w.]+:\d+\]|To enable the following instructions)")


def strip_tf_logs(path: Path) -> None:
    """Remove TensorFlow's C++ log lines from the stderr outputs of an executed notebook."""
    notebook = nbformat.read(path, as_version=4)
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
    nbformat.write(notebook, path)


def toc_files(toc: dict) -> list[str]:
    """Every file named in a jupyter-book _toc.yml, in reading order."""
    found = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                found.append(entry["file"])
            walk(entry.get("sections"))
            for part in entry.get("parts", []):
                walk(part.get("chapters"))

    walk(toc.get("chapters"))
    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", default="quick", help="settings profile passed to every notebook")
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "src", help="where to put the executed book")
    parser.add_argument("--only", nargs="*", default=None, help="execute only these notebooks (names)")
    args = parser.parse_args()

    out: Path = args.out
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(ROOT / name, out / name)
    shutil.copytree(ROOT / "book", out / "book", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))

    # Figures must be captured by the kernel's inline backend, whatever the calling shell set.
    os.environ.pop("MPLBACKEND", None)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    notebooks = [f for f in toc_files(toc) if (ROOT / f"{f}.ipynb").exists() or f.endswith(".ipynb")]
    if args.only:
        notebooks = [f for f in notebooks if Path(f).stem in args.only or f in args.only]
    print(f"Executing {len(notebooks)} notebook(s) with profile {args.profile!r}; BUSI_DIR={os.environ.get('BUSI_DIR', '<unset>')}")
    for name in notebooks:
        path = out / (name if name.endswith(".ipynb") else f"{name}.ipynb")
        start = time.perf_counter()
        papermill.execute_notebook(
            str(path),
            str(path),
            parameters={"profile": args.profile},
            cwd=str(path.parent),
            kernel_name="python3",
            progress_bar=False,
            log_output=False,
        )
        strip_tf_logs(path)
        print(f"  {name}: {time.perf_counter() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
