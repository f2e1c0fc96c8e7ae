"""A real HTTP server on loopback that misbehaves on request: drips, floods, bombs, redirects.

``serve()`` yields a ``Hostile`` whose ``routes`` map a path to a function writing the raw answer
(``handler.wfile``); ``url(path)`` is the loopback URL of a route. Helpers build the usual routes.
"""
from __future__ import annotations

import contextlib
import gzip
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def do_GET(self):  # noqa: N802 - the stdlib's name
        route = self.server.routes.get(self.path.split("?", 1)[0])
        self.server.requests.append(self.path)
        try:
            if route is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                route(self)
        except (BrokenPipeError, ConnectionResetError):
            pass   # the client hung up on us: what a bounded client does

    def log_message(self, *args):
        pass


class Hostile:
    def __init__(self, server: ThreadingHTTPServer) -> None:
        self.server = server
        self.routes: dict = server.routes
        self.requests: list[str] = server.requests
        self.sent: dict[str, int] = {}     # bytes a route managed to write before the client left

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    # -- routes -------------------------------------------------------------------------------
    def body(self, path: str, data: bytes, *, status: int = 200, headers: dict | None = None) -> str:
        def route(h):
            h.send_response(status)
            for k, v in (headers or {}).items():
                h.send_header(k, v)
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)
        self.routes[path] = route
        return self.url(path)

    def drip(self, path: str, *, every: float, total: int = 1000, in_headers: bool = False) -> str:
        """One byte every ``every`` seconds, in the body or (``in_headers``) before the headers end."""
        def route(h):
            if in_headers:
                h.wfile.write(b"HTTP/1.0 200 OK\r\nX-Slow: ")
            else:
                h.send_response(200)
                h.send_header("Content-Type", "application/rss+xml")
                h.end_headers()
            for _ in range(total):
                h.wfile.write(b"a")
                h.wfile.flush()
                self.sent[path] = self.sent.get(path, 0) + 1
                time.sleep(every)
        self.routes[path] = route
        return self.url(path)

    def flood(self, path: str, megabytes: int, *, declare_length: bool = False) -> str:
        """``megabytes`` of body sent in 64 KiB pieces; counts what went out before a hang-up."""
        chunk = b"x" * 65536

        def route(h):
            h.send_response(200)
            if declare_length:
                h.send_header("Content-Length", str(megabytes * 16 * len(chunk)))
            h.end_headers()
            for _ in range(megabytes * 16):
                h.wfile.write(chunk)
                self.sent[path] = self.sent.get(path, 0) + len(chunk)
        self.routes[path] = route
        return self.url(path)

    def gzip_bomb(self, path: str, megabytes: int) -> str:
        data = gzip.compress(b"\0" * (megabytes * 1024 * 1024), compresslevel=9)
        return self.body(path, data, headers={"Content-Encoding": "gzip"})

    def redirect(self, path: str, location: str, status: int = 302) -> str:
        return self.body(path, b"", status=status, headers={"Location": location})


@contextlib.contextmanager
def serve():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.routes = {}
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Hostile(server)
    finally:
        server.shutdown()
        server.server_close()
