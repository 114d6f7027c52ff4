"""A local HTTP server for the tests of downloads: a folder served on 127.0.0.1, nothing else.

The conftest refuses every connection; :func:`serve` lets the test's own process reach the
loopback address only, so a download is tested for real (HTTP, progress, hashes) without the
network. Paths under ``/fail/`` answer 503, as a host that is down does.
"""

from __future__ import annotations

import socket
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_CONNECT, _CREATE_CONNECTION, _GETADDRINFO = (socket.socket.connect, socket.create_connection,
                                              socket.getaddrinfo)
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class Server:
    root: Path  # the folder served
    url: str  # http://127.0.0.1:PORT
    requests: list[str]  # the paths asked for, in order

    def url_of(self, name: str) -> str:
        return f"{self.url}/{name}"


def allow_loopback(monkeypatch) -> None:
    """Undo the conftest's socket guard for loopback addresses only."""

    def blocked(host) -> bool:
        return str(host) not in LOOPBACK

    def connect(sock, address):
        if blocked(address[0]):
            raise OSError(f"tests must not touch the network ({address[0]})")
        return _CONNECT(sock, address)

    def create_connection(address, *args, **kwargs):
        if blocked(address[0]):
            raise OSError(f"tests must not touch the network ({address[0]})")
        return _CREATE_CONNECTION(address, *args, **kwargs)

    def getaddrinfo(host, *args, **kwargs):
        if blocked(host):
            raise OSError(f"tests must not touch the network ({host})")
        return _GETADDRINFO(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@contextmanager
def serve(root: Path):
    """Serve ``root`` on 127.0.0.1 (a free port) for the duration of the block."""
    asked: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):  # quiet
            pass

        def do_GET(self):
            asked.append(self.path)
            if self.path.startswith("/fail/"):
                self.send_error(503, "Service unavailable")
                return
            super().do_GET()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield Server(root, f"http://127.0.0.1:{httpd.server_address[1]}", asked)
    finally:
        httpd.shutdown()
        httpd.server_close()
