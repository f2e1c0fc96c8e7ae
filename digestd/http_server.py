"""The HTTP server of `digestd run`: uvicorn on a socket bound before the scheduler starts, in its own thread."""
from __future__ import annotations

import asyncio
import socket
import threading

# How long uvicorn waits for open requests after the scheduler has stopped.
HTTP_GRACE_SECONDS = 5


def bind(listen: str) -> socket.socket:
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    family, kind, proto, _name, addr = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
        sock.listen(1024)   # a burst of presses (a digest just landed) waits in the queue, not in SYN retries
    except OSError:
        sock.close()
        raise
    return sock


class HttpThread(threading.Thread):
    """uvicorn in its own thread (off the main thread it leaves signals alone)."""

    def __init__(self, asgi_app, sock: socket.socket) -> None:
        super().__init__(name="digestd-http", daemon=True)
        import uvicorn

        # access_log off: uvicorn would print request paths, and paths carry feed and link tokens.
        config = uvicorn.Config(asgi_app, log_config=None, access_log=False, lifespan="off", server_header=False,
                                timeout_graceful_shutdown=HTTP_GRACE_SECONDS)
        self.server = uvicorn.Server(config)
        self.sock = sock
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self.server.serve(sockets=[self.sock]))
        except BaseException as e:  # SystemExit from uvicorn included: the main thread reports it
            self.error = e

    def stop(self) -> None:
        self.server.should_exit = True
        self.join(HTTP_GRACE_SECONDS + 5)
