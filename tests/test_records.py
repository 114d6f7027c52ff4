"""Tests for busutils.records: atomic JSON, reading back, environment info, Timer."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

import busutils
from busutils import records
from busutils.records import Timer, environment_info, read_json, to_jsonable, write_json_atomic


def test_to_jsonable_converts_numpy_paths_and_nan():
    obj = {
        "a": np.float32(0.5),
        "b": np.int64(3),
        "c": np.array([[1, 2], [3, 4]]),
        "d": (np.nan, np.inf, 1.0),
        "e": Path("x/y.json"),
        "f": np.bool_(True),
        1: [np.float64("nan")],
    }
    out = to_jsonable(obj)
    assert out == {"a": 0.5, "b": 3, "c": [[1, 2], [3, 4]], "d": [None, None, 1.0], "e": "x/y.json",
                   "f": True, "1": [None]}
    assert type(out["b"]) is int and type(out["a"]) is float
    json.dumps(out, allow_nan=False)


def test_write_then_read_round_trip(tmp_path):
    path = write_json_atomic(tmp_path / "sub" / "r.json", {"auc": np.float64(0.9), "cm": np.eye(2, dtype=int)})
    assert path == tmp_path / "sub" / "r.json"
    assert read_json(path) == {"auc": 0.9, "cm": [[1, 0], [0, 1]]}
    assert os.listdir(tmp_path / "sub") == ["r.json"]


def test_failed_serialisation_leaves_old_file_intact(tmp_path):
    path = tmp_path / "r.json"
    write_json_atomic(path, {"version": 1})
    before = path.read_bytes()
    with pytest.raises(TypeError):
        write_json_atomic(path, {"version": 2, "bad": object()})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["r.json"]


def test_failure_after_temp_file_is_cleaned_up(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    write_json_atomic(path, {"version": 1})

    def broken_replace(src, dst):
        assert Path(src).exists() and Path(src).parent == tmp_path  # temp file in the same folder
        raise OSError("disk on fire")

    monkeypatch.setattr(records.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk on fire"):
        write_json_atomic(path, {"version": 2})
    assert read_json(path) == {"version": 1}
    assert os.listdir(tmp_path) == ["r.json"]


def test_written_file_is_strict_json(tmp_path):
    path = write_json_atomic(tmp_path / "r.json", {"x": float("nan")})
    text = path.read_text()
    assert "NaN" not in text and json.loads(text) == {"x": None}


def test_read_json_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(FileNotFoundError, match="nope.json"):
        read_json(missing)
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": 1,')
    with pytest.raises(ValueError, match=r"bad\.json is not valid JSON \(line 1"):
        read_json(bad)
    array = tmp_path / "array.json"
    array.write_text("[1, 2]")
    with pytest.raises(ValueError, match="array.json holds a JSON list"):
        read_json(array)


def test_environment_info(monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    info = environment_info()
    assert info["python"].count(".") == 2
    assert info["packages"]["numpy"] == np.__version__
    assert "scikit-learn" in info["packages"] and "tensorflow" in info["packages"]
    assert info["keras_backend"] == "jax"
    assert info["busutils"] == busutils.__version__
    assert info["timestamp_utc"].endswith("+00:00")
    assert isinstance(info["cpu_count"], int)
    json.dumps(info, allow_nan=False)


def test_environment_info_does_not_import_keras(monkeypatch):
    import sys

    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.delitem(sys.modules, "keras", raising=False)
    info = environment_info()
    assert "keras" not in sys.modules
    assert info["keras_backend"] is None


def test_timer_records_elapsed_time():
    timings: dict[str, float] = {}
    with Timer("fit", into=timings) as t:
        time.sleep(0.01)
        running = t.elapsed
    assert 0.005 < running <= t.elapsed
    assert timings["fit"] == t.elapsed
    final = t.elapsed
    time.sleep(0.005)
    assert t.elapsed == final  # frozen once the block is left
    assert "fit" in repr(t)


def test_timer_misuse():
    with pytest.raises(RuntimeError, match="not been started"):
        _ = Timer().elapsed
    with pytest.raises(ValueError, match="give a name"):
        Timer(into={})
