"""The publishing workflow: valid for GitHub Actions, safe, and doing what the README says."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import book_sources

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        path = shutil.which(name)
    assert path, f"{name} is not installed: `make install` installs it (requirements.txt)"
    return str(path)


def test_there_is_a_publishing_workflow():
    assert [p.name for p in WORKFLOWS] == ["book.yml"]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_the_workflow_is_valid_github_actions_syntax(path):
    done = subprocess.run([_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(path)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_the_workflow_passes_zizmor(path):
    done = subprocess.run([_tool("zizmor"), "--offline", "--no-progress", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_broken_workflow_is_caught_by_the_linters(tmp_path):
    """The checks can fail: a misspelt key and an unpinned action are each refused."""
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    stepz: []\n")
    assert subprocess.run([_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(broken)],
                          capture_output=True).returncode != 0
    unpinned = tmp_path / "unpinned.yml"
    unpinned.write_text("on: push\npermissions: {}\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
                        "      - uses: actions/checkout@v4\n        with:\n          persist-credentials: false\n")
    assert subprocess.run([_tool("zizmor"), "--offline", "--no-progress", str(unpinned)],
                          capture_output=True).returncode != 0


def test_on_a_push_to_main_it_installs_fetches_builds_strictly_and_deploys_to_pages():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "book.yml").read_text())
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as True
    assert triggers["push"]["branches"] == ["main"]
    build, deploy = workflow["jobs"]["build"], workflow["jobs"]["deploy"]
    runs = "\n".join(step.get("run", "") for step in build["steps"])
    assert "make install" in runs and "busutils fetch busi" in runs
    assert 'resolve_vgg16_weights("imagenet")' in runs and "make book" in runs
    assert "sync_notebooks.py --check" in runs and 'refs/tags/v$version' in runs
    assert build["steps"][-1]["uses"].startswith("actions/upload-pages-artifact@")
    assert deploy["needs"] == "build" and deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["steps"][0]["uses"].startswith("actions/deploy-pages@")
    # make book builds strictly: a warning fails it.
    assert "--warningiserror" in (ROOT / "Makefile").read_text()


def test_the_readme_gives_the_three_publishing_steps_exactly():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Publishing the book", 1)[1].split("\n## ", 1)[0]
    steps = re.findall(r"^(\d)\. (.+(?:\n   .+)*)", section, re.MULTILINE)
    assert [n for n, _ in steps] == ["1", "2", "3"]
    version = book_sources.project_version(ROOT)
    assert "repository:" in steps[0][1] and "make sync" in steps[0][1]
    assert "Settings" in steps[1][1] and "GitHub Actions" in steps[1][1]
    assert f"git tag v{version}" in steps[2][1] and f"git push origin main v{version}" in steps[2][1]
    assert "sync" in (ROOT / "Makefile").read_text()
