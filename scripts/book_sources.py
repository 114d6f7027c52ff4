"""Where the book's sources are: the files listed in _toc.yml and the settings in _config.yml.

Shared by the scripts beside this one (execute_book, sync_notebooks, check_chapters,
make_exercises), so that they all agree on which notebooks make up the book.
"""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


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


def toc_notebooks(root: Path = ROOT) -> list[Path]:
    """The notebooks listed in ``root/_toc.yml``, in reading order."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    paths = []
    for name in toc_files(toc):
        path = root / (name if name.endswith(".ipynb") else f"{name}.ipynb")
        if path.exists():
            paths.append(path)
    return paths


def read_config(root: Path = ROOT) -> dict:
    """The book's ``_config.yml`` as a dictionary."""
    return yaml.safe_load((root / "_config.yml").read_text())


def repository_url(config: dict) -> str:
    """The book's public repository address from _config.yml, or "" while it has none."""
    return ((config.get("repository") or {}).get("url") or "").strip().rstrip("/")


def project_version(root: Path = ROOT) -> str:
    """busutils' version, from ``root/pyproject.toml``: the set-up cells install the tag ``v<version>``."""
    import tomllib

    return tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"]
