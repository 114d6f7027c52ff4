"""Progress bars for the steps that take more than a few seconds.

A reader who starts the ``paper`` profile on a CPU waits minutes while augmented copies are made
and pushed through VGG16: a bar with the time left tells a slow run from a hung one.  The bars are
tqdm's ``auto`` ones (a widget in Jupyter and Colab, text in a terminal); they appear only once a
step has taken two seconds, so quick steps show nothing, and vanish when the step ends.
``BUSUTILS_QUIET=1`` turns them off: the command line's ``--quiet`` sets it, and so does the
book's build, whose pages should not carry them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from tqdm.auto import tqdm

__all__ = ["QUIET_VAR", "progress", "quiet"]

#: Set to 1 (or true, yes) to silence every progress bar of busutils.
QUIET_VAR = "BUSUTILS_QUIET"


def quiet() -> bool:
    """True when ``$BUSUTILS_QUIET`` asks for silence."""
    return os.environ.get(QUIET_VAR, "").strip().lower() in ("1", "true", "yes")


def progress(iterable: Iterable | None = None, *, desc: str, total: int | None = None, unit: str = "it") -> tqdm:
    """A progress bar over ``iterable`` (or ``total`` steps, advanced with ``update``) that says ``desc``."""
    return tqdm(iterable, desc=desc, total=total, unit=unit, leave=False, delay=2.0, mininterval=1.0,
                disable=quiet())
