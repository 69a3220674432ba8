"""The lifecycle the local emulators share: one HTTP server on 127.0.0.1, served by a daemon thread."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LoopbackServer:
    """Start, stop and address one ``ThreadingHTTPServer``; ``stopping`` wakes handlers waiting on it."""

    def __init__(
        self, name: str, host: str, port: int, make_handler: Callable[[], type[BaseHTTPRequestHandler]]
    ) -> None:
        self.name, self._host, self._port, self._make_handler = name, host, port, make_handler
        self.stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._server is not None:
            return
        server = ThreadingHTTPServer((self._host, self._port), self._make_handler())
        server.daemon_threads = True
        self._server = server
        self.stopping.clear()
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=self.name, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self.stopping.set()  # wakes handlers sleeping on a scripted delay
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError(f"the {self.name} is not running")
        host, port = str(self._server.server_address[0]), int(self._server.server_address[1])
        return f"http://{host}:{port}"
