"""An SMTP server on loopback (aiosmtpd) that only counts what it accepts, in its own process so
its CPU is not charged to the pass being measured.

    with SmtpSink() as sink:           # starts ``python -m benchmarks.smtp_sink``
        ... deliver to 127.0.0.1:sink.port ...
        sink.stats()                   # {"messages": n, "bytes": b, "recipients": distinct addresses}

The child prints ``READY <port>`` and then answers one JSON line per ``stats`` line on stdin; it
stops when stdin closes.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


class CountingHandler:
    def __init__(self) -> None:
        self.messages = 0
        self.bytes = 0
        self.recipients: set[str] = set()

    async def handle_DATA(self, server, session, envelope):
        self.messages += 1
        self.bytes += len(envelope.content)
        self.recipients.update(envelope.rcpt_tos)
        return "250 Message accepted"

    def stats(self) -> dict:
        return {"messages": self.messages, "bytes": self.bytes, "recipients": len(self.recipients)}


class SmtpSink:
    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def __enter__(self) -> "SmtpSink":
        self.proc = subprocess.Popen([sys.executable, "-m", "benchmarks.smtp_sink"], cwd=REPO, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        line = self.proc.stdout.readline().split()
        if len(line) != 2 or line[0] != "READY":
            self.__exit__()
            raise RuntimeError(f"the SMTP sink did not start (said {line!r})")
        self.port = int(line[1])
        return self

    def stats(self) -> dict:
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


def main() -> None:
    import socket

    from aiosmtpd.controller import Controller

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    handler = CountingHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    print(f"READY {port}", flush=True)
    try:
        for line in sys.stdin:
            if line.strip() == "stats":
                print(json.dumps(handler.stats()), flush=True)
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
