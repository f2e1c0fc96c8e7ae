"""A real SMTP server on loopback (aiosmtpd) that records what it accepts; shared by the tests."""
from __future__ import annotations

import socket

from aiosmtpd.controller import Controller


class Recorder:
    """Records every accepted message with the session it came in on; refuses chosen recipients."""

    def __init__(self) -> None:
        self.messages: list[tuple[object, list[str], bytes]] = []
        self.refuse: dict[str, str] = {}
        self.drop_after_data = False
        self.senders: list[str] = []      # the envelope sender (MAIL FROM) of each accepted message

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((session, list(envelope.rcpt_tos), envelope.content))
        self.senders.append(envelope.mail_from)
        if self.drop_after_data:
            # Like a server closing an idle session: the client only notices on its next command.
            server.loop.call_later(0.05, server.transport.close)
        return "250 Message accepted"

    @property
    def sessions(self) -> int:
        return len({id(s) for s, _, _ in self.messages})

    def recipients(self) -> list[str]:
        return [r for _, rcpts, _ in self.messages for r in rcpts]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(handler: Recorder, **kwargs) -> Controller:
    c = Controller(handler, hostname="127.0.0.1", port=free_port(), **kwargs)
    c.start()
    return c


