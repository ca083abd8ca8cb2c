"""A real SMTP server on 127.0.0.1 (aiosmtpd), for the email channel's tests.

    with SmtpServer() as server:
        server.refuse("bob@example.com", "550 5.1.1 No such user")   # every RCPT of bob
        server.refuse("ann@example.com", "451 4.3.0 Try later", times=1)
        ...send to 127.0.0.1:server.port...
    server.received  # [Received(mail_from, rcpt_tos, message, peer), ...]

It offers no STARTTLS and no AUTH: a channel that asks for TLS is refused, as a server
without it would refuse.
"""

import email
import logging
import socket
from dataclasses import dataclass
from email.message import Message

from aiosmtpd.controller import Controller

logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every SMTP command


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: Message
    peer: tuple


class SmtpServer:
    def __init__(self):
        self.received: list[Received] = []
        self._refusals: dict[str, list[str]] = {}
        self._always: dict[str, str] = {}
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    def refuse(self, address: str, reply: str, *, times: int | None = None) -> "SmtpServer":
        """Answer RCPT TO:<address> with `reply`, `times` times (None: always)."""
        if times is None:
            self._always[address] = reply
        else:
            self._refusals.setdefault(address, []).extend([reply] * times)
        return self

    # aiosmtpd hooks

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        scripted = self._refusals.get(address)
        if scripted:
            return scripted.pop(0)
        if address in self._always:
            return self._always[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos),
                                      email.message_from_bytes(envelope.original_content), session.peer))
        return "250 2.0.0 Accepted"

    def __enter__(self) -> "SmtpServer":
        self._controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self._controller.stop()
