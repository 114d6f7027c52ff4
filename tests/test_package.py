"""The package's module map (``busutils/__init__.py``) names every module once, so a newcomer finds
the room for a change in one step."""

import re
from pathlib import Path

import busutils

PACKAGE = Path(busutils.__file__).parent


def test_the_module_map_names_every_module_once():
    modules = sorted(p.stem for p in PACKAGE.glob("*.py") if not p.stem.startswith("__"))
    listed = re.findall(r"^    (\w+) ", busutils.__doc__, flags=re.MULTILINE)
    assert sorted(listed) == modules
