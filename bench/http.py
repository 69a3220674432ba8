"""A small threaded HTTP/1.1 server for the bench's WSGI app: one thread per connection, keep-alive.

werkzeug's development server (what ``moto_server`` runs) spends ~1.5 ms of CPU per request here on
parsing headers with the ``email`` package and building its environ: ~600 requests per second on one
core, below what the modelled S3 link carries for 100 KiB objects (~1,500 requests per second). This
server parses just what S3 clients send (request line, headers, ``Content-Length`` or chunked bodies,
``Expect: 100-continue``), answers with one ``sendall`` for the status line and headers (with
TCP_NODELAY: no delayed-ACK stalls), and keeps connections alive.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote_to_bytes

MAX_LINE = 65536
READ_BUFFER = 256 * 1024
REASONS = {100: "Continue"}

App = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class BadRequest(Exception):
    pass


class Body:
    """The request body as a file-like ``read``: ``Content-Length`` bytes, or a chunked body."""

    def __init__(self, rfile: Any, length: int | None, chunked: bool, on_first_read: Callable[[], None]) -> None:
        self._rfile = rfile
        self._left = length or 0
        self._chunked = chunked
        self._chunk_left = 0
        self._done = not chunked and not length
        self._on_first_read: Callable[[], None] | None = on_first_read

    def _started(self) -> None:
        if self._on_first_read is not None:
            callback, self._on_first_read = self._on_first_read, None
            callback()

    def read(self, size: int = -1) -> bytes:
        if self._done:
            return b""
        self._started()
        if not self._chunked:
            want = self._left if size is None or size < 0 else min(size, self._left)
            data = self._rfile.read(want)
            self._left -= len(data)
            if not data or self._left <= 0:
                self._done = True
            return data
        pieces: list[bytes] = []
        want = sys.maxsize if size is None or size < 0 else size
        while want > 0 and not self._done:
            if self._chunk_left == 0:
                line = self._rfile.readline(MAX_LINE)
                try:
                    self._chunk_left = int(line.split(b";", 1)[0].strip() or b"0", 16)
                except ValueError as exc:
                    raise BadRequest("bad chunk size") from exc
                if self._chunk_left == 0:
                    while self._rfile.readline(MAX_LINE) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    self._done = True
                    break
            data = self._rfile.read(min(want, self._chunk_left))
            if not data:
                self._done = True
                break
            pieces.append(data)
            self._chunk_left -= len(data)
            want -= len(data)
            if self._chunk_left == 0:
                self._rfile.readline(MAX_LINE)  # the CRLF after the chunk
        return b"".join(pieces)

    def readline(self, size: int = -1) -> bytes:  # WSGI asks for it; S3 clients never need it
        return self.read(size)

    def drain(self) -> None:
        while self.read(READ_BUFFER):
            pass


class Server:
    """``serve_forever`` accepts connections on ``host:port``, one thread each."""

    def __init__(self, host: str, port: int, app: App) -> None:
        self.app = app
        self.socket = socket.create_server((host, port), backlog=1024, reuse_port=False)
        self.server_address = self.socket.getsockname()
        self._closing = False

    def serve_forever(self) -> None:
        while not self._closing:
            try:
                conn, peer = self.socket.accept()
            except OSError:
                if self._closing:
                    return
                raise
            threading.Thread(target=self._connection, args=(conn, peer), daemon=True).start()

    def server_close(self) -> None:
        self._closing = True
        with contextlib.suppress(OSError):
            self.socket.close()

    def _connection(self, conn: socket.socket, peer: tuple[Any, ...]) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rfile = conn.makefile("rb", buffering=READ_BUFFER)
        try:
            while self._request(conn, rfile, peer):
                pass
        except (OSError, BadRequest, ValueError):
            pass
        finally:
            with contextlib.suppress(OSError):
                rfile.close()
                conn.close()

    def _request(self, conn: socket.socket, rfile: Any, peer: tuple[Any, ...]) -> bool:
        """Serve one request; False: close the connection."""
        line = rfile.readline(MAX_LINE)
        if not line or line in (b"\r\n", b"\n"):
            return bool(line)
        try:
            method, target, version = line.decode("latin-1").split()
        except ValueError as exc:
            raise BadRequest("bad request line") from exc
        environ: dict[str, Any] = {}
        headers: dict[str, str] = {}
        while True:
            raw = rfile.readline(MAX_LINE)
            if raw in (b"\r\n", b"\n", b""):
                break
            name, _, value = raw.decode("latin-1").partition(":")
            name, value = name.strip(), value.strip()
            lower = name.lower()
            headers[lower] = value
            if lower == "content-type":
                environ["CONTENT_TYPE"] = value
            elif lower == "content-length":
                environ["CONTENT_LENGTH"] = value
            else:
                environ["HTTP_" + name.upper().replace("-", "_")] = value
        path, _, query = target.partition("?")
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = int(headers["content-length"]) if headers.get("content-length", "").isdigit() else None
        keep_alive = headers.get("connection", "").lower() != "close" and version == "HTTP/1.1"
        expect_continue = headers.get("expect", "").lower() == "100-continue"

        def send_continue() -> None:
            if expect_continue:
                conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")

        body = Body(rfile, length, chunked, send_continue)
        environ.update(
            {
                "REQUEST_METHOD": method.upper(),
                "SCRIPT_NAME": "",
                "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
                "RAW_URI": target,
                "REQUEST_URI": target,
                "QUERY_STRING": query,
                "SERVER_NAME": self.server_address[0],
                "SERVER_PORT": str(self.server_address[1]),
                "SERVER_PROTOCOL": version,
                "REMOTE_ADDR": str(peer[0]),
                "wsgi.version": (1, 0),
                "wsgi.url_scheme": "http",
                "wsgi.input": body,
                "wsgi.errors": sys.stderr,
                "wsgi.multithread": True,
                "wsgi.multiprocess": False,
                "wsgi.run_once": False,
            }
        )
        if chunked:
            environ["wsgi.input_terminated"] = True
        state: dict[str, Any] = {}

        def start_response(status: str, response_headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            state["status"], state["headers"] = status, response_headers
            return lambda data: None

        result = self.app(environ, start_response)
        try:
            self._respond(conn, method.upper(), state, result, keep_alive)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        body.drain()  # what the app did not read
        return keep_alive

    @staticmethod
    def _respond(
        conn: socket.socket, method: str, state: dict[str, Any], result: Iterable[bytes], keep_alive: bool
    ) -> None:
        iterator = iter(result)
        first = b""
        for piece in iterator:  # start_response may be called lazily (on the first piece)
            if piece:
                first = bytes(piece)
                break
        headers: list[tuple[str, str]] = list(state.get("headers", []))
        names = {name.lower() for name, _ in headers}
        rest: list[bytes] = []
        if "content-length" not in names:  # buffer it (only small moto answers come without a length)
            rest = [bytes(p) for p in iterator]
            headers.append(("Content-Length", str(len(first) + sum(len(p) for p in rest))))
        if not keep_alive:
            headers.append(("Connection", "close"))
        head = f"HTTP/1.1 {state.get('status', '500 Internal Server Error')}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in headers) + "\r\n"
        if method == "HEAD":
            conn.sendall(head.encode("latin-1"))
            return
        conn.sendall(head.encode("latin-1") + first)
        for piece in rest or iterator:
            if piece:
                conn.sendall(piece)
