"""Progress bars: shown for long steps, silenced by BUSUTILS_QUIET and the command line's --quiet."""

from __future__ import annotations

import io

import numpy as np
import pytest

from busutils import progress as progress_module
from busutils.progress import QUIET_VAR, progress, quiet


@pytest.mark.parametrize("value, expected", [("", False), ("0", False), ("1", True), ("yes", True), ("TRUE", True)])
def test_quiet_reads_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv(QUIET_VAR, value)
    assert quiet() is expected
    assert progress(range(3), desc="three steps").disable is expected


def test_a_long_step_shows_its_name_and_the_time_left(monkeypatch):
    from tqdm.std import tqdm as text_bar

    stream = io.StringIO()

    def terminal_bar(*args, **kwargs):  # a terminal's bar, shown at once, whatever runs the tests
        return text_bar(*args, **{**kwargs, "file": stream, "delay": 0, "mininterval": 0})

    monkeypatch.delenv(QUIET_VAR, raising=False)
    monkeypatch.setattr(progress_module, "tqdm", terminal_bar)
    with progress(total=4, desc="VGG16 up to block4_pool on 4 new images", unit="batch") as bar:
        for _ in range(4):
            bar.update()
    text = stream.getvalue()
    assert "VGG16 up to block4_pool on 4 new images" in text and "4/4" in text
    assert "<" in text  # elapsed<remaining


def test_augmented_copies_and_features_report_progress(monkeypatch):
    from busutils import augment, train

    seen = []

    def spy(iterable=None, *, desc, total=None, unit="it"):
        seen.append(desc)
        return iterable

    monkeypatch.setattr(progress_module, "progress", spy)
    monkeypatch.setattr(train, "progress", spy)
    images = np.random.default_rng(0).integers(0, 256, size=(3, 16, 16), dtype=np.uint8)
    augment.augmented_copies(images, 2, "light", seed=0)
    assert any("augmented copies of 3 images" in d for d in seen)


def test_the_command_line_quiet_option_silences_the_whole_run(monkeypatch, tmp_path, capsys):
    from busutils.cli import main

    monkeypatch.delenv(QUIET_VAR, raising=False)
    status = main(["fetch", "--quiet", "no-such-data-set", "--cache-dir", str(tmp_path)])
    assert status == 2 and quiet()
    assert "no-such-data-set" in capsys.readouterr().err
