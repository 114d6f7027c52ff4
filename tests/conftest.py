"""Shared fixtures.  No test may touch the network: every socket connection is refused."""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import tempfile

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Keras reads KERAS_HOME once, at import: point it at an empty folder before any test imports
# Keras, so that a developer's cached ImageNet weights never make an "offline" test pass.
os.environ["KERAS_HOME"] = tempfile.mkdtemp(prefix="busutils-keras-home-")
# Activations computed by tests go to a fresh cache, never into a reader's.
os.environ["BUSUTILS_CACHE"] = tempfile.mkdtemp(prefix="busutils-cache-")
for _folder in (os.environ["KERAS_HOME"], os.environ["BUSUTILS_CACHE"]):
    atexit.register(shutil.rmtree, _folder, ignore_errors=True)  # hundreds of MB a run otherwise
# The real VGG16 weights (CI sets VGG16_WEIGHTS) are for the tests that ask for them only.
REAL_VGG16_WEIGHTS = os.environ.pop("VGG16_WEIGHTS", "")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A test that computes in a precision this process cannot (a 16-bit one under a oneDNN cap
    such as ONEDNN_MAX_CPU_ISA=AVX2, set to time the book as on an older CPU) is reported as
    skipped, saying why, whether the test or one of its fixtures asked for it."""
    from busutils.precision import PrecisionBarredError

    report = yield
    if call.excinfo is not None and call.excinfo.errisinstance(PrecisionBarredError):
        path, line, _ = item.reportinfo()
        report.outcome = "skipped"
        report.longrepr = (str(path), (line or 0) + 1, f"Skipped: {call.excinfo.value}")
    return report


class NetworkBlocked(RuntimeError):
    """Raised when a test tries to open a network connection."""


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Refuse every outgoing connection."""

    def refuse(*args, **kwargs):
        raise NetworkBlocked("tests must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture
def vgg16_weights():
    """The real ImageNet VGG16 no-top weights file, or skip when ``VGG16_WEIGHTS`` was unset."""
    if not REAL_VGG16_WEIGHTS:
        pytest.skip("VGG16_WEIGHTS is not set: tests of the real pre-trained weights need the file")
    if not os.path.isfile(REAL_VGG16_WEIGHTS):
        pytest.skip(f"VGG16_WEIGHTS={REAL_VGG16_WEIGHTS} is not a file")
    return REAL_VGG16_WEIGHTS


@pytest.fixture
def busi_dir():
    """The real BUSI development portion, or skip when ``BUSI_DIR`` is unset."""
    path = os.environ.get("BUSI_DIR")
    if not path:
        pytest.skip("BUSI_DIR is not set: real-data tests need the BUSI development portion")
    if not os.path.isdir(path):
        pytest.skip(f"BUSI_DIR={path} is not a folder")
    return path
