"""Shared fixtures.  No test may touch the network: every socket connection is refused."""

from __future__ import annotations

import os
import socket

import tempfile

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Keras reads KERAS_HOME once, at import: point it at an empty folder before any test imports
# Keras, so that a developer's cached ImageNet weights never make an "offline" test pass.
os.environ["KERAS_HOME"] = tempfile.mkdtemp(prefix="busutils-keras-home-")


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
def busi_dir():
    """The real BUSI development portion, or skip when ``BUSI_DIR`` is unset."""
    path = os.environ.get("BUSI_DIR")
    if not path:
        pytest.skip("BUSI_DIR is not set: real-data tests need the BUSI development portion")
    if not os.path.isdir(path):
        pytest.skip(f"BUSI_DIR={path} is not a folder")
    return path
